"""The interceptor's cost: an authenticated Echo vs. a bare grpc.aio echo server.

Both servers are real processes answering the same client load (a separate
process with 32 calls in flight, bounded in time). Throughput on a shared
2-core machine is noisy, so the test compares server CPU time per call (what
bounds throughput once the server is the bottleneck), taking the best of a few
alternating rounds for each. The node must need at most 1/0.7 of the bare
server's CPU per call, i.e. reach >= 0.7x its throughput.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.fixtures.node import NodeFactory

pytestmark = pytest.mark.integration

ROUNDS = 3
SECONDS = 1.0
CONCURRENCY = 32
MIN_RATIO = 0.7

BARE_SERVER = textwrap.dedent(
    """
    import asyncio, grpc
    from zhida.node.v1 import node_service_pb2 as pb, node_service_pb2_grpc as rpc

    class Echo(rpc.NodeServiceServicer):
        async def Echo(self, request, context):
            return pb.EchoResponse(payload=request.payload)

    async def main():
        server = grpc.aio.server()
        rpc.add_NodeServiceServicer_to_server(Echo(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        await server.wait_for_termination()

    asyncio.run(main())
    """
)

CLIENT = textwrap.dedent(
    """
    import asyncio, sys, time, grpc
    from zhida.node.v1 import node_service_pb2 as pb, node_service_pb2_grpc as rpc

    address, token, seconds, concurrency = sys.argv[1:5]
    metadata = (("authorization", "Bearer " + token),) if token != "-" else None

    async def main():
        async with grpc.aio.insecure_channel(address) as channel:
            stub = rpc.NodeServiceStub(channel)
            request = pb.EchoRequest(payload=b"x" * 64)
            for _ in range(100):
                await stub.Echo(request, metadata=metadata)
            count = 0
            stop = time.monotonic() + float(seconds)

            async def loop():
                nonlocal count
                while time.monotonic() < stop:
                    await stub.Echo(request, metadata=metadata)
                    count += 1

            await asyncio.gather(*(loop() for _ in range(int(concurrency))))
            print(count)

    asyncio.run(main())
    """
)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_per_call(pid: int, address: str, token: str) -> float:
    before = _cpu_seconds(pid)
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, address, token, str(SECONDS), str(CONCURRENCY)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    calls = int(result.stdout.strip())
    assert calls > 100
    return (_cpu_seconds(pid) - before) / calls


def test_authenticated_echo_costs_at_most_1_over_0_7_of_a_bare_echo(
    node_factory: NodeFactory,
) -> None:
    node = node_factory.start(
        {"ZHIDA_LOG__LEVEL": os.environ.get("TP_LEVEL", "info")}, name="throughput"
    )
    token = node.mint()
    bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert bare.stdout is not None
        bare_address = f"127.0.0.1:{bare.stdout.readline().strip()}"
        bare_costs, node_costs = [], []
        for _ in range(ROUNDS):
            bare_costs.append(_cpu_per_call(bare.pid, bare_address, "-"))
            node_costs.append(_cpu_per_call(node.pid, node.address, token))
            time.sleep(0.1)
    finally:
        bare.terminate()
        bare.wait(10)
    ratio = min(bare_costs) / min(node_costs)
    print(f"server CPU per call: bare {min(bare_costs) * 1e6:.0f} us, "
          f"node {min(node_costs) * 1e6:.0f} us, efficiency ratio {ratio:.2f}")  # fmt: skip
    assert ratio >= MIN_RATIO, (bare_costs, node_costs)
