"""In-process dispatch of a forwarded call to the local servicer's handler."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from exchange.federation.dispatch import LocalAbort, LocalContext, LocalHandlers
from zhida.auth.principal import Principal, Role
from zhida.errors import ErrorCode, FailedPrecondition, InvalidArgument, NotFound
from zhida.exchange.v1 import exchange_service_pb2 as xpb
from zhida.exchange.v1 import exchange_service_pb2_grpc as xpb_grpc
from zhida.node.v1 import node_service_pb2 as pb
from zhida.node.v1 import node_service_pb2_grpc as pb_grpc
from zhida.server.context import (
    PRINCIPAL,
    TRACE_ID,
    current_principal,
    current_trace_id,
    time_remaining,
)

CLERK = Principal("clerk-7", Role.DEPARTMENT, "11420102MB1A23456R", "420102", 2_000_000_000)
WHOAMI = "/zhida.node.v1.NodeService/WhoAmI"
ECHO = "/zhida.node.v1.NodeService/Echo"
INFO = "/zhida.node.v1.NodeService/GetNodeInfo"


class FakeNode(pb_grpc.NodeServiceServicer):
    async def WhoAmI(self, request: pb.WhoAmIRequest, context: Any) -> pb.WhoAmIResponse:
        left = time_remaining()
        assert left is not None
        assert 0 < left <= 5
        who = current_principal()
        return pb.WhoAmIResponse(
            subject=who.subject, organisation=who.organisation, trace_id=current_trace_id()
        )

    async def Echo(self, request: pb.EchoRequest, context: Any) -> pb.EchoResponse:
        if request.payload == b"abort":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        raise NotFound("nothing here", reason="NOTHING")

    def GetNodeInfo(self, request: pb.GetNodeInfoRequest, context: Any) -> pb.GetNodeInfoResponse:
        return pb.GetNodeInfoResponse(node_name="sync handler")


@pytest.fixture
def local() -> LocalHandlers:
    handlers = LocalHandlers()
    handlers.add(pb_grpc.add_NodeServiceServicer_to_server, FakeNode())
    return handlers


def _call(local: LocalHandlers, method: str, request: bytes) -> bytes:
    return asyncio.run(
        local.call(method, request, principal=CLERK, trace_id="t-1", deadline=time.monotonic() + 5)
    )


def test_the_handler_runs_as_the_asserted_caller(local: LocalHandlers) -> None:
    assert WHOAMI in local
    reply = pb.WhoAmIResponse.FromString(_call(local, WHOAMI, b""))
    assert (reply.subject, reply.organisation, reply.trace_id) == (
        "clerk-7", "11420102MB1A23456R", "t-1",
    )  # fmt: skip
    assert PRINCIPAL.get() is None  # the context is restored
    assert TRACE_ID.get() == ""
    info = pb.GetNodeInfoResponse.FromString(_call(local, INFO, b""))
    assert info.node_name == "sync handler"


def test_errors_of_the_handler_propagate(local: LocalHandlers) -> None:
    with pytest.raises(NotFound):
        _call(local, ECHO, pb.EchoRequest(payload=b"x").SerializeToString())
    with pytest.raises(LocalAbort) as aborted:
        _call(local, ECHO, pb.EchoRequest(payload=b"abort").SerializeToString())
    assert aborted.value.code is ErrorCode.NOT_FOUND
    assert aborted.value.message == "no such thing"


def test_unknown_methods_and_garbage_are_refused(local: LocalHandlers) -> None:
    with pytest.raises(FailedPrecondition) as unknown:
        _call(local, "/zhida.node.v1.NodeService/Nope", b"")
    assert unknown.value.reason == "METHOD_NOT_SERVED"
    with pytest.raises(InvalidArgument) as garbage:
        _call(local, ECHO, b"\xff\xff\xff")
    assert garbage.value.reason == "FORWARDED_REQUEST_INVALID"


def test_local_context() -> None:
    ctx = LocalContext(time.monotonic() + 2)
    remaining = ctx.time_remaining()
    assert remaining is not None
    assert 1 < remaining <= 2
    assert LocalContext(None).time_remaining() is None
    assert ctx.invocation_metadata() == ()
    assert ctx.auth_context() == {}
    ctx.set_code(grpc.StatusCode.OK)
    ctx.set_details("fine")
    ctx.set_trailing_metadata([("k", "v")])
    assert (ctx.code(), ctx.details(), ctx.trailing_metadata) == (
        grpc.StatusCode.OK, "fine", (("k", "v"),),
    )  # fmt: skip
    assert ctx.peer() == "in-process"
    assert not ctx.cancelled()


class FakeStreams(xpb_grpc.ExchangeServiceServicer):
    """A server-streaming handler that records what it saw and when it was closed."""

    def __init__(self) -> None:
        self.produced = 0
        self.closed = False

    async def StreamDataset(
        self, request: xpb.StreamDatasetRequest, context: Any
    ) -> AsyncIterator[xpb.StreamDatasetResponse]:
        assert current_principal() == CLERK
        assert current_trace_id() == "t-stream"
        if request.resource_code == "refuse":
            raise NotFound("no such dataset", reason="RESOURCE_NOT_FOUND")
        try:
            for n in range(request.batch_size):
                self.produced += 1
                yield xpb.StreamDatasetResponse(cursor=str(n))
        finally:
            self.closed = True


def test_a_stream_runs_in_process_one_message_at_a_time() -> None:
    servicer = FakeStreams()  # type: ignore[abstract]
    local = LocalHandlers()
    local.add(xpb_grpc.add_ExchangeServiceServicer_to_server, servicer)
    method = "/zhida.exchange.v1.ExchangeService/StreamDataset"

    async def scenario() -> list[str]:
        request = xpb.StreamDatasetRequest(resource_code="x", batch_size=5)
        stream = local.stream(
            method, request.SerializeToString(), principal=CLERK, trace_id="t-stream", deadline=None
        )
        seen = []
        async for data in stream:
            seen.append(xpb.StreamDatasetResponse.FromString(data).cursor)
            assert servicer.produced == len(seen)  # no read-ahead
            if len(seen) == 2:
                break
        await stream.aclose()  # the consumer went away: the handler's generator is closed
        return seen

    assert asyncio.run(scenario()) == ["0", "1"]
    assert servicer.closed

    async def refused() -> None:
        request = xpb.StreamDatasetRequest(resource_code="refuse")
        async for _ in local.stream(
            method, request.SerializeToString(), principal=CLERK, trace_id="t-stream", deadline=None
        ):
            pass

    with pytest.raises(NotFound):
        asyncio.run(refused())

    async def unary_as_stream() -> None:
        async for _ in local.stream(
            "/zhida.exchange.v1.ExchangeService/RequestData",
            b"",
            principal=CLERK,
            trace_id="t",
            deadline=None,
        ):
            pass

    with pytest.raises(FailedPrecondition):
        asyncio.run(unary_as_stream())
