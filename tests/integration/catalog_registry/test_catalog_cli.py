"""``zhida catalog`` against a real node: load-sample, search, coverage, import, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalog_registry.sample_data import DEPARTMENTS
from tests.fixtures.node import NodeHandle
from zhida.cli.main import main

pytestmark = pytest.mark.integration

POLICE = DEPARTMENTS["wh-police"]


def _zhida(node: NodeHandle, *args: str, role: str = "admin", org: str | None = None) -> int:
    token = node.mint(role=role, org=org or DEPARTMENTS["hb-data"].uscc, region="420000")
    return main(["catalog", *args, "--address", node.address, "--token", token])


def _table_rows(text: str) -> list[list[str]]:
    """The body rows of rich tables: cells stripped, the border left out."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def test_load_sample_search_coverage(
    node: NodeHandle, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich tables wide enough to show whole codes
    assert _zhida(node, "load-sample") == 0
    out = capsys.readouterr()
    assert "loaded 25 resources, 3 negative-list entries, 8 demands" in out.err
    assert "the sample's part for region 100000" in out.err
    assert _zhida(node, "search", "食品经营许可", "--region", "420100", "--subregions") == 0
    out = capsys.readouterr()
    assert "2-04-001-0000-000010" in out.out
    assert "2-04-001-0000-000011" not in out.out
    assert _zhida(node, "coverage") == 0
    tables = capsys.readouterr().out
    assert "coverage per department" in tables
    assert "coverage per region" in tables
    rows = _table_rows(tables)
    # region, department, resources, demands, met, unmet, negative-listed items
    assert ["420100", "武汉市公安局", "1", "0", "0", "0", "1"] in rows
    assert ["420102", "武汉市江岸区政务服务和大数据管理局", "0", "3", "2", "1", "0"] in rows
    assert ["", "total", "25", "8", "5", "3", "5"] in rows
    assert ["420102", "2", "3", "2", "1", "0"] in rows  # the per-region table
    assert _zhida(node, "search", "--region", "12") == 2
    assert "INVALID_SEARCH" in capsys.readouterr().err


def test_import_csv_all_or_nothing(
    node: NodeHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = "code,name,provider_code,provider_name,region_code,share_type,items\n"
    row = "{code},{name},{uscc},武汉市公安局,420100,无条件共享,姓名:string\n"
    rows = [row.format(code=f"3-11-008-0000-00000{i}", name=f"导入资源{i}", uscc=POLICE.uscc)
            for i in (1, 2)]  # fmt: skip
    bad = tmp_path / "bad.csv"
    bad.write_text(header + rows[0] + rows[1].replace("420100", "4201"), encoding="utf-8")
    as_police = {"role": "department", "org": POLICE.uscc}
    assert _zhida(node, "import", str(bad), **as_police) == 1
    err = capsys.readouterr().err
    assert "rows[2].region_code" in err
    assert "nothing imported" in err
    good = tmp_path / "good.csv"
    good.write_text(header + "".join(rows), encoding="utf-8")
    assert _zhida(node, "import", str(good), **as_police) == 0
    assert "imported 2 resources" in capsys.readouterr().err
    assert _zhida(node, "import", str(good), **as_police) == 2  # already registered
    assert "rows[1].code" in capsys.readouterr().err


def test_export_json_and_dcat(node: NodeHandle, tmp_path: Path) -> None:
    out = tmp_path / "catalog.json"
    assert _zhida(node, "export", "--status", "draft", "--status", "published", "-o", str(out)) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert {"draft", "published"} >= {r["status"] for r in rows}
    dcat = tmp_path / "catalog.jsonld"
    assert _zhida(node, "export", "--format", "dcat", "-o", str(dcat)) == 0
    document = json.loads(dcat.read_text(encoding="utf-8"))
    assert document["@type"] == "dcat:Catalog"
    assert all(d["@type"] == "dcat:Dataset" for d in document["dcat:dataset"])
