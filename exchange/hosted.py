"""The hosted provider's data model: uploads become changes, records and a change log.

Small agencies without a system of their own upload their dataset to the
node (CSV or JSON, see :mod:`exchange.upload`); the node then answers for
them. Each resource's data is

* the **current records**, each at a fixed position ``pos`` (the change that
  inserted it) — ``StreamDataset`` walks them by position, so its cursor is
  the last position sent and resuming from it gives exactly the rest;
* the **change log**, one entry per insert, update or delete, numbered 1, 2,
  3… per resource — subscriptions read it from their cursor (the last
  change sequence received).

An upload is either a SNAPSHOT (the file is the whole dataset: records not in
it are deleted, unchanged ones are left alone) or CHANGES (upserts, and
deletes by ``-key``). :func:`plan_upload` turns one into the writes to make,
without I/O; a :class:`HostedStore` applies a plan in one transaction, and
answers a retried ``upload_id`` from its record of the first attempt.

Example::

    >>> from exchange.upload import encode_record
    >>> old = {"a": (1, encode_record("a", {"k": "a"})), "b": (2, encode_record("b", {"k": "b"}))}
    >>> new = {"a": encode_record("a", {"k": "a"}), "c": encode_record("c", {"k": "c"})}
    >>> p = plan_upload(old, new, [], snapshot=True, last_seq=2, key_item="k")
    >>> [(c.seq, c.operation, c.key) for c in p.changes], p.last_seq
    ([(3, 'upsert', 'c'), (4, 'delete', 'b')], 4)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from exchange.upload import encode_record

UPSERT = "upsert"
DELETE = "delete"


@dataclass(frozen=True, slots=True)
class StoredChange:
    """One entry of a resource's change log."""

    seq: int
    operation: str  # UPSERT or DELETE
    key: str
    body: bytes  # encoded Record; for a delete only the key (and the key item)
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class Plan:
    """The writes one upload makes (see :func:`plan_upload`)."""

    inserts: list[tuple[int, str, bytes]]  # (pos = seq, key, body)
    updates: list[tuple[int, int, bytes]]  # (pos, seq, body)
    removals: list[int]  # positions
    changes: list[StoredChange]
    last_seq: int
    total: int

    @property
    def upserted(self) -> int:
        return len(self.inserts) + len(self.updates)

    @property
    def deleted(self) -> int:
        return len(self.removals)


@dataclass(frozen=True, slots=True)
class UploadBatch:
    """An upload ready to apply: who, what, how; records already checked and encoded."""

    resource_code: str
    provider_org: str
    key_item: str
    snapshot: bool
    upserts: Mapping[str, bytes]
    deletes: list[str]
    upload_id: str
    content_hash: str
    uploaded_by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class UploadResult:
    version: int
    upserted: int
    deleted: int
    total: int
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    resource_code: str
    provider_org: str
    key_item: str
    version: int
    last_seq: int
    record_count: int
    updated_at: datetime


class HostedStore(Protocol):
    """Storage of hosted datasets (:class:`exchange.hosted_sql.SqlHostedStore`)."""

    def apply(self, batch: UploadBatch) -> UploadResult:
        """Apply an upload in one transaction, or answer a retried ``upload_id``.

        Raises ``FailedPrecondition`` ``UPLOAD_ID_REUSED`` when the id was used
        for different content, ``KEY_ITEM_CHANGED`` for CHANGES under another key.
        """
        ...

    def dataset(self, resource_code: str) -> DatasetInfo | None: ...

    def get(self, resource_code: str, key: str) -> bytes | None:
        """The encoded record with ``key``, or None."""
        ...

    def scan(self, resource_code: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` ``(pos, body)`` of current records after position ``after``."""
        ...

    def changes(self, resource_code: str, after: int, limit: int) -> list[StoredChange]:
        """Up to ``limit`` changes with a sequence greater than ``after``, in order."""
        ...

    def last_seq(self, resource_code: str) -> int:
        """The newest change sequence of the resource (0: none)."""
        ...


def plan_upload(
    existing: Mapping[str, tuple[int, bytes]],
    upserts: Mapping[str, bytes],
    deletes: Iterable[str],
    *,
    snapshot: bool,
    last_seq: int,
    key_item: str,
    record_count: int | None = None,
    at: datetime | None = None,
) -> Plan:
    """The writes that turn ``existing`` (key → (pos, body)) into the uploaded state.

    Unchanged records are left alone (no change entry); new records take the
    next sequence as their position; updates keep their position. In a
    snapshot, every existing key not uploaded is deleted. ``existing`` must
    hold at least every key the upload names (all keys for a snapshot);
    ``record_count`` is the number of records stored (default ``len(existing)``).
    """
    stamp = at if at is not None else datetime.min
    seq = last_seq
    inserts: list[tuple[int, str, bytes]] = []
    updates: list[tuple[int, int, bytes]] = []
    removals: list[int] = []
    changes: list[StoredChange] = []
    for key, body in upserts.items():
        held = existing.get(key)
        if held is not None and held[1] == body:
            continue
        seq += 1
        if held is None:
            inserts.append((seq, key, body))
        else:
            updates.append((held[0], seq, body))
        changes.append(StoredChange(seq, UPSERT, key, body, stamp))
    doomed = (
        sorted(k for k in existing if k not in upserts)
        if snapshot
        else sorted({k for k in deletes if k in existing})
    )
    for key in doomed:
        seq += 1
        removals.append(existing[key][0])
        changes.append(StoredChange(seq, DELETE, key, encode_record(key, {key_item: key}), stamp))
    held_count = len(existing) if record_count is None else record_count
    total = held_count + len(inserts) - len(removals)
    return Plan(inserts, updates, removals, changes, seq, total)
