"""Resource codes, USCCs, region codes, share types, items, demands, negative entries."""

from __future__ import annotations

import dataclasses

import pytest

from catalog_registry.model import (
    DataItem,
    DataType,
    DemandSpec,
    ResourceClass,
    ResourceCode,
    ShareType,
)
from catalog_registry.sample_data import DEPARTMENTS, GUOFA_2024_3, make_uscc
from catalog_registry.validation import (
    check_demand,
    check_negative_entry,
    check_spec,
    parse_resource,
    parse_resource_row,
    uscc_violations,
)
from tests.unit.catalog_registry.conftest import make_spec
from zhida.errors import InvalidArgument


@pytest.mark.parametrize(
    "text",
    ["1-01-001-0001-000001", "1010010001000001", "1010010001/000001", "  1-01-001-0001-000001 "],
)
def test_code_forms_normalise_to_canonical(text: str) -> None:
    code = ResourceCode.parse(text)
    assert code.text == "1-01-001-0001-000001"
    assert code.resource_class is ResourceClass.BASIC
    assert (code.item, code.sub_item, code.detail, code.sequence) == (1, 1, 1, 1)
    assert str(code) == code.text


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("", ["required"]),
        ("1-01-001-0001", ["not a resource code"]),
        ("1-1-001-0001-000001", ["not a resource code"]),
        ("A-01-001-0001-000001", ["not a resource code"]),
        ("4-01-001-0001-000001", ["class (segment 1)"]),
        (
            "0-00-000-0001-000000",
            [
                "class (segment 1)",
                "item (segment 2)",
                "sub-item (segment 3)",
                "sequence (segment 5)",
            ],
        ),
        ("2-00-001-0000-000001", ["item (segment 2) must be 01-99, got 00"]),
        ("3-10-001-0000-000000", ["sequence (segment 5)"]),
    ],
)
def test_invalid_codes_name_each_bad_segment(text: str, fragments: list[str]) -> None:
    with pytest.raises(InvalidArgument) as info:
        ResourceCode.parse(text, field="related_codes[0]")
    assert info.value.reason == "INVALID_RESOURCE_CODE"
    assert {v.field for v in info.value.violations} == {"related_codes[0]"}
    descriptions = " | ".join(v.description for v in info.value.violations)
    for fragment in fragments:
        assert fragment in descriptions
    assert len(info.value.violations) == max(1, len(fragments))


def test_code_constructor_validates() -> None:
    with pytest.raises(InvalidArgument):
        ResourceCode(ResourceClass.THEME, 100, 1, 0, 1)
    assert ResourceCode(ResourceClass.THEME, 3, 2, 0, 7).text == "2-03-002-0000-000007"
    assert ResourceCode.parse("1-01-001-0000-000002") > ResourceCode.parse("1-01-001-0000-000001")


def test_share_type_labels_and_rank() -> None:
    assert [s.label for s in ShareType] == ["无条件共享", "有条件共享", "不予共享"]
    assert ShareType.UNCONDITIONAL.rank < ShareType.CONDITIONAL.rank < ShareType.NOT_SHARED.rank


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "required"),
        ("11420100000000", "18 characters"),
        ("114201000000000785", "wrong check character"),
        ("11420100000000O784", "malformed"),
        ("11420100 0000000784", "compactly in capitals"),
    ],
)
def test_uscc_violations(value: str, fragment: str) -> None:
    problems = uscc_violations(value, "provider_code")
    assert len(problems) == 1
    assert problems[0].field == "provider_code"
    assert fragment in problems[0].description


def test_valid_usccs_pass() -> None:
    assert uscc_violations(make_uscc("420100", 7), "x") == []
    assert all(uscc_violations(d.uscc, "x") == [] for d in DEPARTMENTS.values())


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "code": "1-01-001-0000-000101",
        "name": "居民户籍登记信息",
        "description": "",
        "provider_code": DEPARTMENTS["wh-police"].uscc,
        "provider_name": "武汉市公安局",
        "region_code": "420100",
        "share_type": "有条件共享",
        "share_conditions": "经审核",
        "items": [{"name": "姓名", "type": "string"}, {"name": "公民身份号码", "type": "string"}],
    }
    row.update(changes)
    return row


def test_parse_resource_accepts_chinese_and_english_share_types() -> None:
    assert parse_resource(_row()).share_type is ShareType.CONDITIONAL
    assert parse_resource(_row(share_type="unconditional")).share_type is ShareType.UNCONDITIONAL
    assert parse_resource(_row(share_type="NOT_SHARED")).share_type is ShareType.NOT_SHARED


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"code": "1-01-001-0000-0001"}, "code"),
        ({"provider_code": "91420100MA4K0000X1"}, "provider_code"),
        ({"region_code": "990000"}, "region_code"),
        ({"region_code": "42010"}, "region_code"),
        ({"region_code": "420002"}, "region_code"),
        ({"share_type": "open"}, "share_type"),
        ({"share_type": "有条件共享", "share_conditions": ""}, "share_conditions"),
        ({"share_type": "不予共享", "share_conditions": " "}, "share_conditions"),
        ({"items": []}, "items"),
        ({"items": "姓名"}, "items"),
        ({"items": [{"name": "", "type": "string"}]}, "items[0].name"),
        ({"items": [{"name": "姓名", "type": "text"}]}, "items[0].type"),
        (
            {"items": [{"name": "姓名", "type": "string"}, {"name": "姓名", "type": "date"}]},
            "items[1].name",
        ),
        (
            {
                "items": [
                    {"name": "a", "type": "string"},
                    {"name": "b", "type": "string"},
                    {"name": " c", "type": "string"},
                ]
            },
            "items[2].name",
        ),
        (
            {"items": [{"name": "姓名", "type": "string", "share_type": "unconditional"}]},
            "items[0].share_type",
        ),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"provider_name": ""}, "provider_name"),
        ({"related_codes": ["bad"]}, "related_codes[0]"),
        ({"related_codes": ["1-01-001-0000-000101"]}, "related_codes[0]"),
        ({"colour": "red"}, "colour"),
        ({"format": "paper"}, "format"),
        ({"update_cycle": "hourly"}, "update_cycle"),
    ],
)
def test_each_bad_field_is_reported_with_its_path(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_resource(_row(**changes))
    assert info.value.reason == "INVALID_RESOURCE"
    assert field in {v.field for v in info.value.violations}


def test_all_problems_are_collected_together() -> None:
    spec, violations = parse_resource_row(
        _row(
            code="9-01-001-0000-000001",
            provider_code="bad",
            region_code="000000",
            share_type="x",
            items=[{"name": "", "type": "string"}],
        )
    )
    assert spec is None
    fields = {v.field for v in violations}
    assert {"code", "provider_code", "region_code", "share_type", "items[0].name"} <= fields


def test_check_spec_on_typed_specs() -> None:
    check_spec(make_spec())
    bad = make_spec(items=(DataItem("姓名", DataType.STRING), DataItem("姓名", DataType.DATE)))
    with pytest.raises(InvalidArgument) as info:
        check_spec(dataclasses.replace(bad, region_code="12345"))
    assert {v.field for v in info.value.violations} == {"items[1].name", "region_code"}


def _demand(**changes: object) -> DemandSpec:
    d = DEPARTMENTS["ja-gov"]
    spec = DemandSpec(
        requester_code=d.uscc,
        requester_name=d.name,
        purpose="新生儿出生一件事",
        legal_basis=GUOFA_2024_3,
        region_scope="420102",
        wanted_text="出生医学证明信息",
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def test_demand_validation() -> None:
    check_demand(_demand())
    check_demand(_demand(wanted_text="", item_names=("出生医学证明编号",)))
    with pytest.raises(InvalidArgument) as info:
        check_demand(
            _demand(
                wanted_text="",
                legal_basis="",
                purpose="",
                region_scope="4201",
                requester_code="x",
                item_names=("",),
            )
        )
    assert info.value.reason == "INVALID_DEMAND"
    assert {v.field for v in info.value.violations} == {
        "legal_basis",
        "purpose",
        "region_scope",
        "requester_code",
        "item_names[0]",
    }
    with pytest.raises(InvalidArgument) as info:
        check_demand(_demand(wanted_text=" "))
    assert "wanted_text" in {v.field for v in info.value.violations}


@pytest.mark.parametrize("basis", ["", "   "])
def test_negative_entry_needs_legal_basis(basis: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_negative_entry(basis, ())
    assert info.value.reason == "INVALID_NEGATIVE_ENTRY"
    assert [v.field for v in info.value.violations] == ["legal_basis"]
    assert "legal basis" in info.value.violations[0].description
