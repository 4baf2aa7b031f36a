"""The baseline: a bare grpc.aio server answering NodeService.Echo, nothing else.

No interceptor, no auth, no metrics, no logging — what zhida's node is measured against.

Usage: ``python -m bench.bare_echo_server 127.0.0.1:PORT [CERT KEY CA]`` — with the
three files, mutual TLS the way a node's federation port does it (client
certificate required, trusted only from ``CA``).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import grpc

from zhida.node.v1 import node_service_pb2 as pb
from zhida.node.v1 import node_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class BareEcho(pb_grpc.NodeServiceServicer):
    async def Echo(self, request: pb.EchoRequest, context: Context) -> pb.EchoResponse:
        return pb.EchoResponse(payload=request.payload)

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: Context) -> pb.WhoAmIResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "bare echo server")

    async def GetNodeInfo(
        self, request: pb.GetNodeInfoRequest, context: Context
    ) -> pb.GetNodeInfoResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "bare echo server")


async def serve(address: str, tls: list[str]) -> None:
    server = grpc.aio.server()
    pb_grpc.add_NodeServiceServicer_to_server(BareEcho(), server)
    if tls:
        cert, key, ca = (Path(p).read_bytes() for p in tls)
        credentials = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=True
        )
        server.add_secure_port(address, credentials)
    else:
        server.add_insecure_port(address)
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2:5]))
