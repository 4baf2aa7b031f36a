"""Every refused call lands in the node's audit log as ``auth.failure``, with its reason."""

from __future__ import annotations

import grpc
import pytest

from tests.fixtures.node import NodeFactory
from zhida.audit.v1 import audit_service_pb2 as audit_pb
from zhida.audit.v1 import audit_service_pb2_grpc as audit_grpc
from zhida.auth.principal import Role
from zhida.node.v1 import node_service_pb2 as pb
from zhida.node.v1 import node_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


def test_refused_calls_are_audit_events(node_factory: NodeFactory) -> None:
    node = node_factory.start(name="refusals")
    channel = node.channel()
    stub = pb_grpc.NodeServiceStub(channel)
    refusals = [
        ((), "TOKEN_MISSING", None),
        (node.auth("not-a-jwt"), "TOKEN_MALFORMED", None),
        (node.auth(role=Role.HOLDER, subject="citizen-9"), "ROLE_NOT_ALLOWED", "citizen-9"),
    ]
    for metadata, _, _ in refusals:
        with pytest.raises(grpc.RpcError) as info:
            stub.GetNodeInfo(
                pb.GetNodeInfoRequest(), metadata=(*metadata, ("x-trace-id", "refused-1"))
            )
        assert info.value.code() in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
        )

    audit = audit_grpc.AuditServiceStub(channel)
    page = audit.SearchEvents(
        audit_pb.SearchEventsRequest(actions=["auth.failure"]),
        metadata=node.auth(role=Role.AUDITOR),
        timeout=10,
    )
    events = list(page.events)
    assert [e.reason for e in events] == [reason for _, reason, _ in refusals]
    for event, (_, _, subject) in zip(events, refusals, strict=True):
        assert event.outcome == audit_pb.OUTCOME_DENIED
        assert event.details["method"] == "/zhida.node.v1.NodeService/GetNodeInfo"
        assert event.trace_id == "refused-1"
        assert event.subject == (subject or "")
    assert events[-1].role == "holder"


def test_allowed_calls_write_no_refusal(node_factory: NodeFactory) -> None:
    node = node_factory.start(name="allowed")
    channel = node.channel()
    pb_grpc.NodeServiceStub(channel).WhoAmI(pb.WhoAmIRequest(), metadata=node.auth())
    page = audit_grpc.AuditServiceStub(channel).SearchEvents(
        audit_pb.SearchEventsRequest(actions=["auth.failure"]),
        metadata=node.auth(role=Role.AUDITOR),
        timeout=10,
    )
    assert list(page.events) == []
