"""Benchmark 1 (issue 2): authenticated zhida unary call versus a bare grpc.aio echo.

Same client, same 4 KiB payload, same run, one server process each. The zhida
side goes through the full node: interceptor (trace id, JWT check, policy,
metrics, access log) and the NodeService servicer. Rounds alternate between
the two servers and the median of each side is reported.

Target: zhida throughput >= 0.7 x bare throughput.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import grpc

from bench.load import LoadStats, median_stats, run_load
from bench.procs import bare_echo_server, zhida_node
from zhida.auth.mint import DEMO_ORGS, mint_token
from zhida.auth.principal import Role
from zhida.config import load_config
from zhida.node.v1 import node_service_pb2 as pb
from zhida.node.v1 import node_service_pb2_grpc as pb_grpc

PAYLOAD_BYTES = 4096
CONCURRENCY = 16
SECONDS = float(os.environ.get("ZHIDA_BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("ZHIDA_BENCH_ROUNDS", "3"))
TARGET = 0.7


async def _measure(address: str, token: str) -> LoadStats:
    request = pb.EchoRequest(payload=os.urandom(PAYLOAD_BYTES))
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.NodeServiceStub(channel)

        async def call() -> None:
            reply = await stub.Echo(request, metadata=metadata, timeout=10)
            if len(reply.payload) != PAYLOAD_BYTES:
                raise RuntimeError("echo returned the wrong payload")

        return await run_load(call, concurrency=CONCURRENCY, seconds=SECONDS)


def run() -> dict[str, Any]:
    bare_runs: list[LoadStats] = []
    zhida_runs: list[LoadStats] = []
    with bare_echo_server() as bare_addr, zhida_node() as (node_addr, env):
        config = load_config(None, env=env)
        token = mint_token(
            config,
            role=Role.DEPARTMENT,
            organisation=next(iter(DEMO_ORGS.values())),
            region_code=config.node.region_code,
            subject="bench",
            ttl_seconds=3600,
        )
        for _ in range(ROUNDS):
            bare_runs.append(asyncio.run(_measure(bare_addr, token)))
            zhida_runs.append(asyncio.run(_measure(node_addr, token)))
    bare, zhida = median_stats(bare_runs), median_stats(zhida_runs)
    ratio = round(zhida["throughput"] / bare["throughput"], 3)
    return {
        "name": "node_echo",
        "figure": (
            f"zhida {zhida['throughput']:.0f}/s (p50 {zhida['p50_ms']} ms, p99 "
            f"{zhida['p99_ms']} ms) vs bare {bare['throughput']:.0f}/s "
            f"(p50 {bare['p50_ms']} ms, p99 {bare['p99_ms']} ms): ratio {ratio}"
        ),
        "target": f"ratio >= {TARGET}",
        "description": (
            "authenticated NodeService.Echo through the zhida node vs bare grpc.aio echo"
        ),
        "payload_bytes": PAYLOAD_BYTES,
        "concurrency": CONCURRENCY,
        "seconds_per_round": SECONDS,
        "rounds": ROUNDS,
        "bare": bare,
        "zhida": zhida,
        "ratio": ratio,
        "target_ratio": TARGET,
        "met": ratio >= TARGET,
        "errors": sum(r.errors for r in bare_runs + zhida_runs),
        "runs": {
            "bare": [r.as_dict() for r in bare_runs],
            "zhida": [r.as_dict() for r in zhida_runs],
        },
    }
