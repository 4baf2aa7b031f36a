"""The ExchangeRepository contract, run against every implementation in ``FACTORIES``.

The SQL store adds its factory here and must pass unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from exchange.memory import InMemoryExchangeRepository
from exchange.model import Grant, GrantState, Period, RequestState, ShareRequest
from exchange.repository import ExchangeRepository
from zhida.errors import Aborted, AlreadyExists, NotFound

T = datetime(2025, 6, 1, tzinfo=UTC)
FACTORIES: dict[str, Callable[[], ExchangeRepository]] = {
    "memory": InMemoryExchangeRepository,
}


@pytest.fixture(params=sorted(FACTORIES))
def store(request: pytest.FixtureRequest) -> ExchangeRepository:
    return FACTORIES[request.param]()


def req(rid: str, provider: str = "P", at: int = 0, requester: str = "R") -> ShareRequest:
    when = T + timedelta(seconds=at)
    return ShareRequest(
        rid, requester, "420102", "clerk", "1-01-001-0000-000101", provider, ("姓名",),
        "purpose", "basis", Period(T, T + timedelta(days=1)), 0, RequestState.SUBMITTED,
        when, when,
    )  # fmt: skip


def grant(gid: str, request_id: str = "r1") -> Grant:
    return Grant(
        gid, request_id, "R", "P", "1-01-001-0000-000101", frozenset({"姓名"}),
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
