"""Demo chapters: a national resource, found at the county and served to it through four levels.

**Catalogue federation.** 中华人民共和国公安部 publishes 居民户籍迁移信息 (conditional
sharing) at the national node. Each node pulls its parent's catalogue feed
every sync interval and pushes its own region's changes up: the county finds
the national resource in its *own* catalogue within a few intervals, and the
national catalogue holds the 江岸区 resources the county published in the
catalogue chapter — but 湖南 never sees 湖北's.

**Routed exchange.** A 江岸区 department applies at its own node; the county's
catalogue says the resource is national, so the application travels
county → city → province → national (signed caller assertion, each hop
verifying the custody chain over mutual TLS and adding its hop record) and
becomes a share request at the national node. 公安部's admin approves four of
six items; the county's RequestData takes the same route to the national
hosted provider and comes back with the granted items only. The trace id of
that request is handed to the audit-trail chapter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
from rich.table import Table
from stdnum.cn import ric

from catalog_registry import render
from catalog_registry import wire as catalog_wire
from catalog_registry.model import (
    DataItem,
    DataType,
    ResourceCode,
    ResourceFormat,
    ResourceSpec,
    ShareType,
    UpdateCycle,
)
from catalog_registry.sample_data import DEPARTMENTS, GUOFA_2024_3
from catalog_registry.sample_tables import CONDITIONS
from exchange.federation.local import DEFAULT_REGIONS
from exchange.wire import timestamp
from zhida.auth.principal import Role
from zhida.catalog.v1 import catalog_service_pb2 as cpb
from zhida.catalog.v1 import catalog_service_pb2_grpc as cpb_grpc
from zhida.client import bearer
from zhida.demo import (
    CITY,
    COUNTY,
    HUNAN,
    NATIONAL,
    PROVINCE,
    DemoContext,
    DemoError,
    channel,
    node_at,
)
from zhida.demo.support import Metadata, check_path, eventually, hop_path, label, new_trace
from zhida.demo.trail import remember_national
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from zhida.provider.v1 import data_provider_service_pb2 as ppb

MPS = DEPARTMENTS["mps"]  # 中华人民共和国公安部, 100000
COUNTY_DEPT = DEPARTMENTS["ja-gov"]  # 武汉市江岸区政务服务和大数据管理局
MIGRATION = "1-01-004-0000-000101"
MIGRATION_NAME = "居民户籍迁移信息"
COUNTY_RESOURCE = "2-04-001-0000-000010"  # 食品经营许可信息 of 江岸区市场监督管理局
KEY_ITEM = "公民身份号码"
ITEMS = ("姓名", KEY_ITEM, "性别", "迁出地", "迁入地", "迁移日期", "迁移原因")
ASKED = ("姓名", KEY_ITEM, "迁出地", "迁入地", "迁移日期", "迁移原因")
GRANTED = ("姓名", KEY_ITEM, "迁入地", "迁移日期")
PURPOSE = "新生儿出生一件事：核验新生儿母亲由湖南迁入江岸区的户籍迁移登记"
ROUTE = (COUNTY, CITY, PROVINCE, NATIONAL)
SYNC_WAIT = 30.0  # seconds; the nodes sync every 0.5 s
TIMEOUT = 30.0

# Synthetic people who moved their household registration (name, sex, birth date, from, to).
_MOVES = (
    ("李娜", "2", "1992-07-02", "湖南省长沙市芙蓉区", "湖北省武汉市江岸区沿江大道100号"),
    ("刘芳", "2", "1991-01-30", "湖南省湘潭市雨湖区", "湖北省武汉市江岸区解放大道1688号"),
    ("赵磊", "1", "1992-09-17", "湖南省岳阳市岳阳楼区", "湖北省武汉市江岸区中山大道1001号"),
    ("吴敏", "2", "1987-12-05", "湖南省长沙市岳麓区", "湖北省武汉市江岸区黄浦大街66号"),
    ("孙浩", "1", "1990-04-18", "湖南省株洲市天元区", "湖北省武汉市江岸区胜利街12号"),
    ("何丽", "2", "1994-10-27", "湖南省衡阳市蒸湘区", "湖北省武汉市江岸区澳门路8号"),
)


def migration_spec() -> ResourceSpec:
    return ResourceSpec(
        code=ResourceCode.parse(MIGRATION),
        name=MIGRATION_NAME,
        description=f"{MPS.name}提供的全国居民户籍迁移登记信息，支撑跨省“高效办成一件事”",
        provider_code=MPS.uscc,
        provider_name=MPS.name,
        region_code=NATIONAL,
        items=tuple(
            DataItem(name, DataType.DATE if name == "迁移日期" else DataType.STRING)
            for name in ITEMS
        ),
        share_type=ShareType.CONDITIONAL,
        share_conditions=CONDITIONS,
        format=ResourceFormat.DATABASE,
        update_cycle=UpdateCycle.DAILY,
        delivery_service="hosted",  # the national node's hosted provider
    )


def migrations() -> list[dict[str, str]]:
    """公安部's records: people born in 湖南 (43xxxx) now registered in 江岸区."""
    rows = []
    for n, (name, sex, birth, origin, destination) in enumerate(_MOVES, start=1):
        serial = n * 2 + (1 if sex == "1" else 0)
        body = f"430102{birth.replace('-', '')}{serial:03d}"
        rows.append({
            "姓名": name, KEY_ITEM: body + ric.calc_check_digit(body + "0"), "性别": sex,
            "迁出地": origin, "迁入地": destination, "迁移日期": f"2024-0{n}-15",
            "迁移原因": "婚迁" if sex == "2" else "投靠",
        })  # fmt: skip
    return rows


def _md(ctx: DemoContext, region: str, role: Role, dept_key: str, subject: str) -> Metadata:
    dept = DEPARTMENTS[dept_key]
    token = node_at(ctx, region).mint(
        role, organisation=dept.uscc, region_code=dept.region_code, subject=subject
    )
    return bearer(token)


def _catalogue(ctx: DemoContext, region: str) -> cpb_grpc.CatalogServiceStub:
    return cpb_grpc.CatalogServiceStub(channel(ctx, region))


def _exchange(ctx: DemoContext, region: str) -> pb_grpc.ExchangeServiceStub:
    return pb_grpc.ExchangeServiceStub(channel(ctx, region))


# -- catalogue federation ------------------------------------------------------------------


def catalogue(ctx: DemoContext) -> None:
    out = ctx.console
    mps = _md(ctx, NATIONAL, Role.DEPARTMENT, "mps", "clerk@mps")
    national = _catalogue(ctx, NATIONAL)
    national.RegisterResource(
        cpb.RegisterResourceRequest(resource=catalog_wire.spec_to_pb(migration_spec())),
        metadata=mps, timeout=TIMEOUT,
    )  # fmt: skip
    national.PublishResource(
        cpb.PublishResourceRequest(code=MIGRATION), metadata=mps, timeout=TIMEOUT
    )
    out.print(
        f"{MPS.name} publishes {MIGRATION} {MIGRATION_NAME} (conditional sharing) at the "
        "national node; each node pulls its parent's catalogue feed and pushes its own "
        "region's changes up every 0.5 s"
    )

    county = _catalogue(ctx, COUNTY)
    md = _md(ctx, COUNTY, Role.DEPARTMENT, "ja-gov", "clerk-liu@ja-gov")

    def found() -> list[cpb.SearchHit] | None:
        hits = county.SearchResources(
            cpb.SearchResourcesRequest(keywords="户籍迁移"), metadata=md, timeout=TIMEOUT
        ).hits
        return list(hits) if any(h.resource.spec.code == MIGRATION for h in hits) else None

    hits, waited = eventually(found, within=SYNC_WAIT, what=f"{MIGRATION} found at 江岸区")
    out.print(render.search_table(hits, "search 户籍迁移 at 江岸区 (its own catalogue)"))
    hit = next(h for h in hits if h.resource.spec.code == MIGRATION)
    if hit.resource.spec.region_code != NATIONAL or hit.resource.spec.provider_code != MPS.uscc:
        raise DemoError(f"the county's copy of {MIGRATION} is not 公安部's: {hit.resource.spec}")
    out.print(
        f"found at 江岸区 [green]{waited:.1f} s[/green] after publishing, via 湖北 and 武汉 "
        "(national → province → city → county)"
    )
    _visibility(ctx)


def _visibility(ctx: DemoContext) -> None:
    """Which node's catalogue holds the national and the 江岸区 resource, once sync settled."""
    want = {
        region: {MIGRATION: True, COUNTY_RESOURCE: region != HUNAN} for region in DEFAULT_REGIONS
    }
    admins = {r: _md(ctx, r, Role.ADMIN, "hb-data", "admin@hb-data") for r in DEFAULT_REGIONS}
    stubs = {r: _catalogue(ctx, r) for r in DEFAULT_REGIONS}

    def held(region: str, code: str) -> bool:
        try:
            stubs[region].GetResource(
                cpb.GetResourceRequest(code=code), metadata=admins[region], timeout=TIMEOUT
            )
        except grpc.RpcError as err:
            if err.code() is grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    def snapshot() -> dict[str, dict[str, bool]]:
        return {r: {code: held(r, code) for code in (MIGRATION, COUNTY_RESOURCE)} for r in want}

    def settled() -> dict[str, dict[str, bool]] | None:
        seen = snapshot()
        return seen if seen == want else None

    seen, _ = eventually(settled, within=SYNC_WAIT, what="catalogue federation to settle")
    table = Table(title="whose catalogue holds what (catalogue federation, both ways)")
    table.add_column("node")
    table.add_column(f"{MIGRATION} {MIGRATION_NAME} (国家)")
    table.add_column(f"{COUNTY_RESOURCE} 食品经营许可信息 (江岸区)")
    for region, row in seen.items():
        table.add_row(label(region), *("[green]yes" if row[c] else "[dim]no" for c in row))
    ctx.console.print(table)
    ctx.console.print(
        "national resources reach every node below; a region's own resources climb to national "
        "— and 湖南 never receives 湖北's"
    )


# -- the routed exchange ---------------------------------------------------------------------


def routed(ctx: DemoContext) -> None:
    out = ctx.console
    rows = migrations()
    by_key = {row[KEY_ITEM]: row for row in rows}
    national = _exchange(ctx, NATIONAL)
    county = _exchange(ctx, COUNTY)
    clerk = _md(ctx, COUNTY, Role.DEPARTMENT, "ja-gov", "clerk-liu@ja-gov")
    _upload(ctx, national, _md(ctx, NATIONAL, Role.DEPARTMENT, "mps", "clerk@mps"), rows)
    remember_national(ctx)

    now = datetime.now(UTC)
    application = pb.ApplyForDataRequest(
        resource_code=MIGRATION, items=ASKED, purpose=PURPOSE, legal_basis=GUOFA_2024_3,
        period_start=timestamp(now - timedelta(minutes=1)),
        period_end=timestamp(now + timedelta(days=90)), expected_volume=20,
    )  # fmt: skip
    reply, call = county.ApplyForData.with_call(application, metadata=clerk, timeout=TIMEOUT)
    path = check_path("the application", hop_path(call), ROUTE)
    request = reply.request
    out.print(
        f"{COUNTY_DEPT.name} applies at 江岸区 for {len(ASKED)} items of {MIGRATION_NAME}:\n"
        f"  routed {path}\n"
        f"  → request {request.id}: [yellow]submitted[/yellow] at the national node"
    )
    if request.state != pb.SHARE_REQUEST_STATE_SUBMITTED or request.resource_code != MIGRATION:
        raise DemoError(f"the routed application was not left for a decision: {request}")
    local = county.ListShareRequests(pb.ListShareRequestsRequest(), metadata=clerk, timeout=30)
    if request.id in {r.id for r in local.requests}:
        raise DemoError("the share request was stored at the county, not at the provider's node")

    admin = _md(ctx, NATIONAL, Role.ADMIN, "mps", "admin@mps")
    pending = national.ListPendingShareRequests(
        pb.ListPendingShareRequestsRequest(), metadata=admin, timeout=TIMEOUT
    ).requests
    if request.id not in {r.id for r in pending}:
        raise DemoError(f"request {request.id} is not pending at the national node")
    approved = national.ApproveShareRequest(
        pb.ApproveShareRequestRequest(
            request_id=request.id, items=GRANTED,
            valid_until=timestamp(datetime.now(UTC) + timedelta(days=30)),
        ),
        metadata=admin, timeout=TIMEOUT,
    )  # fmt: skip
    if set(approved.grant.items) != set(GRANTED) or approved.grant.state != pb.GRANT_STATE_ACTIVE:
        raise DemoError(f"the national approval did not grant exactly {GRANTED}: {approved}")
    out.print(
        f"{MPS.name}'s admin finds it among its pending requests at the national node and "
        f"approves [green]{len(GRANTED)} of {len(ASKED)}[/green] items: {'、'.join(GRANTED)}"
    )

    mother = rows[0]
    trace = new_trace()
    data, call = county.RequestData.with_call(
        pb.RequestDataRequest(resource_code=MIGRATION, key=mother[KEY_ITEM]),
        metadata=(*clerk, ("x-trace-id", trace)),
        timeout=TIMEOUT,
    )
    path = check_path("RequestData", hop_path(call), ROUTE)
    _check_granted(data, by_key, mother[KEY_ITEM])
    ctx.facts.update(trace=trace, trace_at=str(time.time()), trace_items=",".join(GRANTED))
    out.print(
        f"RequestData by key {mother[KEY_ITEM]} (trace [cyan]{trace}[/cyan]):\n"
        f"  routed {path}, served by the national hosted provider, and back the same way\n"
        f"  1 record with {'、'.join(data.items_delivered)} only — 迁出地、迁移原因 and 性别 "
        "stayed at the national node"
    )


def _upload(
    ctx: DemoContext, stub: pb_grpc.ExchangeServiceStub, md: Metadata, rows: list[dict[str, str]]
) -> None:
    header = pb.UploadHeader(
        resource_code=MIGRATION, mode=pb.UPLOAD_MODE_SNAPSHOT, format=pb.DATASET_FORMAT_CSV,
        key_item=KEY_ITEM, upload_id="demo-migration-snapshot-1",
    )  # fmt: skip
    csv = "\n".join([",".join(ITEMS), *(",".join(r[i] for i in ITEMS) for r in rows)]) + "\n"

    def parts() -> Iterator[pb.UploadDatasetRequest]:
        yield pb.UploadDatasetRequest(header=header)
        yield pb.UploadDatasetRequest(chunk=csv.encode())

    reply = stub.UploadDataset(parts(), metadata=md, timeout=TIMEOUT)
    ctx.console.print(
        f"{MPS.name} uploads {reply.records_total} records of {MIGRATION_NAME} "
        f"({len(ITEMS)} items each) to the national node's hosted provider"
    )
    if reply.records_total != len(rows):
        raise DemoError(f"the national dataset holds {reply.records_total} records")


def _check_granted(
    data: pb.RequestDataResponse, by_key: dict[str, dict[str, str]], key: str
) -> None:
    if [r.key for r in data.records] != [key]:
        raise DemoError(f"RequestData by key returned {[r.key for r in data.records]}")
    if set(data.items_delivered) != set(GRANTED):
        raise DemoError(f"items delivered {list(data.items_delivered)}, granted {GRANTED}")
    record: ppb.Record = data.records[0]
    if dict(record.fields) != {item: by_key[key][item] for item in GRANTED}:
        raise DemoError(f"record {key} carries {dict(record.fields)}, not the granted items")
