"""What the delivery path reads per call — grants, resource, negative list — cached, never stale.

Every delivery needs the caller's grant, the resource (items, provider, share
types) and the negative list. Reading them from the stores per call would
cost a thread hop and, on SQLite, write-lock transactions queued behind the
audit log's commits. Instead:

* :class:`FreshCatalogue` keeps resources by code until the catalogue's change
  sequence moves (any register, update, publish or retire, by any process,
  clears the cache) and the negative list until its version moves (then it is
  reloaded). :meth:`FreshCatalogue.refresh` reads the one feed row holding both
  numbers on a driver connection of its own in autocommit mode (no lock
  taken, never waits for a writer).
* :class:`Freshness` makes sure that state was read **after the call
  arrived**: on SQLite by reading the feed row on the event loop
  (:meth:`FreshCatalogue.quick`: microseconds, never waits for a lock), else by
  a refresh in the I/O pool that calls arriving meanwhile share; a full
  refresh (which also lets the grant index look at other processes' grant
  writes) runs at least every 100 ms. So an entry added to the negative list,
  through any worker, applies to the very next delivery, without a thread hop
  per call.

Example::

    fresh = FreshCatalogue(ctx.catalogue, runtime.database)
    gate = Freshness(lambda: (ctx.grants.refresh(), fresh.refresh()), runtime.executor)
    await gate.wait()                          # state read after this call arrived
    resource = fresh.cached("1-02-001-0000-000008")
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Protocol, cast

from sqlalchemy import PoolProxiedConnection, Table

from catalog_registry.model import Resource
from catalog_registry.models import FeedRow
from catalog_registry.negative_list import NegativeList
from zhida.db import Database
from zhida.errors import Unavailable

_FEED = cast(Table, FeedRow.__table__)
MAX_CACHED = 10_000


class Catalogue(Protocol):
    """What :class:`exchange.context.CatalogueView` offers."""

    def get_resource(self, code: str) -> Resource | None: ...

    def negative_list(self) -> NegativeList: ...


class Missing:
    """Not in the cache (as opposed to None: known not to exist)."""


MISSING = Missing()


class FreshCatalogue:
    """Cached resources and negative list, valid for the versions last read by :meth:`refresh`."""

    def __init__(self, catalogue: Catalogue, database: Database) -> None:
        self._catalogue = catalogue
        self._db = database
        self._lock = threading.Lock()
        self._sequence = -1
        self._resources: dict[str, Resource | None] = {}
        self._negative: NegativeList | None = None
        self._negative_version = -1
        self._conn_lock = threading.Lock()
        self._raw: PoolProxiedConnection | None = None
        self._quick_raw: PoolProxiedConnection | None = None
        self._sql = f"SELECT last_sequence, negative_version FROM {_FEED.name}"  # noqa: S608 (a constant)

    def _versions(self) -> tuple[int, int]:
        """The feed row, read on a driver connection of its own in autocommit mode.

        One statement, no transaction to begin or end: the cheapest consistent
        read there is (SQLite connections are autocommit at the driver level;
        the PostgreSQL one is switched to it). Only one refresh runs at a time
        (:class:`Freshness`), so the connection is never shared; any error
        drops it and surfaces as UNAVAILABLE.
        """
        with self._conn_lock:
            try:
                if self._raw is None:
                    raw = self._db.engine.raw_connection()
                    if self._db.dialect == "postgresql":
                        raw.driver_connection.autocommit = True  # type: ignore[union-attr]
                    self._raw = raw
                cursor = self._raw.cursor()
                try:
                    cursor.execute(self._sql)
                    row = cursor.fetchone()
                finally:
                    cursor.close()
            except Exception as error:
                self._close()
                raise Unavailable(
                    f"cannot read the catalogue's versions: {type(error).__name__}",
                    reason="DATABASE_UNAVAILABLE",
                ) from error
        return (0, 0) if row is None else (int(row[0] or 0), int(row[1] or 0))

    def _close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.invalidate()

    def close(self) -> None:
        """Drop the connection (a later refresh opens another)."""
        with self._conn_lock:
            self._close()

    def quick(self) -> bool:
        """Check the versions without leaving the event loop, if that cannot block.

        Only on SQLite: one row of a WAL database, on a connection of its own
        that never waits for a lock (``busy_timeout`` 0) — it does not touch
        the disk's write path and takes microseconds. True when the cache is
        now as fresh as a :meth:`refresh` would make it; False (nothing done)
        when it cannot tell: PostgreSQL, a busy or failing database, or a
        changed negative list that must be reloaded.
        """
        if self._db.dialect != "sqlite" or self._negative is None:
            return False
        try:
            if self._quick_raw is None:
                raw = self._db.engine.raw_connection()
                raw.driver_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
                self._quick_raw = raw
            cursor = self._quick_raw.cursor()
            try:
                cursor.execute(self._sql)
                row = cursor.fetchone()
            finally:
                cursor.close()
        except Exception:
            broken = self._quick_raw
            self._quick_raw = None
            if broken is not None:
                with contextlib.suppress(Exception):
                    broken.invalidate()
            return False
        sequence, negative_version = (0, 0) if row is None else (int(row[0]), int(row[1]))
        with self._lock:
            if negative_version != self._negative_version:
                return False
            if sequence != self._sequence:
                self._resources.clear()
                self._sequence = sequence
        return True

    def refresh(self) -> None:
        """Read the store's versions; drop what they outdate (blocking)."""
        sequence, negative_version = self._versions()
        with self._lock:
            if sequence != self._sequence:
                self._resources.clear()
                self._sequence = sequence
            stale = negative_version != self._negative_version or self._negative is None
        if stale:
            negative = self._catalogue.negative_list()  # entries as of now or later
            with self._lock:
                self._negative, self._negative_version = negative, negative_version

    @property
    def negative(self) -> NegativeList:
        """The negative list as of the last :meth:`refresh` (which must have run)."""
        if self._negative is None:
            raise RuntimeError("FreshCatalogue.refresh() has not run")
        return self._negative

    @property
    def negative_version(self) -> int:
        """The negative list's version :attr:`negative` reflects (it is reloaded in place)."""
        return self._negative_version

    def cached(self, code: str) -> Resource | Missing | None:
        """The resource as of the last refresh, or :data:`MISSING` (then :meth:`load` it)."""
        return self._resources.get(code, MISSING)

    def load(self, code: str) -> Resource | None:
        """Read resource ``code`` and cache it (blocking)."""
        with self._lock:
            sequence = self._sequence
        resource = self._catalogue.get_resource(code)
        with self._lock:
            if self._sequence == sequence:  # a refresh in between may have outdated it
                if len(self._resources) >= MAX_CACHED:
                    self._resources.clear()
                self._resources[code] = resource
        return resource


class Freshness:
    """Refreshes such that :meth:`wait` returns only once state was read after it was called.

    ``refresh`` (blocking: the grant index's refresh and :meth:`FreshCatalogue.refresh`)
    runs in ``executor``, coalesced: calls that arrive while one runs share the
    next. ``quick`` (non-blocking, e.g. :meth:`FreshCatalogue.quick`) may answer
    on the event loop instead, but at least every ``interval`` seconds a full
    refresh runs anyway (so the grant index looks at other processes' writes
    as often as it is designed to).
    """

    def __init__(
        self,
        refresh: Callable[[], object],
        executor: Executor,
        *,
        quick: Callable[[], bool] | None = None,
        interval: float = 0.1,
    ) -> None:
        self._refresh = refresh
        self._executor = executor
        self._quick = quick
        self._interval = interval
        self._last_full = float("-inf")  # monotonic start of the last full refresh
        self._running: asyncio.Future[None] | None = None
        self._next: asyncio.Future[None] | None = None
        self.full_refreshes = 0
        self.quick_refreshes = 0

    def quick(self) -> bool:
        """Made fresh now without leaving the loop (see :meth:`wait`); False: await it."""
        if (
            self._quick is not None
            and self._running is None
            and self._next is None
            and time.monotonic() - self._last_full < self._interval
            and self._quick()
        ):
            self.quick_refreshes += 1
            return True
        return False

    async def wait(self) -> None:
        if self.quick():
            return
        turn = self._next
        if turn is None:
            turn = self._next = asyncio.get_running_loop().create_future()
            if self._running is None:
                self._start()
        await asyncio.shield(turn)

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._running, self._next = self._next, None
        self._last_full = time.monotonic()
        self.full_refreshes += 1
        # An empty context: the refresh serves many calls and must not carry one's deadline.
        job = contextvars.Context().run
        work = loop.run_in_executor(self._executor, job, self._refresh)
        work.add_done_callback(self._done)

    def _done(self, work: asyncio.Future[object]) -> None:
        running, self._running = self._running, None
        if running is not None and not running.done():
            error = work.exception() if not work.cancelled() else asyncio.CancelledError()
            if error is None:
                running.set_result(None)
            else:
                running.set_exception(error)
        if self._next is not None:
            self._start()
