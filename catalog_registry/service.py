"""``zhida.catalog.v1.CatalogService``: the catalogue over gRPC.

Each handler takes the caller from :func:`zhida.server.context.current_principal`
(the interceptor authenticated it and checked its role against
``zhida/auth/policy.py``), converts the request with :mod:`catalog_registry.wire`,
runs the blocking work of :class:`~catalog_registry.live.LiveCatalog` in the
runtime's I/O threads and converts the answer back. Domain errors are
:class:`zhida.errors.ZhidaError` and reach the client as rich statuses (reason,
field violations) without any handling here.

Every change to the catalogue or the negative list — and every attempt
refused for ownership — is written to the node's audit log
(``catalog.change`` / ``negative_list.change``) before the call returns.

Example::

    import grpc
    from zhida.catalog.v1 import catalog_service_pb2 as pb, catalog_service_pb2_grpc as rpc

    stub = rpc.CatalogServiceStub(grpc.insecure_channel("127.0.0.1:50051"))
    md = [("authorization", f"Bearer {token}")]
    page = stub.SearchResources(pb.SearchResourcesRequest(keywords="营业执照"), metadata=md)
    for hit in page.hits:
        print(hit.score, hit.resource.spec.code, hit.resource.spec.name)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from audit_log.events import Action, Outcome
from catalog_registry import wire
from catalog_registry.live import LiveCatalog
from catalog_registry.model import Resource
from catalog_registry.sql import SqlCatalogRepository
from zhida.catalog.v1 import catalog_service_pb2 as pb
from zhida.catalog.v1 import catalog_service_pb2_grpc as pb_grpc
from zhida.errors import FieldViolation, InvalidArgument, PermissionDenied
from zhida.server.context import current_principal
from zhida.server.runtime import NodeRuntime

P = ParamSpec("P")
T = TypeVar("T")
EXPORT_CHUNK = 64 * 1024
DEFAULT_FEED_PAGE = 100


class CatalogService(pb_grpc.CatalogServiceServicer):
    """See ``protos/zhida/catalog/v1/catalog_service.proto``."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self._runtime = runtime
        node = runtime.config.node
        # keyword searches ranked in memory (built on the first one), rows read from SQL
        repo = SqlCatalogRepository(runtime.database, search_index=True)
        self.live = LiveCatalog(repo, node.region_code)
        self._title = f"{node.name} 政务信息资源目录"

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._runtime.run_blocking(fn, *args, **kwargs)

    async def _audited(
        self,
        action: Action,
        resource: str | None,
        details: Mapping[str, str],
        work: Awaitable[T],
        legal_basis: str | None = None,
    ) -> T:
        """Await ``work``; record it (or its refusal for ownership) in the audit log."""
        recorder = self._runtime.recorder
        try:
            result = await work
        except PermissionDenied as refused:
            await recorder.record(
                action, outcome=Outcome.DENIED, reason=refused.reason, resource=resource,
                details=details, legal_basis=legal_basis,
            )  # fmt: skip
            raise
        await recorder.record(action, resource=resource, details=details, legal_basis=legal_basis)
        return result

    async def _lifecycle(self, change: str, code: str, fn: Callable[..., Resource]) -> pb.Resource:
        principal = current_principal()
        work = self._run(fn, principal, code)
        resource = await self._audited(Action.CATALOG_CHANGE, code, {"change": change}, work)
        return wire.resource_to_pb(resource)

    # -- resources -------------------------------------------------------------------------
    async def RegisterResource(
        self, request: pb.RegisterResourceRequest, context: Any
    ) -> pb.RegisterResourceResponse:
        spec = wire.spec_from_pb(request.resource)
        work = self._run(self.live.registry.register, current_principal(), spec)
        details = {"change": "register"}
        resource = await self._audited(Action.CATALOG_CHANGE, spec.code.text, details, work)
        return pb.RegisterResourceResponse(resource=wire.resource_to_pb(resource))

    async def UpdateResource(
        self, request: pb.UpdateResourceRequest, context: Any
    ) -> pb.UpdateResourceResponse:
        spec = wire.spec_from_pb(request.resource)
        expected = request.expected_version or None
        work = self._run(
            self.live.registry.update, current_principal(), spec, expected_version=expected
        )
        details = {"change": "update"}
        resource = await self._audited(Action.CATALOG_CHANGE, spec.code.text, details, work)
        return pb.UpdateResourceResponse(resource=wire.resource_to_pb(resource))

    async def PublishResource(
        self, request: pb.PublishResourceRequest, context: Any
    ) -> pb.PublishResourceResponse:
        resource = await self._lifecycle("publish", request.code, self.live.registry.publish)
        return pb.PublishResourceResponse(resource=resource)

    async def RetireResource(
        self, request: pb.RetireResourceRequest, context: Any
    ) -> pb.RetireResourceResponse:
        resource = await self._lifecycle("retire", request.code, self.live.registry.retire)
        return pb.RetireResourceResponse(resource=resource)

    async def GetResource(
        self, request: pb.GetResourceRequest, context: Any
    ) -> pb.GetResourceResponse:
        resource = await self._run(self.live.registry.get, current_principal(), request.code)
        return pb.GetResourceResponse(resource=wire.resource_to_pb(resource))

    async def ListResourceHistory(
        self, request: pb.ListResourceHistoryRequest, context: Any
    ) -> pb.ListResourceHistoryResponse:
        versions, token = await self._run(
            self.live.history, current_principal(), request.code, request.page_size,
            request.page_token,
        )  # fmt: skip
        return pb.ListResourceHistoryResponse(
            versions=[wire.resource_to_pb(v) for v in versions], next_page_token=token
        )

    async def SearchResources(
        self, request: pb.SearchResourcesRequest, context: Any
    ) -> pb.SearchResourcesResponse:
        query = wire.search_from_pb(request)
        page = await self._run(self.live.search, current_principal(), query)
        return pb.SearchResourcesResponse(
            hits=[pb.SearchHit(score=h.score, resource=wire.resource_to_pb(h.resource))
                  for h in page.hits],
            next_page_token=page.next_page_token,
        )  # fmt: skip

    async def GetSupplyList(
        self, request: pb.GetSupplyListRequest, context: Any
    ) -> pb.GetSupplyListResponse:
        entries, token = await self._run(
            self.live.supply, current_principal(), request.provider_code or None,
            request.region_code or None, request.page_size, request.page_token,
        )  # fmt: skip
        return pb.GetSupplyListResponse(
            entries=[wire.supply_to_pb(e) for e in entries], next_page_token=token
        )

    # -- demands ---------------------------------------------------------------------------
    async def FileDemand(
        self, request: pb.FileDemandRequest, context: Any
    ) -> pb.FileDemandResponse:
        spec = wire.demand_spec_from_pb(request.demand)
        match = await self._run(self.live.file_demand, current_principal(), spec)
        return pb.FileDemandResponse(match=wire.match_to_pb(match))

    async def ListDemands(
        self, request: pb.ListDemandsRequest, context: Any
    ) -> pb.ListDemandsResponse:
        matches, token = await self._run(
            self.live.list_demands, current_principal(), request.requester_code or None,
            request.unmet_only, request.page_size, request.page_token,
        )  # fmt: skip
        return pb.ListDemandsResponse(
            demands=[wire.match_to_pb(m) for m in matches], next_page_token=token
        )

    async def GetUnmetDemandReport(
        self, request: pb.GetUnmetDemandReportRequest, context: Any
    ) -> pb.GetUnmetDemandReportResponse:
        todos = await self._run(
            self.live.unmet_report, current_principal(), request.provider_code or None
        )
        return pb.GetUnmetDemandReportResponse(
            todos=[
                pb.ProviderTodo(
                    provider_code=t.provider_code,
                    provider_name=t.provider_name,
                    demands=[
                        pb.UnmetDemand(
                            demand=wire.demand_to_pb(u.demand),
                            near_misses=[wire.candidate_to_pb(c) for c in u.near_misses],
                        )
                        for u in t.demands
                    ],
                )
                for t in todos
            ]
        )

    # -- negative list ---------------------------------------------------------------------
    async def AddNegativeEntry(
        self, request: pb.AddNegativeEntryRequest, context: Any
    ) -> pb.AddNegativeEntryResponse:
        negative = await self._run(self.live.negative_list)
        items = tuple(request.item_names)
        work = self._run(
            negative.add, current_principal(), request.resource_code, items, request.legal_basis
        )
        details = {"change": "add", "items": "、".join(items) or "(whole resource)"}
        entry = await self._audited(
            Action.NEGATIVE_LIST_CHANGE, request.resource_code, details, work,
            legal_basis=request.legal_basis or None,
        )  # fmt: skip
        return pb.AddNegativeEntryResponse(entry=wire.negative_to_pb(entry))

    async def RemoveNegativeEntry(
        self, request: pb.RemoveNegativeEntryRequest, context: Any
    ) -> pb.RemoveNegativeEntryResponse:
        negative = await self._run(self.live.negative_list)
        items = tuple(request.item_names)
        work = self._run(negative.remove, current_principal(), request.resource_code, items)
        details = {"change": "remove", "items": "、".join(items) or "(whole resource)"}
        await self._audited(Action.NEGATIVE_LIST_CHANGE, request.resource_code, details, work)
        return pb.RemoveNegativeEntryResponse()

    async def ListNegativeEntries(
        self, request: pb.ListNegativeEntriesRequest, context: Any
    ) -> pb.ListNegativeEntriesResponse:
        entries, token = await self._run(
            self.live.negative_entries, request.resource_code or None, request.page_size,
            request.page_token,
        )  # fmt: skip
        return pb.ListNegativeEntriesResponse(
            entries=[wire.negative_to_pb(e) for e in entries], next_page_token=token
        )

    async def CheckRelease(
        self, request: pb.CheckReleaseRequest, context: Any
    ) -> pb.CheckReleaseResponse:
        release = await self._run(self.live.check_release, request.resource_code, request.item_name)
        return pb.CheckReleaseResponse(
            allowed=release.allowed,
            reason=release.reason,
            legal_basis=release.legal_basis,
            entry=None if release.entry is None else wire.negative_to_pb(release.entry),
            share_type=wire.SHARE.to_pb[release.share_type],  # type: ignore[arg-type]
            share_conditions=release.share_conditions,
        )

    async def GetCoverageReport(
        self, request: pb.GetCoverageReportRequest, context: Any
    ) -> pb.GetCoverageReportResponse:
        report = await self._run(self.live.coverage)
        return pb.GetCoverageReportResponse(
            departments=[wire.coverage_to_pb(r) for r in report.departments],
            regions=[wire.coverage_to_pb(r) for r in report.regions],
        )

    # -- federation ------------------------------------------------------------------------
    async def ExportChanges(
        self, request: pb.ExportChangesRequest, context: Any
    ) -> pb.ExportChangesResponse:
        limit = request.page_size or DEFAULT_FEED_PAGE
        changes, cursor = await self._run(
            self.live.federation.export_changes, request.since_cursor, limit
        )
        return pb.ExportChangesResponse(
            changes=[wire.change_to_pb(c) for c in changes], next_cursor=cursor
        )

    async def ImportChildChanges(
        self, request: pb.ImportChildChangesRequest, context: Any
    ) -> pb.ImportChildChangesResponse:
        changes = wire.changes_from_pb(request.changes)
        work = self._run(
            self.live.federation.import_from_child, current_principal(), request.child_region,
            changes,
        )  # fmt: skip
        details = {"change": "import_child", "child_region": request.child_region}
        report = await self._audited(Action.CATALOG_CHANGE, request.child_region, details, work)
        return pb.ImportChildChangesResponse(
            results=[wire.import_result_to_pb(r) for r in report.results],
            imported=report.imported,
            refused=report.refused,
        )

    # -- bulk ------------------------------------------------------------------------------
    async def ImportResources(
        self, request: pb.ImportResourcesRequest, context: Any
    ) -> pb.ImportResourcesResponse:
        if request.format not in (pb.FILE_FORMAT_CSV, pb.FILE_FORMAT_JSON):
            raise InvalidArgument(
                "say whether the file is CSV or JSON",
                reason="INVALID_IMPORT_FILE",
                violations=[
                    FieldViolation("format", "must be FILE_FORMAT_CSV or FILE_FORMAT_JSON")
                ],
            )
        csv = request.format == pb.FILE_FORMAT_CSV
        work = self._run(self.live.import_file, current_principal(), request.content, csv=csv)
        codes = await self._audited(Action.CATALOG_CHANGE, None, {"change": "import"}, work)
        return pb.ImportResourcesResponse(codes=codes)

    async def ExportCatalog(
        self, request: pb.ExportCatalogRequest, context: Any
    ) -> AsyncIterator[pb.ExportCatalogResponse]:
        dcat = request.format == pb.EXPORT_FORMAT_DCAT_JSONLD
        if request.format not in (pb.EXPORT_FORMAT_JSON, pb.EXPORT_FORMAT_DCAT_JSONLD):
            raise InvalidArgument(
                "choose an export format",
                reason="INVALID_EXPORT_FORMAT",
                violations=[FieldViolation("format", "must be EXPORT_FORMAT_JSON or _DCAT_JSONLD")],
            )
        statuses = wire.statuses_from_pb(request.statuses)
        data, count = await self._run(
            self.live.export_document, current_principal(), statuses, dcat=dcat, title=self._title
        )
        media = "application/ld+json" if dcat else "application/json"
        yield pb.ExportCatalogResponse(
            chunk=data[:EXPORT_CHUNK], media_type=media, resource_count=count
        )
        for start in range(EXPORT_CHUNK, len(data), EXPORT_CHUNK):
            yield pb.ExportCatalogResponse(chunk=data[start : start + EXPORT_CHUNK])
