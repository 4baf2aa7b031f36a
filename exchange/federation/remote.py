"""What a neighbour's failure means to the node that called it (issue 8).

A Forward call to the next hop fails in one of two ways:

* the neighbour answered with a zhida rich status (its own refusal, or an
  error it passes back from further down, or the inner call's error at the
  serving node): :class:`RemoteStatus` keeps the ``google.rpc.Status`` bytes so
  the caller gets the same code and details (:func:`answer_remote`);
* the transport failed (nothing listening, TLS refused, connection lost, the
  budget ran out): UNAVAILABLE ``NEIGHBOUR_UNAVAILABLE`` or DEADLINE_EXCEEDED
  ``FORWARD_DEADLINE_EXCEEDED``, naming the neighbour's region.

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

__all__ = [
    "FORWARD_DEADLINE_EXCEEDED",
    "NEIGHBOUR_UNAVAILABLE",
    "RemoteStatus",
    "answer_remote",
    "neighbour_error",
    "retryable",
]

NEIGHBOUR_UNAVAILABLE = "NEIGHBOUR_UNAVAILABLE"
FORWARD_DEADLINE_EXCEEDED = "FORWARD_DEADLINE_EXCEEDED"
IN_PROGRESS = "IDEMPOTENT_REQUEST_IN_PROGRESS"
DETAILS_KEY = "grpc-status-details-bin"

_ERROR_CODES = {c.value: c for c in ErrorCode}


class RemoteStatus(ZhidaError):
    """A rich status a neighbour answered with; passed back unchanged."""

    def __init__(self, grpc_code: grpc.StatusCode, message: str, details: bytes) -> None:
        status = status_pb2.Status.FromString(details)
        decoded = decode_status(status)
        super().__init__(
            message, reason=decoded.reason or grpc_code.name, metadata=decoded.metadata
        )
        self.grpc_code = grpc_code
        self.code = _ERROR_CODES.get(grpc_code.value[0], ErrorCode.INTERNAL)
        self.details = details


def neighbour_error(error: grpc.aio.AioRpcError, region: str, address: str) -> ZhidaError:
    """The error a failed call to the neighbour of ``region`` at ``address`` stands for."""
    code = error.code()
    trailers: Any = error.trailing_metadata() or ()
    for key, value in trailers:
        if key == DETAILS_KEY and isinstance(value, bytes):
            try:
                return RemoteStatus(code, error.details() or code.name, value)
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


async def answer_remote(context: Any, error: RemoteStatus, trace_id: str) -> None:
    """End the current call with ``error``'s status, details byte for byte (raises AbortError)."""
    await context.abort(
        error.grpc_code,
        error.message,
        ((DETAILS_KEY, error.details), ("x-trace-id", trace_id)),
    )
