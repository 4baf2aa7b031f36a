"""Negative list: admin-only changes, mandatory legal basis, O(1) release decisions."""

from __future__ import annotations

import time

import pytest

from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import ResourceCode
from catalog_registry.negative_list import ALLOW, NegativeList
from catalog_registry.registry import CatalogRegistry
from catalog_registry.sample_data import PIPL_28
from tests.unit.catalog_registry.conftest import StepClock, make_spec
from zhida.auth.principal import Principal
from zhida.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied

CODE = "1-01-001-0000-000101"


@pytest.fixture
def listed(
    registry: CatalogRegistry, negative: NegativeList, police: Principal, admin: Principal
) -> NegativeList:
    registry.register(police, make_spec())
    registry.register(police, make_spec("1-01-003-0000-000102", name="个人生物识别信息"))
    negative.add(admin, CODE, ["人像照片"], PIPL_28)
    negative.add(admin, "1-01-003-0000-000102", [], PIPL_28)
    return negative


def test_item_entry_blocks_only_that_item(listed: NegativeList) -> None:
    d = listed.may_release(CODE, "人像照片")
    assert not d.allowed
    assert d.legal_basis == PIPL_28
    assert d.entry is not None
    assert d.entry.item_names == ("人像照片",)
    assert listed.may_release(CODE, "姓名") is ALLOW
    assert listed.may_release(ResourceCode.parse(CODE), "人像照片").allowed is False


def test_whole_resource_entry_blocks_every_item(listed: NegativeList) -> None:
    for item in ("姓名", "公民身份号码", "人像照片", "anything"):
        assert not listed.may_release("1-01-003-0000-000102", item).allowed


def test_unlisted_resource_is_released(listed: NegativeList) -> None:
    assert listed.may_release("2-01-001-0000-000001", "姓名").allowed


def test_only_admins_change_the_list(listed: NegativeList, police: Principal) -> None:
    with pytest.raises(PermissionDenied) as info:
        listed.add(police, CODE, ["姓名"], PIPL_28)
    assert info.value.reason == "ROLE_NOT_ALLOWED"
    with pytest.raises(PermissionDenied):
        listed.remove(police, CODE, ["人像照片"])


@pytest.mark.parametrize("basis", ["", "  "])
def test_legal_basis_is_mandatory(listed: NegativeList, admin: Principal, basis: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        listed.add(admin, CODE, ["姓名"], basis)
    assert info.value.reason == "INVALID_NEGATIVE_ENTRY"
    assert [v.field for v in info.value.violations] == ["legal_basis"]
    assert listed.may_release(CODE, "姓名").allowed


def test_unknown_resource_or_item(listed: NegativeList, admin: Principal) -> None:
    with pytest.raises(NotFound):
        listed.add(admin, "3-01-001-0000-000999", [], PIPL_28)
    with pytest.raises(InvalidArgument) as info:
        listed.add(admin, CODE, ["姓名", "指纹"], PIPL_28)
    assert [v.field for v in info.value.violations] == ["item_names[1]"]
    with pytest.raises(InvalidArgument):
        listed.add(admin, "not-a-code", [], PIPL_28)


def test_duplicate_entry(listed: NegativeList, admin: Principal) -> None:
    with pytest.raises(AlreadyExists):
        listed.add(admin, CODE, ["人像照片"], PIPL_28)


def test_remove_and_overlapping_entries(listed: NegativeList, admin: Principal) -> None:
    listed.add(admin, CODE, ["人像照片", "公民身份号码"], "《居民身份证法》第十九条")
    listed.remove(admin, CODE, ["人像照片"])
    # The overlapping entry still blocks 人像照片, now with its own basis.
    d = listed.may_release(CODE, "人像照片")
    assert not d.allowed
    assert "居民身份证法" in d.legal_basis
    listed.remove(admin, CODE, ["人像照片", "公民身份号码"])
    assert listed.may_release(CODE, "人像照片").allowed
    with pytest.raises(NotFound) as info:
        listed.remove(admin, CODE, ["人像照片"])
    assert info.value.reason == "NEGATIVE_ENTRY_NOT_FOUND"


def test_list_and_reload(
    listed: NegativeList, repo: InMemoryCatalogRepository, clock: StepClock
) -> None:
    assert [e.resource_code.text for e in listed.list()] == [CODE, "1-01-003-0000-000102"]
    assert [e.item_names for e in listed.list(CODE)] == [("人像照片",)]
    fresh = NegativeList(repo, clock)  # another process: index built from the repository
    assert not fresh.may_release(CODE, "人像照片").allowed
    assert fresh.may_release(CODE, "姓名").allowed


def test_release_checks_sustain_100k_per_second(listed: NegativeList) -> None:
    keys = [
        (CODE, "人像照片"),
        (CODE, "姓名"),
        ("1-01-003-0000-000102", "姓名"),
        ("2-01-001-0000-000001", "姓名"),
    ] * 50_000
    start = time.perf_counter()
    blocked = sum(1 for code, item in keys if not listed.may_release(code, item).allowed)
    rate = len(keys) / (time.perf_counter() - start)
    assert blocked == 100_000
    assert rate >= 100_000, f"{rate:,.0f} checks/s"
