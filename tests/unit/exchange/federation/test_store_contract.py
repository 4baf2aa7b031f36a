"""One contract for the replay cache and the idempotency store: in memory, SQLite, PostgreSQL.

Every test runs against :class:`InMemoryReplayCache` / :class:`InMemoryIdempotencyStore`
and the SQL implementations on both dialects. The race tests give each side
its own :class:`~zhida.db.Database` (its own connections) over one database
— two workers of one node — and check that exactly one side wins a ``jti``
and exactly one executes a request. (The in-memory bounds, ``max_entries``,
stay in ``test_idempotency.py``: the SQL stores are bounded by expiry.)
"""

from __future__ import annotations

import doctest
import importlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from exchange.federation.idempotency import (
    ClaimState,
    IdempotencyStore,
    InMemoryIdempotencyStore,
    run_once,
    scoped_key,
)
from exchange.federation.replay import InMemoryReplayCache, ReplayCache
from exchange.federation.sql_idempotency import SqlIdempotencyStore
from exchange.federation.sql_replay import SqlReplayCache
from exchange.federation.store.models import IdempotencyRow, ReplayRow
from tests.fixtures.postgres import reset_pg_schema
from zhida.db import Database
from zhida.db.migrate import upgrade
from zhida.errors import Aborted, FailedPrecondition, InvalidArgument, PermissionDenied

Clock = Callable[[], float]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    """Makes stores of one kind; SQL ones over ``url`` (each call: its own Database)."""

    kind: str
    url: str | None = None
    databases: list[Database] = field(default_factory=list)
    memory_replay: InMemoryReplayCache | None = None
    memory_store: InMemoryIdempotencyStore | None = None

    def database(self) -> Database:
        assert self.url is not None
        db = Database(self.url, pool_size=4)
        self.databases.append(db)
        return db

    def replay(self, clock: Clock | None = None) -> ReplayCache:
        clock = clock or FakeClock()
        if self.url is None:  # one process: "two workers" share the one cache
            if self.memory_replay is None:
                self.memory_replay = InMemoryReplayCache(clock=clock)
            return self.memory_replay
        return SqlReplayCache(self.database(), clock=clock)

    def store(self, clock: Clock | None = None) -> IdempotencyStore:
        clock = clock or FakeClock()
        if self.url is None:
            if self.memory_store is None:
                self.memory_store = InMemoryIdempotencyStore(clock=clock)
            return self.memory_store
        return SqlIdempotencyStore(self.database(), clock=clock)


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        yield Backend("memory")
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'zhida.db'}"
    else:
        url = request.getfixturevalue("pg_database_url")
        reset_pg_schema(url)
    upgrade(url)
    made = Backend(request.param, url)
    try:
        yield made
    finally:
        for db in made.databases:
            db.dispose()


def _len(thing: object) -> int:
    """``count()`` of a SQL store (a query; deliberately no ``__len__``), ``len`` in memory."""
    if isinstance(thing, SqlReplayCache | SqlIdempotencyStore):
        return thing.count()
    assert isinstance(thing, InMemoryReplayCache | InMemoryIdempotencyStore)
    return len(thing)


# -- the replay cache -------------------------------------------------------------------------


def test_replay_cache_accepts_an_id_once_until_it_expires(backend: Backend) -> None:
    clock = FakeClock()
    cache = backend.replay(clock)
    assert cache.remember("a", expires_at=1_060)
    assert not cache.remember("a", expires_at=1_060)
    assert not cache.remember("a", expires_at=2_000)  # a later expiry does not reopen it
    assert cache.remember("b", expires_at=1_030)
    assert _len(cache) == 2
    clock.now = 1_030  # b expired: it may be seen anew (its assertion is refused as expired)
    assert _len(cache) == 1
    assert cache.remember("b", expires_at=1_090)
    assert not cache.remember("b", expires_at=1_090)
    clock.now = 1_091
    assert _len(cache) == 0
    assert cache.remember("a", expires_at=1_120)


def test_replay_cache_keeps_long_and_unusual_ids_apart(backend: Backend) -> None:
    cache = backend.replay()
    long_a, long_b = "x" * 300 + "a", "x" * 300 + "b"
    assert cache.remember(long_a, expires_at=1_060)
    assert cache.remember(long_b, expires_at=1_060)
    assert not cache.remember(long_a, expires_at=1_060)
    assert cache.remember("江岸区-jti", expires_at=1_060)
    assert not cache.remember("江岸区-jti", expires_at=1_060)


def test_sql_replay_cache_purges_expired_rows(backend: Backend) -> None:
    if backend.url is None:
        pytest.skip("the in-memory cache purges on every call")
    clock = FakeClock()
    cache = SqlReplayCache(backend.database(), clock=clock, purge_every=3, purge_batch=2)

    def rows() -> int:
        with cache.database.read() as conn:
            return int(conn.scalar(select(func.count()).select_from(ReplayRow)) or 0)

    for jti in ("a", "b", "c", "d"):
        assert cache.remember(jti, expires_at=1_010)
    clock.now = 1_020
    assert rows() == 4
    assert cache.remember("e", expires_at=1_060)
    assert cache.remember("f", expires_at=1_060)  # the 6th accepted id: a purge of 2
    assert rows() == 4
    assert cache.purge(limit=10) == 2
    assert rows() == 2
    assert not cache.remember("e", expires_at=1_060)


# -- the idempotency store --------------------------------------------------------------------


def test_idempotency_states_and_expiry(backend: Backend) -> None:
    clock = FakeClock()
    store = backend.store(clock)
    key = scoped_key("420102", "11420102MB1A23456R", "clerk-7", "req-1")
    assert store.begin(key, "d", ttl_seconds=60, lease_seconds=5).state is ClaimState.NEW
    assert store.begin(key, "d", ttl_seconds=60, lease_seconds=5).state is ClaimState.IN_PROGRESS
    with pytest.raises(InvalidArgument) as reused:  # a key names one request, also in progress
        store.begin(key, "other digest", ttl_seconds=60, lease_seconds=5)
    assert reused.value.reason == "IDEMPOTENCY_KEY_REUSED"
    clock.now += 6  # the first attempt's lease ran out (it crashed): a retry takes over
    assert store.begin(key, "d", ttl_seconds=60, lease_seconds=5).state is ClaimState.NEW
    store.complete(key, b"resp")
    claim = store.begin(key, "d", ttl_seconds=60, lease_seconds=5)
    assert (claim.state, claim.response) == (ClaimState.DONE, b"resp")
    clock.now += 30  # a stored answer is never taken over while it lives
    assert store.begin(key, "d", ttl_seconds=60, lease_seconds=5).state is ClaimState.DONE
    with pytest.raises(InvalidArgument) as info:
        store.begin(key, "other digest", ttl_seconds=60, lease_seconds=5)
    assert info.value.reason == "IDEMPOTENCY_KEY_REUSED"
    with pytest.raises(FailedPrecondition) as unclaimed:
        store.complete(key, b"again")
    assert unclaimed.value.reason == "IDEMPOTENCY_NOT_CLAIMED"
    store.abandon(key)  # a stored answer is not released by abandon
    assert store.begin(key, "d", ttl_seconds=60, lease_seconds=5).state is ClaimState.DONE
    clock.now += 120  # the stored response expired
    assert store.begin(key, "other digest", ttl_seconds=60, lease_seconds=5).state is (
        ClaimState.NEW
    )
    store.abandon(key)
    assert _len(store) == 0
    with pytest.raises(FailedPrecondition):
        store.complete(key, b"nobody holds it")


def test_idempotency_lease_shorter_than_ttl_and_empty_answers(backend: Backend) -> None:
    clock = FakeClock()
    store = backend.store(clock)
    assert store.begin("k", "d", ttl_seconds=1, lease_seconds=10).state is ClaimState.NEW
    clock.now += 5  # the row lives max(ttl, lease): still in progress
    assert store.begin("k", "d", ttl_seconds=1, lease_seconds=10).state is ClaimState.IN_PROGRESS
    store.complete("k", b"")
    claim = store.begin("k", "d", ttl_seconds=1, lease_seconds=10)
    assert (claim.state, claim.response) == (ClaimState.DONE, b"")
    long_key = "k" * 500
    assert store.begin(long_key, "d" * 200, ttl_seconds=60, lease_seconds=5).state is (
        ClaimState.NEW
    )
    with pytest.raises(InvalidArgument):
        store.begin(long_key, "d" * 201, ttl_seconds=60, lease_seconds=5)


def test_run_once_executes_a_retried_request_once(backend: Backend) -> None:
    store = backend.store(lambda: 1_000.0)
    calls: list[int] = []

    def execute() -> bytes:
        calls.append(1)
        return b"granted"

    assert run_once(store, "k", "d", execute) == b"granted"
    assert run_once(store, "k", "d", execute) == b"granted"
    assert len(calls) == 1

    def refuse() -> bytes:
        raise PermissionDenied("no grant")

    with pytest.raises(PermissionDenied):
        run_once(store, "k2", "d", refuse)
    assert run_once(store, "k2", "d", execute) == b"granted"  # the refusal was not stored
    assert len(calls) == 2


def test_sql_idempotency_store_purges_expired_rows(backend: Backend) -> None:
    if backend.url is None:
        pytest.skip("the in-memory store evicts when full")
    clock = FakeClock()
    store = SqlIdempotencyStore(backend.database(), clock=clock, purge_every=1_000)
    for key in ("a", "b", "c"):
        store.begin(key, "d", ttl_seconds=10, lease_seconds=1)
    store.complete("a", b"answer")
    store.begin("z", "d", ttl_seconds=100, lease_seconds=1)
    clock.now += 11
    assert store.count() == 4
    assert store.purge(limit=2) == 2
    assert store.purge() == 1
    assert store.count() == 1
    assert store.begin("z", "d", ttl_seconds=100, lease_seconds=1).state is ClaimState.NEW


# -- two workers over one database ---------------------------------------------------------------


def test_two_workers_racing_on_one_jti_one_wins(backend: Backend) -> None:
    caches = [backend.replay(), backend.replay()]
    rounds, per_cache = 10, 3
    for n in range(rounds):
        barrier = threading.Barrier(len(caches) * per_cache)

        def attempt(
            cache: ReplayCache, jti: str = f"race-{n}", barrier: threading.Barrier = barrier
        ) -> bool:
            barrier.wait(5)
            return cache.remember(jti, expires_at=1_060)

        with ThreadPoolExecutor(len(caches) * per_cache) as pool:
            futures = [pool.submit(attempt, c) for c in caches for _ in range(per_cache)]
            results = [f.result(30) for f in futures]
        assert results.count(True) == 1, results


def test_two_workers_beginning_one_key_one_executes(backend: Backend) -> None:
    stores = [backend.store(), backend.store()]
    for n in range(5):
        barrier = threading.Barrier(6)

        def begin(
            store: IdempotencyStore, key: str = f"race-{n}", barrier: threading.Barrier = barrier
        ) -> ClaimState:
            barrier.wait(5)
            return store.begin(key, "d", ttl_seconds=60, lease_seconds=30).state

        with ThreadPoolExecutor(6) as pool:
            states = [f.result(30) for f in [pool.submit(begin, s) for s in stores * 3]]
        assert states.count(ClaimState.NEW) == 1, states
        assert states.count(ClaimState.IN_PROGRESS) == 5, states


def test_two_workers_running_one_request_run_it_once(backend: Backend) -> None:
    stores = [backend.store(), backend.store()]
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> bytes:
        calls.append(1)
        started.set()
        release.wait(10)
        return b"done"

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(run_once, stores[0], "k", "d", slow)
        assert started.wait(10)
        others = [pool.submit(run_once, s, "k", "d", slow) for s in (*stores, stores[1])]
        for future in others:
            with pytest.raises(Aborted) as info:
                future.result(30)
            assert info.value.reason == "IDEMPOTENT_REQUEST_IN_PROGRESS"
        release.set()
        assert first.result(30) == b"done"
    assert len(calls) == 1
    assert run_once(stores[1], "k", "d", slow) == b"done"  # the other worker answers from the store


def test_a_restarted_worker_finds_claims_and_answers(backend: Backend) -> None:
    if backend.url is None:
        pytest.skip("in memory, a restart forgets everything")
    clock = FakeClock()
    before = SqlIdempotencyStore(backend.database(), clock=clock)
    assert before.begin("done", "d", ttl_seconds=60, lease_seconds=5).state is ClaimState.NEW
    before.complete("done", b"answer")
    assert before.begin("crashed", "d", ttl_seconds=60, lease_seconds=5).state is ClaimState.NEW
    assert SqlReplayCache(backend.database(), clock=clock).remember("jti", expires_at=1_060)
    before.database.dispose()

    after = SqlIdempotencyStore(backend.database(), clock=clock)
    claim = after.begin("done", "d", ttl_seconds=60, lease_seconds=5)
    assert (claim.state, claim.response) == (ClaimState.DONE, b"answer")
    assert after.begin("crashed", "d", ttl_seconds=60, lease_seconds=5).state is (
        ClaimState.IN_PROGRESS
    )
    clock.now += 6  # the crashed holder's lease ran out: the retry executes
    assert after.begin("crashed", "d", ttl_seconds=60, lease_seconds=5).state is ClaimState.NEW
    assert not SqlReplayCache(backend.database(), clock=clock).remember("jti", expires_at=1_060)
    with after.database.read() as conn:
        assert conn.scalar(select(func.count()).select_from(IdempotencyRow)) == 2


@pytest.mark.parametrize("name", ["sql_replay", "sql_idempotency"])
def test_module_examples(name: str) -> None:
    module = importlib.import_module(f"exchange.federation.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
