"""Coverage of the three lists, per department and per region, as typed rows.

For each (department, region): published resources it supplies, demands it
filed and how many of them are met or unmet, and how many of its data items
are negative-listed. Region rows add up the department rows of that region
(the region of a resource is its region code, of a demand its region scope).
The CLI renders the rows with rich.

Example::

    report = coverage(repo, index)
    for row in report.regions:
        print(row.region_code, row.resources_supplied, row.demands_unmet)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from catalog_registry.matching import DemandMatch, MatchIndex
from catalog_registry.model import NegativeEntry, Resource, ResourceStatus
from catalog_registry.repository import CatalogRepository


@dataclass(frozen=True, slots=True)
class CoverageRow:
    region_code: str
    department_code: str  # "" on region rows
    department_name: str
    resources_supplied: int = 0
    demands_filed: int = 0
    demands_met: int = 0
    demands_unmet: int = 0
    negative_listed_items: int = 0


@dataclass(frozen=True, slots=True)
class CoverageReport:
    departments: tuple[CoverageRow, ...]  # sorted by region code, then department code
    regions: tuple[CoverageRow, ...]  # sorted by region code


_COUNTS = (
    "resources_supplied",
    "demands_filed",
    "demands_met",
    "demands_unmet",
    "negative_listed_items",
)


class _Tally:
    def __init__(self) -> None:
        self.names: dict[tuple[str, str], str] = {}
        self.counts: dict[tuple[str, str], dict[str, int]] = {}

    def add(self, region: str, dept: str, name: str, **counts: int) -> None:
        key = (region, dept)
        self.names.setdefault(key, name)
        row = self.counts.setdefault(key, dict.fromkeys(_COUNTS, 0))
        for k, v in counts.items():
            row[k] += v


def build_coverage(
    resources: Iterable[Resource],
    matches: Iterable[DemandMatch],
    negative_entries: Iterable[NegativeEntry],
) -> CoverageReport:
    """Rows from published resources, matched demands and negative-list entries."""
    blocked: dict[str, set[str] | None] = {}  # code → item names, None: whole resource
    for entry in negative_entries:
        code = entry.resource_code.text
        if entry.whole_resource:
            blocked[code] = None
        elif code not in blocked:
            blocked[code] = set(entry.item_names)
        else:
            items = blocked[code]
            if items is not None:
                items.update(entry.item_names)
    tally = _Tally()
    for r in resources:
        if r.status is not ResourceStatus.PUBLISHED:
            continue
        names = {i.name for i in r.items}
        listed = blocked.get(r.key, set())
        n_blocked = len(names) if listed is None else len(names & listed)
        tally.add(
            r.region_code,
            r.provider_code,
            r.provider_name,
            resources_supplied=1,
            negative_listed_items=n_blocked,
        )
    for m in matches:
        spec = m.demand.spec
        tally.add(
            spec.region_scope,
            spec.requester_code,
            spec.requester_name,
            demands_filed=1,
            demands_met=int(m.met),
            demands_unmet=int(not m.met),
        )
    departments = tuple(
        CoverageRow(region, dept, tally.names[(region, dept)], **tally.counts[(region, dept)])
        for region, dept in sorted(tally.counts)
    )
    totals: dict[str, dict[str, int]] = {}
    for row in departments:
        total = totals.setdefault(row.region_code, dict.fromkeys(_COUNTS, 0))
        for k in _COUNTS:
            total[k] += getattr(row, k)
    regions = tuple(CoverageRow(code, "", "", **totals[code]) for code in sorted(totals))
    return CoverageReport(departments, regions)


def coverage(repo: CatalogRepository, index: MatchIndex) -> CoverageReport:
    """:func:`build_coverage` over everything in ``repo``, matching demands with ``index``."""
    return build_coverage(
        repo.iter_resources(ResourceStatus.PUBLISHED),
        index.match_all(repo.iter_demands()),
        repo.negative_entries(),
    )
