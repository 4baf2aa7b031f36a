"""The storage interface the catalogue domain calls: :class:`CatalogRepository`.

The domain decides (validation, authorisation, lifecycle, negative-list
checks); a repository only stores and answers queries. Two implementations:
:class:`catalog_registry.memory.InMemoryCatalogRepository` (tests, demo,
single-process nodes) and the SQL store (next issue), which must pass the same
behaviour tests.

Contract a store must keep:

* Resources are keyed by the canonical code text (``ResourceCode.text``).
  Every stored version is kept (history); the highest version is current.
* Every resource write (insert, replace, import) appends exactly one
  :class:`~catalog_registry.model.Change` to the change feed **in the same
  transaction**, with a sequence number greater than every earlier one
  (SQL: an identity column; gaps are allowed, reordering is not).
* ``insert_resources`` is all-or-nothing; ``replace_resource`` is a
  compare-and-set on the current version (``Aborted`` reason
  ``VERSION_CONFLICT`` when it moved).
* ``import_resource`` and ``import_negative_entries`` are idempotent on
  ``(origin_region, origin_sequence)``: the store records the pair in the same
  transaction and returns False on a replay without writing anything.
* Every change of a stored resource's negative-list entries (add, remove,
  import) appends a change of the resource's current version to the feed in
  the same transaction, so the entries travel with the resource between nodes.
* ``search_resources`` implements :class:`ResourceQuery` exactly as described
  there, so page tokens are valid across implementations.

Example::

    from catalog_registry.memory import InMemoryCatalogRepository
    from catalog_registry.repository import CatalogRepository

    repo: CatalogRepository = InMemoryCatalogRepository()
    assert repo.get_resource("1-01-001-0001-000001") is None
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from catalog_registry.model import (
    Change,
    Demand,
    NegativeEntry,
    Resource,
    ResourceStatus,
    ShareType,
)
from zhida.regions import Level, Region, parse_region


@dataclass(frozen=True, slots=True)
class SortKey:
    """Position in a search result: rows sort by ``score`` descending, then ``code`` ascending."""

    score: int
    code: str


@dataclass(frozen=True, slots=True)
class ResourceQuery:
    """A keyword + filter query over current resource versions, one page at a time.

    Semantics (what a SQL store implements):

    * ``grams`` empty: every row matching the filters, score 0.
      ``grams`` given: rows sharing at least one gram with
      ``catalog_registry.text.search_grams(resource)``; score =
      ``1000 * matched // len(grams)`` (integer per-mille, corpus-independent,
      so scores and page tokens do not move when other rows are inserted).
      SQL: ``SELECT code, COUNT(*) * 1000 / :n AS score FROM resource_gram
      WHERE gram IN (:grams) GROUP BY code``.
    * Filters (all optional, ANDed): ``provider_code`` equal; ``region_code``
      equal, or with ``include_subregions`` the region or any region below it
      (code prefix by level); ``level``; ``share_type``; ``status`` in ``statuses``.
    * Order ``score DESC, code ASC``; ``after`` is the last row of the previous
      page: keep rows with ``score < after.score OR (score = after.score AND
      code > after.code)`` (keyset pagination); return at most ``limit`` rows.
    """

    grams: tuple[str, ...] = ()
    provider_code: str | None = None
    region_code: str | None = None
    include_subregions: bool = False
    level: Level | None = None
    share_type: ShareType | None = None
    statuses: tuple[ResourceStatus, ...] = (ResourceStatus.PUBLISHED,)
    after: SortKey | None = None
    limit: int = 20


@dataclass(frozen=True, slots=True)
class ScoredResource:
    score: int
    resource: Resource

    @property
    def sort_key(self) -> SortKey:
        return SortKey(self.score, self.resource.key)


class CatalogRepository(Protocol):
    """Storage of resources (with history), demands, the negative list and the change feed."""

    # -- resources -----------------------------------------------------------------------
    def get_resource(self, code: str) -> Resource | None:
        """Current version of the resource with canonical code ``code``, or None."""
        ...

    def resource_history(self, code: str) -> list[Resource]:
        """Every stored version, oldest first; empty when unknown."""
        ...

    def insert_resources(self, resources: Sequence[Resource]) -> list[int]:
        """Store new resources, all or nothing; return their change sequences.

        Raise ``AlreadyExists`` (reason ``RESOURCE_EXISTS``, metadata ``code``,
        a field violation on ``code`` — ``resources[i].code`` in a batch of
        several) when any code is already stored or repeated in ``resources``.
        """
        ...

    def replace_resource(self, resource: Resource, *, expected_version: int) -> int:
        """Store a new version if the current one is ``expected_version``; return its sequence.

        ``NotFound`` when the code is unknown, ``Aborted`` (``VERSION_CONFLICT``)
        when the current version differs.
        """
        ...

    def iter_resources(self, status: ResourceStatus | None = None) -> Iterator[Resource]:
        """Current versions (optionally only those with ``status``), in code order."""
        ...

    def search_resources(self, query: ResourceQuery) -> list[ScoredResource]:
        """One page of :class:`ResourceQuery` results."""
        ...

    # -- demands -------------------------------------------------------------------------
    def insert_demand(self, demand: Demand) -> None:
        """Store a new demand; ``AlreadyExists`` on a repeated id."""
        ...

    def get_demand(self, demand_id: str) -> Demand | None: ...

    def iter_demands(self) -> Iterator[Demand]:
        """Every demand, in filing order."""
        ...

    # -- negative list -------------------------------------------------------------------
    def add_negative_entry(self, entry: NegativeEntry) -> None:
        """Store an entry; ``AlreadyExists`` when the same (code, item names) is listed.

        When the resource is stored, a change of its current version is appended.
        """
        ...

    def remove_negative_entry(self, code: str, item_names: tuple[str, ...]) -> bool:
        """Delete the entry for exactly (code, item names); False when there is none.

        When one was deleted and the resource is stored, a change of its current
        version is appended.
        """
        ...

    def negative_entries(self, code: str | None = None) -> list[NegativeEntry]:
        """Entries for resource ``code`` (all entries when None), in insertion order."""
        ...

    def negative_entries_of(self, codes: Sequence[str]) -> dict[str, list[NegativeEntry]]:
        """``negative_entries(code)`` for each of ``codes`` (every one a key, entries or
        not), read together (one query per few hundred codes, not one per code)."""
        ...

    # -- change feed ---------------------------------------------------------------------
    def changes_since(self, sequence: int, limit: int) -> list[Change]:
        """Up to ``limit`` changes with a sequence greater than ``sequence``, ascending."""
        ...

    def was_imported(self, origin_region: str, origin_sequence: int) -> bool:
        """True when the change (origin_region, origin_sequence) was already imported."""
        ...

    def resource_origin(self, code: str) -> str | None:
        """The origin region of the resource's latest change: the node it was copied
        from; None when that change was made here or the code is unknown."""
        ...

    def import_resource(
        self,
        resource: Resource,
        *,
        origin_region: str,
        origin_sequence: int,
        expected_version: int | None,
        negative_entries: Sequence[NegativeEntry] | None = None,
    ) -> bool:
        """Store a resource received from another node; False (and no write) on a replay.

        ``expected_version`` None: the code must be new; otherwise a
        compare-and-set as in :meth:`replace_resource`. The appended change
        keeps ``origin_region``/``origin_sequence``. ``negative_entries`` given:
        they replace the resource's entries in the same transaction.
        """
        ...

    def import_negative_entries(
        self,
        code: str,
        entries: Sequence[NegativeEntry],
        *,
        version: int,
        origin_region: str,
        origin_sequence: int,
    ) -> bool:
        """Replace the resource's negative-list entries with ``entries`` (received from
        another node) and append a change of its current version, keeping the origin;
        False (and no write) on a replay.

        ``NotFound`` when the code is unknown, ``Aborted`` (``VERSION_CONFLICT``)
        when the current version is not ``version``.
        """
        ...


def query_accepts(query: ResourceQuery, resource: Resource) -> bool:
    """The filter part of :class:`ResourceQuery` as a predicate (reference semantics)."""
    if resource.status not in query.statuses:
        return False
    if query.provider_code is not None and resource.provider_code != query.provider_code:
        return False
    if query.level is not None and resource.level is not query.level:
        return False
    if query.share_type is not None and resource.share_type is not query.share_type:
        return False
    if query.region_code is not None:
        if query.include_subregions:
            return region_within(resource.region_code, query.region_code)
        return resource.region_code == query.region_code
    return True


def region_within(code: str, ancestor: str) -> bool:
    """True when region ``code`` is ``ancestor`` or lies below it (both valid codes)."""
    return region_of(ancestor).contains(region_of(code))


@functools.lru_cache(maxsize=8192)
def region_of(code: str) -> Region:
    """``zhida.regions.parse_region`` with a cache (region codes repeat a lot)."""
    return parse_region(code)
