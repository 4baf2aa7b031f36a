"""``zhida.exchange.v1.ExchangeService``: share requests, grants and data delivery over gRPC.

The servicer is assembled from two handler classes that share one
:class:`~exchange.context.ExchangeContext` (catalogue view, repository, grant
index, request book, clock):

* :class:`exchange.service_requests.RequestHandlers` — apply, decide,
  withdraw, list, grants and their revocation.
* :class:`exchange.service_delivery.DeliveryHandlers` — RequestData,
  StreamDataset, subscriptions, hosted uploads, delivery records.

Example::

    import grpc
    from zhida.exchange.v1 import exchange_service_pb2 as pb, exchange_service_pb2_grpc as rpc

    stub = rpc.ExchangeServiceStub(grpc.insecure_channel("127.0.0.1:50051"))
    md = [("authorization", f"Bearer {token}")]
    reply = stub.ApplyForData(pb.ApplyForDataRequest(resource_code="1-01-001-0001-000001",
                              items=["姓名"], purpose="…", legal_basis="…"), metadata=md)
"""

from __future__ import annotations

from exchange.context import ExchangeContext
from exchange.service_delivery import DeliveryHandlers
from exchange.service_requests import RequestHandlers
from zhida.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from zhida.server.runtime import NodeRuntime


class ExchangeService(RequestHandlers, DeliveryHandlers, pb_grpc.ExchangeServiceServicer):
    """See ``protos/zhida/exchange/v1/exchange_service.proto``."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.ctx = ExchangeContext.open(runtime)
        RequestHandlers.__init__(self, self.ctx)
        DeliveryHandlers.__init__(self, self.ctx)
