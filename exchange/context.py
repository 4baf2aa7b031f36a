"""What the exchange's handlers share in one node process: :class:`ExchangeContext`.

* ``runtime`` — the node's :class:`~zhida.server.runtime.NodeRuntime` (database,
  blob store, audit recorder, thread pool).
* ``catalogue`` — a :class:`CatalogueView`: ``get_resource(code)`` from the
  catalogue store and ``may_release(code, item)`` from the negative list
  (:class:`~catalog_registry.live.LiveCatalog` reloads it whenever its version
  moved in the store, so entries added through any worker count at once).
* ``repo`` — the :class:`~exchange.sql.SqlExchangeRepository`.
* ``grants`` — the :class:`~exchange.grant_sync.SyncedGrantIndex`: O(1) checks,
  fresh to within ~100 ms of grant writes made by other worker processes.
* ``book`` — the :class:`~exchange.requests.ShareRequests` use cases.
* ``clock`` — aware UTC now.

Every method of these blocks (database reads); handlers call them through
``runtime.run_blocking``.

Example::

    ctx = ExchangeContext.open(runtime)
    request = ctx.book.apply(principal, spec)
    grant = ctx.grants.admit(principal.organisation, spec.resource_code, ctx.clock())
    allowed = ctx.catalogue.may_release(spec.resource_code, "姓名").allowed
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from catalog_registry.live import LiveCatalog
from catalog_registry.model import Resource
from catalog_registry.negative_list import Decision, NegativeList
from catalog_registry.sql import SqlCatalogRepository
from exchange.grant_sync import SyncedGrantIndex
from exchange.requests import ShareRequests
from exchange.sql import SqlExchangeRepository
from zhida.db import utcnow
from zhida.server.runtime import NodeRuntime


class CatalogueView:
    """The two catalogue questions the exchange asks, over a :class:`LiveCatalog`."""

    def __init__(self, live: LiveCatalog) -> None:
        self.live = live

    def get_resource(self, code: str) -> Resource | None:
        """The current version of resource ``code`` (any status), or None."""
        return self.live.repo.get_resource(code)

    def negative_list(self) -> NegativeList:
        """The negative list, fresh (one version read); use it for many items of one call."""
        return self.live.negative_list()

    def may_release(self, resource_code: str, item_name: str) -> Decision:
        """May ``item_name`` of the resource ever leave? (the negative list decides)"""
        return self.live.negative_list().may_release(resource_code, item_name)


@dataclass
class ExchangeContext:
    """The exchange's shared state in one node process."""

    runtime: NodeRuntime
    catalogue: CatalogueView
    repo: SqlExchangeRepository
    grants: SyncedGrantIndex
    book: ShareRequests
    clock: Callable[[], datetime] = utcnow

    @classmethod
    def open(cls, runtime: NodeRuntime, clock: Callable[[], datetime] = utcnow) -> ExchangeContext:
        """Build the context over the runtime's database (loads the grant index)."""
        live = LiveCatalog(
            SqlCatalogRepository(runtime.database), runtime.config.node.region_code, clock=clock
        )
        catalogue = CatalogueView(live)
        repo = SqlExchangeRepository(runtime.database)
        grants = SyncedGrantIndex(repo, clock)
        book = ShareRequests(repo, catalogue.get_resource, catalogue.may_release, grants, clock)
        return cls(runtime, catalogue, repo, grants, book, clock)
