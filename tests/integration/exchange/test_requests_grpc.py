"""Share requests and grants over gRPC against a real node (SQLite): the flow and every refusal.

The node serves the sample catalogue. 江岸区市场监督管理局 (ja-samr) applies for
武汉市公安局's resident register; the police admin decides. Every refusal is
checked for its gRPC code, its ErrorInfo reason and, for bad input, the
BadRequest field names.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from exchange import wire
from tests.fixtures.node import NodeFactory, NodeHandle
from tests.integration.catalog_registry.support import failure, fields
from tests.integration.exchange.requests_support import (
    BIOMETRIC,
    DRAFT,
    NATIONAL_NODE,
    NOT_SHARED,
    POLICE,
    REQUESTER,
    RESIDENT,
    SOCIAL_CARD,
    People,
    application,
    application_fields,
    exchange_stub,
    load_catalogue,
)
from zhida.audit.v1 import audit_service_pb2 as apb
from zhida.audit.v1 import audit_service_pb2_grpc as apb_grpc
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

Code = grpc.StatusCode


@pytest.fixture(scope="module")
def node(node_factory: NodeFactory) -> NodeHandle:
    """A national node: the whole sample catalogue is within its region."""
    return node_factory.start(NATIONAL_NODE, name="exchange-national")


@pytest.fixture(scope="module")
def people(node: NodeHandle) -> People:
    return load_catalogue(node)


@pytest.fixture(scope="module")
def stub(node: NodeHandle) -> pb_grpc.ExchangeServiceStub:
    return exchange_stub(node)


def _events(node: NodeHandle, people: People, *actions: str) -> list[apb.Event]:
    audit = apb_grpc.AuditServiceStub(node.channel())
    request = apb.SearchEventsRequest(actions=list(actions), page_size=1000)
    return list(audit.SearchEvents(request, metadata=people.auditor, timeout=10).events)


def test_apply_pending_approve_less_list_revoke(
    node: NodeHandle, people: People, stub: pb_grpc.ExchangeServiceStub
) -> None:
    clerk, police = people.dept("ja-samr"), people.admin_of("wh-police")
    first = stub.ApplyForData(application(), metadata=clerk).request
    assert first.state == pb.SHARE_REQUEST_STATE_SUBMITTED
    assert (first.requester_org, first.provider_org) == (REQUESTER.uscc, POLICE.uscc)
    second = stub.ApplyForData(application(items=("姓名",)), metadata=people.dept("ja-gov"))
    pending = stub.ListPendingShareRequests(pb.ListPendingShareRequestsRequest(), metadata=police)
    ids = [r.id for r in pending.requests]
    assert ids.index(first.id) < ids.index(second.request.id)  # oldest first
    assert pending.requests[ids.index(first.id)].legal_basis == first.legal_basis
    for md in (clerk, police, people.auditor):  # the parties and an auditor may read it
        got = stub.GetShareRequest(pb.GetShareRequestRequest(request_id=first.id), metadata=md)
        assert got.request == first

    until = datetime.now(UTC) + timedelta(days=30)
    approved = stub.ApproveShareRequest(
        pb.ApproveShareRequestRequest(
            request_id=first.id, items=["姓名"], valid_until=wire.timestamp(until),
            rate_limit_per_minute=600,
        ),
        metadata=police,
    )  # fmt: skip
    assert approved.request.state == pb.SHARE_REQUEST_STATE_APPROVED
    grant = approved.grant
    assert (list(grant.items), grant.state, grant.rate_limit_per_minute) == (
        ["姓名"], pb.GRANT_STATE_ACTIVE, 600,
    )  # fmt: skip
    assert wire.time_of(grant, "valid_until") == until
    assert approved.request.decision.grant_id == grant.id
    assert list(approved.request.decision.items_granted) == ["姓名"]
    pending = stub.ListPendingShareRequests(pb.ListPendingShareRequestsRequest(), metadata=police)
    assert first.id not in [r.id for r in pending.requests]

    held = stub.ListGrants(pb.ListGrantsRequest(), metadata=clerk).held
    assert [g.id for g in held] == [grant.id]
    given = stub.ListGrants(pb.ListGrantsRequest(), metadata=police).given
    assert grant.id in [g.id for g in given]
    mine = stub.ListShareRequests(pb.ListShareRequestsRequest(), metadata=clerk).requests
    assert first.id in [r.id for r in mine]
    assert second.request.id not in [r.id for r in mine]

    revoked = stub.RevokeGrant(
        pb.RevokeGrantRequest(grant_id=grant.id, reason="办理完毕"), metadata=police
    ).grant
    assert (revoked.state, revoked.revoked_reason) == (pb.GRANT_STATE_REVOKED, "办理完毕")
    assert stub.ListGrants(pb.ListGrantsRequest(), metadata=clerk).held == []
    every = stub.ListGrants(pb.ListGrantsRequest(include_inactive=True), metadata=clerk).held
    assert [(g.id, g.state) for g in every] == [(grant.id, pb.GRANT_STATE_REVOKED)]

    again = failure(
        stub.RevokeGrant, pb.RevokeGrantRequest(grant_id=grant.id, reason="x"), metadata=police
    )
    assert (again.code, again.reason) == (Code.FAILED_PRECONDITION, "GRANT_REVOKED")
    twice = failure(
        stub.ApproveShareRequest, pb.ApproveShareRequestRequest(request_id=first.id),
        metadata=police,
    )  # fmt: skip
    assert (twice.code, twice.reason) == (Code.FAILED_PRECONDITION, "ALREADY_DECIDED")

    rejected = stub.RejectShareRequest(
        pb.RejectShareRequestRequest(request_id=second.request.id, reason="无法定依据"),
        metadata=police,
    ).request
    assert (rejected.state, rejected.decision.reason) == (
        pb.SHARE_REQUEST_STATE_REJECTED, "无法定依据",
    )  # fmt: skip

    by_action = {
        e.action: e
        for e in _events(node, people, "share.request", "share.decide", "grant.create",
                         "grant.revoke")
        if e.outcome == apb.OUTCOME_OK
        and (e.details.get("request_id") in (first.id, "") or e.details.get("grant_id") == grant.id)
    }  # fmt: skip
    refusals = [e.reason for e in _events(node, people, "share.decide", "grant.revoke")
                if e.outcome == apb.OUTCOME_DENIED]  # fmt: skip
    assert "ALREADY_DECIDED" in refusals
    assert by_action["share.request"].legal_basis == first.legal_basis
    assert by_action["share.request"].organisation == REQUESTER.uscc
    assert by_action["share.decide"].details["decision"] == "approve"
    assert by_action["grant.create"].details["grant_id"] == grant.id
    assert by_action["grant.create"].resource == RESIDENT
    assert by_action["grant.revoke"].details["reason"] == "办理完毕"


def test_unconditional_items_are_granted_at_once(
    people: People, stub: pb_grpc.ExchangeServiceStub
) -> None:
    reply = stub.ApplyForData(
        application(SOCIAL_CARD, ("姓名", "卡状态")), metadata=people.dept("ja-samr")
    )
    assert reply.request.state == pb.SHARE_REQUEST_STATE_APPROVED
    assert reply.request.decision.decided_by == "system:unconditional"
    assert reply.HasField("grant")
    assert sorted(reply.grant.items) == ["卡状态", "姓名"]
    assert reply.grant.state == pb.GRANT_STATE_ACTIVE


def test_a_new_approval_supersedes_the_active_grant(
    node: NodeHandle, people: People, stub: pb_grpc.ExchangeServiceStub
) -> None:
    clerk, police = people.dept("wh-fire"), people.admin_of("wh-police")
    grants = []
    for _ in range(2):
        filed = stub.ApplyForData(application(items=("姓名",)), metadata=clerk).request
        approve = pb.ApproveShareRequestRequest(request_id=filed.id)
        grants.append(stub.ApproveShareRequest(approve, metadata=police).grant)
    every = stub.ListGrants(pb.ListGrantsRequest(include_inactive=True), metadata=clerk).held
    assert [(g.id, g.state) for g in every] == [
        (grants[0].id, pb.GRANT_STATE_REVOKED), (grants[1].id, pb.GRANT_STATE_ACTIVE),
    ]  # fmt: skip
    assert every[0].revoked_reason == f"superseded by grant {grants[1].id}"
    revokes = _events(node, people, "grant.revoke")
    assert grants[0].id in [e.details["grant_id"] for e in revokes]


def test_withdraw_only_by_the_requester_and_only_once(
    node: NodeHandle, people: People, stub: pb_grpc.ExchangeServiceStub
) -> None:
    clerk = people.dept("ja-samr")
    filed = stub.ApplyForData(application(items=("姓名",)), metadata=clerk).request
    withdraw = pb.WithdrawShareRequestRequest(request_id=filed.id)
    stranger = failure(stub.WithdrawShareRequest, withdraw, metadata=people.dept("wh-samr"))
    assert (stranger.code, stranger.reason) == (Code.PERMISSION_DENIED, "NOT_REQUESTER")
    done = stub.WithdrawShareRequest(withdraw, metadata=clerk).request
    assert done.state == pb.SHARE_REQUEST_STATE_WITHDRAWN
    assert done.HasField("withdrawn_at")
    again = failure(stub.WithdrawShareRequest, withdraw, metadata=clerk)
    assert (again.code, again.reason) == (Code.FAILED_PRECONDITION, "REQUEST_WITHDRAWN")
    approve = failure(
        stub.ApproveShareRequest, pb.ApproveShareRequestRequest(request_id=filed.id),
        metadata=people.admin_of("wh-police"),
    )  # fmt: skip
    assert (approve.code, approve.reason) == (Code.FAILED_PRECONDITION, "REQUEST_WITHDRAWN")
    denied = [
        e for e in _events(node, people, "share.decide")
        if e.outcome == apb.OUTCOME_DENIED and e.details.get("request_id") == filed.id
    ]  # fmt: skip
    # every refusal is on record: the stranger's, the second withdrawal, the late approval
    assert [e.reason for e in denied] == ["NOT_REQUESTER", "REQUEST_WITHDRAWN", "REQUEST_WITHDRAWN"]


# -- bad input, one class at a time --------------------------------------------------------------
def _ts(days: float) -> object:
    return wire.timestamp(datetime.now(UTC) + timedelta(days=days))


@pytest.mark.parametrize(
    ("changes", "bad"),
    [
        ({"resource_code": ""}, ["resource_code"]),
        ({"resource_code": "1-1-1"}, ["resource_code"]),
        ({"items": []}, ["items"]),
        ({"items": ["姓名", "姓名"]}, ["items[1]"]),
        ({"purpose": " "}, ["purpose"]),
        ({"legal_basis": ""}, ["legal_basis"]),
        ({"period_start": _ts(10), "period_end": _ts(5)}, ["period_end"]),
        ({"period_start": _ts(-10), "period_end": _ts(-5)}, ["period_end"]),
        ({"expected_volume": -1}, ["expected_volume"]),
        ({"items": ["不存在的信息项"]}, ["items[0]"]),  # checked against the resource
        ({"resource_code": "", "items": [], "purpose": "", "legal_basis": ""},
         ["resource_code", "items", "purpose", "legal_basis"]),
    ],
)  # fmt: skip
def test_apply_bad_fields(
    people: People, stub: pb_grpc.ExchangeServiceStub, changes: dict[str, object], bad: list[str]
) -> None:
    request = pb.ApplyForDataRequest(**{**application_fields(), **changes})  # type: ignore[arg-type]
    details = failure(stub.ApplyForData, request, metadata=people.dept("ja-samr"))
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "INVALID_SHARE_REQUEST")
    assert sorted(set(fields(details))) == sorted(bad)


def test_apply_refusals_for_the_resource(people: People, stub: pb_grpc.ExchangeServiceStub) -> None:
    clerk = people.dept("ja-samr")
    cases = [
        (application("1-01-001-0000-999999"), Code.NOT_FOUND, "RESOURCE_NOT_FOUND"),
        (application(DRAFT, ("姓名",)), Code.NOT_FOUND, "RESOURCE_NOT_FOUND"),
        (application(items=("姓名", "人像照片")), Code.FAILED_PRECONDITION, "NEGATIVE_LISTED"),
        (application(BIOMETRIC, ("公民身份号码",)), Code.FAILED_PRECONDITION, "NEGATIVE_LISTED"),
        (application(NOT_SHARED, ("姓名",)), Code.FAILED_PRECONDITION, "NOT_SHARED"),
    ]
    for request, code, reason in cases:
        details = failure(stub.ApplyForData, request, metadata=clerk)
        assert (details.code, details.reason) == (code, reason), request.resource_code
        if reason == "NEGATIVE_LISTED":
            assert "个人信息保护法" in details.metadata["legal_basis"]
    auditor = failure(stub.ApplyForData, application(), metadata=people.auditor)
    assert (auditor.code, auditor.reason) == (Code.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")


def test_a_negative_listed_refusal_is_in_the_access_log(
    node: NodeHandle, people: People, stub: pb_grpc.ExchangeServiceStub
) -> None:
    request = application(items=("姓名", "人像照片"))
    details = failure(stub.ApplyForData, request, metadata=people.dept("ja-samr"))
    assert details.reason == "NEGATIVE_LISTED"
    refused = [
        e
        for e in _events(node, people, "share.request")
        if e.reason == "NEGATIVE_LISTED" and e.purpose == request.purpose
    ]
    assert refused, "the refusal was not recorded"
    event = refused[-1]
    assert event.outcome == apb.OUTCOME_DENIED
    assert event.resource == request.resource_code
    assert "个人信息保护法" in event.legal_basis
    assert event.details["item"] == "人像照片"


def test_decision_refusals(people: People, stub: pb_grpc.ExchangeServiceStub) -> None:
    police = people.admin_of("wh-police")
    filed = stub.ApplyForData(application(days=60), metadata=people.dept("ja-samr")).request
    rid = filed.id

    def approve(md: object = police, **kw: object) -> tuple[Code, str, list[str]]:
        request = pb.ApproveShareRequestRequest(**{"request_id": rid, **kw})  # type: ignore[arg-type]
        d = failure(stub.ApproveShareRequest, request, metadata=md)
        return d.code, d.reason, fields(d)

    bad = Code.INVALID_ARGUMENT, "INVALID_DECISION"
    assert approve(request_id="") == (*bad, ["request_id"])
    assert approve(request_id="nope") == (Code.NOT_FOUND, "REQUEST_NOT_FOUND", [])
    assert approve(items=["人像照片"]) == (*bad, ["items[0]"])
    assert approve(valid_until=_ts(61)) == (*bad, ["valid_until"])
    assert approve(valid_until=_ts(-1)) == (*bad, ["valid_until"])
    assert approve(rate_limit_per_minute=-5) == (*bad, ["rate_limit_per_minute"])
    other = approve(md=people.admin_of("wh-samr"))
    assert other == (Code.PERMISSION_DENIED, "NOT_PROVIDER_ADMIN", [])
    assert approve(md=people.dept("wh-police"))[:2] == (Code.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")

    reject = failure(
        stub.RejectShareRequest, pb.RejectShareRequestRequest(request_id=rid), metadata=police
    )
    assert (reject.code, reject.reason, fields(reject)) == (*bad, ["reason"])
    reject = failure(stub.RejectShareRequest, pb.RejectShareRequestRequest(), metadata=police)
    assert (reject.code, reject.reason, fields(reject)) == (*bad, ["request_id"])


def test_read_and_revoke_refusals(people: People, stub: pb_grpc.ExchangeServiceStub) -> None:
    police, clerk = people.admin_of("wh-police"), people.dept("ja-samr")
    filed = stub.ApplyForData(application(), metadata=clerk).request
    get = pb.GetShareRequestRequest(request_id=filed.id)
    stranger = failure(stub.GetShareRequest, get, metadata=people.dept("wh-samr"))
    assert (stranger.code, stranger.reason) == (Code.PERMISSION_DENIED, "NOT_A_PARTY")
    missing = failure(
        stub.GetShareRequest, pb.GetShareRequestRequest(request_id="x"), metadata=clerk
    )
    assert (missing.code, missing.reason) == (Code.NOT_FOUND, "REQUEST_NOT_FOUND")
    empty = failure(stub.GetShareRequest, pb.GetShareRequestRequest(), metadata=clerk)
    assert (empty.code, fields(empty)) == (Code.INVALID_ARGUMENT, ["request_id"])
    limit = failure(
        stub.ListPendingShareRequests, pb.ListPendingShareRequestsRequest(limit=1001),
        metadata=police,
    )  # fmt: skip
    assert (limit.code, fields(limit)) == (Code.INVALID_ARGUMENT, ["limit"])

    grant = stub.ApproveShareRequest(
        pb.ApproveShareRequestRequest(request_id=filed.id), metadata=police
    ).grant
    cases = [
        (pb.RevokeGrantRequest(reason="x"), police,
         (Code.INVALID_ARGUMENT, "INVALID_REVOCATION", ["grant_id"])),
        (pb.RevokeGrantRequest(grant_id=grant.id), police,
         (Code.INVALID_ARGUMENT, "INVALID_REVOCATION", ["reason"])),
        (pb.RevokeGrantRequest(grant_id="nope", reason="x"), police,
         (Code.NOT_FOUND, "GRANT_NOT_FOUND", [])),
        (pb.RevokeGrantRequest(grant_id=grant.id, reason="x"), people.admin_of("ja-samr"),
         (Code.PERMISSION_DENIED, "NOT_PROVIDER_ADMIN", [])),
    ]  # fmt: skip
    for request, md, expected in cases:
        d = failure(stub.RevokeGrant, request, metadata=md)
        assert (d.code, d.reason, fields(d)) == expected
    still = stub.ListGrants(pb.ListGrantsRequest(), metadata=clerk).held
    assert grant.id in [g.id for g in still]


# -- the CLI, as a user runs it ------------------------------------------------------------------
def _cli(node: NodeHandle, *args: str) -> subprocess.CompletedProcess[str]:
    """``zhida exchange ...`` in a subprocess with the node's configuration (dev tokens)."""
    env = {**node.env, "COLUMNS": "200"}
    command = [sys.executable, "-m", "zhida.cli.main", "exchange", *args, "--node", node.address]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_cli_apply_approve_and_errors(node: NodeHandle, people: People) -> None:
    as_clerk = ("--role", "department", "--org", REQUESTER.uscc)
    as_police = ("--role", "admin", "--org", POLICE.uscc)
    applied = _cli(
        node, "apply", RESIDENT, "--items", "姓名,公民身份号码", "--purpose", "核验身份",
        "--legal-basis", "《市场主体登记管理条例》", "--days", "30", "--json", *as_clerk,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    request_id = json.loads(applied.stdout)["request"]["id"]
    pending = _cli(node, "pending", *as_police)
    assert pending.returncode == 0, pending.stderr
    assert request_id in pending.stdout
    approved = _cli(node, "approve", request_id, "--items", "姓名", "--rate-limit", "60",
                    *as_police)  # fmt: skip
    assert approved.returncode == 0, approved.stderr
    assert f"request {request_id} approved" in approved.stdout
    grant_id = re.search(r"grant ([0-9a-f]{32}) active", approved.stdout)
    assert grant_id is not None, approved.stdout
    grants = _cli(node, "grants", "--json", *as_clerk)
    held = json.loads(grants.stdout)["held"]
    assert [(g["id"], g["items"]) for g in held if g["resourceCode"] == RESIDENT] == [
        (grant_id[1], ["姓名"])
    ]
    again = _cli(node, "approve", request_id, *as_police)
    assert again.returncode == 1
    assert again.stderr.splitlines()[0].startswith("zhida: FAILED_PRECONDITION ALREADY_DECIDED: ")
    bad = _cli(node, "apply", RESIDENT, "--items", " ", "--purpose", " ", "--legal-basis", "x",
               *as_clerk)  # fmt: skip
    assert bad.returncode == 1
    lines = bad.stderr.splitlines()
    assert lines[0].startswith("zhida: INVALID_ARGUMENT INVALID_SHARE_REQUEST: ")
    assert sorted(line.split(":")[0].strip() for line in lines[1:]) == ["items", "purpose"]
    revoked = _cli(node, "revoke", grant_id[1], "--reason", "办理完毕", *as_police)
    assert revoked.returncode == 0, revoked.stderr
    assert f"grant {grant_id[1]} revoked" in revoked.stdout
