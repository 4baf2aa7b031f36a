"""The storage interface of the audit log, and the values that cross it.

Like Tessera's storage drivers, a :class:`LogStorage` owns *integration*: it
assigns indices and writes the entries, the new node hashes and the new tree
state in ONE transaction, so a crash leaves either the whole batch or none of
it. It also guards checkpoint signing (the last signed checkpoint and the
check against it live in the same transaction as the insert) and the witness
state. Everything above it (sequencer, proofs, verification, the gRPC
service) is storage-agnostic. :class:`audit_log.sql.SqlLogStorage` implements
it on SQLite and PostgreSQL.

Example::

    from audit_log.events import Action, AuditEvent
    from audit_log.storage import EncodedEvent

    encoded = EncodedEvent.of(AuditEvent(action=Action.CATALOG_CHANGE, time=utcnow()))
    first = storage.append([encoded])          # durable when it returns
    head = storage.tree_head()                 # TreeHead(size=first + 1, root_hash=...)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from audit_log.checkpoint import Checkpoint
from audit_log.events import Action, AuditEvent, Outcome, decode_event, encode_event
from audit_log.hashes import NodeID, leaf_hash
from audit_log.note import NoteSigner, NoteVerifier


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An event with its canonical leaf bytes and leaf hash, ready to append."""

    event: AuditEvent
    leaf: bytes
    leaf_hash: bytes

    @classmethod
    def of(cls, event: AuditEvent) -> EncodedEvent:
        leaf = encode_event(event)
        return cls(event, leaf, leaf_hash(leaf))


ExtraRows = tuple[str, Sequence[str], Sequence[tuple[Any, ...]]]
"""Rows of another table (name, columns, rows bound for the database) that an
append writes in the same transaction as its events (our constant names only)."""


@dataclass(frozen=True, slots=True)
class TreeHead:
    """The size and root of the tree as stored (not necessarily signed yet)."""

    size: int
    root_hash: bytes


@dataclass(frozen=True, slots=True)
class SearchColumns:
    """The indexed copies of an event's fields, as a row holds them."""

    time: datetime
    action: str
    outcome: str
    organisation: str | None
    subject: str | None
    resource: str | None
    licence_id: str | None
    holder_ref: str | None

    @classmethod
    def of(cls, event: AuditEvent) -> SearchColumns:
        return cls(
            time=event.time,
            action=event.action.value,
            outcome=event.outcome.value,
            organisation=event.organisation,
            subject=event.subject,
            resource=event.resource,
            licence_id=event.licence_id,
            holder_ref=event.holder_ref,
        )


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the log: its index, canonical bytes and stored search columns."""

    index: int
    leaf: bytes
    columns: SearchColumns

    def event(self) -> AuditEvent:
        """The decoded event (raises :class:`audit_log.events.EventFormatError`)."""
        return decode_event(self.leaf)


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Search filters (all optional, combined with AND) and the page to return.

    ``holder_ref`` is already hashed; ``until`` is exclusive; ``after`` is the
    cursor: the index of the last event of the previous page.
    """

    organisation: str | None = None
    subject: str | None = None
    resource: str | None = None
    licence_id: str | None = None
    holder_ref: str | None = None
    actions: tuple[Action, ...] = ()
    outcome: Outcome | None = None
    since: datetime | None = None
    until: datetime | None = None
    newest_first: bool = False
    after: int | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint and the signed note that carries it."""

    checkpoint: Checkpoint
    note: str


@dataclass(frozen=True, slots=True)
class WitnessRecord:
    """What a witness remembers of one child log."""

    origin: str
    verifier_key: str
    size: int
    root_hash: bytes
    note: str


class LogStorage(Protocol):
    """Where a log keeps its entries, node hashes, tree state and checkpoints."""

    def append(self, events: Sequence[EncodedEvent], rows: Sequence[ExtraRows] = (), /) -> int:
        """Sequence and store ``events`` in one transaction; return the first index.

        ``rows``: other tables' rows written in that same transaction (e.g. the
        licence vault's use records), durable with the events. On any error
        nothing is written. Concurrent callers (other threads or processes) get
        disjoint, contiguous index ranges.
        """
        ...

    def tree_head(self) -> TreeHead: ...

    def get_nodes(self, ids: Sequence[NodeID], /) -> Sequence[bytes]:
        """The stored hashes of ``ids`` in order (a :class:`HashReader`)."""
        ...

    def node_hashes(self, flat_ids: Sequence[int], /) -> dict[int, bytes]:
        """Stored hashes by flat id; ids not stored are absent (no error)."""
        ...

    def node_block(self, first: int, end: int, /) -> dict[int, bytes]:
        """Every stored hash with a flat id in ``[first, end)``."""
        ...

    def read_events(self, start: int, end: int, /) -> list[StoredEvent]:
        """The rows with ``start <= index < end``, in index order (gaps possible)."""
        ...

    def search(self, query: EventQuery, /) -> list[StoredEvent]:
        """Up to ``query.limit`` rows matching ``query``, in log order."""
        ...

    def latest_checkpoint(self) -> str | None:
        """The signed note of the newest checkpoint, unverified; None if none."""
        ...

    def publish_checkpoint(
        self, origin: str, signer: NoteSigner, verifier: NoteVerifier, /
    ) -> tuple[SignedCheckpoint, bool]:
        """Sign the current tree unless it would contradict the last checkpoint.

        Returns the checkpoint and whether it is new (False: the tree did not
        grow since the last one, which is returned). Raises
        :class:`audit_log.errors.InconsistentCheckpointError` on a fork.
        """
        ...

    def update_witness(
        self, origin: str, decide: Callable[[WitnessRecord | None], WitnessRecord], /
    ) -> WitnessRecord:
        """Run ``decide`` on the stored record of ``origin`` under a lock; store its result."""
        ...
