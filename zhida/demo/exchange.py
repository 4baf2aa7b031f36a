"""Demo chapter: the data exchange — apply, approve fewer items, receive only those, a refusal.

武汉市公安局 keeps its 居民户籍登记信息 (conditional sharing; 人像照片 on the
negative list) at its own node, 武汉 (420100): it published the resource
there in the catalogue chapter and uploads a snapshot, photos included, to
that node's hosted provider. 江岸区政务服务和大数据管理局, a county department, applies at its
own node for six items of it for 新生儿出生一件事: the county node finds the
resource's region in its catalogue and forwards the application to 武汉
(signed caller assertion over mutual TLS); nothing flows before a decision.
The police's admin finds the request among the pending ones at 武汉 and
approves three items for a shorter period; the county department then
receives records through its node — by key, and page by page — carrying
those three items only. Its application for 人像照片 is refused by 武汉 with
the negative list's legal basis, the refusal passed back unchanged.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import grpc
from rich.table import Table
from stdnum.cn import ric

from catalog_registry.sample_data import DEPARTMENTS, GUOFA_2024_3, PIPL_28
from exchange.wire import timestamp
from zhida.auth.principal import Role
from zhida.catalog.v1 import catalog_service_pb2 as cpb
from zhida.catalog.v1 import catalog_service_pb2_grpc as cpb_grpc
from zhida.client import bearer
from zhida.demo import CITY, COUNTY, DemoContext, DemoError, demo_node, node_at
from zhida.demo.support import check_path, hop_path, new_trace, refused, traced
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from zhida.localnode import LocalNode
from zhida.provider.v1 import data_provider_service_pb2 as ppb

Metadata = tuple[tuple[str, str], ...]
HOUSEHOLD = "1-01-001-0000-000002"  # 居民户籍登记信息 of 武汉市公安局, conditional
POLICE = DEPARTMENTS["wh-police"]
COUNTY_DEPT = DEPARTMENTS["ja-gov"]  # 武汉市江岸区政务服务和大数据管理局, 420102
DATA_AUTHORITY = DEPARTMENTS["hb-data"]  # 湖北省数据局: runs the lists
KEY_ITEM = "公民身份号码"
ASKED = ("姓名", KEY_ITEM, "性别", "出生日期", "户籍地址", "户主姓名")
GRANTED = ("姓名", KEY_ITEM, "户籍地址")  # what the admin judges necessary for the matter
COLUMNS = ("姓名", KEY_ITEM, "性别", "民族", "出生日期", "户籍地址", "户主姓名", "与户主关系",
           "人像照片")  # fmt: skip
PURPOSE = "新生儿出生一件事：核验新生儿父母的户籍登记信息，办理出生登记"
TO_CITY = (COUNTY, CITY)
TIMEOUT = 30.0
PAGE = 4

# Synthetic households of 江岸区: (name, sex code, birth date, relation to the head).
_FAMILIES = (
    ("沿江大道100号", (("张伟", "1", "1990-03-14", "02"), ("李娜", "2", "1992-07-02", "10"))),
    ("解放大道1688号", (("王强", "1", "1988-11-23", "02"), ("刘芳", "2", "1991-01-30", "10"))),
    ("中山大道1001号", (("陈静", "2", "1993-05-09", "02"), ("赵磊", "1", "1992-09-17", "10"))),
    ("黄浦大街66号", (("周杰", "1", "1985-02-11", "02"), ("吴敏", "2", "1987-12-05", "10"),
                      ("周子涵", "2", "2015-06-21", "20"))),
)  # fmt: skip


def _resident_id(birth: str, sequence: int, sex: str) -> str:
    """A GB 11643 number born in 江岸区: odd sequence digit for men, even for women."""
    serial = sequence * 2 + (1 if sex == "1" else 0)
    body = f"420102{birth.replace('-', '')}{serial:03d}"
    return body + ric.calc_check_digit(body + "0")  # stdnum ignores the placeholder check digit


def residents() -> list[dict[str, str]]:
    """The police's records: every item, the negative-listed photo included."""
    rows: list[dict[str, str]] = []
    for address, members in _FAMILIES:
        head = members[0][0]
        for name, sex, birth, relation in members:
            photo = base64.b64encode(f"JPEG:{name}".encode()).decode()  # a stand-in portrait
            rows.append({
                "姓名": name, KEY_ITEM: _resident_id(birth, len(rows) + 1, sex), "性别": sex,
                "民族": "01", "出生日期": birth, "户籍地址": f"湖北省武汉市江岸区{address}",
                "户主姓名": head, "与户主关系": relation, "人像照片": photo,
            })  # fmt: skip
    return rows


def _csv(rows: list[dict[str, str]]) -> bytes:
    lines = [",".join(COLUMNS), *(",".join(row[c] for c in COLUMNS) for row in rows)]
    return ("\n".join(lines) + "\n").encode()


def _md(node: LocalNode, role: Role, dept_key: str, subject: str) -> Metadata:
    dept = DEPARTMENTS[dept_key]
    token = node.mint(role, organisation=dept.uscc, region_code=dept.region_code, subject=subject)
    return bearer(token)


def chapter(ctx: DemoContext) -> None:
    county_node, city_node = demo_node(ctx), node_at(ctx, CITY)
    police = _md(city_node, Role.DEPARTMENT, "wh-police", "clerk@wh-police")
    police_admin = _md(city_node, Role.ADMIN, "wh-police", "admin@wh-police")
    authority = _md(city_node, Role.ADMIN, "hb-data", "admin@hb-data")
    county = _md(county_node, Role.DEPARTMENT, "ja-gov", "clerk-liu@ja-gov")
    rows = residents()
    with (
        grpc.insecure_channel(city_node.address) as city_channel,
        grpc.insecure_channel(county_node.address) as county_channel,
    ):
        _publish(ctx, cpb_grpc.CatalogServiceStub(city_channel), police, authority)
        city = pb_grpc.ExchangeServiceStub(city_channel)
        stub = pb_grpc.ExchangeServiceStub(county_channel)
        _upload(ctx, city, police, rows)
        request_id = _apply(ctx, stub, county)
        _decide(ctx, city, police_admin, request_id)
        _receive(ctx, stub, county, rows)
        _negative(ctx, stub, county)


def _publish(
    ctx: DemoContext, stub: cpb_grpc.CatalogServiceStub, police: Metadata, authority: Metadata
) -> None:
    """武汉市公安局's resource, published at its own node (catalogue chapter), lists first."""
    published = stub.GetResource(
        cpb.GetResourceRequest(code=HOUSEHOLD), metadata=police, timeout=TIMEOUT
    ).resource
    listed = stub.ListNegativeEntries(
        cpb.ListNegativeEntriesRequest(resource_code=HOUSEHOLD), metadata=authority,
        timeout=TIMEOUT,
    ).entries  # fmt: skip
    ctx.console.print(
        f"{POLICE.name} has published {HOUSEHOLD} {published.spec.name} at its own node, 武汉 "
        f"{CITY} ({DATA_AUTHORITY.name} first listed 人像照片 as never released): "
        f"{cpb.ResourceStatus.Name(published.status).removeprefix('RESOURCE_STATUS_').lower()}"
    )
    if published.status != cpb.RESOURCE_STATUS_PUBLISHED:
        raise DemoError(f"the household resource is not published at 武汉: {published}")
    if [list(e.item_names) for e in listed] != [["人像照片"]]:
        raise DemoError(f"the negative list of {HOUSEHOLD} at 武汉 is {list(listed)}")


def _upload(
    ctx: DemoContext, stub: pb_grpc.ExchangeServiceStub, md: Metadata, rows: list[dict[str, str]]
) -> None:
    header = pb.UploadHeader(
        resource_code=HOUSEHOLD, mode=pb.UPLOAD_MODE_SNAPSHOT, format=pb.DATASET_FORMAT_CSV,
        key_item=KEY_ITEM, upload_id="demo-household-snapshot-1",
    )  # fmt: skip

    def parts() -> Iterator[pb.UploadDatasetRequest]:
        yield pb.UploadDatasetRequest(header=header)
        yield pb.UploadDatasetRequest(chunk=_csv(rows))

    reply = stub.UploadDataset(parts(), metadata=md, timeout=TIMEOUT)
    ctx.console.print(
        f"{POLICE.name} uploads a snapshot to the 武汉 node's hosted provider: "
        f"{reply.records_total} records, every item (人像照片 included), version {reply.version}"
    )
    if reply.records_total != len(rows):
        raise DemoError(f"the hosted dataset holds {reply.records_total} records, not {len(rows)}")


def _apply(ctx: DemoContext, stub: pb_grpc.ExchangeServiceStub, county: Metadata) -> str:
    out = ctx.console
    now = datetime.now(UTC)
    reply, call = stub.ApplyForData.with_call(
        pb.ApplyForDataRequest(
            resource_code=HOUSEHOLD, items=ASKED, purpose=PURPOSE, legal_basis=GUOFA_2024_3,
            period_start=timestamp(now - timedelta(minutes=1)),
            period_end=timestamp(now + timedelta(days=90)), expected_volume=50,
        ),
        metadata=county, timeout=TIMEOUT,
    )  # fmt: skip
    request = reply.request
    path = check_path("the application", hop_path(call), TO_CITY)
    out.print(
        f"{COUNTY_DEPT.name} ({COUNTY_DEPT.region_code}) applies at its own node for "
        f"{len(ASKED)} items: {'、'.join(ASKED)}\n"
        f"  purpose: {PURPOSE}\n  legal basis: {GUOFA_2024_3}\n"
        f"  routed {path} (the county's catalogue names the resource's region)\n"
        f"  → request {request.id}: [yellow]{_state(request.state)}[/yellow] at 武汉 "
        "(conditional sharing: waits for the provider's admin)"
    )
    if request.state != pb.SHARE_REQUEST_STATE_SUBMITTED or reply.HasField("grant"):
        raise DemoError(f"a conditional request was not left for a decision: {request}")
    early = refused(stub.RequestData, pb.RequestDataRequest(resource_code=HOUSEHOLD), county)
    out.print(f"asking for the data before the decision: [yellow]{early}[/yellow]")
    if (early.code, early.reason) != (grpc.StatusCode.PERMISSION_DENIED, "NO_GRANT"):
        raise DemoError(f"data before a grant: expected PERMISSION_DENIED NO_GRANT, got {early}")
    return str(request.id)


def _decide(
    ctx: DemoContext, stub: pb_grpc.ExchangeServiceStub, admin: Metadata, request_id: str
) -> None:
    out = ctx.console
    pending = stub.ListPendingShareRequests(
        pb.ListPendingShareRequestsRequest(), metadata=admin, timeout=TIMEOUT
    ).requests
    names = {d.uscc: d.name for d in DEPARTMENTS.values()}
    table = Table(title=f"pending requests addressed to {POLICE.name} (its admin's view at 武汉)")
    for col in ("request", "from", "resource", "items asked", "purpose"):
        table.add_column(col, overflow="fold")
    for r in pending:
        table.add_row(r.id[:8] + "…", names.get(r.requester_org, r.requester_org),
                      r.resource_code, "、".join(r.items), r.purpose)  # fmt: skip
    out.print(table)
    if request_id not in {r.id for r in pending}:
        raise DemoError(f"request {request_id} is not among the provider's pending requests")

    until = datetime.now(UTC) + timedelta(days=30)
    reply = stub.ApproveShareRequest(
        pb.ApproveShareRequestRequest(
            request_id=request_id, items=GRANTED, valid_until=timestamp(until)
        ),
        metadata=admin,
        timeout=TIMEOUT,
    )
    grant, decision = reply.grant, reply.request.decision
    granted = [item for item in ASKED if item in grant.items]
    not_granted = [item for item in ASKED if item not in grant.items]
    out.print(
        f"the admin of {POLICE.name} approves [green]{len(grant.items)} of {len(ASKED)}[/green] "
        f"items for 30 days instead of 90 (grant {grant.id}):\n"
        f"  granted:     {'、'.join(granted)}\n"
        f"  not granted: {'、'.join(not_granted)} (not needed for the matter)"
    )
    if (
        set(grant.items) != set(GRANTED)
        or set(decision.items_granted) != set(GRANTED)
        or reply.request.state != pb.SHARE_REQUEST_STATE_APPROVED
        or grant.state != pb.GRANT_STATE_ACTIVE
    ):
        raise DemoError(f"the approval did not grant exactly {GRANTED}: {reply}")


def _receive(
    ctx: DemoContext,
    stub: pb_grpc.ExchangeServiceStub,
    county: Metadata,
    rows: list[dict[str, str]],
) -> None:
    out = ctx.console
    by_key = {row[KEY_ITEM]: row for row in rows}
    father = rows[0]
    reply, call = stub.RequestData.with_call(
        pb.RequestDataRequest(resource_code=HOUSEHOLD, key=father[KEY_ITEM]),
        metadata=county,
        timeout=TIMEOUT,
    )
    path = check_path("RequestData", hop_path(call), TO_CITY)
    if len(reply.records) != 1:
        raise DemoError(f"a look-up by key returned {len(reply.records)} records")
    check_minimised(reply.records, by_key)
    out.print(
        f"RequestData by key {father[KEY_ITEM]} ({path}): 1 record, items delivered "
        f"{'、'.join(reply.items_delivered)}"
    )
    if set(reply.items_delivered) != set(GRANTED):
        raise DemoError(f"items delivered {list(reply.items_delivered)}, granted {GRANTED}")

    records: list[ppb.Record] = []
    pages, token = 0, ""
    while True:  # every page is one forwarded call
        page, call = stub.RequestData.with_call(
            pb.RequestDataRequest(resource_code=HOUSEHOLD, page_size=PAGE, page_token=token),
            metadata=county,
            timeout=TIMEOUT,
        )
        check_path("a page of RequestData", hop_path(call), TO_CITY)
        records.extend(page.records)
        pages += 1
        token = page.next_page_token
        if not token or pages > len(rows):
            break
    check_minimised(records, by_key)
    if sorted(r.key for r in records) != sorted(by_key):
        raise DemoError(f"the pages delivered {len(records)} of {len(rows)} records")
    out.print(
        f"RequestData page by page: {len(records)} records in {pages} pages of {PAGE}, each "
        f"page a forwarded call; the hosted store holds {len(COLUMNS)} items per record, every "
        f"record arrived with the {len(GRANTED)} granted"
    )
    table = Table(title=f"received by the county (first 4 of {len(records)})")
    for col in GRANTED:
        table.add_column(col)
    for record in records[:4]:
        table.add_row(*(record.fields[name] for name in GRANTED))
    out.print(table)


def check_minimised(records: Iterable[ppb.Record], by_key: dict[str, dict[str, str]]) -> None:
    """Every delivered record carries exactly the granted items, with the uploaded values."""
    for record in records:
        extra = set(record.fields) - set(GRANTED)
        if extra:
            raise DemoError(f"record {record.key} carries items never granted: {sorted(extra)}")
        source = by_key.get(record.key)
        if source is None or dict(record.fields) != {k: source[k] for k in GRANTED}:
            raise DemoError(f"record {record.key} does not match what the provider uploaded")


def _negative(ctx: DemoContext, stub: pb_grpc.ExchangeServiceStub, county: Metadata) -> None:
    out = ctx.console
    now = datetime.now(UTC)
    application = pb.ApplyForDataRequest(
        resource_code=HOUSEHOLD, items=["姓名", "人像照片"],
        purpose="新生儿出生一件事：人像比对核验父母身份", legal_basis=GUOFA_2024_3,
        period_start=timestamp(now - timedelta(minutes=1)),
        period_end=timestamp(now + timedelta(days=30)),
    )  # fmt: skip
    trace = new_trace()
    refusal = refused(stub.ApplyForData, application, (*county, ("x-trace-id", trace)))
    if (refusal.code, refusal.reason) != (grpc.StatusCode.FAILED_PRECONDITION, "NEGATIVE_LISTED"):
        raise DemoError(f"expected FAILED_PRECONDITION NEGATIVE_LISTED, got {refusal}")
    decided = [e.reason for e in traced(ctx, CITY, trace) if e.reason]
    if "NEGATIVE_LISTED" not in decided:
        raise DemoError(f"武汉 did not record the refusal under trace {trace}: {decided}")
    out.print(
        f"{COUNTY_DEPT.name} applies for 姓名 and 人像照片: [red]{refusal.code.name} "
        f"{refusal.reason}[/red] (item {refusal.metadata.get('item', '?')}), refused at 武汉 "
        f"(in its log under trace {trace}) and passed back unchanged\n"
        f"  legal basis: {refusal.metadata.get('legal_basis', '(none given)')}"
    )
    if refusal.metadata.get("item") != "人像照片" or refusal.metadata.get("legal_basis") != PIPL_28:
        raise DemoError(f"the refusal does not name the item and its legal basis: {refusal}")


def _state(state: pb.ShareRequestState.ValueType) -> str:
    return pb.ShareRequestState.Name(state).removeprefix("SHARE_REQUEST_STATE_").lower()
