"""``zhida.node.v1.NodeService``: Echo, WhoAmI and GetNodeInfo.

The interceptor has already authenticated and authorised the caller; handlers
read the caller from :func:`zhida.server.context.current_principal` and raise
zhida errors, which reach the client as rich statuses.

GetNodeInfo checks both backends (concurrently, each bounded by
:data:`CHECK_TIMEOUT_SECONDS`) and answers UNAVAILABLE with reason
``DATABASE_UNAVAILABLE`` or ``BLOBSTORE_UNAVAILABLE`` when one is down; the
node itself keeps serving.

Example::

    import grpc
    from zhida.node.v1 import node_service_pb2 as pb, node_service_pb2_grpc as rpc

    stub = rpc.NodeServiceStub(grpc.insecure_channel("127.0.0.1:50051"))
    md = [("authorization", f"Bearer {token}")]
    info = stub.GetNodeInfo(pb.GetNodeInfoRequest(), metadata=md)
    print(info.database_dialect, info.schema_revision, info.blobstore_backend)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from zhida import __version__
from zhida.blobstore import REASON_UNAVAILABLE as BLOBSTORE_UNAVAILABLE
from zhida.db.engine import UNAVAILABLE_REASON as DATABASE_UNAVAILABLE
from zhida.errors import Unavailable, ZhidaError
from zhida.node.v1 import node_service_pb2 as pb
from zhida.node.v1 import node_service_pb2_grpc as pb_grpc
from zhida.server.context import current_principal, current_trace_id
from zhida.server.runtime import NodeRuntime

CHECK_TIMEOUT_SECONDS = 8.0

T = TypeVar("T")

log = logging.getLogger("zhida.server.node")


class NodeService(pb_grpc.NodeServiceServicer):
    """Describes the node; see ``protos/zhida/node/v1/node_service.proto``."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self._runtime = runtime
        node = runtime.config.node
        self._static = pb.GetNodeInfoResponse(
            node_name=node.name,
            region_code=node.region_code,
            level=pb.Level.ValueType(int(node.level)),
            version=__version__,
            database_dialect=runtime.database.dialect,
            blobstore_backend=runtime.blobstore.backend,
        )

    async def Echo(self, request: pb.EchoRequest, context: Any) -> pb.EchoResponse:
        return pb.EchoResponse(payload=request.payload)

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: Any) -> pb.WhoAmIResponse:
        principal = current_principal()
        return pb.WhoAmIResponse(
            subject=principal.subject,
            role=pb.Role.ValueType(principal.role.proto_number),
            organisation=principal.organisation,
            region_code=principal.region_code,
            expires_at=principal.expires_at,
            trace_id=current_trace_id(),
        )

    async def GetNodeInfo(
        self, request: pb.GetNodeInfoRequest, context: Any
    ) -> pb.GetNodeInfoResponse:
        runtime = self._runtime
        db_result, blob_result = await asyncio.gather(
            self._checked(runtime.database.check, DATABASE_UNAVAILABLE, "database"),
            self._checked(runtime.blobstore.check, BLOBSTORE_UNAVAILABLE, "blob store"),
            return_exceptions=True,
        )
        for result in (db_result, blob_result):  # the database's failure is reported first
            if isinstance(result, BaseException):
                raise result
        response = pb.GetNodeInfoResponse()
        response.CopyFrom(self._static)
        if isinstance(db_result, str):
            response.schema_revision = db_result
        return response

    async def _checked(self, check: Callable[[], T], reason: str, what: str) -> T:
        """Run a blocking backend check; a hung backend is Unavailable, not a hung call."""
        try:
            return await asyncio.wait_for(
                self._runtime.run_blocking(check), timeout=CHECK_TIMEOUT_SECONDS
            )
        except TimeoutError:
            error = Unavailable(
                f"{what} did not answer within {CHECK_TIMEOUT_SECONDS:g} s", reason=reason
            )
            log.warning("%s", error.message, extra={"reason": reason})
            raise error from None
        except ZhidaError as error:
            log.warning("%s check failed: %s", what, error.message, extra={"reason": error.reason})
            raise
