"""Benchmark 1 (issue 2): authenticated zhida unary call versus a bare grpc.aio echo.

Same client, same 4 KiB payload, same run, one server process each. The zhida
side goes through the full node: interceptor (trace id, JWT check, policy,
metrics, access log) and the NodeService servicer. Short rounds alternate
between the two servers; the ratio is the median of the per-round ratios, so
a burst of other load hits both sides alike. The servers' CPU time per call
(from /proc) is reported too: it barely moves with load on the other core.

Target: zhida throughput >= 0.7 x bare throughput.
"""

from __future__ import annotations

import asyncio
import os
import statistics
from typing import Any

import grpc

from bench.load import LoadStats, median_stats, run_load
from bench.procs import Server, bare_echo_server, zhida_node
from zhida.auth.mint import DEMO_ORGS, mint_token
from zhida.auth.principal import Role
from zhida.config import load_config
from zhida.node.v1 import node_service_pb2 as pb
from zhida.node.v1 import node_service_pb2_grpc as pb_grpc

PAYLOAD_BYTES = 4096
CONCURRENCY = 16
SECONDS = float(os.environ.get("ZHIDA_BENCH_SECONDS", "1.5"))
ROUNDS = int(os.environ.get("ZHIDA_BENCH_ROUNDS", "8"))
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


def _round(server: Server, token: str) -> tuple[LoadStats, float]:
    """One measured round: the load's stats and the server's CPU microseconds per call."""
    cpu_before = server.cpu_seconds()
    stats = asyncio.run(_measure(server.address, token))
    cpu = server.cpu_seconds() - cpu_before
    return stats, round(cpu / max(1, stats.calls) * 1e6, 1)


def run() -> dict[str, Any]:
    bare_runs: list[LoadStats] = []
    zhida_runs: list[LoadStats] = []
    round_ratios: list[float] = []
    bare_cpu: list[float] = []
    zhida_cpu: list[float] = []
    with bare_echo_server() as bare_server, zhida_node() as node:
        config = load_config(None, env=node.env)
        token = mint_token(
            config,
            role=Role.DEPARTMENT,
            organisation=next(iter(DEMO_ORGS.values())),
            region_code=config.node.region_code,
            subject="bench",
            ttl_seconds=3600,
        )
        # Short rounds, alternating, so a burst of load elsewhere hits both sides alike.
        for _ in range(ROUNDS):
            bare, bare_us = _round(bare_server, token)
            zhida, zhida_us = _round(node, token)
            bare_runs.append(bare)
            zhida_runs.append(zhida)
            bare_cpu.append(bare_us)
            zhida_cpu.append(zhida_us)
            round_ratios.append(zhida.throughput / bare.throughput)
    bare_m, zhida_m = median_stats(bare_runs), median_stats(zhida_runs)
    ratio = round(statistics.median(round_ratios), 3)
    cpu_ratio = round(statistics.median(bare_cpu) / statistics.median(zhida_cpu), 3)
    return {
        "name": "node_echo",
        "figure": (
            f"zhida {zhida_m['throughput']:.0f}/s (p50 {zhida_m['p50_ms']} ms, p99 "
            f"{zhida_m['p99_ms']} ms) vs bare {bare_m['throughput']:.0f}/s "
            f"(p50 {bare_m['p50_ms']} ms, p99 {bare_m['p99_ms']} ms): throughput ratio {ratio}; "
            f"server CPU per call {statistics.median(zhida_cpu):.1f} vs "
            f"{statistics.median(bare_cpu):.1f} us (ratio {cpu_ratio})"
        ),
        "target": f"throughput ratio >= {TARGET}",
        "description": (
            "authenticated NodeService.Echo through the zhida node vs bare grpc.aio echo"
        ),
        "payload_bytes": PAYLOAD_BYTES,
        "concurrency": CONCURRENCY,
        "seconds_per_round": SECONDS,
        "rounds": ROUNDS,
        "bare": bare_m,
        "zhida": zhida_m,
        "ratio": ratio,
        "ratio_method": "median over rounds of zhida/bare throughput of adjacent rounds",
        "round_ratios": [round(r, 3) for r in round_ratios],
        "server_cpu_us_per_call": {"bare": bare_cpu, "zhida": zhida_cpu},
        "cpu_ratio": cpu_ratio,
        "target_ratio": TARGET,
        "met": ratio >= TARGET,
        "errors": sum(r.errors for r in bare_runs + zhida_runs),
        "runs": {
            "bare": [r.as_dict() for r in bare_runs],
            "zhida": [r.as_dict() for r in zhida_runs],
        },
    }
