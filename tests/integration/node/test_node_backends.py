"""A node on real PostgreSQL and SeaweedFS S3, including either one going away."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from tests.fixtures.node import NodeHandle
from tests.integration.node.helpers import rich_details, rpc_error
from zhida.node.v1 import node_service_pb2 as pb
from zhida.node.v1 import node_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stub(pg_s3_node: NodeHandle) -> pb_grpc.NodeServiceStub:
    return pb_grpc.NodeServiceStub(pg_s3_node.channel())


def _info(node: NodeHandle, stub: pb_grpc.NodeServiceStub) -> pb.GetNodeInfoResponse:
    reply: pb.GetNodeInfoResponse = stub.GetNodeInfo(
        pb.GetNodeInfoRequest(), metadata=node.auth(role="node"), timeout=30
    )
    return reply


def _assert_unavailable(
    node: NodeHandle, stub: pb_grpc.NodeServiceStub, reason: str, backend_word: str
) -> None:
    trace_id = f"down-{uuid.uuid4().hex[:12]}"
    metadata = (*node.auth(role="admin"), ("x-trace-id", trace_id))
    error = rpc_error(stub.GetNodeInfo, pb.GetNodeInfoRequest(), metadata=metadata, timeout=30)
    assert error.code() is grpc.StatusCode.UNAVAILABLE, error
    assert rich_details(error).reason == reason
    assert "Traceback" not in (error.details() or "")

    # The node logged why, tagged with the call's trace id, and keeps serving.
    def access_logged(records: list[dict[str, Any]]) -> bool:
        return any(r["logger"] == "zhida.access" and r.get("trace_id") == trace_id for r in records)

    records = node.wait_for_records(access_logged)
    lines = [r for r in records if r.get("trace_id") == trace_id]
    assert any(r["level"] == "warning" and backend_word in r["msg"] for r in lines), lines
    assert [r["code"] for r in lines if r["logger"] == "zhida.access"] == ["UNAVAILABLE"]
    echo = stub.Echo(pb.EchoRequest(payload=b"still here"), metadata=node.auth(), timeout=5)
    assert echo.payload == b"still here"
    assert node.process.poll() is None


def test_node_info_reports_postgresql_s3_and_the_schema_revision(
    pg_s3_node: NodeHandle, stub: pb_grpc.NodeServiceStub
) -> None:
    info = _info(pg_s3_node, stub)
    assert info.database_dialect == "postgresql"
    assert info.blobstore_backend == "s3"
    assert info.schema_revision.isdigit()


def test_database_down_is_unavailable_and_the_node_recovers(
    pg_s3_node: NodeHandle, stub: pb_grpc.NodeServiceStub
) -> None:
    proxy = pg_s3_node.proxies["database"]
    proxy.down()
    try:
        _assert_unavailable(pg_s3_node, stub, "DATABASE_UNAVAILABLE", "database")
    finally:
        proxy.up()
    assert _info(pg_s3_node, stub).database_dialect == "postgresql"


def test_blob_store_down_is_unavailable_and_the_node_recovers(
    pg_s3_node: NodeHandle, stub: pb_grpc.NodeServiceStub
) -> None:
    proxy = pg_s3_node.proxies["blobstore"]
    proxy.down()
    try:
        _assert_unavailable(pg_s3_node, stub, "BLOBSTORE_UNAVAILABLE", "blob store")
    finally:
        proxy.up()
    assert _info(pg_s3_node, stub).blobstore_backend == "s3"
