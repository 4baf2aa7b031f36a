"""Demo chapter: the data catalogue and the three lists on the county node.

Departments register and publish the sample catalogue (the admin lists what
may never be released first), departments file demands for the "one thing"
matters — a newborn, opening a restaurant — and see their matches, the data
authority reads the coverage table, and the exchange's question "may this
item be released?" is refused for a negative-listed item, with its legal basis.
"""

from __future__ import annotations

import grpc

from catalog_registry import render
from catalog_registry.client import load_sample
from catalog_registry.sample_data import DEPARTMENTS, PIPL_28
from zhida.auth.principal import Role
from zhida.catalog.v1 import catalog_service_pb2 as pb
from zhida.catalog.v1 import catalog_service_pb2_grpc as pb_grpc
from zhida.client import bearer, error_details
from zhida.demo import DemoContext, DemoError, demo_node
from zhida.localnode import LocalNode

Metadata = tuple[tuple[str, str], ...]
HOUSEHOLD = "1-01-001-0000-000002"  # 居民户籍登记信息 of 武汉市公安局


class Tokens:
    """Dev tokens of the node, one per sample department, and the data authority's admin."""

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
        """The exchange asking before a release: the node role of the county's own region."""
        region = self.node.config.node.region_code
        return bearer(self.node.mint(Role.NODE, region_code=region, subject=f"exchange@{region}"))


def chapter(ctx: DemoContext) -> None:
    out = ctx.console
    node = demo_node(ctx)
    tokens = Tokens(node)
    with grpc.insecure_channel(node.address) as channel:
        stub = pb_grpc.CatalogServiceStub(channel)
        out.print("each department registers its resources; the admin (湖北省数据局) lists "
                  "what may never be released; then everything is published")  # fmt: skip
        loaded = load_sample(stub, tokens)
        providers = {r.spec.provider_code for r in loaded.resources}
        out.print(
            f"published [bold]{len(loaded.resources)}[/bold] resources of {len(providers)} "
            f"departments; {len(loaded.negative)} negative-list entries"
        )
        for entry in loaded.negative:
            items = "、".join(entry.item_names) or "(the whole resource)"
            out.print(f"  负面清单: {entry.resource_code} {items}")
        for basis in sorted({e.legal_basis for e in loaded.negative}):
            out.print(f"  legal basis: {basis}")

        hits = stub.SearchResources(
            pb.SearchResourcesRequest(keywords="营业执照", region_code="420000",
                                      include_subregions=True),
            metadata=tokens(DEPARTMENTS["ja-gov"].uscc),
        ).hits  # fmt: skip
        out.print(
            render.search_table(hits, "search 营业执照 in 湖北 (as 江岸区政务服务和大数据管理局)")
        )
        if not hits or hits[0].score != 1000:
            raise DemoError("the business-licence resource was not found first")

        _demands(ctx, loaded.demands)
        report = stub.GetCoverageReport(pb.GetCoverageReportRequest(), metadata=tokens(None))
        for table in render.coverage_tables(report):
            out.print(table)
        _release(ctx, stub, tokens)


def _demands(ctx: DemoContext, demands: tuple[pb.DemandMatch, ...]) -> None:
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
    out = ctx.console
    exchange = tokens.exchange()
    for item, want in (("姓名", True), ("人像照片", False)):
        reply = stub.CheckRelease(
            pb.CheckReleaseRequest(resource_code=HOUSEHOLD, item_name=item), metadata=exchange
        )
        verdict = "[green]allowed" if reply.allowed else f"[red]refused ({reply.reason})"
        basis = f" — legal basis: {reply.legal_basis}" if reply.legal_basis else ""
        out.print(f"may {HOUSEHOLD} 居民户籍登记信息 / {item} be released? {verdict}{basis}")
        if reply.allowed is not want or (not want and reply.legal_basis != PIPL_28):
            raise DemoError(f"release check of {item} answered {reply}")
    police = tokens(DEPARTMENTS["wh-police"].uscc)
    current = stub.GetResource(pb.GetResourceRequest(code=HOUSEHOLD), metadata=police).resource
    spec = pb.ResourceSpec()
    spec.CopyFrom(current.spec)
    for data_item in spec.items:
        data_item.share_type = pb.SHARE_TYPE_UNSPECIFIED  # try to offer the photo for sharing again
    try:
        stub.UpdateResource(pb.UpdateResourceRequest(resource=spec), metadata=police)
    except grpc.RpcError as error:
        details = error_details(error)
        out.print(f"武汉市公安局 tries to share 人像照片 again: [yellow]{details}[/yellow]")
        if details.reason != "NEGATIVE_LISTED_SHAREABLE":
            raise DemoError(f"unexpected refusal: {details}") from None
    else:
        raise DemoError("a negative-listed item was offered for sharing")
