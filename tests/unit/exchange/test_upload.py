"""Parsing hosted uploads: CSV and JSON, typed values, all or nothing, every bad field named."""

from __future__ import annotations

import json

import pytest

from catalog_registry.model import DataType
from exchange.upload import MAX_VIOLATIONS, parse_upload, value_problem
from zhida.errors import InvalidArgument
from zhida.provider.v1 import data_provider_service_pb2 as ppb

KEY = "统一社会信用代码"
ITEMS = {
    KEY: DataType.STRING,
    "企业名称": DataType.STRING,
    "注册资本": DataType.DECIMAL,
    "成立日期": DataType.DATE,
    "从业人数": DataType.INTEGER,
    "是否上市": DataType.BOOLEAN,
}


def _csv(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _record(body: bytes) -> ppb.Record:
    return ppb.Record.FromString(body)


def test_csv_snapshot_rows_become_encoded_records() -> None:
    data = (
        "\ufeff"
        + _csv(
            f"{KEY},企业名称,注册资本,成立日期",
            "91420100000000001A,武汉一号有限公司,100.50,2020-01-02",
            "",
            "91420100000000002B,武汉二号有限公司,,2021-03-04",
        ).decode()
    )
    parsed = parse_upload(data.encode(), "csv", KEY, ITEMS, changes=False)
    assert parsed.rows == 2
    assert parsed.deletes == []
    first = _record(parsed.upserts["91420100000000001A"])
    assert first.key == "91420100000000001A"
    assert dict(first.fields) == {
        KEY: "91420100000000001A", "企业名称": "武汉一号有限公司", "注册资本": "100.50",
        "成立日期": "2020-01-02",
    }  # fmt: skip
    assert "注册资本" not in _record(parsed.upserts["91420100000000002B"]).fields  # empty: absent


def test_encoding_is_deterministic() -> None:
    a = parse_upload(_csv(f"企业名称,{KEY}", "甲,K1"), "csv", KEY, ITEMS, changes=False)
    b = parse_upload(_csv(f"{KEY},企业名称", "K1,甲"), "csv", KEY, ITEMS, changes=False)
    assert a.upserts == b.upserts


def test_changes_mode_deletes_with_a_dash() -> None:
    data = _csv(f"{KEY},企业名称", "K1,甲", "-K2,")
    parsed = parse_upload(data, "csv", KEY, ITEMS, changes=True)
    assert list(parsed.upserts) == ["K1"]
    assert parsed.deletes == ["K2"]
    snapshot = parse_upload(data, "csv", KEY, ITEMS, changes=False)  # a dash is just text
    assert sorted(snapshot.upserts) == ["-K2", "K1"]


def test_json_values_become_text() -> None:
    rows = [
        {KEY: "K1", "注册资本": 12.5, "从业人数": 30, "是否上市": True, "成立日期": None},
        {KEY: 42, "企业名称": "乙"},
    ]
    parsed = parse_upload(json.dumps(rows).encode(), "json", KEY, ITEMS, changes=False)
    assert dict(_record(parsed.upserts["K1"]).fields) == {
        KEY: "K1", "注册资本": "12.5", "从业人数": "30", "是否上市": "true",
    }  # fmt: skip
    assert "42" in parsed.upserts


def test_every_bad_row_is_named_and_nothing_is_returned() -> None:
    data = _csv(
        f"{KEY},注册资本,成立日期,从业人数,是否上市",
        "K1,100,2020-01-01,3,true",
        "K2,lots,2020-02-30,3.5,yes",
        ",1,2020-01-01,1,false",
        "K1,1,2020-01-01,1,false",
        "K3,1",
    )
    with pytest.raises(InvalidArgument) as caught:
        parse_upload(data, "csv", KEY, ITEMS, changes=False)
    err = caught.value
    assert err.reason == "INVALID_UPLOAD"
    assert [v.field for v in err.violations] == [
        "rows[2].注册资本", "rows[2].成立日期", "rows[2].从业人数", "rows[2].是否上市",
        f"rows[3].{KEY}", f"rows[4].{KEY}", "rows[5]",
    ]  # fmt: skip
    assert "repeats row 1" in err.violations[5].description


def test_header_problems() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_upload(_csv("企业名称,指纹,企业名称", "a,b,c"), "csv", KEY, ITEMS, changes=False)
    assert [v.field for v in caught.value.violations] == ["columns[1]", "columns[2]", "key_item"]
    with pytest.raises(InvalidArgument) as caught:
        parse_upload(b"", "csv", KEY, ITEMS, changes=False)
    assert caught.value.violations[0].field == "columns"
    with pytest.raises(InvalidArgument) as caught:
        parse_upload(_csv(KEY, "K"), "csv", "指纹", ITEMS, changes=False)
    assert caught.value.violations[0].field == "header.key_item"


def test_json_shape_and_encoding_problems() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_upload(b'{"a": 1}', "json", KEY, ITEMS, changes=False)
    assert caught.value.violations[0].field == "rows"
    with pytest.raises(InvalidArgument):
        parse_upload(b"[{", "json", KEY, ITEMS, changes=False)
    bad = json.dumps([{KEY: "K", "企业名称": {"x": 1}, "指纹": "x"}, 7]).encode()
    with pytest.raises(InvalidArgument) as caught:
        parse_upload(bad, "json", KEY, ITEMS, changes=False)
    assert [v.field for v in caught.value.violations] == [
        "rows[1].企业名称", "rows[1].指纹", "rows[2]",
    ]  # fmt: skip
    with pytest.raises(InvalidArgument) as caught:
        parse_upload(b"\xff\xfe", "csv", KEY, ITEMS, changes=False)
    assert "UTF-8" in caught.value.message


def test_violations_are_capped() -> None:
    lines = [f"{KEY},从业人数"] + [f"K{i},x" for i in range(MAX_VIOLATIONS + 50)]
    with pytest.raises(InvalidArgument) as caught:
        parse_upload(_csv(*lines), "csv", KEY, ITEMS, changes=False)
    assert len(caught.value.violations) == MAX_VIOLATIONS
    assert f"{MAX_VIOLATIONS + 50} problem(s)" in caught.value.message


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        (DataType.DATETIME, "2025-01-02T03:04:05Z", "2025-01-02 03:04:05"),
        (DataType.DATETIME, "2025-01-02T03:04:05.5+08:00", "2025-13-02T03:04:05Z"),
        (DataType.BINARY, "aGVsbG8=", "not base64!"),
        (DataType.DECIMAL, "-3.25", "1e5"),
        (DataType.CODE, "1", None),
    ],
)
def test_value_types(kind: DataType, good: str, bad: str | None) -> None:
    assert value_problem(kind, good) is None
    if bad is not None:
        assert value_problem(kind, bad) is not None
