"""A node's catalogue holds its own region's resources; related codes name held resources.

The region rule applies to what is registered or changed at the node
(register, update, publish, retire, bulk import); copies imported from a
child or the parent node (federation) are exempt, and never changed here. The sample is loaded by
each node in its own part.
"""

from __future__ import annotations

import dataclasses

import pytest

from catalog_registry.federation import Federation, ImportOutcome
from catalog_registry.importexport import import_resources, read_csv
from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import Resource, ResourceCode, ResourceSpec, ResourceStatus
from catalog_registry.negative_list import NegativeList
from catalog_registry.registry import CatalogRegistry
from catalog_registry.sample_data import (
    DEPARTMENTS,
    department_principal,
    home_node,
    load_sample,
    sample_admin,
    sample_catalogue,
    sample_for_node,
)
from tests.unit.catalog_registry.conftest import StepClock, make_spec
from zhida.errors import AlreadyExists, FailedPrecondition, InvalidArgument

COUNTY, CITY = "420102", "420100"
DEMO_NODES = ("100000", "420000", "430000", "420100", "420102")
POLICE = department_principal("wh-police")  # 420100
JA_SAMR = department_principal("ja-samr")  # 420102


def registry_at(region: str, repo: InMemoryCatalogRepository | None = None) -> CatalogRegistry:
    return CatalogRegistry(repo or InMemoryCatalogRepository(), StepClock(), node_region=region)


def county_spec(
    code: str = "2-04-001-0000-000301", name: str = "食品经营许可信息", **changes: object
) -> ResourceSpec:
    spec = make_spec(code, name=name, dept="ja-samr")
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def test_a_resource_of_the_node_region_or_below_is_registered() -> None:
    city = registry_at(CITY)
    assert city.register(POLICE, make_spec()).region_code == CITY
    assert city.register(JA_SAMR, county_spec()).region_code == COUNTY  # a county below it
    national = registry_at("100000")
    assert national.register(POLICE, make_spec()).status is ResourceStatus.DRAFT


@pytest.mark.parametrize("region", ["100000", "420000", "433100", "420103"])
def test_a_resource_of_another_region_is_refused(region: str) -> None:
    county = registry_at(COUNTY)
    with pytest.raises(InvalidArgument) as info:
        county.register(sample_admin(), county_spec(region_code=region))
    assert info.value.reason == "OUTSIDE_NODE_REGION"
    assert [(v.field, v.description) for v in info.value.violations] == [
        ("region_code", "must be within this node's region 420102")
    ]
    assert list(county.repository.iter_resources()) == []


def test_a_bulk_registration_names_the_resource_outside() -> None:
    county = registry_at(COUNTY)
    specs = [county_spec(), make_spec()]  # the second is 武汉市公安局's (420100)
    with pytest.raises(InvalidArgument) as info:
        county.register_many(sample_admin(), specs)
    assert [v.field for v in info.value.violations] == ["resources[1].region_code"]
    assert list(county.repository.iter_resources()) == []


def test_an_update_may_not_move_a_resource_out_of_the_node_region() -> None:
    county = registry_at(COUNTY)
    county.register(JA_SAMR, county_spec())
    with pytest.raises(InvalidArgument) as info:
        county.update(sample_admin(), county_spec(region_code=CITY))
    assert (info.value.reason, [v.field for v in info.value.violations]) == (
        "OUTSIDE_NODE_REGION",
        ["region_code"],
    )
    assert county.update(JA_SAMR, county_spec(name="食品经营许可证信息")).version == 2


def test_copies_from_other_nodes_are_imported_but_never_changed_here() -> None:
    """Federation imports are exempt; the copy changes only at its own region's node."""
    clock = StepClock()
    city_repo, county_repo = InMemoryCatalogRepository(), InMemoryCatalogRepository()
    city = CatalogRegistry(city_repo, clock, node_region=CITY)
    city.register(POLICE, make_spec())
    city.publish(POLICE, make_spec().code)
    county = CatalogRegistry(county_repo, clock, node_region=COUNTY)
    down, _ = Federation(city_repo, CITY).export_changes(0, limit=100)
    report = Federation(county_repo, COUNTY).import_from_parent(down)
    assert [r.outcome for r in report.results] == [ImportOutcome.IMPORTED] * 2
    code = make_spec().code.text
    assert county.get(POLICE, code).status is ResourceStatus.PUBLISHED
    with pytest.raises(FailedPrecondition) as update:
        county.update(POLICE, make_spec(name="改名"))
    with pytest.raises(FailedPrecondition) as retire:
        county.retire(POLICE, code)
    for refused in (update, retire):
        assert (refused.value.reason, refused.value.metadata["home_region"]) == (
            "IMPORTED_RESOURCE",
            CITY,
        )
    assert county.get(POLICE, code).version == 2
    # a county resource pushed up is imported by the city from its child as before
    county.register(JA_SAMR, county_spec())
    up, _ = Federation(county_repo, COUNTY).export_changes(0, limit=100)
    pushed = Federation(city_repo, CITY).import_from_child(sample_admin(), COUNTY, up)
    assert pushed.imported == 1  # the county's own; the city's copy came back refused
    assert city_repo.get_resource("2-04-001-0000-000301") is not None


def test_a_bulk_import_names_the_row_outside_the_region() -> None:
    county = registry_at(COUNTY)
    header = "code,name,provider_code,provider_name,region_code,share_type,items\n"
    ja = DEPARTMENTS["ja-samr"]
    rows = [
        f"2-04-001-0000-00031{i},资源{i},{ja.uscc},{ja.name},{region},无条件共享,姓名:string\n"
        for i, region in enumerate((COUNTY, CITY))
    ]
    report = import_resources(county, sample_admin(), read_csv(header + "".join(rows)))
    assert [(e.row, e.field) for e in report.errors] == [(2, "region_code")]
    assert "420102" in report.errors[0].description
    assert list(county.repository.iter_resources()) == []


def test_related_codes_must_name_resources_of_the_catalogue() -> None:
    county = registry_at(COUNTY)
    known = county.register(JA_SAMR, county_spec()).spec.code
    unknown = ResourceCode.parse("2-04-001-0000-000399")
    with pytest.raises(InvalidArgument) as info:
        county.register(
            JA_SAMR, county_spec("2-04-001-0000-000302", related_codes=(known, unknown))
        )
    assert info.value.reason == "INVALID_RESOURCE"
    assert [v.field for v in info.value.violations] == ["related_codes[1]"]
    # codes registered in the same batch (or the same file) count as known
    batch = [
        county_spec("2-04-001-0000-000303", related_codes=(unknown,)),
        county_spec(unknown.text, related_codes=(known,)),
    ]
    assert len(county.register_many(JA_SAMR, batch)) == 2
    missing = ResourceCode.parse("2-04-001-0000-000398")
    with pytest.raises(InvalidArgument) as info:
        county.update(JA_SAMR, county_spec(related_codes=(missing,)))
    assert [v.field for v in info.value.violations] == ["related_codes[0]"]


class RacingRepository(InMemoryCatalogRepository):
    """Another writer takes ``code`` just after the import checked that it was free."""

    def __init__(self, code: str) -> None:
        super().__init__()
        self.code = code
        self.raced = False

    def get_resource(self, code: str) -> Resource | None:
        found = super().get_resource(code)
        if code == self.code and not self.raced:
            self.raced = True
            registry_at(COUNTY, self).register(JA_SAMR, county_spec(code))
        return found


def test_a_code_taken_during_an_import_names_the_row() -> None:
    repo = RacingRepository("2-04-001-0000-000322")
    header = "code,name,provider_code,provider_name,region_code,share_type,items\n"
    ja = DEPARTMENTS["ja-samr"]
    rows = [
        f"2-04-001-0000-00032{i},资源{i},{ja.uscc},{ja.name},{COUNTY},无条件共享,姓名:string\n"
        for i in (1, 2)
    ]
    with pytest.raises(AlreadyExists) as info:
        import_resources(registry_at(COUNTY, repo), JA_SAMR, read_csv(header + "".join(rows)))
    assert repo.raced
    assert info.value.reason == "RESOURCE_EXISTS"
    assert [v.field for v in info.value.violations] == ["rows[2].code"]
    assert info.value.metadata == {"code": "2-04-001-0000-000322", "row": "2"}
    assert repo.get_resource("2-04-001-0000-000321") is None  # nothing imported


def test_each_sample_resource_has_one_home_node() -> None:
    cat = sample_catalogue()
    parts = {r: sample_for_node(r, DEMO_NODES) for r in DEMO_NODES}
    assert sorted(s.code.text for p in parts.values() for s in p.resources) == sorted(
        s.code.text for s in cat.resources
    )
    assert sum(len(p.demands) for p in parts.values()) == len(cat.demands)
    assert sum(len(p.negative) for p in parts.values()) == len(cat.negative)
    assert {s.region_code for s in parts["430000"].resources} == {"433100", "433101"}
    assert {s.region_code for s in parts[COUNTY].resources} == {COUNTY}
    assert home_node("433101", DEMO_NODES) == "430000"
    assert home_node("420000", ("420100", "420102")) is None
    # a single node takes everything of its region and below
    assert {s.region_code for s in sample_for_node("420000").resources} == {
        "420000",
        CITY,
        COUNTY,
    }


def test_a_county_node_loads_only_its_part_of_the_sample() -> None:
    repo = InMemoryCatalogRepository()
    clock = StepClock()
    county = CatalogRegistry(repo, clock, node_region=COUNTY)
    demands = load_sample(county, NegativeList(repo, clock))
    part = sample_for_node(COUNTY)
    held = sorted(r.key for r in repo.iter_resources(ResourceStatus.PUBLISHED))
    assert held == sorted(s.code.text for s in part.resources) != []
    assert {d.requester_code for d in demands} == {DEPARTMENTS["ja-gov"].uscc}
    assert repo.negative_entries() == []  # every listed resource is above the county
