"""Demo chapter: the data catalogue and the three lists, across the federation and at 江岸区.

A node's catalogue holds its own region's resources, so each department
registers and publishes its part of the sample catalogue at its own region's
node (the admin lists what may never be released first); catalogue federation
then brings the national, 湖北 and 武汉 resources down to 江岸区. Departments
file demands for the "one thing" matters — a newborn, opening a restaurant —
at their own nodes and see their matches, the data authority reads 江岸区's
coverage table, and the exchange's question "may this item be released?" is
refused at 武汉 for a negative-listed item, with its legal basis.
"""

from __future__ import annotations

import grpc

from catalog_registry import render
from catalog_registry.client import LoadedSample, file_demands, load_sample
from catalog_registry.sample_data import DEPARTMENTS, PIPL_28, sample_for_node
from zhida.auth.principal import Role
from zhida.catalog.v1 import catalog_service_pb2 as pb
from zhida.catalog.v1 import catalog_service_pb2_grpc as pb_grpc
from zhida.client import bearer, error_details
from zhida.demo import CITY, COUNTY, DemoContext, DemoError, channel, federation, node_at
from zhida.demo.support import eventually, label
from zhida.localnode import LocalNode
from zhida.regions import parse_region

Metadata = tuple[tuple[str, str], ...]
HOUSEHOLD = "1-01-001-0000-000002"  # 居民户籍登记信息 of 武汉市公安局 (420100)
SYNC_WAIT = 30.0  # seconds; the nodes sync every 0.5 s
TIMEOUT = 30.0


class Tokens:
    """Dev tokens of one node, one per sample department, and the data authority's admin."""

    def __init__(self, node: LocalNode) -> None:
        self.node = node
        self._cache: dict[str | None, Metadata] = {}
        self._by_uscc = {d.uscc: d for d in DEPARTMENTS.values()}

    def __call__(self, uscc: str | None) -> Metadata:
        if uscc not in self._cache:
            dept = self._by_uscc[uscc or DEPARTMENTS["hb-data"].uscc]
            role = Role.ADMIN if uscc is None else Role.DEPARTMENT
            token = self.node.mint(
                role, organisation=dept.uscc, region_code=dept.region_code,
                subject=f"{role.claim}@{dept.key}",
            )  # fmt: skip
            self._cache[uscc] = bearer(token)
        return self._cache[uscc]

    def exchange(self) -> Metadata:
        """The exchange asking before a release: the node role of the node's own region."""
        region = self.node.config.node.region_code
        return bearer(self.node.mint(Role.NODE, region_code=region, subject=f"exchange@{region}"))


def _stub(ctx: DemoContext, region: str) -> pb_grpc.CatalogServiceStub:
    return pb_grpc.CatalogServiceStub(channel(ctx, region))


def chapter(ctx: DemoContext) -> None:
    out = ctx.console
    regions = tuple(federation(ctx).nodes)
    tokens = {region: Tokens(node_at(ctx, region)) for region in regions}
    out.print(
        "each department registers its resources at its own region's node; the admin "
        "(湖北省数据局) lists what may never be released; then everything is published"
    )
    loaded: dict[str, LoadedSample] = {}
    for region in regions:
        loaded[region] = load_sample(
            _stub(ctx, region), tokens[region], region=region, nodes=regions, demands=False
        )
        providers = {r.spec.provider_code for r in loaded[region].resources}
        out.print(
            f"  {label(region)}: published [bold]{len(loaded[region].resources)}[/bold] "
            f"resources of {len(providers)} departments"
        )
    negative = [e for part in loaded.values() for e in part.negative]
    out.print(f"{len(negative)} negative-list entries, each at its resource's node")
    for entry in negative:
        items = "、".join(entry.item_names) or "(the whole resource)"
        out.print(f"  负面清单: {entry.resource_code} {items}")
    for basis in sorted({e.legal_basis for e in negative}):
        out.print(f"  legal basis: {basis}")

    _wait_for_upper_levels(ctx, regions, tokens[COUNTY])
    county = _stub(ctx, COUNTY)
    hits = county.SearchResources(
        pb.SearchResourcesRequest(keywords="营业执照", region_code="420000",
                                  include_subregions=True),
        metadata=tokens[COUNTY](DEPARTMENTS["ja-gov"].uscc), timeout=TIMEOUT,
    ).hits  # fmt: skip
    title = "search 营业执照 in 湖北 at 江岸区 (as 江岸区政务服务和大数据管理局)"
    out.print(render.search_table(hits, title))
    if not hits or hits[0].score != 1000:
        raise DemoError("the business-licence resource was not found first")

    matches: list[pb.DemandMatch] = []
    for region in regions:  # each department files at its own node
        wanted = sample_for_node(region, regions).demands
        matches += file_demands(_stub(ctx, region), tokens[region], wanted)
    _demands(ctx, matches)
    report = county.GetCoverageReport(
        pb.GetCoverageReportRequest(), metadata=tokens[COUNTY](None), timeout=TIMEOUT
    )
    check_coverage(report)
    for table in render.coverage_tables(report):
        out.print(table)
    _release(ctx, _stub(ctx, CITY), tokens[CITY])


def _wait_for_upper_levels(ctx: DemoContext, regions: tuple[str, ...], tokens: Tokens) -> None:
    """Until 江岸区's catalogue holds every resource published at its node or above."""
    county = parse_region(COUNTY)
    above = [r for r in regions if parse_region(r).contains(county)]
    want = {s.code.text for r in above for s in sample_for_node(r, regions).resources}
    stub = _stub(ctx, COUNTY)

    def arrived() -> int | None:
        request = pb.SearchResourcesRequest(page_size=100)
        reply = stub.SearchResources(request, metadata=tokens(None), timeout=TIMEOUT)
        held = {h.resource.spec.code for h in reply.hits}
        return len(held) if want <= held else None

    held, waited = eventually(arrived, within=SYNC_WAIT, what="the upper levels' resources")
    ctx.console.print(
        f"江岸区's catalogue holds {held} resources after [green]{waited:.1f} s[/green]: its own "
        "and those of 武汉, 湖北 and the national level, pulled down by catalogue federation"
    )


def check_coverage(report: pb.GetCoverageReportResponse) -> None:
    """The coverage report must have rows: a table of nothing would prove nothing."""
    if not report.departments or not report.regions:
        raise DemoError(
            f"the coverage report has no rows ({len(report.departments)} departments, "
            f"{len(report.regions)} regions)"
        )


def _demands(ctx: DemoContext, demands: list[pb.DemandMatch]) -> None:
    out = ctx.console
    out.print(render.matches_table(demands, "需求清单: demands filed and their candidate supply"))
    for matter, wanted in (("新生儿出生", "出生医学证明"), ("开办餐饮店", "营业执照")):
        match = next(m for m in demands if m.demand.spec.matter == matter)
        best = match.candidates[0].name if match.candidates else ""
        if not match.met or wanted not in best:
            raise DemoError(f"the {matter} demand did not find {wanted}: {best or 'nothing'}")
        out.print(f"[green]{matter}[/green]: '{match.demand.spec.wanted_text}' → {best}")
    unmet = [m.demand.spec.wanted_text for m in demands if not m.met]
    out.print(f"unmet demands (the suppliers' to-do list): {'、'.join(unmet)}")
    if not unmet:
        raise DemoError("the sample's unsupplied demands were reported as met")


def _release(ctx: DemoContext, stub: pb_grpc.CatalogServiceStub, tokens: Tokens) -> None:
    """At 武汉, the resource's node, where its negative-list entry is kept."""
    out = ctx.console
    exchange = tokens.exchange()
    for item, want in (("姓名", True), ("人像照片", False)):
        reply = stub.CheckRelease(
            pb.CheckReleaseRequest(resource_code=HOUSEHOLD, item_name=item),
            metadata=exchange, timeout=TIMEOUT,
        )  # fmt: skip
        verdict = "[green]allowed" if reply.allowed else f"[red]refused ({reply.reason})"
        out.print(f"may {HOUSEHOLD} 居民户籍登记信息 / {item} be released? {verdict}")
        if reply.legal_basis:
            out.print(f"  legal basis: {reply.legal_basis}")
        if reply.allowed is not want or (not want and reply.legal_basis != PIPL_28):
            raise DemoError(f"release check of {item} answered {reply}")
    police = tokens(DEPARTMENTS["wh-police"].uscc)
    current = stub.GetResource(
        pb.GetResourceRequest(code=HOUSEHOLD), metadata=police, timeout=TIMEOUT
    ).resource
    spec = pb.ResourceSpec()
    spec.CopyFrom(current.spec)
    for data_item in spec.items:
        data_item.share_type = pb.SHARE_TYPE_UNSPECIFIED  # try to offer the photo for sharing again
    try:
        stub.UpdateResource(
            pb.UpdateResourceRequest(resource=spec), metadata=police, timeout=TIMEOUT
        )
    except grpc.RpcError as error:
        details = error_details(error)
        out.print(f"武汉市公安局 tries to share 人像照片 again: [yellow]{details}[/yellow]")
        if details.reason != "NEGATIVE_LISTED_SHAREABLE":
            raise DemoError(f"unexpected refusal: {details}") from None
    else:
        raise DemoError("a negative-listed item was offered for sharing")
