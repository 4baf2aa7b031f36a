"""The licence index (issue 8, item 4): which node holds a holder's licences.

A fetch for cross-province use (跨省通办) must reach the node that issued the
licence. Every node keeps an index of the licences held in its subtree — the
holder as the audit log's keyed hash (:meth:`audit_log.log.AuditLog.holder_ref`,
one deployment-wide key), the licence identifier, its type code and the
region of the holding node; no licence data — and pushes it to its parent, so
the national node's index covers the country:

1. :meth:`LicenceIndex.index_own` reads the vault's ``licence`` table after a
   cursor and adds this node's new licences to its own index;
2. :meth:`LicenceIndex.pending` pages through the index (own entries and
   those children pushed) after the push cursor, for the parent;
3. the parent checks a push with :func:`check_push` (a node below it, well
   formed entries, only of the pusher's own subtree) and :meth:`LicenceIndex.accept_push` stores
   them; a replay changes nothing (unique licence identifier);
4. :meth:`LicenceIndex.locate` answers where a holder's licences are: the
   entries, the holding regions and their provinces — what the forwarding
   layer routes a fetch by.

Both cursors run over identity columns, which PostgreSQL may commit out of
order; :class:`GapCursor` only moves past a gap that has stayed open for
``gap_wait`` seconds (a rolled-back insert), so no row is skipped. Pushing
the same entries twice is harmless.

Example::

    index = LicenceIndex(LicenceIndexStore(database), "430000", audit_log.holder_ref)
    index.index_own(own_cursor)                     # the vault's new licences
    entries = index.pending(push_cursor, limit=500)  # → parent's accept_push
    where = national_index.locate(holder_id="430000199001011234")
    where.provinces                                  # ('430000',)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import insert, select

from exchange.federation.models import LicenceIndexRow
from licence_vault.identifier import LicenceId, validate_type_code
from licence_vault.models import LicenceRow
from zhida.auth.principal import Principal, Role
from zhida.db import Database
from zhida.errors import FieldViolation, InvalidArgument, PermissionDenied, ZhidaError
from zhida.regions import Level, RegionCodeError, parse_region

__all__ = [
    "GapCursor",
    "HolderLocation",
    "IndexEntry",
    "LicenceIndex",
    "LicenceIndexStore",
    "PushResult",
    "check_push",
]

MAX_PUSH = 500
MAX_LOOKUP = 1000
HOLDER_REF = re.compile(r"[0-9a-f]{64}")  # HolderHasher.ref(): 64 hex
INDEX = LicenceIndexRow.__table__
LICENCE = LicenceRow.__table__


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One licence: whose (keyed hash), which, what type, held by which node's region."""

    holder_ref: str
    licence_id: str
    type_code: str
    region_code: str

    @property
    def province(self) -> str:
        """The province of the holding node (``100000`` for the national node)."""
        region = parse_region(self.region_code)
        return region.code if region.level is Level.NATIONAL else str(region.province)


@dataclass(frozen=True, slots=True)
class PushResult:
    accepted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class HolderLocation:
    """Where a holder's licences are, as far as this node's subtree knows."""

    holder_ref: str
    entries: tuple[IndexEntry, ...]

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(sorted({e.region_code for e in self.entries}))

    @property
    def provinces(self) -> tuple[str, ...]:
        return tuple(sorted({e.province for e in self.entries}))


class GapCursor:
    """A position in an identity column whose values may become visible out of order.

    :meth:`advance` takes the ids read after :attr:`position` (ascending) and
    moves through them while they are consecutive; at a gap it waits until
    the gap has been seen for ``gap_wait`` seconds, then steps over it. It
    returns the ids that may be processed now.

    >>> cursor = GapCursor(0, gap_wait=5.0, clock=lambda: 100.0)
    >>> cursor.advance([1, 2, 4])
    [1, 2]
    >>> cursor.position
    2
    """

    def __init__(
        self, position: int, *, gap_wait: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.position = position
        self.gap_wait = gap_wait
        self._clock = clock
        self._gaps: dict[int, float] = {}  # position before a gap -> first seen

    def advance(self, ids: Sequence[int]) -> list[int]:
        now = self._clock()
        taken: list[int] = []
        for value in ids:
            if value <= self.position:
                continue
            if value != self.position + 1:
                first = self._gaps.setdefault(self.position, now)
                if now - first < self.gap_wait:
                    break
            taken.append(value)
            self.position = value
        self._gaps = {k: v for k, v in self._gaps.items() if k >= self.position}
        return taken


def _entry_problems(entry: IndexEntry, index: int) -> list[FieldViolation]:
    where = f"entries[{index}]"
    out: list[FieldViolation] = []
    if not HOLDER_REF.fullmatch(entry.holder_ref):
        out.append(FieldViolation(f"{where}.holder_ref", "must be a keyed hash (64 hex)"))
    checks: tuple[tuple[str, Callable[[], object]], ...] = (
        ("licence_id", lambda: LicenceId.parse(entry.licence_id)),
        ("type_code", lambda: validate_type_code(entry.type_code)),
    )
    for name, check in checks:
        try:
            check()
        except ZhidaError as exc:
            out.append(FieldViolation(f"{where}.{name}", exc.message))
    try:
        parse_region(entry.region_code)
    except RegionCodeError as exc:
        out.append(FieldViolation(f"{where}.region_code", str(exc)))
    return out


def check_push(principal: Principal, own_region: str, entries: Sequence[IndexEntry]) -> None:
    """A push must come from a node below ``own_region`` (else PermissionDenied
    NOT_CHILD_NODE) and carry at most :data:`MAX_PUSH` well-formed entries
    (InvalidArgument INVALID_INDEX_ENTRY, a violation per bad field), all of the
    pusher's own subtree (PermissionDenied ENTRY_OUT_OF_REGION)."""
    mine = parse_region(own_region)
    try:
        caller = parse_region(principal.region_code)
    except RegionCodeError:
        caller = None
    if (
        principal.role is not Role.NODE
        or caller is None
        or caller.code == mine.code
        or not mine.contains(caller)
    ):
        raise PermissionDenied(
            f"only a node below {own_region} may push licence-index entries",
            reason="NOT_CHILD_NODE",
            metadata={"caller_region": principal.region_code},
        )
    problems = [p for i, e in enumerate(entries) for p in _entry_problems(e, i)]
    if len(entries) > MAX_PUSH:
        problems.append(FieldViolation("entries", f"at most {MAX_PUSH} per push"))
    if problems:
        raise InvalidArgument(
            "invalid licence-index push", reason="INVALID_INDEX_ENTRY", violations=problems
        )
    outside = sorted(
        {e.region_code for e in entries if not caller.contains(parse_region(e.region_code))}
    )
    if outside:
        raise PermissionDenied(
            f"the {caller.code} node may not push entries of {', '.join(outside)}",
            reason="ENTRY_OUT_OF_REGION",
            metadata={"caller_region": caller.code, "regions": ",".join(outside)},
        )


class LicenceIndexStore:
    """The ``federation_licence_index`` table, and the vault's ``licence`` rows it reads."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def add(self, entries: Iterable[IndexEntry]) -> int:
        """Store entries not yet present (by licence identifier); how many were new."""
        rows = {e.licence_id: e for e in entries}
        if not rows:
            return 0
        with self.database.session() as s:
            known = set(
                s.scalars(
                    select(INDEX.c.licence_id).where(INDEX.c.licence_id.in_(list(rows)))
                ).all()
            )
            fresh = [
                {
                    "licence_id": e.licence_id,
                    "holder_ref": e.holder_ref,
                    "type_code": e.type_code,
                    "region_code": e.region_code,
                }
                for key, e in sorted(rows.items())
                if key not in known
            ]
            if fresh:
                s.execute(insert(LicenceIndexRow), fresh)
        return len(fresh)

    def lookup(self, holder_ref: str, type_code: str | None = None) -> list[IndexEntry]:
        query = select(INDEX).where(INDEX.c.holder_ref == holder_ref)
        if type_code:
            query = query.where(INDEX.c.type_code == type_code)
        with self.database.read() as conn:
            rows = conn.execute(query.order_by(INDEX.c.seq).limit(MAX_LOOKUP)).all()
        return [_entry(r) for r in rows]

    def since(self, seq: int, limit: int) -> list[tuple[int, IndexEntry]]:
        query = select(INDEX).where(INDEX.c.seq > seq).order_by(INDEX.c.seq).limit(limit)
        with self.database.read() as conn:
            return [(r.seq, _entry(r)) for r in conn.execute(query)]

    def licences_since(self, row_id: int, limit: int) -> list[tuple[int, str, str, str]]:
        """(row id, holder code, licence id, type code) of the vault's licences after ``row_id``."""
        query = (
            select(LICENCE.c.id, LICENCE.c.holder_code, LICENCE.c.licence_id, LICENCE.c.type_code)
            .where(LICENCE.c.id > row_id)
            .order_by(LICENCE.c.id)
            .limit(limit)
        )
        with self.database.read() as conn:
            return [(r[0], r[1], r[2], r[3]) for r in conn.execute(query)]


def _entry(row: object) -> IndexEntry:
    return IndexEntry(
        holder_ref=row.holder_ref,  # type: ignore[attr-defined]
        licence_id=row.licence_id,  # type: ignore[attr-defined]
        type_code=row.type_code,  # type: ignore[attr-defined]
        region_code=row.region_code,  # type: ignore[attr-defined]
    )


@dataclass
class LicenceIndex:
    """The index at one node: own licences in, children's pushes in, pages out, look-ups."""

    store: LicenceIndexStore
    region_code: str
    holder_ref: Callable[[str], str]
    """The audit log's keyed hash of a holder id (one key for the whole deployment)."""
    batch: int = field(default=MAX_PUSH)

    def index_own(self, cursor: GapCursor) -> int:
        """Add this node's licences issued after ``cursor`` (moved on); how many were new."""
        rows = self.store.licences_since(cursor.position, self.batch)
        ready = set(cursor.advance([r[0] for r in rows]))
        entries = [
            IndexEntry(self.holder_ref(holder), licence_id, type_code, self.region_code)
            for row_id, holder, licence_id, type_code in rows
            if row_id in ready
        ]
        return self.store.add(entries)

    def pending(self, cursor: GapCursor, limit: int = MAX_PUSH) -> list[IndexEntry]:
        """Entries after ``cursor`` for the parent; the caller persists ``cursor.position``
        only once the parent has accepted them."""
        rows = self.store.since(cursor.position, limit)
        ready = set(cursor.advance([seq for seq, _ in rows]))
        return [entry for seq, entry in rows if seq in ready]

    def accept_push(self, principal: Principal, entries: Sequence[IndexEntry]) -> PushResult:
        """A child node's entries (see :func:`check_push`)."""
        check_push(principal, self.region_code, entries)
        added = self.store.add(entries)
        return PushResult(added, len({e.licence_id for e in entries}) - added)

    def locate(
        self,
        *,
        holder_id: str | None = None,
        holder_ref: str | None = None,
        type_code: str | None = None,
    ) -> HolderLocation:
        """Where the holder's licences (of ``type_code``, if given) are held."""
        if holder_ref is None:
            if not holder_id or not holder_id.strip():
                raise InvalidArgument(
                    "give a holder id or its keyed hash",
                    reason="INVALID_HOLDER",
                    violations=[FieldViolation("holder_id", "must not be empty")],
                )
            holder_ref = self.holder_ref(holder_id)
        elif not HOLDER_REF.fullmatch(holder_ref):
            raise InvalidArgument(
                "holder_ref must be 64 lower-case hex characters",
                reason="INVALID_HOLDER",
                violations=[FieldViolation("holder_ref", "must be the holder's keyed hash")],
            )
        return HolderLocation(holder_ref, tuple(self.store.lookup(holder_ref, type_code)))
