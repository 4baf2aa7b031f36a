"""A real default node over real gRPC: health, reflection, auth, trace ids, logs, metrics."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.fixtures.node import DEFAULT_ORG, NodeHandle
from tests.integration.node.helpers import (
    HEALTH_SERVICE,
    NODE_SERVICE,
    REFLECTION_SERVICE,
    rich_details,
    rpc_error,
    scrape,
    trailer,
)
from zhida.auth.principal import Role
from zhida.node.v1 import node_service_pb2 as pb
from zhida.node.v1 import node_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stub(node: NodeHandle) -> pb_grpc.NodeServiceStub:
    return pb_grpc.NodeServiceStub(node.channel())


def test_health_reports_serving_overall_and_per_service(node: NodeHandle) -> None:
    health = health_pb2_grpc.HealthStub(node.channel())
    for service in ("", NODE_SERVICE):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_every_service_and_describes_node_service(node: NodeHandle) -> None:
    database = ProtoReflectionDescriptorDatabase(node.channel())
    services = set(database.get_services())
    assert {NODE_SERVICE, HEALTH_SERVICE, REFLECTION_SERVICE} <= services
    pool = DescriptorPool(database)
    methods = {m.name for m in pool.FindServiceByName(NODE_SERVICE).methods}
    assert methods == {"Echo", "WhoAmI", "GetNodeInfo"}


def test_whoami_returns_the_token_claims(node: NodeHandle, stub: pb_grpc.NodeServiceStub) -> None:
    token = node.mint(role=Role.AUDITOR, subject="auditor-1", region="420000")
    reply = stub.WhoAmI(pb.WhoAmIRequest(), metadata=node.auth(token), timeout=5)
    assert reply.subject == "auditor-1"
    assert reply.role == pb.ROLE_AUDITOR
    assert reply.organisation == DEFAULT_ORG
    assert reply.region_code == "420000"
    assert reply.expires_at > time.time() + 3000
    assert len(reply.trace_id) == 16


def test_echo_returns_the_payload(node: NodeHandle, stub: pb_grpc.NodeServiceStub) -> None:
    payload = bytes(range(256)) * 4
    reply = stub.Echo(pb.EchoRequest(payload=payload), metadata=node.auth(), timeout=5)
    assert reply.payload == payload


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "TOKEN_MISSING"),
        ("malformed", "TOKEN_MALFORMED"),
        ("expired", "TOKEN_EXPIRED"),
        ("wrong_audience", "TOKEN_WRONG_AUDIENCE"),
        ("alg_none", "TOKEN_ALGORITHM_NOT_ALLOWED"),
    ],
)
def test_bad_tokens_are_unauthenticated_with_their_reason(
    node: NodeHandle, stub: pb_grpc.NodeServiceStub, kind: str, reason: str
) -> None:
    now = int(time.time())
    metadata = {
        "missing": (),
        "malformed": node.auth("not-a-jwt"),
        "expired": node.auth(node.forge(iat=now - 7200, exp=now - 3600)),
        "wrong_audience": node.auth(node.forge(aud="someone-else")),
        "alg_none": node.auth(node.forge(alg="none")),
    }[kind]
    error = rpc_error(stub.WhoAmI, pb.WhoAmIRequest(), metadata=metadata, timeout=5)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    details = rich_details(error)
    assert (details.domain, details.reason) == ("zhida", reason)
    assert "Traceback" not in (error.details() or "")


def test_wrong_role_is_permission_denied(node: NodeHandle, stub: pb_grpc.NodeServiceStub) -> None:
    error = rpc_error(
        stub.GetNodeInfo, pb.GetNodeInfoRequest(), metadata=node.auth(role="holder"), timeout=5
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    details = rich_details(error)
    assert details.reason == "ROLE_NOT_ALLOWED"
    assert details.metadata["role"] == "holder"


def test_node_info_of_the_embedded_default(node: NodeHandle, stub: pb_grpc.NodeServiceStub) -> None:
    info = stub.GetNodeInfo(pb.GetNodeInfoRequest(), metadata=node.auth(role="admin"), timeout=10)
    assert info.node_name == node.config.node.name
    assert info.region_code == node.config.node.region_code
    assert info.level == pb.LEVEL_COUNTY
    assert (info.database_dialect, info.blobstore_backend) == ("sqlite", "filesystem")
    assert info.schema_revision
    assert info.version


def test_trace_id_is_returned_and_on_every_log_line_of_the_call(
    node: NodeHandle, stub: pb_grpc.NodeServiceStub
) -> None:
    trace_id = f"it-{uuid.uuid4()}"
    token = node.mint(role="admin")
    metadata = (*node.auth(token), ("x-trace-id", trace_id))
    reply, call = stub.WhoAmI.with_call(pb.WhoAmIRequest(), metadata=metadata, timeout=5)
    assert reply.trace_id == trace_id
    assert trailer(call, "x-trace-id") == trace_id
    error = rpc_error(
        stub.Echo, pb.EchoRequest(), metadata=(("x-trace-id", trace_id + "-x"),), timeout=5
    )
    assert trailer(error, "x-trace-id") == trace_id + "-x"

    def mine(records: list[dict[str, object]]) -> list[dict[str, object]]:
        return [r for r in records if r.get("trace_id") == trace_id]

    records = node.wait_for_records(lambda rs: any(r["logger"] == "zhida.access" for r in mine(rs)))
    lines = mine(records)
    access = [r for r in lines if r["logger"] == "zhida.access"]
    assert len(access) == 1
    line = access[0]
    assert line["method"] == "/zhida.node.v1.NodeService/WhoAmI"
    assert (line["code"], line["role"]) == ("OK", "admin")
    assert line["org"] == reply.organisation
    assert isinstance(line["duration_ms"], float)
    assert {"ts", "level", "msg", "node", "pid"} <= line.keys()
    assert token not in node.log_path.read_text(encoding="utf-8")


def test_an_invalid_trace_id_is_replaced(node: NodeHandle, stub: pb_grpc.NodeServiceStub) -> None:
    for bad in ("has space", "x" * 65, "semi;colon", ""):
        metadata = (*node.auth(), ("x-trace-id", bad))
        reply, call = stub.WhoAmI.with_call(pb.WhoAmIRequest(), metadata=metadata, timeout=5)
        assert reply.trace_id != bad
        assert len(reply.trace_id) == 16
        assert trailer(call, "x-trace-id") == reply.trace_id


def test_unknown_method_is_unimplemented(node: NodeHandle) -> None:
    call = node.channel().unary_unary(
        "/zhida.node.v1.NodeService/Nope", request_serializer=None, response_deserializer=None
    )
    error = rpc_error(call, b"", metadata=node.auth(), timeout=5)
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED


def test_metrics_count_calls_and_latency_per_method(
    node: NodeHandle, stub: pb_grpc.NodeServiceStub
) -> None:
    method = "/zhida.node.v1.NodeService/Echo"
    before = scrape(node.metrics_address)
    ok_key = ("zhida_rpc_calls_total", (("code", "OK"), ("method", method)))
    denied_key = ("zhida_rpc_calls_total", (("code", "UNAUTHENTICATED"), ("method", method)))
    count_key = ("zhida_rpc_duration_seconds_count", (("method", method),))
    metadata = node.auth()
    for _ in range(7):
        stub.Echo(pb.EchoRequest(payload=b"m"), metadata=metadata, timeout=5)
    rpc_error(stub.Echo, pb.EchoRequest(), timeout=5)

    after = scrape(node.metrics_address)
    assert after[ok_key] - before.get(ok_key, 0.0) == 7
    assert after[denied_key] - before.get(denied_key, 0.0) == 1
    assert after[count_key] - before.get(count_key, 0.0) == 8
    inf_bucket = ("zhida_rpc_duration_seconds_bucket", (("le", "+Inf"), ("method", method)))
    assert after[inf_bucket] == after[count_key]
    assert after[("zhida_rpc_in_flight", (("method", method),))] == 0
