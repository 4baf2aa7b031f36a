"""The catalogue a node serves: the SQL store plus its in-memory indexes, kept fresh.

:class:`LiveCatalog` is what the gRPC servicer calls (in worker threads; every
method blocks). It owns one :class:`~catalog_registry.registry.CatalogRegistry`,
one :class:`~catalog_registry.federation.Federation`, and two in-memory
structures built from the store on first use:

* the :class:`~catalog_registry.matching.MatchIndex` of published resources,
  updated by the registry's and the federation's listeners as this process
  writes, and caught up from the change feed before every use, so writes
  made by other worker processes (``zhida serve --workers N``) count too. The
  index is not thread-safe: one lock guards it and the match-result cache.
* the :class:`~catalog_registry.negative_list.NegativeList`, reloaded when the
  store's negative-list version moved (another process changed the list, or
  the federation imported the entries of a copied resource).

Everything else reads the store directly.

Example::

    live = LiveCatalog(SqlCatalogRepository(database), node_region="420102")
    resource = live.registry.register(principal, spec)
    match = live.file_demand(principal, demand_spec)
    allowed = live.check_release("1-01-001-0000-000002", "人像照片").allowed
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from catalog_registry.access import is_admin
from catalog_registry.coverage import CoverageReport, build_coverage
from catalog_registry.federation import Federation
from catalog_registry.importexport import (
    export_dcat,
    export_json,
    import_resources,
    read_csv,
    read_json,
)
from catalog_registry.matching import DemandMatch, MatchIndex
from catalog_registry.model import (
    Demand,
    DemandSpec,
    NegativeEntry,
    Resource,
    ResourceCode,
    ResourceStatus,
    ShareType,
)
from catalog_registry.negative_list import NegativeList
from catalog_registry.paging import decode_token, encode_token, page_size
from catalog_registry.registry import CatalogRegistry
from catalog_registry.search import SearchPage, SearchRequest, search
from catalog_registry.sql import SqlCatalogRepository
from catalog_registry.supply import SupplyEntry, supply_entry
from catalog_registry.todo import ProviderTodo, unmet_report
from zhida.auth.principal import Principal, Role
from zhida.db import utcnow
from zhida.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied

FEED_BATCH = 1000
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Release:
    """The answer to "may item X of resource R be released?"."""

    allowed: bool
    reason: str  # NEGATIVE_LISTED, NOT_SHARED, NOT_PUBLISHED; "" when allowed
    legal_basis: str
    entry: NegativeEntry | None
    share_type: ShareType
    share_conditions: str


class LiveCatalog:
    """The node's catalogue: store, registry, federation, match index and negative list."""

    def __init__(
        self,
        repo: SqlCatalogRepository,
        node_region: str,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.repo = repo
        self._clock = clock
        self.registry = CatalogRegistry(
            repo, clock, listeners=[self._on_change], node_region=node_region
        )
        self.federation = Federation(repo, node_region, listeners=[self._on_change])
        self._lock = threading.RLock()  # the match index, its cursor and the match cache
        self._index: MatchIndex | None = None
        self._cursor = 0
        self._matches: dict[str, DemandMatch] = {}
        self._matches_generation = -1
        self._negative_lock = threading.Lock()
        self._negative: NegativeList | None = None
        self._negative_version = -1

    # -- in-memory state -------------------------------------------------------------------
    def _on_change(self, resource: Resource) -> None:
        with self._lock:
            if self._index is not None:
                self._index.sync(resource)

    def _fresh_index(self) -> MatchIndex:
        """The match index, built on first use and caught up with the change feed (lock held)."""
        if self._index is None:
            cursor = self.repo.last_sequence()  # before reading: later changes get replayed
            self._index = MatchIndex.from_resources(
                self.repo.iter_resources(ResourceStatus.PUBLISHED)
            )
            self._cursor = cursor
        while True:
            changes = self.repo.changes_since(self._cursor, FEED_BATCH)
            for change in changes:
                self._index.sync(change.resource)
            if changes:
                self._cursor = changes[-1].sequence
            if len(changes) < FEED_BATCH:
                return self._index

    def _match(self, index: MatchIndex, demand: Demand) -> DemandMatch:
        if index.generation != self._matches_generation:
            self._matches.clear()
            self._matches_generation = index.generation
        found = self._matches.get(demand.id)
        if found is None:
            found = self._matches[demand.id] = index.match(demand)
        return found

    def match_all(self, demands: list[Demand]) -> list[DemandMatch]:
        with self._lock:
            index = self._fresh_index()
            return [self._match(index, d) for d in demands]

    def negative_list(self) -> NegativeList:
        """The negative list, reloaded if it changed in the store since it was read."""
        with self._negative_lock:
            version = self.repo.negative_list_version()  # before reading the entries
            if self._negative is None:
                self._negative = NegativeList(
                    self.repo, self._clock, node_region=self.federation.node_region
                )
            elif version != self._negative_version:
                self._negative.reload()
            self._negative_version = version
            return self._negative

    # -- resources -------------------------------------------------------------------------
    def search(self, principal: Principal, request: SearchRequest) -> SearchPage:
        return search(self.repo, principal, request)

    def supply(
        self,
        principal: Principal,
        provider_code: str | None,
        region_code: str | None,
        size: int,
        token: str,
    ) -> tuple[list[SupplyEntry], str]:
        request = SearchRequest(
            provider_code=provider_code,
            region_code=region_code,
            include_subregions=True,
            page_size=size,
            page_token=token,
        )
        page = search(self.repo, principal, request)
        decide = self.negative_list().may_release
        return [supply_entry(h.resource, decide) for h in page.hits], page.next_page_token

    def history(
        self, principal: Principal, code: str, size: int, token: str
    ) -> tuple[list[Resource], str]:
        versions = self.registry.history(principal, code)
        return _slice(versions, "history", code, size, token)

    # -- demands ---------------------------------------------------------------------------
    def file_demand(self, principal: Principal, spec: DemandSpec) -> DemandMatch:
        return self.match_all([self.registry.file_demand(principal, spec)])[0]

    def list_demands(
        self,
        principal: Principal,
        requester_code: str | None,
        unmet_only: bool,
        size: int,
        token: str,
    ) -> tuple[list[DemandMatch], str]:
        requester = _own(principal, requester_code, "requester_code", "demands")
        limit = page_size(size)
        filters = f"{requester}|{unmet_only}"
        position = decode_token(token, "demands", filters) if token else 0
        out: list[DemandMatch] = []
        while len(out) < limit:
            rows = self.repo.demand_page(position, limit, requester)
            matches = self.match_all([d for _, d in rows])
            for (seq, _), match in zip(rows, matches, strict=True):
                position = seq
                if not (unmet_only and match.met):
                    out.append(match)
                if len(out) == limit:
                    break
            if len(rows) < limit:
                return out, ""
        more = self.repo.demand_page(position, 1, requester)
        return out, encode_token("demands", position, filters) if more else ""

    def unmet_report(self, principal: Principal, provider_code: str | None) -> list[ProviderTodo]:
        provider = _own(principal, provider_code, "provider_code", "to-do lists")
        todos = unmet_report(self.match_all(list(self.repo.iter_demands())))
        return [t for t in todos if provider is None or t.provider_code == provider]

    def coverage(self) -> CoverageReport:
        matches = self.match_all(list(self.repo.iter_demands()))
        with self._lock:
            published = list(self._fresh_index().resources())
        return build_coverage(published, matches, self.repo.negative_entries())

    # -- negative list ---------------------------------------------------------------------
    def negative_entries(
        self, code: str | None, size: int, token: str
    ) -> tuple[list[NegativeEntry], str]:
        entries = self.negative_list().list(code)
        return _slice(entries, "negative", code or "", size, token)

    def check_release(self, resource_code: str, item_name: str) -> Release:
        """May ``item_name`` of the resource be released? The negative list decides first."""
        code = ResourceCode.parse(resource_code, "resource_code").text
        if not item_name:
            raise InvalidArgument(
                "name the data item",
                reason="INVALID_ARGUMENT",
                violations=[FieldViolation("item_name", "must not be empty")],
            )
        resource = self.repo.get_resource(code)
        if resource is None:
            raise NotFound(
                f"resource {code} not found", reason="RESOURCE_NOT_FOUND", metadata={"code": code}
            )
        item = next((i for i in resource.items if i.name == item_name), None)
        if item is None:
            raise InvalidArgument(
                f"{item_name!r} is not an item of {code}",
                reason="UNKNOWN_DATA_ITEM",
                violations=[FieldViolation("item_name", f"not an item of {code}")],
            )
        share = resource.item_share_type(item)
        conditions = resource.spec.share_conditions
        decision = self.negative_list().may_release(code, item_name)
        if not decision.allowed:
            reason, basis = "NEGATIVE_LISTED", decision.legal_basis
        elif share is ShareType.NOT_SHARED:
            reason, basis = "NOT_SHARED", conditions
        elif resource.status is not ResourceStatus.PUBLISHED:
            reason, basis = "NOT_PUBLISHED", ""
        else:
            reason, basis = "", ""
        return Release(not reason, reason, basis, decision.entry, share, conditions)

    # -- bulk ------------------------------------------------------------------------------
    def import_file(self, principal: Principal, text: str, *, csv: bool) -> list[str]:
        """Register every row of a CSV or JSON file as a draft, or none (naming the bad rows)."""
        rows = read_csv(text) if csv else read_json(text)
        report = import_resources(self.registry, principal, rows)
        if not report.ok:
            bad = sorted({e.row for e in report.errors})
            raise InvalidArgument(
                f"{len(bad)} bad row(s) ({', '.join(map(str, bad[:10]))}); nothing was imported",
                reason="INVALID_IMPORT",
                violations=[
                    FieldViolation(
                        f"rows[{e.row}].{e.field}" if e.field else "content", e.description
                    )
                    for e in report.errors
                ],
            )
        return list(report.imported)

    def export_document(
        self, principal: Principal, statuses: tuple[ResourceStatus, ...], *, dcat: bool, title: str
    ) -> tuple[bytes, int]:
        """The catalogue as UTF-8 JSON or DCAT-AP JSON-LD, and how many resources it holds."""
        wanted = set(statuses)
        resources = [r for r in self.repo.iter_resources() if r.status in wanted]
        if not dcat:
            return export_json(resources).encode(), len(resources)
        document = export_dcat(
            resources,
            base_uri=f"urn:zhida:catalog:{self.federation.node_region}",
            publisher_code=principal.organisation,
            publisher_name=title,
        )
        return json.dumps(document, ensure_ascii=False, indent=2).encode(), len(resources)


def _own(principal: Principal, wanted: str | None, field: str, what: str) -> str | None:
    """A department sees only its own ``what``; others may ask for any (or all)."""
    if principal.role is not Role.DEPARTMENT or is_admin(principal):
        return wanted
    if wanted not in (None, principal.organisation):
        raise PermissionDenied(
            f"a department sees only its own {what}",
            reason="NOT_OWN_ORGANISATION",
            metadata={field: wanted or ""},
        )
    return principal.organisation


def _slice(items: list[T], kind: str, filters: str, size: int, token: str) -> tuple[list[T], str]:
    """One page of an append-only list by offset."""
    limit = page_size(size)
    start = decode_token(token, kind, filters) if token else 0
    end = start + limit
    return items[start:end], (encode_token(kind, end, filters) if end < len(items) else "")
