"""Catalogue federation over the wire (issue 8, item 3): up to the parent, down from it.

A child node runs both halves against its parent's mTLS port (the parent
sees it as ``Role.NODE`` of its region):

* **push** — this node's change feed after the ``catalog.pushed`` cursor,
  only what the parent accepts from this child: changes that originate in
  this node's region (its own and those its children pushed up; what came
  down from above stays) AND whose resource is of a region within this
  node's, sent with ``CatalogService.ImportChildChanges``. The registry
  refuses resources outside the node's region, so only a catalogue written
  before that rule holds others: their changes stay here (the parent would
  refuse them ``OUT_OF_REGION``; counted in :attr:`CatalogSync.kept`). The
  parent aggregates them and passes them on to its own parent the same way,
  origin kept.
* **pull** — the parent's feed after the ``catalog.pulled`` cursor
  (``CatalogService.ExportChanges``), applied with
  :meth:`catalog_registry.federation.Federation.import_from_parent`: the
  resources of the regions above this node, visible downward. A county so
  finds national resources in its own search.

Both ways each change carries its resource's negative-list entries (an
entry added or removed is a change of the resource), so a copy's
``CheckRelease``, supply list and coverage count them as at its own node.

Each step handles one page and says whether more is waiting; the cursor is
saved only after the page was applied (a crash repeats a page, and imports
are idempotent). The loop around it is :mod:`exchange.federation.background`.

Example::

    sync = CatalogSync(Federation(repo, "420102"), SyncState(db), channel, runtime.run_blocking)
    while await sync.push_once():
        pass
    await sync.pull_once()
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from catalog_registry import wire
from catalog_registry.federation import Federation
from catalog_registry.repository import region_within
from exchange.federation.state import SyncState
from zhida.catalog.v1 import catalog_service_pb2 as pb
from zhida.catalog.v1 import catalog_service_pb2_grpc as pb_grpc

__all__ = ["CatalogSync"]

log = logging.getLogger("zhida.federation.catalog")

PAGE = 200
PUSHED = "catalog.pushed"
PULLED = "catalog.pulled"

Run = Callable[..., Awaitable[Any]]


class CatalogSync:
    """One child's catalogue exchange with its parent; see the module docstring."""

    def __init__(
        self,
        federation: Federation,
        state: SyncState,
        parent: grpc.aio.Channel,
        run: Run,
        *,
        page: int = PAGE,
        timeout: float = 10.0,
    ) -> None:
        self.federation = federation
        self.region = federation.node_region
        self.state = state
        self.stub = pb_grpc.CatalogServiceStub(parent)
        self.run = run
        self.page = page
        self.timeout = timeout
        self.pushed = 0  # changes the parent imported, for logs and tests
        self.pulled = 0
        self.kept = 0  # not pushed: a resource outside our region (written before the rule)

    async def push_once(self) -> bool:
        """Push one page of this region's changes; True when another page is waiting."""
        cursor = await self.run(self.state.get_int, PUSHED)
        changes, next_cursor = await self.run(self.federation.export_changes, cursor, self.page)
        made_here = [
            c for c in changes if region_within(c.origin_region or self.region, self.region)
        ]
        ours = [c for c in made_here if self._within(c.resource.region_code)]
        kept = len(made_here) - len(ours)
        if kept:
            self.kept += kept
            log.debug(
                "%d catalogue changes stay here: their resources are of regions outside %s "
                "(written before the region rule)",
                kept,
                self.region,
                extra={"kept": kept},
            )
        if ours:
            request = pb.ImportChildChangesRequest(
                child_region=self.region, changes=[wire.change_to_pb(c) for c in ours]
            )
            reply = await self.stub.ImportChildChanges(request, timeout=self.timeout)
            self.pushed += reply.imported
            if reply.refused:
                reasons = sorted({r.reason for r in reply.results if r.reason})
                log.warning(
                    "the parent refused %d catalogue changes",
                    reply.refused,
                    extra={"refused": reply.refused, "reasons": reasons},
                )
        if next_cursor != cursor:
            await self.run(self.state.put, PUSHED, str(next_cursor))
        return len(changes) >= self.page

    def _within(self, region_code: str) -> bool:
        """Whether a resource of ``region_code`` is one the parent takes from this child
        (``import_from_child``: within the child's region; else ``OUT_OF_REGION``)."""
        try:
            return region_within(region_code, self.region)
        except ValueError:  # not a region code: the parent would refuse it too
            return False

    async def pull_once(self) -> bool:
        """Apply one page of the parent's feed; True when another page is waiting."""
        cursor = await self.run(self.state.get_int, PULLED)
        request = pb.ExportChangesRequest(since_cursor=cursor, page_size=self.page)
        reply = await self.stub.ExportChanges(request, timeout=self.timeout)
        changes = wire.changes_from_pb(reply.changes)
        if changes:
            report = await self.run(self.federation.import_from_parent, changes)
            self.pulled += report.imported
            if report.imported:
                log.info(
                    "imported %d upper-level catalogue changes",
                    report.imported,
                    extra={"imported": report.imported},
                )
        if reply.next_cursor != cursor:
            await self.run(self.state.put, PULLED, str(reply.next_cursor))
        return len(changes) >= self.page
