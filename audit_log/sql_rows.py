"""Rows and statements of the audit tables, for :mod:`audit_log.sql`.

The table handles and column lists :class:`~audit_log.sql.SqlLogStorage`
writes with, and the pure conversions between its rows and the storage
interface's values: a :class:`~audit_log.storage.StoredEvent` from an
``audit_event`` row, a :class:`~audit_log.storage.WitnessRecord` from an
``audit_witness`` row, a stored checkpoint believed only once its note
verifies and matches its row, and the ``SELECT`` an
:class:`~audit_log.storage.EventQuery` becomes. :class:`ConnectionReader`
reads node hashes on an open connection, for proofs inside a write
transaction.

Example::

    with database.engine.connect() as conn:
        events = [stored_event(row) for row in conn.execute(search_statement(query))]
        proof = consistency_proof(old_size, new_size, ConnectionReader(conn))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, select

from audit_log.bulk import as_bytes
from audit_log.checkpoint import Checkpoint, open_checkpoint
from audit_log.errors import AuditLogError, TreeStateError
from audit_log.hashes import NodeID, flat_id
from audit_log.models import (
    AuditCheckpointRow,
    AuditEventRow,
    AuditNodeRow,
    AuditTreeRow,
    AuditWitnessRow,
)
from audit_log.note import NoteVerifier
from audit_log.storage import EventQuery, SearchColumns, StoredEvent, WitnessRecord

__all__ = [
    "CHECKPOINT",
    "COPY_TYPES",
    "EVENT",
    "EVENT_COLUMNS",
    "NODE",
    "RAW_EVENTS",
    "TREE",
    "WITNESS",
    "ConnectionReader",
    "in_order",
    "search_statement",
    "stored_event",
    "trusted_checkpoint",
    "witness_record",
]

EVENT = cast(Table, AuditEventRow.__table__)
NODE = cast(Table, AuditNodeRow.__table__)
TREE = cast(Table, AuditTreeRow.__table__)
CHECKPOINT = cast(Table, AuditCheckpointRow.__table__)
WITNESS = cast(Table, AuditWitnessRow.__table__)
EVENT_COLUMNS = (
    "idx", "leaf", "time", "action", "outcome",
    "organisation", "subject", "resource", "licence_id", "holder_ref",
)  # fmt: skip
COPY_TYPES = ("int8", "bytea", "timestamptz", *("varchar",) * 7)
RAW_EVENTS = (
    f"SELECT {', '.join(EVENT_COLUMNS)} FROM audit_event "  # noqa: S608 (constants)
    "WHERE idx >= :start AND idx < :end ORDER BY idx"
)
_SEARCH_FIELDS = ("organisation", "subject", "resource", "licence_id", "holder_ref")


class ConnectionReader:
    """A HashReader on an open connection (proofs inside a write transaction)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get_nodes(self, ids: Sequence[NodeID], /) -> list[bytes]:
        flat = [flat_id(n) for n in ids]
        found = _fetch_nodes(self._conn, flat)
        return in_order(ids, flat, found)


def _fetch_nodes(conn: Connection, flat: Sequence[int]) -> dict[int, bytes]:
    if not flat:
        return {}
    rows = conn.execute(select(NODE.c.id, NODE.c.hash).where(NODE.c.id.in_(flat)))
    return {row[0]: as_bytes(row[1]) for row in rows}


def in_order(ids: Sequence[NodeID], flat: Sequence[int], found: dict[int, bytes]) -> list[bytes]:
    try:
        return [found[f] for f in flat]
    except KeyError as exc:
        missing = ids[list(flat).index(exc.args[0])]
        raise TreeStateError(f"node {tuple(missing)} is not stored") from None


def stored_event(row: Any, time: Any = None) -> StoredEvent:
    return StoredEvent(
        index=row.idx,
        leaf=as_bytes(row.leaf),
        columns=SearchColumns(
            time=row.time if time is None else time, action=row.action, outcome=row.outcome,
            organisation=row.organisation, subject=row.subject, resource=row.resource,
            licence_id=row.licence_id, holder_ref=row.holder_ref,
        ),
    )  # fmt: skip


def trusted_checkpoint(row: Any, verifier: NoteVerifier, origin: str) -> Checkpoint:
    """The stored checkpoint, believed only if its signature holds and matches its row."""
    try:
        checkpoint = open_checkpoint(str(row.note), [verifier], origin=origin)
    except AuditLogError as exc:
        raise TreeStateError(
            f"stored checkpoint of size {row.size} does not verify: {exc.message}"
        ) from None
    if (checkpoint.size, checkpoint.root_hash) != (row.size, as_bytes(row.root_hash)):
        raise TreeStateError(f"stored checkpoint of size {row.size} disagrees with its note")
    return checkpoint


def witness_record(row: Any) -> WitnessRecord:
    return WitnessRecord(
        origin=row.origin, verifier_key=row.verifier_key, size=row.size,
        root_hash=as_bytes(row.root_hash), note=row.note,
    )  # fmt: skip


def search_statement(q: EventQuery) -> Select[Any]:
    c = EVENT.c
    stmt = select(EVENT)
    for name in _SEARCH_FIELDS:
        value = getattr(q, name)
        if value is not None:
            stmt = stmt.where(c[name] == value)
    if q.actions:
        stmt = stmt.where(c.action.in_([a.value for a in q.actions]))
    if q.outcome is not None:
        stmt = stmt.where(c.outcome == q.outcome.value)
    if q.since is not None:
        stmt = stmt.where(c.time >= q.since)
    if q.until is not None:
        stmt = stmt.where(c.time < q.until)
    if q.after is not None:
        stmt = stmt.where(c.idx < q.after if q.newest_first else c.idx > q.after)
    order = c.idx.desc() if q.newest_first else c.idx.asc()
    return stmt.order_by(order).limit(q.limit)
