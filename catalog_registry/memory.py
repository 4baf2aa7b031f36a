"""In-memory :class:`~catalog_registry.repository.CatalogRepository`.

A complete implementation of the storage contract (not a mock): history,
all-or-nothing inserts, compare-and-set replaces, the change feed with
idempotent imports, and keyword search through a gram → codes inverted index.
Thread-safe (one lock); used by unit tests, the demo and single-process nodes.

Example::

    >>> from catalog_registry.memory import InMemoryCatalogRepository
    >>> repo = InMemoryCatalogRepository()
    >>> repo.changes_since(0, 10)
    []
"""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Iterator, Sequence

from catalog_registry.model import Change, Demand, NegativeEntry, Resource, ResourceStatus
from catalog_registry.repository import ResourceQuery, ScoredResource, query_accepts
from catalog_registry.text import search_grams
from zhida.errors import Aborted, AlreadyExists, FieldViolation, NotFound


class InMemoryCatalogRepository:
    """Everything in dicts and lists, guarded by one re-entrant lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._history: dict[str, list[Resource]] = {}
        self._codes: list[str] = []  # sorted, for code-ordered scans
        self._gram_index: dict[str, set[str]] = {}
        self._grams_of: dict[str, frozenset[str]] = {}
        self._changes: list[Change] = []
        self._imported: set[tuple[str, int]] = set()
        self._origin: dict[str, str | None] = {}  # code → origin region of its latest change
        self._demands: dict[str, Demand] = {}
        self._negative: dict[str, list[NegativeEntry]] = {}
        self._negative_order: list[NegativeEntry] = []

    # -- resources -----------------------------------------------------------------------
    def get_resource(self, code: str) -> Resource | None:
        versions = self._history.get(code)
        return versions[-1] if versions else None

    def resource_history(self, code: str) -> list[Resource]:
        with self._lock:
            return list(self._history.get(code, ()))

    def insert_resources(self, resources: Sequence[Resource]) -> list[int]:
        with self._lock:
            seen: set[str] = set()
            for i, r in enumerate(resources):
                if r.key in self._history or r.key in seen:
                    raise _exists(r.key, "code" if len(resources) == 1 else f"resources[{i}].code")
                seen.add(r.key)
            return [self._write(r, None, None) for r in resources]

    def replace_resource(self, resource: Resource, *, expected_version: int) -> int:
        with self._lock:
            self._check_version(resource.key, expected_version)
            return self._write(resource, None, None)

    def iter_resources(self, status: ResourceStatus | None = None) -> Iterator[Resource]:
        with self._lock:
            current = [self._history[c][-1] for c in self._codes]
        return (r for r in current if status is None or r.status is status)

    def search_resources(self, query: ResourceQuery) -> list[ScoredResource]:
        with self._lock:
            if not query.grams:
                return self._scan_in_code_order(query)
            hits: dict[str, int] = {}
            for gram in set(query.grams):
                for code in self._gram_index.get(gram, ()):
                    hits[code] = hits.get(code, 0) + 1
            n = len(set(query.grams))
            after = query.after
            rows: list[tuple[int, str]] = []
            for code, count in hits.items():
                score = 1000 * count // n
                if after is not None and (
                    score > after.score or (score == after.score and code <= after.code)
                ):
                    continue
                rows.append((-score, code))
            out: list[ScoredResource] = []
            # Pull in sort order until the page is full of rows that pass the filters.
            heapq.heapify(rows)
            while rows and len(out) < query.limit:
                neg_score, code = heapq.heappop(rows)
                resource = self._history[code][-1]
                if query_accepts(query, resource):
                    out.append(ScoredResource(-neg_score, resource))
            return out

    def _scan_in_code_order(self, query: ResourceQuery) -> list[ScoredResource]:
        start = 0
        if query.after is not None:
            if query.after.score > 0:
                start = 0
            elif query.after.score < 0:
                return []
            else:
                start = bisect.bisect_right(self._codes, query.after.code)
        out: list[ScoredResource] = []
        for code in self._codes[start:] if start else self._codes:
            resource = self._history[code][-1]
            if query_accepts(query, resource):
                out.append(ScoredResource(0, resource))
                if len(out) >= query.limit:
                    break
        return out

    def _check_version(self, code: str, expected_version: int) -> None:
        current = self.get_resource(code)
        if current is None:
            raise NotFound(
                f"resource {code} not found", reason="RESOURCE_NOT_FOUND", metadata={"code": code}
            )
        if current.version != expected_version:
            raise Aborted(
                f"resource {code} is at version {current.version}, not {expected_version}",
                reason="VERSION_CONFLICT",
                metadata={"code": code, "current_version": str(current.version)},
            )

    def _write(
        self, resource: Resource, origin_region: str | None, origin_sequence: int | None
    ) -> int:
        code = resource.key
        versions = self._history.get(code)
        if versions is None:
            self._history[code] = [resource]
            bisect.insort(self._codes, code)
        else:
            versions.append(resource)
        self._reindex(code, search_grams(resource))
        return self._append_change(resource, origin_region, origin_sequence)

    def _append_change(
        self, resource: Resource, origin_region: str | None, origin_sequence: int | None
    ) -> int:
        sequence = len(self._changes) + 1
        self._changes.append(Change(sequence, resource, origin_region, origin_sequence))
        self._origin[resource.key] = origin_region
        return sequence

    def _reindex(self, code: str, grams: frozenset[str]) -> None:
        old = self._grams_of.get(code, frozenset())
        for g in old - grams:
            bucket = self._gram_index[g]
            bucket.discard(code)
            if not bucket:
                del self._gram_index[g]
        for g in grams - old:
            self._gram_index.setdefault(g, set()).add(code)
        self._grams_of[code] = grams

    # -- demands -------------------------------------------------------------------------
    def insert_demand(self, demand: Demand) -> None:
        with self._lock:
            if demand.id in self._demands:
                raise AlreadyExists(f"demand {demand.id} already exists", reason="DEMAND_EXISTS")
            self._demands[demand.id] = demand

    def get_demand(self, demand_id: str) -> Demand | None:
        return self._demands.get(demand_id)

    def iter_demands(self) -> Iterator[Demand]:
        with self._lock:
            return iter(list(self._demands.values()))

    # -- negative list -------------------------------------------------------------------
    def add_negative_entry(self, entry: NegativeEntry) -> None:
        with self._lock:
            entries = self._negative.setdefault(entry.resource_code.text, [])
            if any(e.item_names == entry.item_names for e in entries):
                raise AlreadyExists(
                    f"negative-list entry for {entry.resource_code.text} already exists",
                    reason="NEGATIVE_ENTRY_EXISTS",
                )
            entries.append(entry)
            self._negative_order.append(entry)
            self._entries_changed(entry.resource_code.text)

    def remove_negative_entry(self, code: str, item_names: tuple[str, ...]) -> bool:
        with self._lock:
            entries = self._negative.get(code, [])
            kept = [e for e in entries if e.item_names != item_names]
            if len(kept) == len(entries):
                return False
            if kept:
                self._negative[code] = kept
            else:
                del self._negative[code]
            self._negative_order = [
                e
                for e in self._negative_order
                if e.resource_code.text != code or e.item_names != item_names
            ]
            self._entries_changed(code)
            return True

    def _entries_changed(self, code: str) -> None:
        """The entries travel with the resource: a change of its current version."""
        current = self.get_resource(code)
        if current is not None:
            self._append_change(current, None, None)

    def _set_negative(self, code: str, entries: Sequence[NegativeEntry]) -> None:
        kept = [e for e in self._negative_order if e.resource_code.text != code]
        self._negative_order = kept + list(entries)
        if entries:
            self._negative[code] = list(entries)
        else:
            self._negative.pop(code, None)

    def negative_entries(self, code: str | None = None) -> list[NegativeEntry]:
        with self._lock:
            if code is not None:
                return list(self._negative.get(code, ()))
            return list(self._negative_order)

    def negative_entries_of(self, codes: Sequence[str]) -> dict[str, list[NegativeEntry]]:
        with self._lock:
            return {code: list(self._negative.get(code, ())) for code in codes}

    # -- change feed ---------------------------------------------------------------------
    def changes_since(self, sequence: int, limit: int) -> list[Change]:
        with self._lock:
            start = max(sequence, 0)
            return self._changes[start : start + max(limit, 0)]

    def was_imported(self, origin_region: str, origin_sequence: int) -> bool:
        return (origin_region, origin_sequence) in self._imported

    def resource_origin(self, code: str) -> str | None:
        return self._origin.get(code)

    def import_resource(
        self,
        resource: Resource,
        *,
        origin_region: str,
        origin_sequence: int,
        expected_version: int | None,
        negative_entries: Sequence[NegativeEntry] | None = None,
    ) -> bool:
        with self._lock:
            marker = (origin_region, origin_sequence)
            if marker in self._imported:
                return False
            if expected_version is None:
                if resource.key in self._history:
                    raise _exists(resource.key, "code")
            else:
                self._check_version(resource.key, expected_version)
            self._write(resource, origin_region, origin_sequence)
            if negative_entries is not None:
                self._set_negative(resource.key, negative_entries)
            self._imported.add(marker)
            return True

    def import_negative_entries(
        self,
        code: str,
        entries: Sequence[NegativeEntry],
        *,
        version: int,
        origin_region: str,
        origin_sequence: int,
    ) -> bool:
        with self._lock:
            marker = (origin_region, origin_sequence)
            if marker in self._imported:
                return False
            self._check_version(code, version)
            self._set_negative(code, entries)
            self._append_change(self._history[code][-1], origin_region, origin_sequence)
            self._imported.add(marker)
            return True


def _exists(code: str, field: str) -> AlreadyExists:
    """As the SQL store: ``field`` is ``code`` or ``resources[i].code`` of a batch."""
    return AlreadyExists(
        f"resource {code} already exists",
        reason="RESOURCE_EXISTS",
        violations=[FieldViolation(field, f"{code} is already registered")],
        metadata={"code": code},
    )
