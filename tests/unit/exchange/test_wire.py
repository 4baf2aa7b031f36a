"""Protobuf ⇄ domain of the request side: round trips, effective grant state, bad input."""

from __future__ import annotations

import dataclasses
import doctest
from datetime import UTC, datetime, timedelta, timezone

import pytest

from exchange import wire
from exchange.model import (
    Grant,
    GrantState,
    Period,
    RequestDecision,
    RequestState,
    ShareRequest,
)
from zhida.errors import FieldViolation, InvalidArgument
from zhida.exchange.v1 import exchange_service_pb2 as pb

T = datetime(2025, 6, 1, 8, 0, 0, 123456, tzinfo=UTC)
CODE = "1-01-001-0000-000002"


def _request(**kw: object) -> ShareRequest:
    base = ShareRequest(
        "r1", "11420102000040176F", "420102", "clerk@ja", CODE, "114201000000120016",
        ("姓名", "公民身份号码"), "核验身份", "《条例》第十九条", Period(T, T + timedelta(days=30)),
        100, RequestState.SUBMITTED, T, T,
    )  # fmt: skip
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def _grant(**kw: object) -> Grant:
    base = Grant(
        "g1", "r1", "11420102000040176F", "114201000000120016", CODE, frozenset({"姓名"}),
        T, T + timedelta(days=10), "核验身份", T,
    )  # fmt: skip
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_module_example() -> None:
    result = doctest.testmod(wire, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_timestamps_are_utc_and_keep_microseconds() -> None:
    east8 = timezone(timedelta(hours=8))
    stamp = wire.timestamp(T.astimezone(east8))
    assert stamp is not None
    assert stamp.ToDatetime(tzinfo=UTC) == T
    assert wire.timestamp(None) is None
    assert wire.time_of(pb.Grant(valid_from=stamp), "valid_from") == T
    assert wire.time_of(pb.Grant(), "valid_from") is None


@pytest.mark.parametrize(
    "request_",
    [
        _request(),
        _request(state=RequestState.WITHDRAWN, withdrawn_at=T + timedelta(hours=1)),
        _request(
            state=RequestState.APPROVED,
            decision=RequestDecision(
                "admin@wh-police",
                T + timedelta(hours=2),
                approved=True,
                reason="同意",
                items_granted=frozenset({"姓名"}),
                until_granted=T + timedelta(days=10),
                grant_id="g1",
            ),
        ),
        _request(
            state=RequestState.REJECTED,
            decision=RequestDecision("admin@wh-police", T, approved=False, reason="无依据"),
        ),
    ],
    ids=["submitted", "withdrawn", "approved", "rejected"],
)
def test_request_round_trip(request_: ShareRequest) -> None:
    message = wire.request_to_pb(request_)
    again = pb.ShareRequest.FromString(message.SerializeToString())
    assert wire.request_from_pb(again) == request_


def test_request_states_on_the_wire() -> None:
    assert wire.request_to_pb(_request()).state == pb.SHARE_REQUEST_STATE_SUBMITTED
    assert not wire.request_to_pb(_request()).HasField("decision")
    assert set(wire.REQUEST_STATE) == set(RequestState)
    assert set(wire.GRANT_STATE) == set(GrantState)


def test_grant_round_trip_and_effective_state() -> None:
    grant = _grant(rate_limit_per_minute=60)
    message = wire.grant_to_pb(grant, T + timedelta(days=1))
    assert message.state == pb.GRANT_STATE_ACTIVE
    assert message.rate_limit_per_minute == 60
    assert wire.grant_from_pb(pb.Grant.FromString(message.SerializeToString())) == grant
    expired = wire.grant_to_pb(grant, T + timedelta(days=10))
    assert expired.state == pb.GRANT_STATE_EXPIRED
    revoked = _grant(
        state=GrantState.REVOKED, revoked_at=T, revoked_by="admin", revoked_reason="done"
    )
    message = wire.grant_to_pb(revoked, T)
    assert (message.state, message.revoked_reason) == (pb.GRANT_STATE_REVOKED, "done")
    assert wire.grant_from_pb(message) == revoked
    unlimited = wire.grant_to_pb(_grant(), T)
    assert unlimited.rate_limit_per_minute == 0
    assert wire.grant_from_pb(unlimited).rate_limit_per_minute is None


def _apply(**kw: object) -> pb.ApplyForDataRequest:
    fields: dict[str, object] = {
        "resource_code": CODE,
        "items": ["姓名"],
        "purpose": "核验身份",
        "legal_basis": "《条例》",
        "period_end": wire.timestamp(T + timedelta(days=30)),
    }
    fields.update(kw)
    return pb.ApplyForDataRequest(**fields)  # type: ignore[arg-type]


def _violations(fn: object, *args: object) -> tuple[str, list[str]]:
    assert callable(fn)
    with pytest.raises(InvalidArgument) as err:
        fn(*args)
    return err.value.reason, [v.field for v in err.value.violations]


def test_application_from_pb_defaults_the_start_to_now() -> None:
    spec = wire.application_from_pb(_apply(expected_volume=5), T)
    assert spec.period == Period(T, T + timedelta(days=30))
    assert (spec.resource_code, spec.items, spec.expected_volume) == (CODE, ("姓名",), 5)
    start = T + timedelta(days=1)
    spec = wire.application_from_pb(_apply(period_start=wire.timestamp(start)), T)
    assert spec.period.start == start


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"resource_code": ""}, "resource_code"),
        ({"resource_code": "9-99"}, "resource_code"),
        ({"items": []}, "items"),
        ({"items": ["姓名", "姓名"]}, "items[1]"),
        ({"items": ["姓名", " "]}, "items[1]"),
        ({"purpose": "  "}, "purpose"),
        ({"purpose": "x" * 2001}, "purpose"),
        ({"legal_basis": ""}, "legal_basis"),
        ({"period_end": None}, "period_end"),
        ({"period_start": wire.timestamp(T + timedelta(days=40))}, "period_end"),
        ({"period_end": wire.timestamp(T - timedelta(days=1)),
          "period_start": wire.timestamp(T - timedelta(days=2))}, "period_end"),
        ({"expected_volume": -1}, "expected_volume"),
    ],
)  # fmt: skip
def test_application_violations(change: dict[str, object], field: str) -> None:
    reason, fields = _violations(wire.application_from_pb, _apply(**change), T)
    assert reason == "INVALID_SHARE_REQUEST"
    assert field in fields


def test_every_bad_field_is_named_at_once() -> None:
    _, fields = _violations(wire.application_from_pb, pb.ApplyForDataRequest(), T)
    assert sorted(fields) == ["items", "legal_basis", "period_end", "purpose", "resource_code"]


def test_approval_from_pb() -> None:
    until = T + timedelta(days=3)
    approval = wire.approval_from_pb(
        pb.ApproveShareRequestRequest(
            request_id=" r1 ", items=["姓名"], valid_until=wire.timestamp(until),
            rate_limit_per_minute=30,
        )
    )  # fmt: skip
    assert approval == wire.Approval("r1", ("姓名",), until, 30)
    everything = wire.approval_from_pb(pb.ApproveShareRequestRequest(request_id="r1"))
    assert everything == wire.Approval("r1", None, None, None)
    reason, fields = _violations(
        wire.approval_from_pb,
        pb.ApproveShareRequestRequest(items=["a", "a"], rate_limit_per_minute=-1),
    )
    assert reason == "INVALID_DECISION"
    assert fields == ["request_id", "items[1]", "rate_limit_per_minute"]


def test_ids_limits_and_renamed_violations() -> None:
    assert wire.require_id(" g1 ", "grant_id") == "g1"
    reason, fields = _violations(wire.require_id, "", "grant_id", "INVALID_REVOCATION")
    assert (reason, fields) == ("INVALID_REVOCATION", ["grant_id"])
    assert wire.pending_limit(0) == 100
    assert wire.pending_limit(1000) == 1000
    assert _violations(wire.pending_limit, 1001)[1] == ["limit"]
    assert _violations(wire.pending_limit, -1)[1] == ["limit"]
    error = InvalidArgument(
        "bad", reason="INVALID_DECISION",
        violations=[FieldViolation("until", "later"), FieldViolation("items[0]", "x")],
    )  # fmt: skip
    renamed = wire.renamed(error)
    assert renamed.reason == "INVALID_DECISION"
    assert [v.field for v in renamed.violations] == ["valid_until", "items[0]"]
