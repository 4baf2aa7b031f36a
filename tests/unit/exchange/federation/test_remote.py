"""A neighbour's failure as the calling node sees it; which failures the origin retries."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from exchange.federation.remote import (
    FORWARD_DEADLINE_EXCEEDED,
    NEIGHBOUR_UNAVAILABLE,
    RemoteStatus,
    neighbour_error,
    refuse,
    retryable,
)
from zhida.client import decode_status
from zhida.errors import (
    Aborted,
    DeadlineExceeded,
    ErrorCode,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
    ZhidaError,
)
from zhida.server.status import status_for


def _error(code: grpc.StatusCode, details: str, trailers: Metadata | None = None) -> AioRpcError:
    return AioRpcError(code, Metadata(), trailers or Metadata(), details, None)


def test_a_rich_status_comes_back_byte_for_byte() -> None:
    original = InvalidArgument(
        "bad items", reason="INVALID_SHARE_REQUEST", violations=[FieldViolation("items[1]", "x")]
    )
    status = status_for(original)
    raw = dict(status.trailing_metadata)["grpc-status-details-bin"]
    error = neighbour_error(
        _error(status.code, status.details, Metadata(("grpc-status-details-bin", raw))),
        "420000",
        "127.0.0.1:1",
    )
    assert isinstance(error, RemoteStatus)
    assert (error.code, error.reason, error.grpc_code) == (
        ErrorCode.INVALID_ARGUMENT, "INVALID_SHARE_REQUEST", grpc.StatusCode.INVALID_ARGUMENT,
    )  # fmt: skip
    assert error.details == raw
    from google.rpc import status_pb2

    assert decode_status(status_pb2.Status.FromString(error.details)).violations == (
        FieldViolation("items[1]", "x"),
    )
    assert not retryable(error)


def test_transport_failures_name_the_neighbour() -> None:
    down = neighbour_error(
        _error(grpc.StatusCode.UNAVAILABLE, "connection refused"), "420100", "127.0.0.1:9"
    )
    assert isinstance(down, Unavailable)
    assert down.reason == NEIGHBOUR_UNAVAILABLE
    assert down.metadata == {"region": "420100", "address": "127.0.0.1:9"}
    assert retryable(down)
    late = neighbour_error(_error(grpc.StatusCode.DEADLINE_EXCEEDED, "late"), "420100", "a:1")
    assert isinstance(late, DeadlineExceeded)
    assert late.reason == FORWARD_DEADLINE_EXCEEDED
    assert not retryable(late)
    odd = neighbour_error(_error(grpc.StatusCode.UNIMPLEMENTED, "no such service"), "420100", "a:1")
    assert odd.reason == NEIGHBOUR_UNAVAILABLE
    assert odd.metadata["grpc_code"] == "UNIMPLEMENTED"


def test_retryable() -> None:
    assert retryable(Aborted("busy", reason="IDEMPOTENT_REQUEST_IN_PROGRESS"))
    assert not retryable(Aborted("other"))
    assert not retryable(Unavailable("db down", reason="DATABASE_UNAVAILABLE"))


class _Context:
    """Records what a handler ends its call with (``abort`` raises, as gRPC's does)."""

    def __init__(self) -> None:
        self.ended: tuple[grpc.StatusCode, str, dict[str, object]] | None = None

    async def abort(self, code: grpc.StatusCode, details: str, trailers: object) -> None:
        self.ended = (code, details, dict(trailers))  # type: ignore[call-overload]
        raise RuntimeError("aborted")


def _end(error: ZhidaError, path: str) -> tuple[grpc.StatusCode, str, dict[str, object]]:
    context = _Context()
    with pytest.raises(RuntimeError, match="aborted"):
        asyncio.run(refuse(context, error, "trace-1", path))
    assert context.ended is not None
    return context.ended


def test_an_error_names_where_it_was_decided() -> None:
    # the refusing node: its own status, as the interceptor would send it, plus the path
    refused = PermissionDenied("not for you", reason="NOT_GRANTED")
    code, details, trailers = _end(refused, "420102,420100,420000")
    expected = status_for(refused)
    assert (code, details) == (expected.code, expected.details)
    assert (
        trailers["grpc-status-details-bin"]
        == dict(expected.trailing_metadata)["grpc-status-details-bin"]
    )
    assert trailers["x-zhida-path"] == "420102,420100,420000"
    assert trailers["x-trace-id"] == "trace-1"
    # every node on the way back: the neighbour's status and path, unchanged
    raw = dict(expected.trailing_metadata)["grpc-status-details-bin"]
    back = neighbour_error(
        _error(
            expected.code,
            expected.details,
            Metadata(("grpc-status-details-bin", raw), ("x-zhida-path", "420102,420100,420000")),
        ),
        "420100",
        "127.0.0.1:1",
    )
    assert isinstance(back, RemoteStatus)
    assert back.path == "420102,420100,420000"
    code, _, trailers = _end(back, "420102")
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert trailers["grpc-status-details-bin"] == raw
    assert trailers["x-zhida-path"] == "420102,420100,420000"
    # a neighbour that did not say (an older node): this node's path
    silent = neighbour_error(
        _error(expected.code, expected.details, Metadata(("grpc-status-details-bin", raw))),
        "420100",
        "127.0.0.1:1",
    )
    assert _end(silent, "420102")[2]["x-zhida-path"] == "420102"
    # the origin could not reach its neighbour: decided at the origin
    down = neighbour_error(_error(grpc.StatusCode.UNAVAILABLE, "refused"), "420100", "a:1")
    assert _end(down, "420102")[2]["x-zhida-path"] == "420102"
