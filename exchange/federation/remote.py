"""What a neighbour's failure means to the node that called it (issue 8).

A Forward call to the next hop fails in one of two ways:

* the neighbour answered with a zhida rich status (its own refusal, or an
  error it passes back from further down, or the inner call's error at the
  serving node): :class:`RemoteStatus` keeps the ``google.rpc.Status`` bytes so
  the caller gets the same code and details (:func:`answer_remote`);
* the transport failed (nothing listening, TLS refused, connection lost, the
  budget ran out): UNAVAILABLE ``NEIGHBOUR_UNAVAILABLE`` or DEADLINE_EXCEEDED
  ``FORWARD_DEADLINE_EXCEEDED``, naming the neighbour's region.

Where a failure was decided travels with it: every node ends a failed
forwarded call with the ``x-zhida-path`` trailer (the path up to the node
that refused or served it, :func:`refuse`); :class:`RemoteStatus` keeps the
neighbour's (``path``) and each node passes it back unchanged, so the client
sees e.g. ``420102,420100,420000`` for a refusal at the province.

:func:`retryable` says which failures the origin may retry with the same
idempotency key: the neighbour (or one further down) unreachable, or an
earlier attempt still running at the serving node.

Example::

    try:
        reply = await stub.Forward(request, timeout=plan.timeout_seconds)
    except grpc.aio.AioRpcError as error:
        raise neighbour_error(error, plan.hop.region, plan.hop.address or "") from None
"""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import status_pb2

from zhida.client import decode_status
from zhida.errors import DeadlineExceeded, ErrorCode, Unavailable, ZhidaError
from zhida.server.status import status_for

__all__ = [
    "FORWARD_DEADLINE_EXCEEDED",
    "NEIGHBOUR_UNAVAILABLE",
    "RemoteStatus",
    "answer_remote",
    "neighbour_error",
    "refuse",
    "retryable",
]

NEIGHBOUR_UNAVAILABLE = "NEIGHBOUR_UNAVAILABLE"
FORWARD_DEADLINE_EXCEEDED = "FORWARD_DEADLINE_EXCEEDED"
IN_PROGRESS = "IDEMPOTENT_REQUEST_IN_PROGRESS"
DETAILS_KEY = "grpc-status-details-bin"
PATH_TRAILER = "x-zhida-path"
TRACE_HEADER = "x-trace-id"

_ERROR_CODES = {c.value: c for c in ErrorCode}


class RemoteStatus(ZhidaError):
    """A rich status a neighbour answered with; passed back unchanged."""

    def __init__(
        self, grpc_code: grpc.StatusCode, message: str, details: bytes, *, path: str = ""
    ) -> None:
        status = status_pb2.Status.FromString(details)
        decoded = decode_status(status)
        super().__init__(
            message, reason=decoded.reason or grpc_code.name, metadata=decoded.metadata
        )
        self.grpc_code = grpc_code
        self.code = _ERROR_CODES.get(grpc_code.value[0], ErrorCode.INTERNAL)
        self.details = details
        self.path = path  # where it was decided ("x-zhida-path"), if the neighbour said


def neighbour_error(error: grpc.aio.AioRpcError, region: str, address: str) -> ZhidaError:
    """The error a failed call to the neighbour of ``region`` at ``address`` stands for."""
    code = error.code()
    trailers: Any = error.trailing_metadata() or ()
    path = next((v for k, v in trailers if k == PATH_TRAILER and isinstance(v, str)), "")
    for key, value in trailers:
        if key == DETAILS_KEY and isinstance(value, bytes):
            try:
                return RemoteStatus(code, error.details() or code.name, value, path=path)
            except Exception:  # a status we cannot read: treat as a transport failure
                break
    meta = {"region": region, "address": address}
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(
            f"the node of region {region} did not answer within the deadline",
            reason=FORWARD_DEADLINE_EXCEEDED,
            metadata=meta,
        )
    if code is not grpc.StatusCode.UNAVAILABLE:
        meta["grpc_code"] = code.name
    return Unavailable(
        f"the neighbour node of region {region} ({address}) is unavailable: "
        f"{(error.details() or code.name)[:200]}",
        reason=NEIGHBOUR_UNAVAILABLE,
        metadata=meta,
    )


def retryable(error: ZhidaError) -> bool:
    """May the origin try again with a fresh assertion and the same idempotency key?"""
    if error.code is ErrorCode.UNAVAILABLE:
        return error.reason == NEIGHBOUR_UNAVAILABLE
    return error.code is ErrorCode.ABORTED and error.reason == IN_PROGRESS


async def answer_remote(context: Any, error: RemoteStatus, trace_id: str, path: str = "") -> None:
    """End the current call with ``error``'s status, details byte for byte (raises AbortError);
    the ``x-zhida-path`` trailer is ``error.path``, else ``path`` when given."""
    trailers: tuple[tuple[str, str | bytes], ...] = (
        (DETAILS_KEY, error.details),
        (TRACE_HEADER, trace_id),
    )
    if error.path or path:
        trailers += ((PATH_TRAILER, error.path or path),)
    await context.abort(error.grpc_code, error.message, trailers)


async def refuse(context: Any, error: ZhidaError, trace_id: str, path: str) -> None:
    """End the current call with ``error`` — as the interceptor would (its rich status) —
    plus the ``x-zhida-path`` trailer: ``error.path`` for a neighbour's status passed back,
    else ``path`` (this node decided). Raises AbortError."""
    if isinstance(error, RemoteStatus):
        await answer_remote(context, error, trace_id, path)
        return
    status = status_for(error)
    await context.abort(
        status.code,
        status.details,
        (*status.trailing_metadata, (TRACE_HEADER, trace_id), (PATH_TRAILER, path)),
    )
