"""Witnessing: a parent node cosigns its children's checkpoints after checking consistency.

The exchange mirrors C2SP tlog-witness ``add-checkpoint``: the child sends its
signed checkpoint, the size of the last checkpoint it believes the witness
cosigned (``old_size``) and a consistency proof from that size. The witness

1. parses the checkpoint and finds the child's verifier key: configured
   (``trusted``), else the key pinned at the first cosignature, else (first
   contact) the key the request offers, which is then pinned;
2. verifies the log signature (bad: INVALID_ARGUMENT ``INVALID_NOTE``);
3. under a lock on its record of that origin, requires ``old_size`` to be the
   size it last cosigned (else FAILED_PRECONDITION ``WITNESS_SIZE_MISMATCH``
   with ``witness_size`` in the metadata, so the child can retry with the
   right proof) and the proof to hold (else FAILED_PRECONDITION
   ``CHECKPOINT_INCONSISTENT``: the child rewrote its history);
4. stores the new checkpoint as the last seen and returns it cosigned
   (C2SP tlog-cosignature, Ed25519, with the current time).

So a county that rewrites its log cannot get a consistent history past its
province: the province refuses, and keeps the last good checkpoint as evidence.

Example::

    witness = Witness(storage, keys.cosigner)
    result = witness.cosign(child_note, old_size=0, proof=[], log_key=child_vkey)
    print(result.cosigned_note)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from audit_log.checkpoint import (
    Checkpoint,
    CosignatureSigner,
    check_consistent,
    cosign,
    open_checkpoint,
)
from audit_log.errors import AuditLogError, InconsistentCheckpointError
from audit_log.note import Ed25519Verifier, parse_note
from audit_log.storage import LogStorage, WitnessRecord
from zhida.errors import FailedPrecondition, FieldViolation, InvalidArgument
from zhida.regions import RegionCodeError, parse_region


@dataclass(frozen=True, slots=True)
class CosignResult:
    checkpoint: Checkpoint
    cosigned_note: str  # the child's note with this witness's cosignature appended
    cosignature: str  # just the added signature line


def _invalid(field: str, message: str, reason: str) -> InvalidArgument:
    return InvalidArgument(message, reason=reason, violations=[FieldViolation(field, message)])


def origin_region(origin: str) -> str:
    """The region code of a zhida log origin ``zhida.<region>/<name>``."""
    head, sep, name = origin.partition("/")
    region = head.removeprefix("zhida.")
    try:
        if not sep or not name or not head.startswith("zhida."):
            raise RegionCodeError("not a zhida origin")
        return parse_region(region).code
    except RegionCodeError:
        raise _invalid(
            "checkpoint", f"origin {origin!r} is not zhida.<region>/<node>", "INVALID_ORIGIN"
        ) from None


def check_child(origin: str, caller_region: str, own_region: str) -> None:
    """Only a node of a region below ours may get its own log cosigned by us."""
    child = origin_region(origin)
    if child != caller_region:
        raise FailedPrecondition(
            f"a node of region {caller_region} cannot submit the log of region {child}",
            reason="WITNESS_WRONG_CALLER",
        )
    mine = parse_region(own_region)
    if child == own_region or not mine.contains(parse_region(child)):
        raise FailedPrecondition(
            f"region {child} is not below this node's region {own_region}",
            reason="WITNESS_NOT_PARENT",
        )


class Witness:
    """Cosigns child checkpoints; state in :meth:`LogStorage.update_witness`."""

    def __init__(
        self,
        storage: LogStorage,
        cosigner: CosignatureSigner,
        *,
        trusted: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._cosigner = cosigner
        self._trusted = dict(trusted or {})
        self._clock = clock

    @property
    def verifier_key(self) -> str:
        return self._cosigner.verifier().vkey()

    def cosign(
        self, note: str, *, old_size: int, proof: Sequence[bytes], log_key: str | None = None
    ) -> CosignResult:
        try:
            text, _ = parse_note(note)
            claimed = Checkpoint.parse(text)
        except AuditLogError as exc:
            raise _invalid(
                "checkpoint", f"malformed checkpoint: {exc.message}", exc.reason
            ) from None
        origin = claimed.origin
        if log_key is not None:
            try:
                Ed25519Verifier.from_vkey(log_key)
            except AuditLogError as exc:
                raise _invalid("log_verifier_key", exc.message, "INVALID_KEY") from None

        def decide(current: WitnessRecord | None) -> WitnessRecord:
            vkey = self._trusted.get(origin) or (current.verifier_key if current else log_key)
            if vkey is None:
                raise _invalid(
                    "log_verifier_key", f"first checkpoint of {origin}: send the log's key",
                    "WITNESS_KEY_REQUIRED",
                )  # fmt: skip
            if log_key is not None and log_key != vkey:
                raise FailedPrecondition(
                    f"{origin} is pinned to another key", reason="WITNESS_KEY_MISMATCH"
                )
            checkpoint = self._open(note, vkey, origin)
            last_size = 0 if current is None else current.size
            if old_size != last_size:
                raise FailedPrecondition(
                    f"this witness last cosigned {origin} at size {last_size}, not {old_size}",
                    reason="WITNESS_SIZE_MISMATCH",
                    metadata={"witness_size": str(last_size)},
                )
            previous = (
                None if current is None else Checkpoint(origin, current.size, current.root_hash)
            )
            try:
                check_consistent(previous, checkpoint, proof)
            except InconsistentCheckpointError as exc:
                raise FailedPrecondition(exc.message, reason=exc.reason) from None
            return WitnessRecord(origin, vkey, checkpoint.size, checkpoint.root_hash, note)

        record = self._storage.update_witness(origin, decide)
        cosigned = cosign(record.note, self._cosigner, timestamp=int(self._clock()))
        line = cosigned.rstrip("\n").rsplit("\n", 1)[-1] + "\n"
        return CosignResult(Checkpoint(origin, record.size, record.root_hash), cosigned, line)

    @staticmethod
    def _open(note: str, vkey: str, origin: str) -> Checkpoint:
        try:
            return open_checkpoint(note, [Ed25519Verifier.from_vkey(vkey)], origin=origin)
        except AuditLogError as exc:
            raise _invalid(
                "checkpoint", f"checkpoint signature does not verify: {exc.message}", "INVALID_NOTE"
            ) from None
