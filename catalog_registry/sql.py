"""The SQL :class:`~catalog_registry.repository.CatalogRepository` (SQLite and PostgreSQL).

Tables are in :mod:`catalog_registry.models`, keyword search in
:mod:`catalog_registry.sql_search` (or, with ``search_index=True`` as the node
opens it, ranked in memory by :mod:`catalog_registry.sql_gram_index` with the
same results), the writing internals in :mod:`catalog_registry.sql_write`.
Every public method is one transaction (:meth:`zhida.db.Database.session`),
so a write lands completely or not at all;
reads are read-only transactions (:meth:`zhida.db.Database.read`), which on
SQLite neither wait for nor hold the write lock.

How the contract is kept:

* **Change feed in order.** A resource write first updates the single
  ``catalog_feed`` row, taking its sequence numbers there: concurrent writers
  queue on that row lock (SQLite: on the database lock), so sequences commit
  in increasing order and a reader paging by cursor never skips one. Taking
  it first also fixes the lock order of every writer (no deadlocks).
* **Optimistic concurrency.** A new version is an ``UPDATE … WHERE version =
  :expected``; no row updated means someone else moved it (``Aborted``
  ``VERSION_CONFLICT``) or it does not exist (``NotFound``).
* **Idempotent imports.** ``(origin_region, origin_sequence)`` of the change
  row is unique; a replay finds it and writes nothing.
* **Negative entries in the feed.** Adding, removing or importing entries of
  a stored resource adds a change row for its current version (no new
  version) in the same transaction, so they travel with the resource.
* **Keyword index.** Postings of :func:`~catalog_registry.text.search_grams`
  change with each version (only the difference is written) and the grams'
  document frequencies with them.

Bulk rows (postings, versions, changes) go through the driver's fast paths:
``executemany`` on SQLite and ``COPY`` on PostgreSQL, inside the same
transaction (100,000 resources, 7 million postings: about 25 s on either).

Example::

    from catalog_registry.sql import SqlCatalogRepository
    from zhida.db import Database

    repo = SqlCatalogRepository(Database("sqlite:///.zhida/zhida.db"))
    repo.insert_resources(resources)        # all or nothing; returns change sequences
    page = repo.search_resources(ResourceQuery(grams=("营业", "执照")))
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, cast

from sqlalchemy import Table, and_, delete, exc, insert, select, text

from catalog_registry import sql_search, sql_write
from catalog_registry.codec import (
    code_from_text,
    code_key,
    code_text,
    demand_from_json,
    demand_to_json,
    resource_from_json,
)
from catalog_registry.model import Change, Demand, NegativeEntry, Resource, ResourceStatus
from catalog_registry.models import (
    ChangeRow,
    DemandRow,
    FeedRow,
    GramRow,
    NegativeEntryRow,
    PostingRow,
    ResourceRow,
    ResourceVersionRow,
)
from catalog_registry.repository import ResourceQuery, ScoredResource
from catalog_registry.sql_filters import after_key
from catalog_registry.sql_gram_index import SqlGramIndex
from zhida.db import Database
from zhida.errors import Aborted, AlreadyExists, FieldViolation, NotFound

_R = cast(Table, ResourceRow.__table__)
_V = cast(Table, ResourceVersionRow.__table__)
_C = cast(Table, ChangeRow.__table__)
_F = cast(Table, FeedRow.__table__)
_G = cast(Table, GramRow.__table__)
_D = cast(Table, DemandRow.__table__)
_N = cast(Table, NegativeEntryRow.__table__)
_P = cast(Table, PostingRow.__table__)
PAGE = 2000  # rows per query when iterating
ANALYZE_AFTER = 1000  # refresh planner statistics after inserting this many resources


_IN_CHUNK = 500  # codes per IN (...) list: well inside every dialect's parameter limit


def _negative_entry(row: Any) -> NegativeEntry:
    return NegativeEntry(
        code_from_text(code_text(row.code_key)),
        tuple(json.loads(row.item_names)),
        row.legal_basis,
        row.added_by,
        row.added_at,
    )


def _key_or_none(code: str) -> int | None:
    try:
        return after_key(code)
    except Exception:
        return None


def _exists(code: str, field: str = "code") -> AlreadyExists:
    """``field``: ``code``, or ``resources[i].code`` naming a resource of a batch."""
    return AlreadyExists(
        f"resource {code} already exists",
        reason="RESOURCE_EXISTS",
        violations=[FieldViolation(field, f"{code} is already registered")],
        metadata={"code": code},
    )


def _field(resources: Sequence[Resource], key: int | None = None) -> str:
    if len(resources) == 1:
        return "code"
    i = next((i for i, r in enumerate(resources) if code_key(r.code) == key), None)
    return "resources" if i is None else f"resources[{i}].code"


class SqlCatalogRepository:
    """The catalogue in a :class:`zhida.db.Database`; thread-safe (a session per call).

    ``search_index=True``: keyword searches are ranked by an in-memory gram
    index of this process (:mod:`catalog_registry.sql_gram_index`, built in the
    background on the first one, about 50 MB per 100,000 resources) and SQL
    reads only the page's rows; the results are the same.
    """

    def __init__(self, database: Database, *, search_index: bool = False) -> None:
        self.database = database
        self.gram_index = SqlGramIndex(database) if search_index else None

    # -- resources -----------------------------------------------------------------------
    def get_resource(self, code: str) -> Resource | None:
        key = _key_or_none(code)
        if key is None:
            return None
        with self.database.read() as s:
            data = s.scalar(sql_write.current().where(_R.c.code_key == key))
        return None if data is None else resource_from_json(data)

    def resource_history(self, code: str) -> list[Resource]:
        key = _key_or_none(code)
        if key is None:
            return []
        with self.database.read() as s:
            rows = s.scalars(
                select(_V.c.data).where(_V.c.code_key == key).order_by(_V.c.version)
            ).all()
        return [resource_from_json(d) for d in rows]

    def insert_resources(self, resources: Sequence[Resource]) -> list[int]:
        if not resources:
            return []
        keys = [code_key(r.code) for r in resources]
        seen: set[int] = set()
        for i, (r, k) in enumerate(zip(resources, keys, strict=True)):
            if k in seen:
                raise _exists(r.key, f"resources[{i}].code")
            seen.add(k)
        try:
            with self.database.session() as s:
                first = sql_write.take_sequences(s, len(resources))
                for i in range(0, len(keys), sql_search._IN_CHUNK):
                    chunk = keys[i : i + sql_search._IN_CHUNK]
                    taken = s.scalar(select(_R.c.code_key).where(_R.c.code_key.in_(chunk)))
                    if taken is not None:
                        raise _exists(code_text(taken), _field(resources, taken))
                sequences = list(range(first, first + len(resources)))
                sql_write.write_new(s, resources, [(seq, None, None) for seq in sequences])
        except exc.IntegrityError as error:  # a writer outside the feed lock; never ours
            raise _exists(resources[0].key, _field(resources)) from error
        if len(resources) >= ANALYZE_AFTER:
            self.analyze()
        return sequences

    def replace_resource(self, resource: Resource, *, expected_version: int) -> int:
        with self.database.session() as s:
            sequence = sql_write.take_sequences(s, 1)
            sql_write.write_version(s, resource, expected_version, (sequence, None, None))
        return sequence

    def iter_resources(self, status: ResourceStatus | None = None) -> Iterator[Resource]:
        last = -1
        while True:
            stmt = sql_write.current(_R.c.code_key).where(_R.c.code_key > last)
            if status is not None:
                stmt = stmt.where(_R.c.status == status.value)
            with self.database.read() as s:
                rows = s.execute(stmt.order_by(_R.c.code_key).limit(PAGE)).all()
            for row in rows:
                yield resource_from_json(row[1])
            if len(rows) < PAGE:
                return
            last = rows[-1][0]

    def search_resources(self, query: ResourceQuery) -> list[ScoredResource]:
        if query.grams and self.gram_index is not None:
            found = self.gram_index.search(query)
            if found is not None:
                return found
        with self.database.read() as conn:
            rows = sql_search.search_keys(conn, query)
            if not rows:
                return []
            keys = [k for _, k in rows]
            stmt = sql_write.current(_R.c.code_key).where(_R.c.code_key.in_(keys))
            data: dict[int, str] = {key: data for key, data in conn.execute(stmt).all()}
        return [ScoredResource(score, resource_from_json(data[key])) for score, key in rows]

    def prepare_search_index(self) -> None:
        """Build the in-memory gram index now (with ``search_index=True``; else nothing)."""
        if self.gram_index is not None:
            self.gram_index.build()

    # -- demands -------------------------------------------------------------------------
    def insert_demand(self, demand: Demand) -> None:
        try:
            with self.database.session() as s:
                if s.scalar(select(_D.c.seq).where(_D.c.id == demand.id)) is not None:
                    raise AlreadyExists(
                        f"demand {demand.id} already exists", reason="DEMAND_EXISTS"
                    )
                s.execute(
                    insert(_D).values(
                        id=demand.id,
                        requester_code=demand.requester_code,
                        filed_at=demand.filed_at,
                        data=demand_to_json(demand),
                    )
                )
        except exc.IntegrityError as error:  # the same id filed concurrently
            raise AlreadyExists(
                f"demand {demand.id} already exists", reason="DEMAND_EXISTS"
            ) from error

    def get_demand(self, demand_id: str) -> Demand | None:
        with self.database.read() as s:
            data = s.scalar(select(_D.c.data).where(_D.c.id == demand_id))
        return None if data is None else demand_from_json(data)

    def iter_demands(self) -> Iterator[Demand]:
        last = -1
        while True:
            stmt = select(_D.c.seq, _D.c.data).where(_D.c.seq > last).order_by(_D.c.seq)
            with self.database.read() as s:
                rows = s.execute(stmt.limit(PAGE)).all()
            for row in rows:
                yield demand_from_json(row[1])
            if len(rows) < PAGE:
                return
            last = rows[-1][0]

    def demand_page(
        self, after_seq: int, limit: int, requester_code: str | None = None
    ) -> list[tuple[int, Demand]]:
        """Up to ``limit`` demands filed after position ``after_seq`` (0: the first), in order."""
        stmt = select(_D.c.seq, _D.c.data).where(_D.c.seq > after_seq)
        if requester_code is not None:
            stmt = stmt.where(_D.c.requester_code == requester_code)
        with self.database.read() as s:
            rows = s.execute(stmt.order_by(_D.c.seq).limit(limit)).all()
        return [(seq, demand_from_json(data)) for seq, data in rows]

    # -- negative list -------------------------------------------------------------------
    def add_negative_entry(self, entry: NegativeEntry) -> None:
        key, items_key = code_key(entry.resource_code), sql_write.items_key(entry.item_names)
        with self.database.session() as s:
            sql_write.bump_negative_version(s)
            taken = s.scalar(
                select(_N.c.seq).where(_N.c.code_key == key, _N.c.items_key == items_key)
            )
            if taken is not None:
                raise AlreadyExists(
                    f"negative-list entry for {entry.resource_code.text} already exists",
                    reason="NEGATIVE_ENTRY_EXISTS",
                )
            sql_write.insert_negative(s, key, [entry])
            sql_write.entries_changed(s, key)

    def remove_negative_entry(self, code: str, item_names: tuple[str, ...]) -> bool:
        key = _key_or_none(code)
        if key is None:
            return False
        with self.database.session() as s:
            sql_write.bump_negative_version(s)
            deleted = s.execute(
                delete(_N).where(
                    _N.c.code_key == key, _N.c.items_key == sql_write.items_key(item_names)
                )
            )
            if not deleted.rowcount:  # type: ignore[attr-defined]
                return False
            sql_write.entries_changed(s, key)
            return True

    def negative_entries(self, code: str | None = None) -> list[NegativeEntry]:
        stmt = select(_N).order_by(_N.c.seq)
        if code is not None:
            key = _key_or_none(code)
            if key is None:
                return []
            stmt = stmt.where(_N.c.code_key == key)
        with self.database.read() as s:
            rows = s.execute(stmt).all()
        return [_negative_entry(row) for row in rows]

    def negative_entries_of(self, codes: Sequence[str]) -> dict[str, list[NegativeEntry]]:
        found: dict[str, list[NegativeEntry]] = {code: [] for code in codes}
        keys = {key: code for code in found if (key := _key_or_none(code)) is not None}
        ordered = list(keys)
        with self.database.read() as s:  # one snapshot for every chunk
            for start in range(0, len(ordered), _IN_CHUNK):
                chunk = ordered[start : start + _IN_CHUNK]
                rows = s.execute(select(_N).where(_N.c.code_key.in_(chunk)).order_by(_N.c.seq))
                for row in rows:
                    found[keys[row.code_key]].append(_negative_entry(row))
        return found

    def negative_list_version(self) -> int:
        """A number that changes whenever the negative list changes (for caches)."""
        with self.database.read() as s:
            return int(s.scalar(select(_F.c.negative_version)) or 0)

    # -- change feed ---------------------------------------------------------------------
    def changes_since(self, sequence: int, limit: int) -> list[Change]:
        if limit <= 0:
            return []
        stmt = (
            select(_C.c.sequence, _C.c.origin_region, _C.c.origin_sequence, _V.c.data)
            .join(_V, and_(_V.c.code_key == _C.c.code_key, _V.c.version == _C.c.version))
            .where(_C.c.sequence > sequence)
            .order_by(_C.c.sequence)
            .limit(limit)
        )
        with self.database.read() as s:
            rows = s.execute(stmt).all()
        return [
            Change(seq, resource_from_json(data), region, origin)
            for seq, region, origin, data in rows
        ]

    def last_sequence(self) -> int:
        """The sequence of the latest change (0 before the first)."""
        with self.database.read() as s:
            return int(s.scalar(select(_F.c.last_sequence)) or 0)

    def was_imported(self, origin_region: str, origin_sequence: int) -> bool:
        with self.database.session() as s:
            return sql_write.imported(s, origin_region, origin_sequence)

    def resource_origin(self, code: str) -> str | None:
        # The newest change of the resource (index code_key, sequence):
        # asked only before changing a resource of a region below the node's
        # (access.home_region), not on searches or imports.
        key = _key_or_none(code)
        if key is None:
            return None
        stmt = (
            select(_C.c.origin_region)
            .where(_C.c.code_key == key)
            .order_by(_C.c.sequence.desc())
            .limit(1)
        )
        with self.database.read() as s:
            return s.scalar(stmt)

    def import_resource(
        self,
        resource: Resource,
        *,
        origin_region: str,
        origin_sequence: int,
        expected_version: int | None,
        negative_entries: Sequence[NegativeEntry] | None = None,
    ) -> bool:
        origin = (origin_region, origin_sequence)
        with self.database.session() as s:
            sequence = sql_write.take_sequences(s, 1)
            if sql_write.imported(s, *origin):
                s.rollback()  # give the sequence back: a replay writes nothing
                return False
            if expected_version is None:
                if s.scalar(select(_R.c.code_key).where(_R.c.code_key == code_key(resource.code))):
                    raise _exists(resource.key)
                sql_write.write_new(s, [resource], [(sequence, *origin)])
            else:
                sql_write.write_version(s, resource, expected_version, (sequence, *origin))
            if negative_entries is not None:
                sql_write.replace_negative(s, code_key(resource.code), negative_entries)
        return True

    def import_negative_entries(
        self,
        code: str,
        entries: Sequence[NegativeEntry],
        *,
        version: int,
        origin_region: str,
        origin_sequence: int,
    ) -> bool:
        key = _key_or_none(code)
        with self.database.session() as s:
            sequence = sql_write.take_sequences(s, 1)
            if sql_write.imported(s, origin_region, origin_sequence):
                s.rollback()  # give the sequence back: a replay writes nothing
                return False
            held = (
                None if key is None else s.scalar(select(_R.c.version).where(_R.c.code_key == key))
            )
            if key is None or held is None:
                raise NotFound(
                    f"resource {code} not found",
                    reason="RESOURCE_NOT_FOUND",
                    metadata={"code": code},
                )
            if held != version:
                raise Aborted(
                    f"resource {code} is at version {held}, not {version}",
                    reason="VERSION_CONFLICT",
                    metadata={"code": code, "current_version": str(held)},
                )
            sql_write.replace_negative(s, key, entries)
            sql_write.add_change(s, key, held, (sequence, origin_region, origin_sequence))
        return True

    # -- maintenance ---------------------------------------------------------------------
    def analyze(self) -> None:
        """Refresh the planner's statistics of the catalogue tables (after bulk loads)."""
        tables = [t.name for t in (_R, _V, _C, _G, _D, _N)]
        with self.database.session() as s:
            if s.get_bind().dialect.name == "sqlite":
                # Exact statistics for the filter indexes (100,000 narrow rows: fast); a
                # sample of the millions of postings (what matters there is rows per gram).
                s.execute(text("PRAGMA analysis_limit=0"))
                for table in tables:
                    s.execute(text(f"ANALYZE {table}"))
                s.execute(text("PRAGMA analysis_limit=2000"))
                s.execute(text(f"ANALYZE {_P.name}"))
            else:
                s.execute(text(f"ANALYZE {', '.join([*tables, _P.name])}"))

    @staticmethod
    def _current(*columns: Any) -> Any:
        """SELECT [columns,] data of the current version, joined on (code_key, version)."""
        return (
            select(*columns, _V.c.data)
            .join(_V, and_(_V.c.code_key == _R.c.code_key, _V.c.version == _R.c.version))
            .select_from(_R)
        )
