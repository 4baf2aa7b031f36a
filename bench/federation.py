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
(target: ``(p50_via_county − p50_direct) / 3 <= 1 ms`` per hop). Beside it, the
floor of a hop (:mod:`bench.federation_floor`): a bare mTLS gRPC round trip
plus the custody cryptography per hop, with the same node credentials.

**Lag** (issue 8 item 5, 数据直达基层): the county department subscribes to the
national resource at its own node (``CreateSubscription`` is forwarded to
national, where the grant is; the subscription id names 100000) and keeps a
``ReceiveChanges(follow=True)`` open at the county — forwarded by
``ForwardStream`` county → city → province → national and relayed back
message by message. The provider then uploads :data:`LAG_SAMPLES` single-record
changes at the national node, one at a time; the lag of each is the time from
sending the upload (``from_send``) — and from its acknowledgement, when the
change is committed (``from_commit``) — to the county subscriber holding the
change. Reported as p50 / p99 in ms; no target (a figure to watch).

``ZHIDA_BENCH_SECONDS`` / ``ZHIDA_BENCH_ROUNDS`` set the load duration and rounds,
``ZHIDA_BENCH_LAG_SAMPLES`` the lag samples, ``ZHIDA_BENCH_FEDERATION_PARTS`` the
parts to run (``throughput,lag``, the default, or one of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import queue
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from bench import federation_floor
from bench.exchange import registry_csv
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
LAG_SAMPLES = int(os.environ.get("ZHIDA_BENCH_LAG_SAMPLES", "100"))
PARTS = tuple(
    p.strip()
    for p in os.environ.get("ZHIDA_BENCH_FEDERATION_PARTS", "throughput,lag").split(",")
    if p.strip()
)

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


def setup_national_resource(fed: LocalFederation) -> None:
    """Register, publish and fill the national resource; grant it to the county department;
    wait until the county's catalogue holds it (catalogue federation). Also used by the
    integration tests of forwarded streams."""
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
        data = registry_csv(HOSTED_RECORDS)

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


_setup = setup_national_resource


def provider_md(fed: LocalFederation) -> Metadata:
    """The national provider department's token at the national node."""
    return _md(fed, NATIONAL, Role.DEPARTMENT, PROVIDER_ORG)


def county_md(fed: LocalFederation) -> Metadata:
    """The county department's (the grantee's) token at the county node."""
    return _md(fed, COUNTY, Role.DEPARTMENT, REQUESTER_ORG)


def upload_change(fed: LocalFederation, n: int, *, upload_id: str = "") -> pb.UploadDatasetResponse:
    """One CHANGES upload at the national node: record ``n % HOSTED_RECORDS`` with a new
    registered capital (a granted item), so the change is one upsert."""
    row = company(n % HOSTED_RECORDS)
    row["注册资本"] = f"{1000 + n}.00"
    data = (",".join(ITEMS) + "\n" + ",".join(row[i] for i in ITEMS) + "\n").encode()
    header = pb.UploadHeader(
        resource_code=RESOURCE, mode=pb.UPLOAD_MODE_CHANGES, format=pb.DATASET_FORMAT_CSV,
        key_item=KEY_ITEM, upload_id=upload_id or f"change-{n}-{random.getrandbits(32):08x}",
    )  # fmt: skip
    parts = iter((pb.UploadDatasetRequest(header=header), pb.UploadDatasetRequest(chunk=data)))
    with grpc.insecure_channel(fed.nodes[NATIONAL].address) as channel:
        return pb_grpc.ExchangeServiceStub(channel).UploadDataset(
            parts, metadata=provider_md(fed), timeout=30
        )


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


def _measure_lag(fed: LocalFederation, samples: int) -> dict[str, Any]:
    """See the module docstring (**Lag**)."""
    md = county_md(fed)
    with grpc.insecure_channel(fed.nodes[COUNTY].address) as channel:
        stub = pb_grpc.ExchangeServiceStub(channel)
        sub = stub.CreateSubscription(
            pb.CreateSubscriptionRequest(resource_code=RESOURCE), metadata=md, timeout=30
        ).subscription
        if not sub.id.startswith(f"{NATIONAL}-"):
            raise RuntimeError(f"the subscription was not made at national: {sub.id}")
        upload_change(fed, 0, upload_id="lag-warm-up")
        stream = stub.ReceiveChanges(
            pb.ReceiveChangesRequest(subscription_id=sub.id, cursor="", follow=True),
            metadata=md,
        )
        arrived: queue.Queue[tuple[float, pb.ReceiveChangesResponse]] = queue.Queue()

        def read() -> None:
            try:
                for message in stream:
                    arrived.put((time.perf_counter(), message))
            except grpc.RpcError:
                pass  # cancelled at the end

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        # catch up with the history (the snapshot's changes and the warm-up change)
        arrived.get(timeout=60)
        with contextlib.suppress(queue.Empty):
            while True:
                arrived.get(timeout=1.0)
        from_send: list[float] = []
        from_commit: list[float] = []
        items: set[str] = set()
        for n in range(1, samples + 1):
            sent = time.perf_counter()
            upload_change(fed, n)
            committed = time.perf_counter()
            at, message = arrived.get(timeout=30)
            for change in message.changes:
                items.update(change.record.fields)
            from_send.append((at - sent) * 1000)
            from_commit.append(max(0.0, at - committed) * 1000)
            time.sleep(0.02)
        stream.cancel()  # type: ignore[no-untyped-call]
        reader.join(timeout=5)
    return {
        "samples": samples,
        "subscription": sub.id,
        "from_send": _summary(from_send),
        "from_commit": _summary(from_commit),
        "items_received": sorted(items),
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "mean_ms": round(statistics.fmean(values), 2) if values else 0.0,
        "max_ms": round(max(values), 2) if values else 0.0,
    }


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
        setup_national_resource(fed)
        direct_md = _md(fed, NATIONAL, Role.DEPARTMENT, REQUESTER_ORG)
        county = county_md(fed)
        path = _check_forwarded(fed, county, _keys()[0])
        loaded = single = None
        floor: dict[str, Any] = {}
        if "throughput" in PARTS:
            loaded = _measure(fed, direct_md, county, CONCURRENCY)
            single = _measure(fed, direct_md, county, 1)
            floor = federation_floor.measure(fed, path)
        lag = _measure_lag(fed, LAG_SAMPLES) if "lag" in PARTS else None
    result: dict[str, Any] = {
        "name": "federation",
        "path": path,
        "hops": HOPS,
        "seconds_per_round": SECONDS,
        "rounds": ROUNDS,
        "machine": machine_line(machine),
    }
    figures: list[str] = []
    met = True
    targets: list[str] = []
    if loaded is not None and single is not None:
        ratio = loaded["ratio"]
        per_hop = single["added_p50_ms_per_hop"]
        met = ratio >= RATIO_TARGET and per_hop <= HOP_TARGET_MS
        figures.append(
            f"RequestData county→national {loaded['via_county']['throughput']:.0f}/s vs direct "
            f"{loaded['direct']['throughput']:.0f}/s (c={CONCURRENCY}): ratio {ratio}; p50 at 1 "
            f"in flight {single['via_county']['p50_ms']:.2f} vs "
            f"{single['direct']['p50_ms']:.2f} ms: +{per_hop:.2f} ms per hop (floor: bare mTLS "
            f"round trip {floor['bare_mtls_round_trip_p50_ms']:.2f} + custody crypto "
            f"{floor['custody']['ms_per_hop']:.2f} = {floor['floor_ms_per_hop']:.2f} ms per hop)"
        )
        targets.append(f"ratio >= {RATIO_TARGET}; added p50 <= {HOP_TARGET_MS} ms per hop")
        result.update(
            ratio=ratio,
            added_p50_ms_per_hop=per_hop,
            added_p50_ms_per_hop_loaded=loaded["added_p50_ms_per_hop"],
            loaded=loaded,
            single=single,
            floor=floor,
        )
    if lag is not None:
        figures.append(
            f"national change → county subscriber (3 hops, follow stream): lag p50 "
            f"{lag['from_send']['p50_ms']:.1f} / p99 {lag['from_send']['p99_ms']:.1f} ms from "
            f"the upload sent, p50 {lag['from_commit']['p50_ms']:.1f} / p99 "
            f"{lag['from_commit']['p99_ms']:.1f} ms from its commit"
        )
        targets.append("lag: reported, no target")
        result["lag"] = lag
    result.update(figure="; ".join(figures), target="; ".join(targets), met=met)
    return result


if __name__ == "__main__":  # pragma: no cover - ad hoc runs
    print(json.dumps(run(), indent=2, ensure_ascii=False))
