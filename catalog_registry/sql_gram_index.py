"""The in-memory gram index of a SQL catalogue store, built from its tables, kept current.

:class:`SqlGramIndex` is how :class:`~catalog_registry.sql.SqlCatalogRepository`
answers keyword searches when built with ``search_index=True`` (the node's
store): the ranking comes from a :class:`~catalog_registry.gram_index.GramIndex`
in this process's memory, and SQL reads only the page's rows. Exactly the
results of the SQL search (:mod:`catalog_registry.sql_search`):

* **Building** reads, in one read transaction, the feed's last sequence, then
  the filter columns of every current resource in code order, then the
  postings, one row per gram with its code keys joined (100,000 resources:
  8 s, 90 MB at the peak). Writes committed meanwhile are replayed from
  the feed afterwards (``GramIndex.put`` is idempotent, so replaying what the
  tables already showed is harmless).
* **A search** ranks with the index as it is, then reads the page's rows and
  the feed's last sequence in one statement (one snapshot). If the feed has
  moved past the index's cursor, the changes are applied (a new version
  moves postings from the grams of the version held, read from its stored
  JSON, to its own; further than :data:`REBUILD_AFTER` behind, the index is
  rebuilt) and the search ranks again in the same transaction, at most
  :data:`TRIES` times; then, or when the index is ahead of the transaction's
  snapshot, the SQL search answers.
* **Until built** the SQL search answers: the first keyword search starts the
  build in a background thread; :meth:`SqlGramIndex.build` builds at once.

Writes by other processes (``zhida serve --workers N``) reach the index
through the feed like this process's own. Thread-safe.

Example::

    index = SqlGramIndex(database)
    index.build()                                       # or let the first search start it
    page = index.search(ResourceQuery(grams=("营业", "执照")))   # None: use the SQL search
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, Text, and_, bindparam, func, select
from sqlalchemy import cast as sql_cast

from catalog_registry.codec import code_key, resource_from_json
from catalog_registry.gram_index import Entry, GramIndex
from catalog_registry.model import Resource
from catalog_registry.models import ChangeRow, FeedRow, PostingRow, ResourceRow, ResourceVersionRow
from catalog_registry.repository import ResourceQuery, ScoredResource
from catalog_registry.sql_write import grams
from zhida.db import Database
from zhida.db.engine import translated_errors

__all__ = ["FEED_BATCH", "REBUILD_AFTER", "TRIES", "SqlGramIndex"]

FEED_BATCH = 1000  # changes read per query while catching up
REBUILD_AFTER = 50_000  # further behind than this many changes: rebuild instead
TRIES = 3
_R = cast(Table, ResourceRow.__table__)
_V = cast(Table, ResourceVersionRow.__table__)
_C = cast(Table, ChangeRow.__table__)
_F = cast(Table, FeedRow.__table__)
_P = cast(Table, PostingRow.__table__)
_log = logging.getLogger(__name__)


class SqlGramIndex:
    """A :class:`GramIndex` of one database, caught up before each search."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._lock = threading.Lock()  # the index and its cursor
        self._index: GramIndex | None = None
        self._cursor = 0  # the last change applied
        self._builder: threading.Thread | None = None
        self._builder_lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._index is not None

    def build(self) -> None:
        """Build (or rebuild) the index now."""
        with self._database.read() as conn:
            index, cursor = _load(conn)
        with self._lock:
            self._index, self._cursor = index, cursor

    def start(self) -> None:
        """Build in a background thread unless built or building."""
        with self._builder_lock:
            if self._index is not None or self._builder is not None:
                return
            self._builder = threading.Thread(
                target=self._build_in_background, name="catalog-gram-index", daemon=True
            )
            self._builder.start()

    def _build_in_background(self) -> None:
        try:
            self.build()
        except Exception:  # the SQL search keeps answering; the next search tries again
            _log.exception("building the catalogue's gram index failed")
        finally:
            with self._builder_lock:
                self._builder = None

    def search(self, query: ResourceQuery) -> list[ScoredResource] | None:
        """One page of ``query`` (which has grams); None when the SQL search must answer."""
        if self._index is None:
            self.start()
            return None
        with self._reading() as conn:
            for _ in range(TRIES):
                with self._lock:
                    index, cursor = self._index, self._cursor
                    rows = index.search(query)
                    held = [index.version(key) for _, key in rows]
                keys = [key for _, key in rows]
                # the page's rows and the feed's position, read by one statement (one snapshot)
                read = conn.execute(_rows_stmt(), {"keys": keys}).all() if keys else []
                found = {k: (v, d) for k, v, d, _ in read}
                last = read[0][3] if read else conn.scalar(select(_F.c.last_sequence))
                last = last or 0
                if last < cursor:  # the index is ahead of this transaction's snapshot
                    return None
                if last > cursor:  # changes the index has not seen: apply them, rank again
                    with self._lock:
                        self._catch_up(conn, last)
                    continue
                if all(found.get(k, (None, ""))[0] == v for k, v in zip(keys, held, strict=True)):
                    return [ScoredResource(s, resource_from_json(found[k][1])) for s, k in rows]
        return None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection to read with. On PostgreSQL in autocommit: each statement its own
        snapshot, and a search one round trip, not five (BEGIN, COMMIT, the reset);
        correct because every search is checked by one statement (rows and feed)."""
        if self._database.dialect != "postgresql":
            with self._database.read() as conn:  # SQLite: a deferred read transaction
                yield conn
            return
        engine = self._database.engine
        with translated_errors(), engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def _catch_up(self, conn: Connection, last: int) -> None:
        """Apply the changes up to sequence ``last`` at least (lock held)."""
        assert self._index is not None
        if last - self._cursor > REBUILD_AFTER:  # in a transaction of its own (it streams)
            with self._database.read() as fresh:
                self._index, self._cursor = _load(fresh)
        while last > self._cursor:
            rows = conn.execute(_changes_stmt(), {"after": self._cursor}).all()
            _apply(conn, self._index, rows)
            if rows:
                self._cursor = rows[-1][0]
            if len(rows) < FEED_BATCH:  # every change up to last applied (sequences may gap)
                self._cursor = max(self._cursor, last)


def _load(conn: Connection) -> tuple[GramIndex, int]:
    """A fresh index of the database, and the last change it is known to include."""
    cursor = conn.scalar(select(_F.c.last_sequence)) or 0  # first: later changes get replayed
    columns = [_R.c[field.name] for field in dataclasses.fields(Entry)]
    streamed = conn.execution_options(yield_per=20_000)
    entries = [Entry(*row) for row in streamed.execute(select(*columns).order_by(_R.c.code_key))]
    # One row per gram with its code keys joined by commas: the database groups the
    # millions of postings, Python splits a few thousand strings.
    if conn.dialect.name == "sqlite":
        joined = func.group_concat(_P.c.code_key)
    else:
        joined = func.string_agg(sql_cast(_P.c.code_key, Text), ",")
    grams = conn.execution_options(yield_per=64)  # rows of up to 2 MB: a few at a time
    rows = grams.execute(select(_P.c.gram, joined).group_by(_P.c.gram))
    postings = ((gram, sorted(map(int, keys.split(",")))) for gram, keys in rows)
    return GramIndex.build(entries, postings), cursor


def _apply(conn: Connection, index: GramIndex, rows: Sequence[Any]) -> None:
    """Apply changes (sequence, code key, version, data), oldest first."""
    latest: dict[int, Resource] = {}  # the version each key is at within this batch
    for _, key, version, data in rows:
        resource = resource_from_json(data)
        held = index.version(key)
        previous = latest.get(key)
        if previous is None and held is not None and held != version:
            stored = conn.scalar(_version_stmt(), {"key": key, "version": held})
            previous = None if stored is None else resource_from_json(stored)
        new = grams(resource)
        old = new if held == version else (set() if previous is None else grams(previous))
        index.put(_entry(resource), old, new)
        latest[key] = resource


def _entry(resource: Resource) -> Entry:
    return Entry(
        code_key(resource.code),
        resource.version,
        resource.status.value,
        resource.provider_code,
        resource.region_code,
        int(resource.level),
        resource.share_type.value,
    )


@functools.cache
def _changes_stmt() -> Select[Any]:
    return (
        select(_C.c.sequence, _V.c.code_key, _V.c.version, _V.c.data)
        .join(_V, and_(_V.c.code_key == _C.c.code_key, _V.c.version == _C.c.version))
        .where(_C.c.sequence > bindparam("after"))
        .order_by(_C.c.sequence)
        .limit(FEED_BATCH)
    )


@functools.cache
def _version_stmt() -> Select[Any]:
    return select(_V.c.data).where(
        _V.c.code_key == bindparam("key"), _V.c.version == bindparam("version")
    )


@functools.cache
def _rows_stmt() -> Select[Any]:
    last = select(_F.c.last_sequence).scalar_subquery()
    return (
        select(_R.c.code_key, _R.c.version, _V.c.data, last)
        .join(_V, and_(_V.c.code_key == _R.c.code_key, _V.c.version == _R.c.version))
        .where(_R.c.code_key.in_(bindparam("keys", expanding=True)))
    )
