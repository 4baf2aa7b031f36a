"""Export a range of the log with an inclusion proof per entry, e.g. as JSON Lines.

Every exported entry carries its canonical bytes, its leaf hash and its audit
path in the tree of the latest signed checkpoint, so a recipient can check
each one offline against that checkpoint (:func:`check_record`) without
trusting the exporter. Proofs are built in chunks: the nodes all proofs of a
chunk need are fetched in one query (neighbouring paths share most of them).

The JSON Lines file starts with one ``{"type": "checkpoint", ...}`` line (the
signed note and the log's verifier key), then one ``{"type": "event", ...}``
line per entry, in index order.

Example::

    with open("audit.jsonl", "w") as out:
        count = write_jsonl(log, out, start=0, end=1000)
    for line in open("audit.jsonl"):
        record = json.loads(line)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from audit_log.errors import TreeStateError
from audit_log.hashes import flat_id, leaf_hash
from audit_log.log import AuditLog, bad_argument
from audit_log.merkle import inclusion_plan, verify_inclusion
from audit_log.storage import SignedCheckpoint, StoredEvent

EXPORT_CHUNK = 512


@dataclass(frozen=True, slots=True)
class ExportRecord:
    entry: StoredEvent
    leaf_hash: bytes
    tree_size: int
    proof: list[bytes]


def export_range(
    log: AuditLog, start: int, end: int | None = None, *, chunk: int = EXPORT_CHUNK
) -> tuple[SignedCheckpoint, Iterator[ExportRecord]]:
    """The latest checkpoint and the entries ``[start, end)`` with proofs against it.

    ``end`` defaults to the checkpoint's size; a range beyond it is refused
    (INVALID_ARGUMENT naming ``start``/``end``): unsigned entries have no proof.
    """
    signed = log.require_checkpoint()
    size = signed.checkpoint.size
    end = size if end is None or end == 0 else end
    if end > size:
        raise bad_argument("end", f"{end} is beyond the signed tree (size {size})")
    if not 0 <= start < end:
        raise bad_argument("start", f"{start} must be below end {end}")
    return signed, _records(log, start, end, size, chunk)


def _records(log: AuditLog, start: int, end: int, size: int, chunk: int) -> Iterator[ExportRecord]:
    for begin in range(start, end, chunk):
        stop = min(end, begin + chunk)
        rows = log.storage.read_events(begin, stop)
        if [r.index for r in rows] != list(range(begin, stop)):
            raise TreeStateError(f"entries {begin}..{stop - 1} are incomplete in storage")
        plans = [inclusion_plan(i, size) for i in range(begin, stop)]
        wanted = {flat_id(n) for plan in plans for n in plan.node_ids}
        hashes = log.storage.node_hashes(sorted(wanted))
        for row, plan in zip(rows, plans, strict=True):
            try:
                proof = plan.assemble([hashes[flat_id(n)] for n in plan.node_ids])
            except KeyError:
                raise TreeStateError(
                    f"a node of the proof of entry {row.index} is missing"
                ) from None
            yield ExportRecord(row, leaf_hash(row.leaf), size, proof)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def record_json(record: ExportRecord) -> dict[str, Any]:
    """One ``{"type": "event", ...}`` line of the JSON Lines export."""
    return {
        "type": "event",
        "index": record.entry.index,
        "leaf": _b64(record.entry.leaf),
        "leaf_hash": _b64(record.leaf_hash),
        "tree_size": record.tree_size,
        "inclusion_proof": [_b64(h) for h in record.proof],
        "event": json.loads(record.entry.leaf),
    }


def check_record(line: dict[str, Any], root_hash: bytes) -> None:
    """Check one exported event line against a checkpoint root (raises ProofError)."""
    leaf = base64.b64decode(line["leaf"])
    proof = [base64.b64decode(h) for h in line["inclusion_proof"]]
    verify_inclusion(leaf_hash(leaf), line["index"], line["tree_size"], proof, root_hash)


def write_jsonl(
    log: AuditLog,
    out: IO[str],
    *,
    start: int = 0,
    end: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write the checkpoint line and the entries ``[start, end)``; return the entry count."""
    signed, records = export_range(log, start, end)
    checkpoint = signed.checkpoint
    header = {
        "type": "checkpoint",
        "origin": checkpoint.origin,
        "tree_size": checkpoint.size,
        "root_hash": _b64(checkpoint.root_hash),
        "note": signed.note,
        "verifier_key": log.keys.verifier.vkey(),
    }
    out.write(json.dumps(header, ensure_ascii=False) + "\n")
    total = (checkpoint.size if end is None or end == 0 else end) - start
    count = 0
    for record in records:
        out.write(json.dumps(record_json(record), ensure_ascii=False, sort_keys=True) + "\n")
        count += 1
        if progress is not None and (count % 1024 == 0 or count == total):
            progress(count, total)
    return count
