"""Change feed and imports from child nodes: region containment, replays, stale versions."""

from __future__ import annotations

import dataclasses

import pytest

from catalog_registry.federation import Federation, ImportOutcome
from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import Change, ResourceCode, ShareType
from catalog_registry.registry import CatalogRegistry
from catalog_registry.sample_data import DEPARTMENTS, department_principal
from tests.unit.catalog_registry.conftest import StepClock, make_spec
from zhida.auth.principal import Principal, Role
from zhida.errors import InvalidArgument, PermissionDenied
from zhida.regions import Level


def node(region: str) -> Principal:
    return Principal(
        subject=f"node-{region}",
        role=Role.NODE,
        organisation="",
        region_code=region,
        expires_at=4_102_444_800,
    )


class Node:
    def __init__(self, region: str, clock: StepClock) -> None:
        self.repo = InMemoryCatalogRepository()
        self.registry = CatalogRegistry(self.repo, clock, node_region=region)
        self.federation = Federation(self.repo, region)


@pytest.fixture
def county(clock: StepClock) -> Node:
    """江岸区 node with two resources: one registered, one published."""
    n = Node("420102", clock)
    samr = department_principal("ja-samr")
    n.registry.register(
        samr,
        make_spec(
            "2-04-001-0000-000010",
            name="食品经营许可信息",
            dept="ja-samr",
            share=ShareType.UNCONDITIONAL,
        ),
    )
    n.registry.publish(samr, "2-04-001-0000-000010")
    n.registry.register(
        department_principal("ja-health"),
        make_spec("2-02-002-0000-000007", name="预防接种证信息", dept="ja-health"),
    )
    return n


@pytest.fixture
def city(clock: StepClock) -> Node:
    return Node("420100", clock)


def test_export_pages_with_a_cursor(county: Node) -> None:
    first, cursor = county.federation.export_changes(0, limit=2)
    assert [c.sequence for c in first] == [1, 2]
    assert cursor == 2
    rest, cursor2 = county.federation.export_changes(cursor, limit=10)
    assert [c.sequence for c in rest] == [3]
    assert cursor2 == 3
    assert county.federation.export_changes(cursor2, limit=10) == ([], 3)
    assert all(c.origin_region == "420102" for c in first + rest)
    assert [c.origin_sequence for c in first + rest] == [1, 2, 3]
    assert [(c.resource.key, c.resource.version) for c in first] == [
        ("2-04-001-0000-000010", 1),
        ("2-04-001-0000-000010", 2),
    ]


def test_bad_export_requests(county: Node) -> None:
    with pytest.raises(InvalidArgument) as info:
        county.federation.export_changes(-1, limit=0)
    assert {v.field for v in info.value.violations} == {"since_cursor", "limit"}


def test_city_imports_county_changes_and_ignores_replays(county: Node, city: Node) -> None:
    changes, _ = county.federation.export_changes(0, limit=100)
    report = city.federation.import_from_child(node("420102"), "420102", changes)
    assert [r.outcome for r in report.results] == [ImportOutcome.IMPORTED] * 3
    food = city.repo.get_resource("2-04-001-0000-000010")
    assert food is not None
    assert food.version == 2
    assert food.level is Level.COUNTY
    again = city.federation.import_from_child(node("420102"), "420102", changes)
    assert [r.outcome for r in again.results] == [ImportOutcome.REPLAYED] * 3
    assert len(city.repo.changes_since(0, 100)) == 3  # the replay wrote nothing


def test_out_of_region_resources_are_refused(county: Node, city: Node) -> None:
    changes, _ = county.federation.export_changes(0, limit=100)
    xiangxi = DEPARTMENTS["xx-samr"]
    spec = dataclasses.replace(
        changes[0].resource.spec,
        code=ResourceCode.parse("2-04-001-0000-000099"),
        region_code="433100",
        provider_code=xiangxi.uscc,
    )
    foreign = dataclasses.replace(changes[0].resource, spec=spec)
    bad = [Change(10, foreign, "420102", 10), Change(11, changes[1].resource, "433101", 5)]
    report = city.federation.import_from_child(node("420102"), "420102", bad)
    assert [(r.outcome, r.reason) for r in report.results] == [
        (ImportOutcome.REFUSED, "OUT_OF_REGION"),
        (ImportOutcome.REFUSED, "ORIGIN_OUT_OF_REGION"),
    ]
    assert city.repo.get_resource("2-04-001-0000-000099") is None
    assert report.refused == 2
    assert report.imported == 0


def test_invalid_and_foreign_owned_resources_are_refused(county: Node, city: Node) -> None:
    city.registry.register(
        department_principal("wh-samr"), make_spec("2-02-002-0000-000007", dept="wh-samr")
    )
    changes, _ = county.federation.export_changes(0, limit=100)
    broken = dataclasses.replace(
        changes[0].resource, spec=dataclasses.replace(changes[0].resource.spec, items=())
    )
    report = city.federation.import_from_child(
        node("420102"), "420102", [Change(1, broken, "420102", 1), changes[2]]
    )
    assert [r.reason for r in report.results] == ["INVALID_RESOURCE", "CODE_OWNED_ELSEWHERE"]
    owned = city.repo.get_resource("2-02-002-0000-000007")
    assert owned is not None
    assert owned.region_code == "420100"


def test_import_notifies_listeners(county: Node, clock: StepClock) -> None:
    seen: list[str] = []
    city = Node("420100", clock)
    city.federation = Federation(city.repo, "420100", listeners=[lambda r: seen.append(r.key)])
    changes, _ = county.federation.export_changes(0, limit=100)
    city.federation.import_from_child(node("420102"), "420102", changes)
    city.federation.import_from_child(node("420102"), "420102", changes)
    assert seen == ["2-04-001-0000-000010", "2-04-001-0000-000010", "2-02-002-0000-000007"]


def test_stale_versions_are_skipped(county: Node, city: Node) -> None:
    changes, _ = county.federation.export_changes(0, limit=100)
    newest_first = [changes[1], changes[0]]
    report = city.federation.import_from_child(node("420102"), "420102", newest_first)
    # Applied in sequence order: version 1 then version 2.
    assert [r.outcome for r in report.results] == [ImportOutcome.IMPORTED] * 2
    older = Change(50, changes[0].resource, "420102", 50)
    assert (
        city.federation.import_from_child(node("420102"), "420102", [older]).results[0].outcome
        is ImportOutcome.STALE
    )


def test_changes_travel_up_two_levels_keeping_their_origin(
    county: Node, city: Node, clock: StepClock
) -> None:
    province = Node("420000", clock)
    changes, _ = county.federation.export_changes(0, limit=100)
    city.federation.import_from_child(node("420102"), "420102", changes)
    city.registry.register(
        department_principal("wh-fire"),
        make_spec("2-05-001-0000-000012", name="消防安全检查信息", dept="wh-fire"),
    )
    up, _ = city.federation.export_changes(0, limit=100)
    assert [(c.origin_region, c.origin_sequence) for c in up] == [
        ("420102", 1),
        ("420102", 2),
        ("420102", 3),
        ("420100", 4),
    ]
    report = province.federation.import_from_child(node("420100"), "420100", up)
    assert report.imported == 4
    # The county's changes arriving again by another path are replays.
    direct = province.federation.import_from_child(node("420100"), "420100", changes)
    assert {r.outcome for r in direct.results} == {ImportOutcome.REPLAYED}


def test_only_the_child_node_may_push(county: Node, city: Node) -> None:
    changes, _ = county.federation.export_changes(0, limit=100)
    with pytest.raises(PermissionDenied) as info:
        city.federation.import_from_child(node("420103"), "420102", changes)
    assert info.value.reason == "NOT_CHILD_NODE"
    with pytest.raises(PermissionDenied):
        city.federation.import_from_child(department_principal("ja-samr"), "420102", changes)
    with pytest.raises(InvalidArgument) as bad:
        city.federation.import_from_child(node("433101"), "433101", changes)
    assert bad.value.reason == "NOT_A_CHILD_REGION"
    with pytest.raises(InvalidArgument):
        city.federation.import_from_child(node("4201"), "4201", changes)
    with pytest.raises(InvalidArgument):
        Federation(city.repo, "999999")
