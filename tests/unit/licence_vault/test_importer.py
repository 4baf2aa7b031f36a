"""Legacy CSV import: batches, per-row errors, resuming after an interruption without duplicates."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from licence_vault.importer import CsvImport, RowOutcome, RowRequest
from licence_vault.vault import Actor, Vault
from tests.unit.licence_vault.support import JIANGAN_SAMR, RESTAURANT_NAME
from zhida.errors import InvalidArgument

Sender = Callable[[Sequence[RowRequest]], list[RowOutcome]]
COLUMNS = [
    "type", "holder_code", "holder_name", "issue_date", "valid_until",
    "统一社会信用代码", "名称", "类型", "法定代表人", "成立日期", "住所", "经营范围", "登记机关",
    "经营者名称", "社会信用代码", "法定代表人（负责人）", "经营场所", "主体业态", "经营项目",
    "许可证编号",
]  # fmt: skip


def _uscc(i: int) -> str:
    from stdnum.cn import uscc

    body = f"91420102MA4K{i:05d}"[:17]
    return body + uscc.calc_check_digit(body)


def _rows(n: int) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        holder = _uscc(i)
        if i % 2 == 0:
            rows.append({
                "type": "营业执照", "holder_code": holder, "holder_name": f"{RESTAURANT_NAME}{i}",
                "issue_date": "2019-05-01", "统一社会信用代码": holder, "名称": f"某公司{i}",
                "类型": "有限责任公司", "法定代表人": "张三", "成立日期": "2019-05-01",
                "住所": "武汉市江岸区", "经营范围": "餐饮服务", "登记机关": "江岸区市场监督管理局",
            })  # fmt: skip
        else:
            rows.append({
                "type": "111000000000170137002", "holder_code": holder, "holder_name": f"某餐馆{i}",
                "issue_date": "2022-01-01", "valid_until": "2026-12-31",
                "经营者名称": f"某餐馆{i}", "社会信用代码": holder, "法定代表人（负责人）": "李四",
                "住所": "武汉市江岸区", "经营场所": "武汉市江岸区", "主体业态": "餐饮服务经营者",
                "经营项目": "热食类食品制售", "许可证编号": f"JY{24201020000000 + i}",
            })  # fmt: skip
    if n > 12:
        rows[3]["holder_code"] = "91420102MA4KXY128A"  # bad check character
        rows[7]["type"] = "渔业捕捞许可证"  # unknown type
        rows[12]["成立日期"] = "2019-02-30"  # no such day
    return rows


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _sender(vault: Vault, fail_on_call: int | None = None) -> Sender:
    calls = {"n": 0}
    actor = Actor(JIANGAN_SAMR, "import")

    def send(batch: Sequence[RowRequest]) -> list[RowOutcome]:
        calls["n"] += 1
        if calls["n"] == fail_on_call:
            # the batch reaches the vault, then the client dies before recording it
            vault.issue_batch(actor, [r.request for r in batch])
            raise KeyboardInterrupt
        items = vault.issue_batch(actor, [r.request for r in batch])
        return [
            RowOutcome(
                row=r.row,
                request_id=item.request_id,
                licence_id=item.result.licence.licence_id if item.result else "",
                created=bool(item.result and item.result.created),
                error_reason=item.error.reason if item.error else "",
                error_message=item.error.message if item.error else "",
                error_fields=tuple(v.field for v in item.error.violations) if item.error else (),
            )
            for r, item in zip(batch, items, strict=True)
        ]

    return send


def test_import_resumes_after_an_interruption_without_duplicates(
    vault: Vault, tmp_path: Path
) -> None:
    path = tmp_path / "legacy.csv"
    _write(path, _rows(25))
    importer = CsvImport(path)
    with pytest.raises(KeyboardInterrupt):
        importer.run(_sender(vault, fail_on_call=2), batch_size=10)
    assert importer.load_state(importer.file_digest()) == 10  # the first batch is recorded

    summary = importer.run(_sender(vault), batch_size=10)
    assert summary.skipped == 10
    # rows 11-20 reached the vault before the interruption: found, not issued again
    assert summary.existing == 9  # row 13 of them is bad
    assert (summary.issued, summary.failed) == (5, 1)
    assert vault.store.count() == 22

    # the error report lists every refused row with its reason and field
    with importer.report_path.open(encoding="utf-8") as f:
        report = list(csv.DictReader(f))
    assert [(r["row"], r["reason"]) for r in report] == [
        ("4", "INVALID_HOLDER_ID"), ("8", "UNKNOWN_LICENCE_TYPE"), ("13", "INVALID_LICENCE_DATA"),
    ]  # fmt: skip
    assert report[2]["fields"] == "requests[2].data.成立日期"

    # a run from scratch (state ignored) finds everything issued already
    again = importer.run(_sender(vault), batch_size=7, restart=True)
    assert (again.issued, again.existing, again.failed) == (0, 22, 3)
    assert vault.store.count() == 22
    # and a run with the state skips everything
    done = importer.run(_sender(vault))
    assert (done.skipped, done.issued, done.existing) == (25, 0, 0)


def test_request_ids_come_from_row_content(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    rows = _rows(4)
    _write(path, rows)
    first = [r.request.request_id for r in CsvImport(path).rows() if isinstance(r, RowRequest)]
    rows.insert(0, rows.pop(2))  # reordered: same ids
    _write(path, rows)
    second = [r.request.request_id for r in CsvImport(path).rows() if isinstance(r, RowRequest)]
    assert sorted(first) == sorted(second)
    assert len(set(first)) == len(first)


def test_a_file_without_the_required_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("type,holder_name\n营业执照,x\n", encoding="utf-8")
    with pytest.raises(InvalidArgument) as err:
        list(CsvImport(path).rows())
    assert err.value.reason == "INVALID_CSV"


def test_a_crash_between_report_and_state_repeats_no_report_row(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "legacy.csv"
    _write(path, _rows(25))
    importer = CsvImport(path)
    save = importer.save_state
    saves = {"n": 0}

    def crash_on_second(*args: Any) -> None:
        saves["n"] += 1
        if saves["n"] == 2:  # batch 2's report rows (row 13) are written, its state is not
            raise KeyboardInterrupt
        save(*args)

    monkeypatch.setattr(importer, "save_state", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        importer.run(_sender(vault), batch_size=10)
    assert _report_rows(importer) == ["4", "8", "13"]
    monkeypatch.undo()

    summary = CsvImport(path).run(_sender(vault), batch_size=10)  # resumes after batch 1
    assert (summary.skipped, summary.failed) == (10, 1)
    assert _report_rows(importer) == ["4", "8", "13"]  # row 13 once, rows 4 and 8 kept


def _report_rows(importer: CsvImport) -> list[str]:
    with importer.report_path.open(encoding="utf-8") as f:
        return [r["row"] for r in csv.DictReader(f)]
