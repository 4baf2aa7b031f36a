"""Grant-index freshness across processes: two stores and indexes over one database.

Each "worker" is its own :class:`SqlExchangeRepository` (own engine and pool)
with its own :class:`SyncedGrantIndex` and :class:`ShareRequests`, as two
``zhida serve --workers 2`` processes have; the catalogue is shared in memory.
A fake monotonic clock drives the refresh interval, except in the test of
the real-time bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.negative_list import NegativeList
from catalog_registry.sample_data import department_principal
from exchange.grant_sync import SyncedGrantIndex
from exchange.memory import InMemoryExchangeRepository
from exchange.model import GrantState, Period
from exchange.repository import ExchangeRepository
from exchange.requests import ApplicationSpec, ShareRequests
from exchange.sql import SqlExchangeRepository
from tests.unit.exchange.conftest import CONDITIONAL, DAY, Clock, catalogue, role_principal
from tests.unit.exchange.sql_support import database_url, open_database
from zhida.auth.principal import Role
from zhida.db import Database
from zhida.errors import PermissionDenied

INTERVAL = 0.125  # exact in binary: the fake clock adds halves of it
ADMIN = role_principal("wh-police", Role.ADMIN)
CLERK = department_principal("ja-samr")


class Tick:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float = INTERVAL) -> None:
        self.t += seconds


class CountingRepo(SqlExchangeRepository):
    looks = 0

    def grant_version(self) -> int:
        self.looks += 1
        return super().grant_version()


class CountingMemory(InMemoryExchangeRepository):
    looks = 0

    def grant_version(self) -> int:
        self.looks += 1
        return super().grant_version()


@dataclass
class Worker:
    repo: ExchangeRepository
    index: SyncedGrantIndex
    book: ShareRequests


@dataclass
class Pair:
    a: Worker
    b: Worker
    clock: Clock
    tick: Tick

    def spec(self) -> ApplicationSpec:
        period = Period(self.clock.now, self.clock.now + 30 * DAY)
        return ApplicationSpec(CONDITIONAL, ("姓名",), "核验身份", "《条例》第十九条", period)

    def check(self, worker: Worker) -> str:
        try:
            return worker.index.check(CLERK.organisation, CONDITIONAL, self.clock.now).id
        except PermissionDenied as refused:
            return refused.reason


def _worker(repo: ExchangeRepository, clock: Clock, tick: Tick | None) -> Worker:
    catalog = InMemoryCatalogRepository()
    catalog.insert_resources(catalogue())
    negative = NegativeList(catalog, clock)
    monotonic = time.monotonic if tick is None else tick
    index = SyncedGrantIndex(repo, clock, interval=INTERVAL, monotonic=monotonic)
    book = ShareRequests(repo, catalog.get_resource, negative.may_release, index, clock)
    return Worker(repo, index, book)


def _pair(repos: tuple[ExchangeRepository, ...], real_time: bool = False) -> Pair:
    clock, tick = Clock(), Tick()
    use = None if real_time else tick
    return Pair(_worker(repos[0], clock, use), _worker(repos[1], clock, use), clock, tick)


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
    ]
)
def repos(request: pytest.FixtureRequest) -> Iterator[tuple[ExchangeRepository, ...]]:
    """Two stores over one database (the memory store: one object, shared)."""
    if request.param == "memory":
        shared = CountingMemory()
        yield (shared, shared)
        return
    with ExitStack() as stack:
        url = database_url(request, request.param)
        first = CountingRepo(open_database(url, stack))
        second_db = Database(url, pool_size=2)
        stack.callback(second_db.dispose)
        yield (first, CountingRepo(second_db))


def test_approval_and_revocation_reach_the_other_worker_within_the_interval(
    repos: tuple[ExchangeRepository, ...],
) -> None:
    pair = _pair(repos)
    request = pair.a.book.apply(CLERK, pair.spec())
    assert pair.check(pair.b) == "NO_GRANT"
    approved = pair.a.book.approve(ADMIN, request.id)
    grant_id = approved.decision.grant_id if approved.decision else None
    assert pair.check(pair.a) == grant_id  # the writer: at once
    assert pair.check(pair.b) == "NO_GRANT"  # the other: not yet looked (interval)
    pair.tick.advance()
    assert pair.check(pair.b) == grant_id
    assert grant_id is not None
    pair.a.index.revoke(ADMIN, grant_id, "purpose fulfilled")
    assert pair.check(pair.a) == "GRANT_REVOKED"
    assert pair.check(pair.b) == grant_id  # stale for at most the interval
    pair.tick.advance(INTERVAL / 2)
    assert pair.check(pair.b) == grant_id
    pair.tick.advance(INTERVAL / 2)
    assert pair.check(pair.b) == "GRANT_REVOKED"
    assert pair.a.index.version == pair.b.index.version == pair.a.repo.grant_version()


def test_the_version_is_read_at_most_once_per_interval(
    repos: tuple[ExchangeRepository, ...],
) -> None:
    pair = _pair(repos)
    counted = pair.b.repo
    assert isinstance(counted, CountingRepo | CountingMemory)
    before = counted.looks
    for _ in range(50):
        pair.check(pair.b)
    assert counted.looks == before
    pair.tick.advance()
    for _ in range(50):
        pair.check(pair.b)
    assert counted.looks == before + 1
    assert pair.b.index.refreshes == 0  # nothing was written: nothing loaded


def test_a_new_approval_in_one_worker_supersedes_the_grant_made_in_the_other(
    repos: tuple[ExchangeRepository, ...],
) -> None:
    pair = _pair(repos)
    first = pair.a.book.approve(ADMIN, pair.a.book.apply(CLERK, pair.spec()).id)
    second = pair.b.book.approve(ADMIN, pair.b.book.apply(CLERK, pair.spec()).id)
    old = first.decision.grant_id if first.decision else ""
    new = second.decision.grant_id if second.decision else ""
    active = [g.id for g in pair.a.repo.iter_grants(GrantState.ACTIVE)]
    assert active == [new]  # b looked before approving: the first grant was superseded
    stored = pair.a.repo.get_grant(old or "")
    assert stored is not None
    assert stored.revoked_reason == f"superseded by grant {new}"
    pair.tick.advance()
    assert pair.check(pair.a) == pair.check(pair.b) == new


def test_revocation_is_honoured_within_the_bound_in_real_time(
    repos: tuple[ExchangeRepository, ...],
) -> None:
    pair = _pair(repos, real_time=True)
    approved = pair.a.book.approve(ADMIN, pair.a.book.apply(CLERK, pair.spec()).id)
    grant_id = approved.decision.grant_id if approved.decision else ""
    deadline = time.monotonic() + 5
    while pair.check(pair.b) != grant_id:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    pair.a.index.revoke(ADMIN, grant_id or "", "done")
    revoked_at = time.monotonic()
    while pair.check(pair.b) != "GRANT_REVOKED":
        assert time.monotonic() - revoked_at < 5
        time.sleep(0.005)
    # interval + one version read + scheduling slack on a busy machine
    assert time.monotonic() - revoked_at < INTERVAL + 0.4
