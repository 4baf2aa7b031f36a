"""Benchmark (issue 8): a county request answered by the national provider, all four nodes here.

The local four-level federation (:class:`exchange.federation.local.LocalFederation`:
county 420102 → city 420100 → province 420000 → national 100000, each its own
``zhida serve`` process with its own SQLite database, mutual TLS between
neighbours) serves a national resource (``1-02-001-0000-000901``, 国家市场监督管理总局,
hosted at the national node, :data:`HOSTED_RECORDS` records uploaded) with an
ACTIVE grant for 武汉市江岸区市场监督管理局 (unconditional share: granted on
application). Once catalogue federation has brought the resource down to the
county, the same ``RequestData`` of one record by key is measured two ways, in
the same run, rounds interleaved:

* **direct** — sent to the national node with a national token of the county
  department's caller (bearer auth, policy, grant, hosted read, minimisation,
  delivery record, audit events);
* **via county** — sent to the county node with a county token of the same
  caller: the county signs a caller assertion and forwards it three hops
  (county → city → province → national over mTLS); each hop verifies the
  chain of custody, records the ``jti``, writes its audit event and signs a hop
  record; the national node checks the idempotency key and runs the call
  in-process, as the direct call.

Closed-loop load (:func:`bench.load.run_load`) at :data:`CONCURRENCY` in flight
for the throughput ratio (target ``>= 0.2``; 0.25 is the ideal with four busy
processes sharing the cores) and at one in flight for the added latency
(target: ``(p50_via_county − p50_direct) / 3 <= 1 ms`` per hop).

``ZHIDA_BENCH_SECONDS`` / ``ZHIDA_BENCH_ROUNDS`` set the load duration and rounds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from bench.load import LoadStats, median_stats, run_load
from bench.machine import describe
from catalog_registry import wire as catalog_wire
from catalog_registry.model import ResourceCode, ShareType
from exchange.federation.local import LOCAL_DEPARTMENTS, LocalFederation
from exchange.sample_registry import ITEMS, KEY_ITEM, company, registry_spec
from zhida.auth.principal import Role
from zhida.catalog.v1 import catalog_service_pb2 as cpb
from zhida.catalog.v1 import catalog_service_pb2_grpc as cpb_grpc
from zhida.client import bearer
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

SECONDS = float(os.environ.get("ZHIDA_BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("ZHIDA_BENCH_ROUNDS", "3"))
CONCURRENCY = 16
HOPS = 3
RATIO_TARGET = 0.2
HOP_TARGET_MS = 1.0
HOSTED_RECORDS = 1000

REGIONS = ("100000", "420000", "420100", "420102")
NATIONAL, COUNTY = "100000", "420102"
RESOURCE = "1-02-001-0000-000901"
GRANTED = ITEMS[:5]
PROVIDER_ORG = LOCAL_DEPARTMENTS["国家市场监督管理总局"]
REQUESTER_ORG = LOCAL_DEPARTMENTS["武汉市江岸区市场监督管理局"]
SUBJECT = "clerk@ja-samr"
Metadata = tuple[tuple[str, str], ...]


def added_per_hop(p50_direct_ms: float, p50_forwarded_ms: float, hops: int = HOPS) -> float:
    """Added p50 latency per hop (ms): the forwarded call's extra p50 spread over ``hops``."""
    if hops <= 0:
        raise ValueError("hops must be positive")
    return round((p50_forwarded_ms - p50_direct_ms) / hops, 3)


def machine_line(machine: dict[str, Any]) -> str:
    """One line describing the machine, e.g. ``AMD EPYC, 2 CPUs, 23.5 GiB, Linux…, Python…``."""
    return (
        f"{machine.get('cpu_model', 'unknown')}, {machine.get('cpu_count')} CPUs, "
        f"{machine.get('memory_gib')} GiB, {machine.get('os')}, "
        f"Python {machine.get('python')}, grpcio {machine.get('grpcio')}"
    )


# -- setup -----------------------------------------------------------------------------


def _md(fed: LocalFederation, region: str, role: Role, org: str) -> Metadata:
    token = fed.nodes[region].mint(
        role, organisation=org, region_code=org_region(org), subject=SUBJECT
    )
    return bearer(token)


def org_region(uscc: str) -> str:
    """The region code inside a unified social credit code (characters 3–8)."""
    return uscc[2:8]


def _csv(count: int) -> bytes:
    lines = [",".join(ITEMS)]
    lines += [",".join(company(i)[item] for item in ITEMS) for i in range(count)]
    return ("\n".join(lines) + "\n").encode()


def _setup(fed: LocalFederation) -> None:
    """Register, publish and fill the national resource; grant it to the county department;
    wait until the county's catalogue holds it (catalogue federation)."""
    national = fed.nodes[NATIONAL]
    provider = _md(fed, NATIONAL, Role.DEPARTMENT, PROVIDER_ORG)
    clerk = _md(fed, NATIONAL, Role.DEPARTMENT, REQUESTER_ORG)
    spec = dataclasses.replace(
        registry_spec(RESOURCE, delivery_service="", share=ShareType.UNCONDITIONAL),
        code=ResourceCode.parse(RESOURCE),
        name="全国市场主体登记信息",
        description="国家市场监督管理总局登记的市场主体基本信息",
        provider_code=PROVIDER_ORG,
        provider_name="国家市场监督管理总局",
        region_code=NATIONAL,
    )
    with grpc.insecure_channel(national.address) as channel:
        catalog = cpb_grpc.CatalogServiceStub(channel)
        exchange = pb_grpc.ExchangeServiceStub(channel)
        catalog.RegisterResource(
            cpb.RegisterResourceRequest(resource=catalog_wire.spec_to_pb(spec)),
            metadata=provider,
            timeout=30,
        )
        catalog.PublishResource(
            cpb.PublishResourceRequest(code=RESOURCE), metadata=provider, timeout=30
        )
        header = pb.UploadHeader(
            resource_code=RESOURCE, mode=pb.UPLOAD_MODE_SNAPSHOT, format=pb.DATASET_FORMAT_CSV,
            key_item=KEY_ITEM, upload_id="bench-federation",
        )  # fmt: skip
        data = _csv(HOSTED_RECORDS)

        def parts() -> Iterator[pb.UploadDatasetRequest]:
            yield pb.UploadDatasetRequest(header=header)
            yield pb.UploadDatasetRequest(chunk=data)

        uploaded = exchange.UploadDataset(parts(), metadata=provider, timeout=120)
        if uploaded.records_total != HOSTED_RECORDS:
            raise RuntimeError(f"upload stored {uploaded.records_total} records")
        request = pb.ApplyForDataRequest(
            resource_code=RESOURCE, items=GRANTED, purpose="基准测试：跨层级核验市场主体",
            legal_basis="《市场主体登记管理条例》第十九条",
        )  # fmt: skip
        request.period_start.GetCurrentTime()
        request.period_end.FromSeconds(request.period_start.seconds + 86400)
        reply = exchange.ApplyForData(request, metadata=clerk, timeout=30)
        if not reply.grant.id:
            raise RuntimeError(f"no grant for {RESOURCE}: {reply}")
    _await_at_county(fed)


def _await_at_county(fed: LocalFederation, within: float = 60.0) -> None:
    md = _md(fed, COUNTY, Role.ADMIN, REQUESTER_ORG)
    deadline = time.monotonic() + within
    with grpc.insecure_channel(fed.nodes[COUNTY].address) as channel:
        stub = cpb_grpc.CatalogServiceStub(channel)
        while True:
            try:
                stub.GetResource(cpb.GetResourceRequest(code=RESOURCE), metadata=md, timeout=5)
                return
            except grpc.RpcError as error:
                if error.code() is not grpc.StatusCode.NOT_FOUND:
                    raise
            if time.monotonic() > deadline:
                raise RuntimeError(f"{RESOURCE} did not reach the county within {within:.0f}s")
            time.sleep(0.2)


# -- measuring ---------------------------------------------------------------------------


def _keys() -> list[str]:
    rng = random.Random(8)
    return [company(rng.randrange(HOSTED_RECORDS))[KEY_ITEM] for _ in range(4096)]


async def _load(address: str, md: Metadata, keys: list[str], concurrency: int) -> LoadStats:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.ExchangeServiceStub(channel)
        it = iter(range(1 << 62))

        async def call() -> None:
            key = keys[next(it) % len(keys)]
            reply = await stub.RequestData(
                pb.RequestDataRequest(resource_code=RESOURCE, key=key), metadata=md, timeout=10
            )
            if len(reply.records) != 1:
                raise RuntimeError("no record")

        return await run_load(call, concurrency=concurrency, seconds=SECONDS)


def _check_forwarded(fed: LocalFederation, md: Metadata, key: str) -> list[str]:
    """One call through the county: the path trailer proves it went up three hops."""
    with grpc.insecure_channel(fed.nodes[COUNTY].address) as channel:
        stub = pb_grpc.ExchangeServiceStub(channel)
        reply, call = stub.RequestData.with_call(
            pb.RequestDataRequest(resource_code=RESOURCE, key=key), metadata=md, timeout=30
        )
    path = str(dict(call.trailing_metadata() or ()).get("x-zhida-path", "")).split(",")
    if len(reply.records) != 1 or path[-1:] != [NATIONAL]:
        raise RuntimeError(f"the county call was not served by national (path {path!r})")
    return path


def _measure(
    fed: LocalFederation, direct_md: Metadata, county_md: Metadata, concurrency: int
) -> dict[str, Any]:
    keys = _keys()
    direct_runs: list[LoadStats] = []
    county_runs: list[LoadStats] = []
    for n in range(ROUNDS):
        # alternate which side goes first, so drift (WAL growth, caches) hits both alike
        order = [("direct", direct_md), ("county", county_md)]
        for side, md in order if n % 2 == 0 else order[::-1]:
            address = fed.nodes[NATIONAL if side == "direct" else COUNTY].address
            stats = asyncio.run(_load(address, md, keys, concurrency))
            (direct_runs if side == "direct" else county_runs).append(stats)
    direct, county = median_stats(direct_runs), median_stats(county_runs)
    return {
        "concurrency": concurrency,
        "direct": direct,
        "via_county": county,
        "ratio": round(county["throughput"] / direct["throughput"], 3),
        "added_p50_ms_per_hop": added_per_hop(direct["p50_ms"], county["p50_ms"]),
        "errors": sum(r.errors for r in direct_runs + county_runs),
        "runs": {
            "direct": [r.as_dict() for r in direct_runs],
            "via_county": [r.as_dict() for r in county_runs],
        },
    }


def run() -> dict[str, Any]:
    machine = describe()
    with (
        tempfile.TemporaryDirectory(prefix="zhida-bench-federation-") as tmp,
        LocalFederation.start(Path(tmp), REGIONS) as fed,
    ):
        _setup(fed)
        direct_md = _md(fed, NATIONAL, Role.DEPARTMENT, REQUESTER_ORG)
        county_md = _md(fed, COUNTY, Role.DEPARTMENT, REQUESTER_ORG)
        path = _check_forwarded(fed, county_md, _keys()[0])
        loaded = _measure(fed, direct_md, county_md, CONCURRENCY)
        single = _measure(fed, direct_md, county_md, 1)
    ratio = loaded["ratio"]
    per_hop = single["added_p50_ms_per_hop"]
    met = ratio >= RATIO_TARGET and per_hop <= HOP_TARGET_MS
    figure = (
        f"RequestData county→national {loaded['via_county']['throughput']:.0f}/s vs direct "
        f"{loaded['direct']['throughput']:.0f}/s (c={CONCURRENCY}): ratio {ratio}; p50 at 1 in "
        f"flight {single['via_county']['p50_ms']:.2f} vs {single['direct']['p50_ms']:.2f} ms: "
        f"+{per_hop:.2f} ms per hop"
    )
    return {
        "name": "federation",
        "figure": figure,
        "target": f"ratio >= {RATIO_TARGET}; added p50 <= {HOP_TARGET_MS} ms per hop",
        "met": met,
        "ratio": ratio,
        "added_p50_ms_per_hop": per_hop,
        "added_p50_ms_per_hop_loaded": loaded["added_p50_ms_per_hop"],
        "path": path,
        "hops": HOPS,
        "loaded": loaded,
        "single": single,
        "seconds_per_round": SECONDS,
        "rounds": ROUNDS,
        "machine": machine_line(machine),
    }


if __name__ == "__main__":  # pragma: no cover - ad hoc runs
    print(json.dumps(run(), indent=2, ensure_ascii=False))
