"""``zhida.federation.v1.FederationService``: calls passed between federation nodes (issue 8).

A thin servicer: ``Forward`` (unary) and ``ForwardStream`` (server-streaming:
StreamDataset, ReceiveChanges, relayed message by message) hand the envelope to the node's
:class:`exchange.federation.forwarder.Federation`, which verifies the peer
(its client certificate), the chain of custody, the route and the deadline,
then passes the call on or serves it in-process. The policy table admits
role ``node`` only, and :meth:`Federation.handle` refuses a call that did not
come over the mutual-TLS port (``NODE_CERT_REQUIRED``) — a bearer token with
role ``node`` is not a node. A node without ``[federation]`` settings answers
FAILED_PRECONDITION ``FEDERATION_DISABLED``.

Example::

    stub = FederationServiceStub(open_neighbour_channel(config, "127.0.0.1:50052"))
    reply = await stub.Forward(ForwardRequest(method=..., request=..., custody=...,
                                              target_region="420000", idempotency_key="k1"))
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from exchange.federation.forwarder import federation_for
from zhida.errors import FailedPrecondition
from zhida.federation.v1 import federation_service_pb2 as pb
from zhida.federation.v1 import federation_service_pb2_grpc as pb_grpc
from zhida.server.runtime import NodeRuntime


class FederationService(pb_grpc.FederationServiceServicer):
    """See ``protos/zhida/federation/v1/federation_service.proto``."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime

    async def Forward(self, request: pb.ForwardRequest, context: Any) -> pb.ForwardResponse:
        federation = federation_for(self.runtime)
        if federation is None:
            raise FailedPrecondition(
                "this node takes no part in a federation", reason="FEDERATION_DISABLED"
            )
        return await federation.handle(request, context)

    async def ForwardStream(
        self, request: pb.ForwardStreamRequest, context: Any
    ) -> AsyncIterator[pb.ForwardStreamResponse]:
        federation = federation_for(self.runtime)
        if federation is None:
            raise FailedPrecondition(
                "this node takes no part in a federation", reason="FEDERATION_DISABLED"
            )
        async for response in federation.handle_stream(request, context):
            yield response
