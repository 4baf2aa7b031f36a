"""Imports from the parent's feed: upper-level resources flow down, nothing else does."""

from __future__ import annotations

import dataclasses

from catalog_registry.federation import Federation, ImportOutcome
from catalog_registry.model import Change
from catalog_registry.sample_data import department_principal
from tests.unit.catalog_registry.conftest import StepClock, make_spec
from tests.unit.catalog_registry.test_federation import Node, node


def _chain(clock: StepClock) -> tuple[Node, Node, Node, Node]:
    """national → 湖北 → 武汉 → 江岸区, each with one published resource of its own."""
    nodes = tuple(Node(r, clock) for r in ("100000", "420000", "420100", "420102"))
    for n, (code, dept) in zip(
        nodes,
        (
            ("1-01-002-0000-000003", "mps"),
            ("1-05-001-0000-000001", "hb-health"),
            ("2-04-001-0000-000020", "wh-samr"),
            ("2-04-001-0000-000010", "ja-samr"),
        ),
        strict=True,
    ):
        who = department_principal(dept)
        n.registry.register(who, make_spec(code, dept=dept))
        n.registry.publish(who, code)
    return nodes  # type: ignore[return-value]


def _sync_down(parent: Node, child: Node) -> None:
    changes, _ = parent.federation.export_changes(0, limit=1000)
    child.federation.import_from_parent(changes)


def test_national_resources_reach_the_county_through_every_level(clock: StepClock) -> None:
    national, province, city, county = _chain(clock)
    _sync_down(national, province)
    _sync_down(province, city)
    _sync_down(city, county)
    held = {r.key: r.region_code for r in county.repo.iter_resources()}
    assert held == {
        "1-01-002-0000-000003": "100000",
        "1-05-001-0000-000001": "420000",
        "2-04-001-0000-000020": "420100",
        "2-04-001-0000-000010": "420102",
    }
    # the province's own feed passes the national resource on with its origin kept
    down, _ = province.federation.export_changes(0, limit=100)
    assert {(c.origin_region, c.resource.key) for c in down} >= {("100000", "1-01-002-0000-000003")}


def test_own_and_sibling_resources_in_the_parent_feed_are_refused(clock: StepClock) -> None:
    _, _, city, county = _chain(clock)
    sibling = Node("420106", clock)
    sibling.registry.register(
        department_principal("wh-samr"),
        make_spec("2-04-001-0000-000030", dept="wh-samr", region_code="420106"),
    )
    # the city aggregated both counties' catalogues
    for child, region in ((county, "420102"), (sibling, "420106")):
        up, _ = child.federation.export_changes(0, limit=100)
        city.federation.import_from_child(node(region), region, up)
    down, _ = city.federation.export_changes(0, limit=100)
    report = county.federation.import_from_parent(down)
    outcomes = {(r.code, r.outcome, r.reason) for r in report.results}
    assert ("2-04-001-0000-000020", ImportOutcome.IMPORTED, "") in outcomes
    assert ("2-04-001-0000-000030", ImportOutcome.REFUSED, "ORIGIN_OUT_OF_REGION") in outcomes
    assert ("2-04-001-0000-000010", ImportOutcome.REFUSED, "ORIGIN_OUT_OF_REGION") in outcomes
    assert county.repo.get_resource("2-04-001-0000-000030") is None


def test_parent_cannot_overwrite_a_local_resource_and_replays_are_idempotent(
    clock: StepClock,
) -> None:
    _, _, city, county = _chain(clock)
    own = county.repo.get_resource("2-04-001-0000-000010")
    assert own is not None
    moved = dataclasses.replace(own.spec, region_code="420100")
    forged = dataclasses.replace(own, version=own.version + 5, spec=moved)
    report = county.federation.import_from_parent([Change(90, forged, "420100", 90)])
    assert [(r.outcome, r.reason) for r in report.results] == [
        (ImportOutcome.REFUSED, "CODE_OWNED_ELSEWHERE")
    ]
    down, _ = city.federation.export_changes(0, limit=100)
    first = county.federation.import_from_parent(down)
    again = county.federation.import_from_parent(down)
    assert first.imported == 2  # registered, then published
    assert {r.outcome for r in again.results} == {ImportOutcome.REPLAYED}


def test_listeners_hear_of_resources_from_above(clock: StepClock) -> None:
    _, _, city, county = _chain(clock)
    seen: list[str] = []
    county.federation = Federation(county.repo, "420102", listeners=[lambda r: seen.append(r.key)])
    _sync_down(city, county)
    assert seen == ["2-04-001-0000-000020", "2-04-001-0000-000020"]
