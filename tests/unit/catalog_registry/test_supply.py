"""The supply list: which items are offered, which withheld and by which rule; its filters."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from catalog_registry.live import LiveCatalog
from catalog_registry.model import DataItem, DataType, ShareType
from catalog_registry.negative_list import NegativeList
from catalog_registry.registry import CatalogRegistry
from catalog_registry.sample_data import PIPL_28, department_principal, load_sample, sample_admin
from catalog_registry.supply import SupplyEntry, supply_entry
from tests.unit.catalog_registry.conftest import make_spec
from tests.unit.catalog_registry.sql_support import open_store
from zhida.auth.principal import Principal

CODE = "1-01-001-0000-000101"
S, B = DataType.STRING, DataType.BINARY


def _publish(registry: CatalogRegistry, police: Principal, photo: ShareType | None) -> None:
    """武汉市公安局's resource; its 人像照片 item carries ``photo`` as its share type."""
    items = (
        DataItem("姓名", S),
        DataItem("公民身份号码", S),
        DataItem("人像照片", B, share_type=photo),
    )
    registry.register(police, make_spec(CODE, items=items, delivery_service="hosted"))
    registry.publish(police, CODE)


def _entry(registry: CatalogRegistry, negative: NegativeList) -> SupplyEntry:
    resource = registry.repository.get_resource(CODE)
    assert resource is not None
    return supply_entry(resource, negative.may_release)


def _offered(entry: SupplyEntry) -> list[str]:
    return [i.name for i in entry.offered]


def test_a_shareable_item_negative_listed_after_publishing_is_withheld(
    registry: CatalogRegistry, negative: NegativeList, police: Principal, admin: Principal
) -> None:
    _publish(registry, police, photo=None)  # shared like the resource
    assert (_offered(_entry(registry, negative)), _entry(registry, negative).withheld) == (
        ["姓名", "公民身份号码", "人像照片"],
        (),
    )
    negative.add(admin, CODE, ("人像照片",), PIPL_28)  # the published resource still offers it
    entry = _entry(registry, negative)
    assert (_offered(entry), entry.withheld) == (["姓名", "公民身份号码"], ("人像照片",))
    negative.remove(admin, CODE, ("人像照片",))  # the negative list alone withheld it
    assert _entry(registry, negative).withheld == ()


def test_an_item_marked_not_shared_is_withheld(
    registry: CatalogRegistry, negative: NegativeList, police: Principal
) -> None:
    _publish(registry, police, photo=ShareType.NOT_SHARED)
    assert negative.may_release(CODE, "人像照片").allowed  # not the negative list's doing
    entry = _entry(registry, negative)
    assert (_offered(entry), entry.withheld) == (["姓名", "公民身份号码"], ("人像照片",))
    assert entry.resource.spec.delivery_service == "hosted"


@pytest.fixture
def national(tmp_path: Path) -> Iterator[LiveCatalog]:
    """A national node's catalogue (SQLite) with the whole sample."""
    with ExitStack() as stack:
        live = LiveCatalog(open_store(f"sqlite:///{tmp_path / 'c.db'}", stack), "100000")
        load_sample(live.registry, live.negative_list())
        yield live


def test_the_supply_list_filters_by_region_and_names_the_delivery_service(
    national: LiveCatalog,
) -> None:
    admin = sample_admin()
    wuhan, token = national.supply(admin, None, "420100", 100, "")
    assert token == ""
    assert {e.resource.region_code for e in wuhan} == {"420100", "420102"}  # and below
    everything, _ = national.supply(admin, None, None, 100, "")
    below = {e.resource.key for e in everything if e.resource.region_code in ("420100", "420102")}
    assert {e.resource.key for e in wuhan} == below
    household = next(e for e in wuhan if e.resource.key == "1-01-001-0000-000002")
    assert household.resource.spec.delivery_service == "hosted"  # the node's hosted provider
    assert household.withheld == ("人像照片",)
    biometric = next(e for e in everything if e.resource.key == "1-01-003-0000-000004")
    assert biometric.resource.spec.delivery_service == ""  # not shared: nothing delivers it
    assert biometric.offered == ()
    police = department_principal("wh-police")
    own, _ = national.supply(admin, police.organisation, "420000", 100, "")
    assert [e.resource.key for e in own] == ["1-01-001-0000-000002"]
    hunan, _ = national.supply(admin, police.organisation, "430000", 100, "")
    assert hunan == []
    page, token = national.supply(admin, None, "420000", 2, "")
    rest, _ = national.supply(admin, None, "420000", 100, token)
    in_hubei = [e.resource.key for e in everything if e.resource.region_code.startswith("42")]
    assert sorted(e.resource.key for e in [*page, *rest]) == sorted(in_hubei)


def test_supply_entries_of_a_changed_spec_follow_it(
    registry: CatalogRegistry, negative: NegativeList, police: Principal
) -> None:
    _publish(registry, police, photo=None)
    current = registry.repository.get_resource(CODE)
    assert current is not None
    items = tuple(
        dataclasses.replace(i, share_type=ShareType.NOT_SHARED) if i.name == "姓名" else i
        for i in current.items
    )
    registry.update(police, dataclasses.replace(current.spec, items=items))
    assert _entry(registry, negative).withheld == ("姓名",)
