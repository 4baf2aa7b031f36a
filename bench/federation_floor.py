"""The floor under the federation's per-hop latency target (issue 8), measured in the same run.

A forwarded call pays, per hop, at least (1) one mutual-TLS gRPC round trip
between two Python ``grpc.aio`` processes and (2) the chain-of-custody
cryptography: the sender signs its hop record and the receiver verifies
every signature of the chain so far (the national node, three hops up,
verifies three). This module measures both with the federation's own node
credentials, nothing else in the way:

* **bare mTLS round trip** — a bare ``grpc.aio`` echo server
  (:mod:`bench.bare_echo_server`) on the national node's TLS files, called by
  a client with the county node's credentials, one call in flight, with a
  payload the size of the ``Forward`` envelope that reaches the national node;
* **custody per hop** — :class:`~exchange.federation.assertion.NodeSigner`
  and :class:`~exchange.federation.custody.CustodyVerifier` of the four nodes
  taking one assertion county → city → province → national, in this process;
  the total over the three hops, divided by three.

``floor_ms_per_hop`` is their sum: what a hop costs before any of the node's
own work (interceptor, routing, replay row, audit event, asyncio scheduling).

Example::

    with LocalFederation.start(tmp, REGIONS) as fed:
        print(measure(fed, ("420102", "420100", "420000", "100000")))
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

import grpc

from bench.load import run_load
from bench.procs import bare_echo_server
from exchange.federation.assertion import CallerClaims, NodeSigner
from exchange.federation.custody import CustodyVerifier
from exchange.federation.local import LocalFederation
from exchange.federation.replay import InMemoryReplayCache
from exchange.federation.targets import digest_input
from exchange.federation.transport import load_node_credentials, node_verifier
from signing.node_certs import NodeCredentials
from zhida.auth.principal import Principal, Role
from zhida.config import load_config
from zhida.node.v1 import node_service_pb2 as pb
from zhida.node.v1 import node_service_pb2_grpc as pb_grpc

CHAINS = 200
ECHO_SECONDS = 2.0
METHOD = "/zhida.exchange.v1.ExchangeService/RequestData"


def _credentials(fed: LocalFederation, region: str) -> NodeCredentials:
    return load_node_credentials(load_config(fed.plans[region].config_path, env={}))


def custody_chain(
    fed: LocalFederation, path: Sequence[str], chains: int = CHAINS
) -> dict[str, Any]:
    """Sign at ``path[0]``, forward and verify along ``path``: ms per chain and per hop."""
    creds = {region: _credentials(fed, region) for region in path}
    signers = {region: NodeSigner(creds[region]) for region in path}
    verifiers = {
        region: CustodyVerifier(node_verifier(creds[region]), region, InMemoryReplayCache())
        for region in path[1:]
    }
    request = digest_input(METHOD, b"\x0a\x14" + b"1-02-001-0000-000901")
    size = 0
    started = time.perf_counter()
    for i in range(chains):
        now = time.time()
        deadline_ms = int(now * 1000) + 10_000
        caller = Principal("bench", Role.DEPARTMENT, "11420102MB1A23456R", path[0], int(now) + 600)
        claims = CallerClaims.of(
            caller, trace_id=f"floor-{i}", idempotency_key=f"floor-{i}", target_kind="resource",
            target="1-02-001-0000-000901", target_region=path[-1], request=request,
            deadline_ms=deadline_ms,
        )  # fmt: skip
        custody = signers[path[0]].assert_caller(claims, audience=path[1])
        for sender, receiver, onward in zip(path, path[1:], [*path[2:], None], strict=True):
            verified = verifiers[receiver].verify(custody, request, peer=sender)
            if onward is None:
                break
            custody = signers[receiver].forward(verified, audience=onward, deadline_ms=deadline_ms)
        size = len(custody.encode())
    per_chain = (time.perf_counter() - started) * 1000 / chains
    hops = len(path) - 1
    return {
        "chains": chains,
        "ms_per_chain": round(per_chain, 3),
        "ms_per_hop": round(per_chain / hops, 3),
        "custody_bytes_at_last_hop": size,
    }


async def _echo_p50(address: str, credentials: NodeCredentials, size: int) -> dict[str, float]:
    channel_credentials = credentials.channel_credentials()
    async with grpc.aio.secure_channel(address, channel_credentials) as channel:
        stub = pb_grpc.NodeServiceStub(channel)
        request = pb.EchoRequest(payload=b"x" * size)

        async def call() -> None:
            await stub.Echo(request, timeout=10)

        stats = await run_load(call, concurrency=1, seconds=ECHO_SECONDS)
    return {"p50_ms": stats.p50_ms, "p99_ms": stats.p99_ms, "calls": stats.calls}


def measure(fed: LocalFederation, path: Sequence[str]) -> dict[str, Any]:
    """The floor per hop (module docstring): mTLS round trip + custody cryptography."""
    custody = custody_chain(fed, path)
    server = fed.plans[path[-1]]
    config = load_config(server.config_path, env={})
    tls = (config.federation.tls_cert, config.federation.tls_key, config.federation.tls_ca)
    payload = custody["custody_bytes_at_last_hop"] + 200
    with bare_echo_server(tls) as bare:
        runs = [asyncio.run(_echo_p50(bare.address, _credentials(fed, path[0]), payload))
                for _ in range(3)]  # fmt: skip
    echo_p50 = statistics.median(r["p50_ms"] for r in runs)
    return {
        "bare_mtls_round_trip_p50_ms": round(echo_p50, 3),
        "bare_mtls_payload_bytes": payload,
        "custody": custody,
        "floor_ms_per_hop": round(echo_p50 + custody["ms_per_hop"], 3),
    }
