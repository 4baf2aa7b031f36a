"""Rich tables of catalogue answers: the coverage tables' rows and totals (and the demo's check)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from catalog_registry.render import coverage_tables
from zhida.catalog.v1 import catalog_service_pb2 as pb


def _row(region: str, name: str = "", *counts: int) -> pb.CoverageRow:
    resources, filed, met, unmet, negative = counts
    return pb.CoverageRow(
        region_code=region,
        department_name=name,
        resources_supplied=resources,
        demands_filed=filed,
        demands_met=met,
        demands_unmet=unmet,
        negative_listed_items=negative,
    )


def _cells(table: Table) -> list[list[str]]:
    """The table's rows as printed, cell by cell (rich draws │ between cells)."""
    out = io.StringIO()
    Console(file=out, width=200).print(table)
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in out.getvalue().splitlines()
        if line.startswith("│")
    ]


def test_coverage_tables_rows_and_totals() -> None:
    report = pb.GetCoverageReportResponse(
        departments=[
            _row("420100", "武汉市公安局", 2, 0, 0, 0, 1),
            _row("420102", "武汉市江岸区政务服务和大数据管理局", 0, 3, 2, 1, 0),
        ],
        regions=[_row("420100", "", 2, 0, 0, 0, 1), _row("420102", "", 0, 3, 2, 1, 0)],
    )
    departments, regions = coverage_tables(report)
    assert (departments.title, regions.title) == ("coverage per department", "coverage per region")
    assert _cells(departments) == [
        ["420100", "武汉市公安局", "2", "0", "0", "0", "1"],
        ["420102", "武汉市江岸区政务服务和大数据管理局", "0", "3", "2", "1", "0"],
        ["", "total", "2", "3", "2", "1", "1"],
    ]
    assert _cells(regions) == [
        ["420100", "2", "0", "0", "0", "1"],
        ["420102", "0", "3", "2", "1", "0"],
    ]


def test_totals_count_each_region_once() -> None:
    """Totals come from the region rows: a demand is filed once, whoever may meet it."""
    report = pb.GetCoverageReportResponse(
        departments=[_row("420100", "甲", 1, 1, 0, 1, 0), _row("420100", "乙", 1, 1, 0, 1, 0)],
        regions=[_row("420100", "", 2, 1, 0, 1, 0)],
    )
    departments, _ = coverage_tables(report)
    assert _cells(departments)[-1] == ["", "total", "2", "1", "0", "1", "0"]


def test_an_empty_report_renders_a_zero_total() -> None:
    departments, regions = coverage_tables(pb.GetCoverageReportResponse())
    assert _cells(departments) == [["", "total", "0", "0", "0", "0", "0"]]
    assert _cells(regions) == []


def test_the_demo_stops_on_a_coverage_report_without_rows() -> None:
    from zhida.demo import DemoError
    from zhida.demo.catalog import check_coverage

    rows = [_row("420102", "武汉市江岸区卫生健康局", 1, 0, 0, 0, 0)]
    check_coverage(pb.GetCoverageReportResponse(departments=rows, regions=rows))
    with pytest.raises(DemoError, match="no rows"):
        check_coverage(pb.GetCoverageReportResponse())
    with pytest.raises(DemoError, match="no rows"):
        check_coverage(pb.GetCoverageReportResponse(departments=rows))
