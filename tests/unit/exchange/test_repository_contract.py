"""The ExchangeRepository contract, run against every implementation in ``FACTORIES``.

Each factory gets the test's ``pytest.FixtureRequest`` and an ``ExitStack``
for clean-up. The SQL store runs on SQLite (a file in ``tmp_path``) and on
PostgreSQL (a clean schema of the session's test database), migrated to head.
"""

from __future__ import annotations

import dataclasses
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest

from exchange.memory import InMemoryExchangeRepository
from exchange.model import (
    Grant,
    GrantState,
    Period,
    RequestDecision,
    RequestState,
    ShareRequest,
)
from exchange.repository import ExchangeRepository
from tests.unit.exchange.sql_support import open_sql_repo
from zhida.errors import Aborted, AlreadyExists, NotFound

T = datetime(2025, 6, 1, tzinfo=UTC)
Factory = Callable[[pytest.FixtureRequest, ExitStack], ExchangeRepository]


def sql_store(dialect: str) -> Factory:
    def make(request: pytest.FixtureRequest, stack: ExitStack) -> ExchangeRepository:
        return open_sql_repo(request, dialect, stack)

    return make


FACTORIES: dict[str, Factory] = {
    "memory": lambda request, stack: InMemoryExchangeRepository(),
    "sqlite": sql_store("sqlite"),
    "postgresql": sql_store("postgresql"),
}
_MARKS = {"postgresql": [pytest.mark.integration]}


@pytest.fixture(params=[pytest.param(n, marks=_MARKS.get(n, [])) for n in sorted(FACTORIES)])
def store(request: pytest.FixtureRequest) -> Iterator[ExchangeRepository]:
    with ExitStack() as stack:
        yield FACTORIES[request.param](request, stack)


def req(rid: str, provider: str = "P", at: int = 0, requester: str = "R") -> ShareRequest:
    when = T + timedelta(seconds=at)
    return ShareRequest(
        rid, requester, "420102", "clerk", "1-01-001-0000-000101", provider, ("姓名",),
        "purpose", "basis", Period(T, T + timedelta(days=1)), 0, RequestState.SUBMITTED,
        when, when,
    )  # fmt: skip


def grant(gid: str, request_id: str = "r1", resource: str | None = None) -> Grant:
    """A grant of R from P; each id its own resource unless ``resource`` is given
    (a requester holds at most one active grant per resource)."""
    code = resource or f"1-01-001-0000-{zlib.crc32(gid.encode()) % 10**6:06d}"
    return Grant(
        gid, request_id, "R", "P", code, frozenset({"姓名"}),
        T, T + timedelta(days=1), "purpose", T,
    )  # fmt: skip


def test_requests_insert_get_and_duplicates(store: ExchangeRepository) -> None:
    store.insert_request(req("r1"))
    assert store.get_request("r1") == req("r1")
    assert store.get_request("r2") is None
    with pytest.raises(AlreadyExists) as err:
        store.insert_request(req("r1"))
    assert err.value.reason == "REQUEST_EXISTS"


def test_save_request_is_compare_and_set_with_its_grants(store: ExchangeRepository) -> None:
    store.insert_request(req("r1"))
    approved = dataclasses.replace(req("r1"), state=RequestState.APPROVED)
    store.save_request(approved, expected_state=RequestState.SUBMITTED, grants=[grant("g1")])
    assert store.get_request("r1") == approved
    assert store.get_grant("g1") == grant("g1")
    rejected = dataclasses.replace(req("r1"), state=RequestState.REJECTED)
    with pytest.raises(Aborted) as err:
        store.save_request(rejected, expected_state=RequestState.SUBMITTED, grants=[grant("g2")])
    assert err.value.reason == "REQUEST_CHANGED"
    assert store.get_request("r1") == approved
    assert store.get_grant("g2") is None
    with pytest.raises(NotFound):
        store.save_request(req("zz"), expected_state=RequestState.SUBMITTED)


def test_insert_request_with_grants(store: ExchangeRepository) -> None:
    store.insert_request(req("r1"), [grant("g1")])
    assert [g.id for g in store.iter_grants()] == ["g1"]


def test_pending_is_per_provider_oldest_first(store: ExchangeRepository) -> None:
    store.insert_request(req("b", at=5))
    store.insert_request(req("a", at=5))
    store.insert_request(req("c", at=1))
    store.insert_request(req("x", provider="Q", at=0))
    store.insert_request(req("d", at=0))
    withdrawn = dataclasses.replace(req("d", at=0), state=RequestState.WITHDRAWN)
    store.save_request(withdrawn, expected_state=RequestState.SUBMITTED)
    assert [r.id for r in store.pending_requests("P")] == ["c", "a", "b"]
    assert [r.id for r in store.pending_requests("P", limit=2)] == ["c", "a"]
    assert [r.id for r in store.pending_requests("Q")] == ["x"]
    assert [r.id for r in store.requests_of("R")] == ["d", "x", "c", "a", "b"]


def test_grants(store: ExchangeRepository) -> None:
    store.insert_grant(grant("g1"))
    store.insert_grant(grant("g2"))
    with pytest.raises(AlreadyExists) as err:
        store.insert_grant(grant("g1"))
    assert err.value.reason == "GRANT_EXISTS"
    revoked = dataclasses.replace(grant("g1"), state=GrantState.REVOKED, revoked_reason="x")
    store.save_grant(revoked, expected_state=GrantState.ACTIVE)
    with pytest.raises(Aborted) as aerr:
        store.save_grant(revoked, expected_state=GrantState.ACTIVE)
    assert aerr.value.reason == "GRANT_CHANGED"
    with pytest.raises(NotFound):
        store.save_grant(grant("g9"), expected_state=GrantState.ACTIVE)
    assert [g.id for g in store.iter_grants()] == ["g1", "g2"]
    assert [g.id for g in store.iter_grants(GrantState.ACTIVE)] == ["g2"]
    assert store.get_grant("g1") == revoked


def test_grants_of_requester_and_provider(store: ExchangeRepository) -> None:
    store.insert_grant(grant("g1"))
    other = dataclasses.replace(grant("g2"), requester_org="S", provider_org="Q")
    store.insert_grant(other)
    store.insert_grant(grant("g3"))
    assert [g.id for g in store.grants_of("R")] == ["g1", "g3"]
    assert [g.id for g in store.grants_of("P", as_provider=True)] == ["g1", "g3"]
    assert store.grants_of("S", as_provider=True) == []
    assert store.grants_of("S") == [other]
    assert store.grants_of("Q", as_provider=True) == [other]


def test_request_round_trips_every_field(store: ExchangeRepository) -> None:
    when = T + timedelta(hours=1, microseconds=123)
    decision = RequestDecision(
        "admin@P", when, approved=True, reason="ok", items_granted=frozenset({"姓名", "住址"}),
        until_granted=T + timedelta(hours=20), grant_id="g1",
    )  # fmt: skip
    stored = dataclasses.replace(
        req("r1"), items=("住址", "姓名"), expected_volume=42, state=RequestState.APPROVED,
        decision=decision, updated_at=when,
    )  # fmt: skip
    store.insert_request(stored)
    assert store.get_request("r1") == stored
    withdrawn = dataclasses.replace(
        req("r2"), state=RequestState.WITHDRAWN, withdrawn_at=when, updated_at=when
    )
    store.insert_request(withdrawn)
    assert store.get_request("r2") == withdrawn
    revoked = dataclasses.replace(
        grant("g9"), state=GrantState.REVOKED, revoked_at=when, revoked_by="admin@P",
        revoked_reason="done", rate_limit_per_minute=60, items=frozenset({"姓名", "住址"}),
    )  # fmt: skip
    store.insert_grant(revoked)
    assert store.get_grant("g9") == revoked


def test_grant_versions_move_with_every_grant_write(store: ExchangeRepository) -> None:
    start = store.grant_version()
    assert store.grants_changed_since(start) == ([], start)
    store.insert_request(req("r0"))  # no grant written: the version stays
    assert store.grant_version() == start
    store.insert_grant(grant("g1"))
    after_g1 = store.grant_version()
    assert after_g1 > start
    store.insert_request(req("r1"), [grant("g2"), grant("g3")])
    after_r1 = store.grant_version()
    assert after_r1 > after_g1
    revoked = dataclasses.replace(grant("g1"), state=GrantState.REVOKED, revoked_reason="x")
    store.save_grant(revoked, expected_state=GrantState.ACTIVE)
    changed, version = store.grants_changed_since(start)
    assert [g.id for g in changed] == ["g2", "g3", "g1"]  # write order, then creation
    assert changed[-1] == revoked  # the latest state, once
    assert version == store.grant_version() > after_r1
    changed, since_r1 = store.grants_changed_since(after_r1)
    assert (changed, since_r1) == ([revoked], version)
    assert store.grants_changed_since(version) == ([], version)
    with pytest.raises(Aborted):  # a failed write moves nothing
        store.save_grant(revoked, expected_state=GrantState.ACTIVE)
    with pytest.raises(AlreadyExists):
        store.insert_grant(grant("g2"))
    with pytest.raises(Aborted):
        store.save_request(req("r1"), expected_state=RequestState.APPROVED, grants=[grant("g4")])
    assert store.grant_version() == version
    assert store.get_grant("g4") is None


def test_concurrent_decisions_one_wins(store: ExchangeRepository) -> None:
    store.insert_request(req("r1"))
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def decide(n: int) -> None:
        state = RequestState.APPROVED if n % 2 else RequestState.REJECTED
        barrier.wait()
        try:
            store.save_request(
                dataclasses.replace(req("r1"), state=state),
                expected_state=RequestState.SUBMITTED,
                grants=[grant(f"g{n}")] if state is RequestState.APPROVED else [],
            )
        except Aborted as err:
            outcomes.append(err.reason)
        else:
            outcomes.append(f"won:{n}")

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [o for o in outcomes if o.startswith("won:")]
    assert len(winners) == 1
    assert sorted(set(outcomes) - set(winners)) == ["REQUEST_CHANGED"]
    n = int(winners[0].split(":")[1])
    stored = store.get_request("r1")
    assert stored is not None
    assert stored.state is (RequestState.APPROVED if n % 2 else RequestState.REJECTED)
    assert [g.id for g in store.iter_grants()] == ([f"g{n}"] if n % 2 else [])


def test_at_most_one_live_active_grant_per_requester_and_resource(
    store: ExchangeRepository,
) -> None:
    same = "1-01-001-0000-000101"
    store.insert_request(req("r1"), [grant("g1", resource=same)])
    start = store.grant_version()
    second = grant("g2", "r2", resource=same)
    with pytest.raises(Aborted) as stale:  # decided without seeing g1: nothing written
        store.insert_request(req("r2"), [second])
    assert stale.value.reason == "GRANT_SUPERSEDE_STALE"
    assert stale.value.metadata["active_grant_id"] == "g1"
    assert store.get_request("r2") is None
    assert store.grant_version() == start
    with pytest.raises(Aborted):
        store.insert_grant(second)
    store.insert_request(req("r3"))
    with pytest.raises(Aborted):
        store.save_request(req("r3"), expected_state=RequestState.SUBMITTED, grants=[second])
    assert store.get_request("r3") == req("r3")
    # superseding g1 in the same write is the way
    superseded = dataclasses.replace(
        grant("g1", resource=same), state=GrantState.REVOKED, revoked_reason="superseded"
    )
    both = [superseded, second]
    store.save_request(req("r3"), expected_state=RequestState.SUBMITTED, grants=both)
    assert [g.id for g in store.iter_grants(GrantState.ACTIVE)] == ["g2"]
    # a stored ACTIVE grant whose period is over does not stand in the way
    later = T + timedelta(days=2)
    expired_pair = "1-01-001-0000-000102"
    store.insert_grant(grant("g5", resource=expired_pair))
    fresh = dataclasses.replace(
        grant("g6", resource=expired_pair), created_at=later, valid_from=later,
        valid_until=later + timedelta(days=1),
    )  # fmt: skip
    store.insert_grant(fresh)
    # another requester's grant for the same resource is no conflict
    store.insert_grant(dataclasses.replace(grant("g7", resource=same), requester_org="S"))
