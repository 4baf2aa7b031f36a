"""The two state machines: every legal move allowed, every other refused."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from exchange.model import (
    Grant,
    GrantState,
    Period,
    RequestState,
    ShareRequest,
    check_grant_transition,
    check_request_transition,
)
from zhida.errors import FailedPrecondition

T = datetime(2025, 6, 1, tzinfo=UTC)
LEGAL_REQUEST = {
    (RequestState.SUBMITTED, RequestState.APPROVED),
    (RequestState.SUBMITTED, RequestState.REJECTED),
    (RequestState.SUBMITTED, RequestState.WITHDRAWN),
}
LEGAL_GRANT = {(GrantState.ACTIVE, GrantState.EXPIRED), (GrantState.ACTIVE, GrantState.REVOKED)}


def request(state: RequestState) -> ShareRequest:
    return ShareRequest(
        "r1", "org", "420102", "clerk", "1-01-001-0000-000101", "prov", ("姓名",),
        "p", "l", Period(T, T + timedelta(days=1)), 0, state, T, T,
    )  # fmt: skip


def grant(state: GrantState) -> Grant:
    return Grant(
        "g1", "r1", "org", "prov", "1-01-001-0000-000101", frozenset({"姓名"}),
        T, T + timedelta(days=1), "p", T, state=state,
    )  # fmt: skip


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(RequestState, RequestState)))
def test_request_moves(src: RequestState, dst: RequestState) -> None:
    if (src, dst) in LEGAL_REQUEST:
        check_request_transition(request(src), dst)
        return
    with pytest.raises(FailedPrecondition) as err:
        check_request_transition(request(src), dst)
    expected = "REQUEST_WITHDRAWN" if src is RequestState.WITHDRAWN else "ALREADY_DECIDED"
    assert err.value.reason == expected
    assert err.value.metadata["state"] == src.value


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(GrantState, GrantState)))
def test_grant_moves(src: GrantState, dst: GrantState) -> None:
    if (src, dst) in LEGAL_GRANT:
        check_grant_transition(grant(src), dst, T)
        return
    with pytest.raises(FailedPrecondition):
        check_grant_transition(grant(src), dst, T)


def test_active_grant_past_its_end_is_expired() -> None:
    g = grant(GrantState.ACTIVE)
    assert g.state_at(g.valid_until - timedelta(microseconds=1)) is GrantState.ACTIVE
    assert g.state_at(g.valid_until) is GrantState.EXPIRED
    with pytest.raises(FailedPrecondition) as err:
        check_grant_transition(g, GrantState.REVOKED, g.valid_until)
    assert err.value.reason == "GRANT_EXPIRED"
    revoked = dataclasses.replace(g, state=GrantState.REVOKED)
    assert revoked.state_at(g.valid_until) is GrantState.REVOKED


def test_final_states() -> None:
    assert [s for s in RequestState if not s.final] == [RequestState.SUBMITTED]
    assert [s for s in GrantState if not s.final] == [GrantState.ACTIVE]
    assert Period(T, T + timedelta(seconds=1)).contains(T)
    assert not Period(T, T + timedelta(seconds=1)).contains(T + timedelta(seconds=1))
