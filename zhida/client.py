"""Client-side helpers: bearer metadata, decoding zhida's rich errors, reflection.

Example::

    import grpc
    from zhida.client import bearer, error_details, list_services
    from zhida.node.v1 import node_service_pb2 as pb, node_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel("127.0.0.1:50051") as ch:
        print(list_services(ch))
        try:
            pb_grpc.NodeServiceStub(ch).WhoAmI(pb.WhoAmIRequest(), metadata=bearer(token))
        except grpc.RpcError as err:
            print(error_details(err))  # UNAUTHENTICATED TOKEN_EXPIRED: ...
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from zhida.errors import FieldViolation

_DETAILS_KEY = "grpc-status-details-bin"
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``token`` as an OAuth 2.0 bearer token."""
    return (("authorization", f"Bearer {token}"),)


@dataclass(frozen=True)
class ErrorDetails:
    """What a rich status says, decoded: the code, ErrorInfo and any field violations."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: tuple[FieldViolation, ...] = ()

    def __str__(self) -> str:
        head = f"{self.code.name} {self.reason}" if self.reason else self.code.name
        text = f"{head}: {self.message}"
        for v in self.violations:
            text += f"\n  {v.field}: {v.description}"
        return text


def decode_status(status: status_pb2.Status) -> ErrorDetails:
    """Decode a ``google.rpc.Status`` into :class:`ErrorDetails`."""
    reason, domain, metadata = "", "", {}
    violations: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return ErrorDetails(
        _CODES.get(status.code, grpc.StatusCode.UNKNOWN),
        status.message,
        reason,
        domain,
        metadata,
        tuple(violations),
    )


def error_details(err: grpc.RpcError) -> ErrorDetails:
    """Decode a failed call's status and its details (ErrorInfo, BadRequest).

    Works for sync calls (``grpc.Call``) and ``grpc.aio.AioRpcError`` alike; a
    status without details still yields its code and message.
    """
    code_fn = getattr(err, "code", None)
    code: grpc.StatusCode = code_fn() if code_fn is not None else grpc.StatusCode.UNKNOWN
    details_fn = getattr(err, "details", None)
    message: str = (details_fn() or "") if details_fn is not None else str(err)
    trailing_fn = getattr(err, "trailing_metadata", None)
    for key, value in (trailing_fn() if trailing_fn is not None else None) or ():
        if key == _DETAILS_KEY:
            return decode_status(status_pb2.Status.FromString(value))
    return ErrorDetails(code, message)


def list_services(channel: grpc.Channel) -> list[str]:
    """Names of the services a node offers, asked through server reflection."""
    database = ProtoReflectionDescriptorDatabase(channel)
    return sorted(database.get_services())
