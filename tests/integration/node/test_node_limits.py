"""The node's limits: concurrent calls and message size answer RESOURCE_EXHAUSTED."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.fixtures.node import NodeFactory, NodeHandle
from tests.integration.node.helpers import rpc_error
from zhida.node.v1 import node_service_pb2 as pb
from zhida.node.v1 import node_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

MAX_MESSAGE_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def limited(node_factory: NodeFactory) -> NodeHandle:
    return node_factory.start(
        {
            "ZHIDA_NODE__MAX_CONCURRENT_RPCS": "1",
            "ZHIDA_NODE__MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
        },
        name="limited",
    )


def test_a_call_beyond_max_concurrent_rpcs_is_resource_exhausted(limited: NodeHandle) -> None:
    channel = limited.channel()
    health = health_pb2_grpc.HealthStub(channel)
    stub = pb_grpc.NodeServiceStub(channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=30)
    try:
        # The first update proves the stream is being served: the one slot is taken.
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        error = rpc_error(stub.Echo, pb.EchoRequest(payload=b"x"), metadata=limited.auth())
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        error = rpc_error(health.Check, health_pb2.HealthCheckRequest(), timeout=5)
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        watch.cancel()
    # Once the stream ends its slot is free again (the server notices the cancel
    # asynchronously, hence a short bounded wait).
    deadline = time.monotonic() + 10
    while True:
        try:
            stub.Echo(pb.EchoRequest(payload=b"x"), metadata=limited.auth(), timeout=5)
            break
        except grpc.RpcError as exc:
            code = exc.code()
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() < deadline, "the slot was never released"
        time.sleep(0.05)


def test_a_message_over_max_message_bytes_is_resource_exhausted(limited: NodeHandle) -> None:
    stub = pb_grpc.NodeServiceStub(limited.channel())
    metadata = limited.auth()
    fits = b"a" * (MAX_MESSAGE_BYTES - 64)
    assert stub.Echo(pb.EchoRequest(payload=fits), metadata=metadata, timeout=5).payload == fits
    error = rpc_error(
        stub.Echo, pb.EchoRequest(payload=b"a" * (MAX_MESSAGE_BYTES + 1)), metadata=metadata,
        timeout=5,
    )  # fmt: skip
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    # The node is unharmed.
    assert stub.Echo(pb.EchoRequest(payload=b"ok"), metadata=metadata, timeout=5).payload == b"ok"
