"""Turn zhida errors into rich gRPC statuses (``google.rpc.Status`` with details).

Every non-OK status the node sends carries, in the ``grpc-status-details-bin``
trailer, a ``google.rpc.Status`` whose details hold an ``ErrorInfo`` (domain
``zhida``, the error's ``reason`` and ``metadata``) and, when the error lists
field violations, a ``BadRequest``. An exception that is not a
:class:`~zhida.errors.ZhidaError` becomes ``INTERNAL "internal error (trace
<id>)"``: the traceback is logged on the node, never sent to the client.

Example::

    from grpc_status import rpc_status
    from zhida.errors import NotFound
    from zhida.server.status import status_for

    status = status_for(NotFound("no such licence", reason="LICENCE_NOT_FOUND"))
    assert status.code.name == "NOT_FOUND"
    # on the client: zhida.client.error_details(rpc_error) decodes it
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from zhida.errors import ERROR_DOMAIN, FieldViolation, ZhidaError

log = logging.getLogger("zhida.server.status")

INTERNAL_REASON = "INTERNAL"

_GRPC_CODES: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def grpc_code(number: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` with the given number (``UNKNOWN`` if none)."""
    return _GRPC_CODES.get(number, grpc.StatusCode.UNKNOWN)


def rich_status(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    *,
    metadata: Mapping[str, str] | None = None,
    violations: Iterable[FieldViolation] = (),
) -> grpc.Status:
    """A ``grpc.Status`` whose trailers carry ErrorInfo (and BadRequest) details."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)
    details = [_pack(info)]
    field_violations = [
        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
        for v in violations
    ]
    if field_violations:
        details.append(_pack(error_details_pb2.BadRequest(field_violations=field_violations)))
    proto = status_pb2.Status(code=code.value[0], message=message, details=details)
    status: grpc.Status = rpc_status.to_status(proto)
    return status


def status_for(error: ZhidaError) -> grpc.Status:
    """The rich status a deliberately raised zhida error stands for."""
    return rich_status(
        grpc_code(error.code.value),
        error.message,
        error.reason,
        metadata=error.metadata,
        violations=error.violations,
    )


def internal_status(trace_id: str) -> grpc.Status:
    """The status sent for an unexpected exception: no detail beyond the trace id."""
    return rich_status(
        grpc.StatusCode.INTERNAL,
        f"internal error (trace {trace_id})",
        INTERNAL_REASON,
        metadata={"trace_id": trace_id},
    )


def status_for_exception(error: BaseException, method: str, trace_id: str) -> grpc.Status:
    """Map any exception to a status; log unexpected ones (with traceback) server-side."""
    if isinstance(error, ZhidaError):
        return status_for(error)
    log.error(
        "unhandled %s in %s",
        type(error).__name__,
        method,
        exc_info=error,
        extra={"method": method},
    )
    return internal_status(trace_id)


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
