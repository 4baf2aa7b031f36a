"""The floor of a hop: a bare grpc.aio server that relays DataProviderService calls.

No interceptor, no auth, no parsing: each ``QueryRecords`` request's bytes go
to the provider unchanged over one grpc.aio channel and the provider's
response bytes come back unchanged. Whatever a node adds on top of a Python
gRPC hop (authentication, grant, catalogue, minimisation, audit) is measured
against this in :mod:`bench.exchange`.

Usage: ``python -m bench.bare_relay LISTEN PROVIDER`` (both ``host:port``).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import grpc

METHOD = "/zhida.provider.v1.DataProviderService/QueryRecords"


def _identity(data: bytes) -> bytes:
    return data


async def serve(listen: str, provider: str) -> None:
    channel = grpc.aio.insecure_channel(provider)
    upstream = channel.unary_unary(
        METHOD, request_serializer=_identity, response_deserializer=_identity
    )

    async def relay(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        metadata = tuple(context.invocation_metadata() or ())
        answer: bytes = await upstream(request, metadata=metadata, timeout=10)
        return answer

    handler = grpc.method_handlers_generic_handler(
        "zhida.provider.v1.DataProviderService",
        {
            "QueryRecords": grpc.unary_unary_rpc_method_handler(
                relay, request_deserializer=_identity, response_serializer=_identity
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(listen)
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
