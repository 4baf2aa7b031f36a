"""In-process dispatch of a forwarded call to the local servicer's handler."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from exchange.federation.dispatch import LocalAbort, LocalContext, LocalHandlers
from zhida.auth.principal import Principal, Role
from zhida.errors import ErrorCode, FailedPrecondition, InvalidArgument, NotFound
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
