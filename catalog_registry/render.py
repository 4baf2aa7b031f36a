"""Rich tables of catalogue answers (protobuf messages), for ``zhida catalog`` and the demo.

Example::

    from rich.console import Console
    from catalog_registry.render import coverage_tables

    report = stub.GetCoverageReport(pb.GetCoverageReportRequest(), metadata=md)
    for table in coverage_tables(report):
        Console().print(table)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.table import Table

from catalog_registry import wire
from zhida.catalog.v1 import catalog_service_pb2 as pb
from zhida.errors import FieldViolation

_SHARE_LABEL = {1: "无条件共享", 2: "有条件共享", 3: "不予共享"}
_COUNTS = ("resources", "demands", "met", "unmet", "neg. items")


def share_label(number: int) -> str:
    return _SHARE_LABEL.get(number, wire.SHARE.name(number))


def _counts(row: pb.CoverageRow) -> list[str]:
    return [
        str(row.resources_supplied),
        str(row.demands_filed),
        str(row.demands_met),
        str(row.demands_unmet),
        str(row.negative_listed_items),
    ]


def coverage_tables(report: pb.GetCoverageReportResponse) -> list[Table]:
    """One table per department (with totals) and one per region."""
    departments = Table(title="coverage per department")
    for col in ("region", "department", *_COUNTS):
        departments.add_column(col, justify="right" if col in _COUNTS else "left")
    for row in report.departments:
        departments.add_row(row.region_code, row.department_name, *_counts(row))
    totals = pb.CoverageRow()
    for row in report.regions:
        totals.resources_supplied += row.resources_supplied
        totals.demands_filed += row.demands_filed
        totals.demands_met += row.demands_met
        totals.demands_unmet += row.demands_unmet
        totals.negative_listed_items += row.negative_listed_items
    departments.add_section()
    departments.add_row("", "[bold]total", *_counts(totals))
    regions = Table(title="coverage per region")
    for col in ("region", *_COUNTS):
        regions.add_column(col, justify="right" if col in _COUNTS else "left")
    for row in report.regions:
        regions.add_row(row.region_code, *_counts(row))
    return [departments, regions]


def search_table(hits: Iterable[pb.SearchHit], title: str = "search results") -> Table:
    table = Table(title=title)
    for col in ("score", "code", "name", "provider", "region", "share", "status"):
        table.add_column(col, justify="right" if col == "score" else "left")
    for hit in hits:
        spec = hit.resource.spec
        status = wire.STATUS.name(hit.resource.status).removeprefix("RESOURCE_STATUS_").lower()
        table.add_row(
            str(hit.score), spec.code, spec.name, spec.provider_name, spec.region_code,
            share_label(spec.share_type), status,
        )  # fmt: skip
    return table


def matches_table(matches: Iterable[pb.DemandMatch], title: str = "demands and matches") -> Table:
    """Each demand with its best candidates (name, provider, tier, similarity)."""
    table = Table(title=title, show_lines=True)
    for col in ("demand", "requester", "met", "candidates (tier, similarity)"):
        table.add_column(col)
    for m in matches:
        spec = m.demand.spec
        asked = spec.wanted_text or "、".join(spec.item_names) or "、".join(spec.wanted_codes)
        candidates = "\n".join(
            f"{c.name} — {c.provider_name} ({c.tier}, {c.similarity:.2f})" for c in m.candidates[:3]
        )
        met = "[green]yes" if m.met else "[red]no"
        table.add_row(asked, spec.requester_name, met, candidates or "(none)")
    return table


def violations_table(violations: Sequence[FieldViolation], title: str) -> Table:
    table = Table(title=title)
    table.add_column("field")
    table.add_column("problem")
    for v in violations:
        table.add_row(v.field, v.description)
    return table
