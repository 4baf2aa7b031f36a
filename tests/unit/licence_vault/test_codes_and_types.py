"""Identifiers (GB/T 36904), holder codes, licence types and matters."""

from __future__ import annotations

import pytest
from stdnum.iso7064 import mod_37_36

from licence_vault.holder import HolderCodeType, detect_code_type, validate_holder
from licence_vault.identifier import ROOT, LicenceId
from licence_vault.matters import BUILTIN_MATTERS, MatterRegistry
from licence_vault.types import BUILTIN_TYPES, FOOD_BUSINESS_PERMIT, TypeRegistry
from tests.unit.licence_vault.support import CITIZEN, RESTAURANT
from zhida.errors import InvalidArgument

TYPE = FOOD_BUSINESS_PERMIT.code
ISSUER = "11420102000040176F"


def test_identifier_renders_and_parses_with_its_check_character() -> None:
    ident = LicenceId(TYPE, ISSUER, 42, 3)
    text = str(ident)
    assert text.startswith(ROOT + "." + TYPE + "." + ISSUER + ".0000000042.003.")
    body = text.removeprefix(ROOT + ".").replace(".", "")
    assert mod_37_36.is_valid(body)  # the check covers everything but the root and dots
    assert LicenceId.parse(text) == ident
    assert ident.next_version().version == 4
    assert ident.next_version().lineage == ident.lineage


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),  # wrong check character
        lambda s: s.replace(".003.", ".004."),  # version changed, check not
        lambda s: s.replace("0000000042", "0000000043"),
        lambda s: s.replace(ROOT, "1.2.156.3005.1"),
        lambda s: s.replace(ISSUER, ISSUER[:-1] + "0"),  # issuer USCC check broken
        lambda s: s + ".X",
        lambda s: "",
    ],
)
def test_bad_identifiers_are_refused(mutate: object) -> None:
    text = str(LicenceId(TYPE, ISSUER, 42, 3))
    with pytest.raises(InvalidArgument) as err:
        LicenceId.parse(mutate(text))  # type: ignore[operator]
    assert err.value.reason == "INVALID_LICENCE_ID"


def test_holder_codes() -> None:
    assert validate_holder(CITIZEN.lower(), HolderCodeType.RESIDENT_ID) == CITIZEN
    assert validate_holder(RESTAURANT, HolderCodeType.USCC) == RESTAURANT
    assert detect_code_type(CITIZEN) is HolderCodeType.RESIDENT_ID
    assert detect_code_type(RESTAURANT) is HolderCodeType.USCC
    for code, kind in [
        ("420102198506123010", HolderCodeType.RESIDENT_ID),  # wrong check digit
        ("420102198513123017", HolderCodeType.RESIDENT_ID),  # month 13
        ("91420102MA4KXY128A", HolderCodeType.USCC),
        (RESTAURANT, HolderCodeType.RESIDENT_ID),
        ("", HolderCodeType.USCC),
    ]:
        with pytest.raises(InvalidArgument) as err:
            validate_holder(code, kind)
        assert err.value.reason == "INVALID_HOLDER_ID"
        assert err.value.violations[0].field == "holder_code"


def test_builtin_types_are_the_nine_of_the_seeds() -> None:
    names = {t.name for t in BUILTIN_TYPES}
    assert names == {
        "营业执照", "食品经营许可证", "道路运输经营许可证", "出生医学证明", "居民户口簿",
        "结婚证", "残疾人证", "社会保障卡", "药品经营许可证",
    }  # fmt: skip
    registry = TypeRegistry.builtin()
    for t in BUILTIN_TYPES:
        assert registry.get(t.code) is t
        assert len(t.code) == 21
        assert t.code[18:].isdigit()
        assert t.layout_lines({f.key: "x" for f in t.fields})  # every type prints something


def test_type_data_check_names_every_bad_field() -> None:
    data = {
        "经营者名称": "某餐馆",
        "社会信用代码": RESTAURANT,
        "住所": "x",
        "经营场所": "x",
        "主体业态": "火锅",  # not a choice
        "经营项目": "热食",
        "许可证编号": "JY123",  # malformed
        "颜色": "红",  # unknown
    }
    with pytest.raises(InvalidArgument) as err:
        FOOD_BUSINESS_PERMIT.check_data(data, holder_code=RESTAURANT)
    fields = {v.field for v in err.value.violations}
    assert fields == {"data.颜色", "data.法定代表人（负责人）", "data.主体业态", "data.许可证编号"}
    assert err.value.reason == "INVALID_LICENCE_DATA"


def test_unknown_type_and_matter() -> None:
    with pytest.raises(InvalidArgument) as err:
        TypeRegistry.builtin().get("111000000000170137999")
    assert err.value.reason == "UNKNOWN_LICENCE_TYPE"
    with pytest.raises(InvalidArgument) as err:
        MatterRegistry.builtin().get("YJS-NOPE")
    assert err.value.reason == "UNKNOWN_MATTER"


def test_matters_use_known_types() -> None:
    registry = TypeRegistry.builtin()
    for matter in BUILTIN_MATTERS:
        for code in matter.type_codes:
            registry.get(code)
    assert any(m.legal_basis for m in BUILTIN_MATTERS)
    assert MatterRegistry.builtin().get("YJS-KBCYD").watermark == "仅供开办餐饮店使用"
