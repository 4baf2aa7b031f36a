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


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``token`` as an OAuth 2.0 bearer token."""
    return (("authorization", f"Bearer {token}"),)


@dataclass(frozen=True)
class ErrorDetails:
    code: str
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        text = (
            f"{self.code} {self.reason}: {self.message}"
            if self.reason
            else (f"{self.code}: {self.message}")
        )
        for path, description in self.violations:
            text += f"\n  {path}: {description}"
        return text


def error_details(err: grpc.RpcError) -> ErrorDetails:
    """Decode a failed call's google.rpc.Status details (ErrorInfo, BadRequest).

    Works for sync calls (``grpc.Call``) and ``grpc.aio.AioRpcError`` alike.
    """
    code_fn = getattr(err, "code", None)
    code = code_fn().name if code_fn is not None else "UNKNOWN"
    details_fn = getattr(err, "details", None)
    message = (details_fn() or "") if details_fn is not None else str(err)
    reason, domain, meta = "", "", {}
    violations: list[tuple[str, str]] = []
    trailing = getattr(err, "trailing_metadata", None)
    for key, value in (trailing() if trailing is not None else None) or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, domain, meta = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [(v.field, v.description) for v in bad.field_violations]
    return ErrorDetails(code, message, reason, domain, meta, tuple(violations))


def list_services(channel: grpc.Channel) -> list[str]:
    """Names of the services a node offers, asked through server reflection."""
    database = ProtoReflectionDescriptorDatabase(channel)
    return sorted(database.get_services())
