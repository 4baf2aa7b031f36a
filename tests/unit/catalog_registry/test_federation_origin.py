"""A copy is updated, published and retired only at its own node, like its negative list.

A copy is told by where its latest change came from (``resource_origin``), not by
its region: the city owns the resources of 武昌区 (420106, no node of its own).
Three nodes (江岸区 → 武汉 → 湖北), each a LiveCatalog on its own SQLite file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from catalog_registry.live import LiveCatalog
from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import Resource, ResourceStatus
from catalog_registry.registry import CatalogRegistry
from catalog_registry.sample_data import department_principal, sample_admin
from tests.unit.catalog_registry.conftest import StepClock, make_spec
from tests.unit.catalog_registry.sql_support import open_store
from tests.unit.catalog_registry.test_federation_negative import Chain, down, up
from zhida.errors import FailedPrecondition

COUNTY_CODE = "2-04-001-0000-000010"  # 江岸区市场监督管理局, published at 420102
COUNTY_DRAFT = "2-04-001-0000-000011"  # the same department's draft
CITY_CODE = "1-01-001-0000-000101"  # 武汉市公安局, at 420100
WUCHANG_CODE = "2-04-001-0000-000030"  # 武汉市市场监督管理局's, of 武昌区 420106
PROVINCE_CODE = "1-05-001-0000-000001"  # 湖北省卫生健康委员会, at 420000
ADMIN = sample_admin()
JA_SAMR = department_principal("ja-samr")


def _register(live: LiveCatalog, code: str, dept: str, region: str | None = None) -> None:
    spec = make_spec(code, dept=dept)
    spec = dataclasses.replace(spec, region_code=region or spec.region_code)
    live.registry.register(department_principal(dept), spec)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    with ExitStack() as stack:
        county, city, province = (
            LiveCatalog(open_store(f"sqlite:///{tmp_path / r}.db", stack), r, clock=StepClock())
            for r in ("420102", "420100", "420000")
        )
        _register(county, COUNTY_CODE, "ja-samr")
        county.registry.publish(JA_SAMR, COUNTY_CODE)
        _register(county, COUNTY_DRAFT, "ja-samr")
        _register(province, PROVINCE_CODE, "hb-health")
        province.registry.publish(department_principal("hb-health"), PROVINCE_CODE)
        yield Chain(county, city, province)


def _changes(registry: CatalogRegistry, code: str, dept: str) -> list[Callable[[], Resource]]:
    """Update, publish and retire of ``code``, by its department and by an admin."""
    spec = dataclasses.replace(registry.get(ADMIN, code).spec, name="改了名的资源")
    who = department_principal(dept)
    return [
        lambda: registry.update(who, spec),
        lambda: registry.update(ADMIN, spec),
        lambda: registry.publish(who, code),
        lambda: registry.retire(ADMIN, code),
    ]


def _assert_refused(live: LiveCatalog, code: str, dept: str, home: str) -> None:
    before = (live.repo.get_resource(code), live.repo.last_sequence())
    for change in _changes(live.registry, code, dept):
        with pytest.raises(FailedPrecondition) as info:
            change()
        assert (info.value.reason, dict(info.value.metadata)) == (
            "IMPORTED_RESOURCE",
            {"code": code, "home_region": home},
        )
        assert f"region {home}'s node" in info.value.message
    assert (live.repo.get_resource(code), live.repo.last_sequence()) == before


def test_a_copy_pushed_up_is_changed_only_at_its_node(chain: Chain) -> None:
    up(chain.county, chain.city)
    up(chain.city, chain.province)
    for live in (chain.city, chain.province):  # both codes lie within either's region
        _assert_refused(live, COUNTY_CODE, "ja-samr", "420102")
        _assert_refused(live, COUNTY_DRAFT, "ja-samr", "420102")
    # changed at the county, the change reaches both copies
    spec = dataclasses.replace(make_spec(COUNTY_CODE, dept="ja-samr"), name="食品经营许可信息")
    chain.county.registry.update(JA_SAMR, spec)
    chain.county.registry.publish(JA_SAMR, COUNTY_DRAFT)
    up(chain.county, chain.city)
    up(chain.city, chain.province)
    for live in (chain.city, chain.province):
        assert live.registry.get(ADMIN, COUNTY_CODE).name == "食品经营许可信息"
        assert live.registry.get(ADMIN, COUNTY_DRAFT).status is ResourceStatus.PUBLISHED


def test_a_copy_pulled_down_names_the_node_it_came_from(chain: Chain) -> None:
    down(chain.province, chain.city)
    down(chain.city, chain.county)  # relayed by the city: the origin stays the province
    for live in (chain.city, chain.county):
        _assert_refused(live, PROVINCE_CODE, "hb-health", "420000")


def test_the_node_own_resources_still_change(chain: Chain) -> None:
    """Its region's, and a sub-region's without a node (武昌区 at the city), even once the
    city holds copies from its child."""
    up(chain.county, chain.city)
    _register(chain.city, CITY_CODE, "wh-police")
    _register(chain.city, WUCHANG_CODE, "wh-samr", region="420106")
    for code, dept in ((CITY_CODE, "wh-police"), (WUCHANG_CODE, "wh-samr")):
        update, by_admin, publish, retire = _changes(chain.city.registry, code, dept)
        assert [f().version for f in (update, by_admin, publish, retire)] == [2, 3, 4, 5]
        assert chain.city.registry.get(ADMIN, code).status is ResourceStatus.RETIRED
    county_own = _changes(chain.county.registry, COUNTY_CODE, "ja-samr")
    assert county_own[-1]().status is ResourceStatus.RETIRED


def test_a_resource_outside_the_region_written_before_the_rule_is_refused() -> None:
    """No origin recorded (written here), yet of another region: its region's node owns it."""
    repo = InMemoryCatalogRepository()
    CatalogRegistry(repo, StepClock()).register(ADMIN, make_spec(CITY_CODE))  # no node yet
    county = CatalogRegistry(repo, StepClock(), node_region="420102")
    with pytest.raises(FailedPrecondition) as info:
        county.publish(ADMIN, CITY_CODE)
    assert (info.value.reason, info.value.metadata["home_region"]) == (
        "IMPORTED_RESOURCE",
        "420100",
    )
