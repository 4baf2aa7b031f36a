"""Routing between the four levels: up, down, shortcuts, loops, unknown regions, deadlines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exchange.federation.routing import Hop, RouteKind, Router, Topology
from tests.unit.exchange.federation.support import CITY, COUNTY, NATIONAL, PROVINCE
from zhida.config import load_config
from zhida.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound

NATIONAL_NODE = Router(
    Topology(NATIONAL, children={PROVINCE: "hubei:1", "430000": "hunan:1"}), hop_reserve_ms=20
)
PROVINCE_NODE = Router(Topology(PROVINCE, parent="national:1", children={CITY: "wuhan:1"}))
CITY_NODE = Router(Topology(CITY, parent="hubei:1", children={COUNTY: "jiangan:1"}))
COUNTY_NODE = Router(Topology(COUNTY, parent="wuhan:1"))


def kinds(router: Router, *targets: str) -> list[tuple[RouteKind, str]]:
    return [(h.kind, h.region) for h in map(router.route, targets)]


def test_up_until_the_target_is_in_the_subtree_then_down() -> None:
    # a county asks for national data: up, up, up, local
    assert kinds(COUNTY_NODE, NATIONAL) == [(RouteKind.UP, CITY)]
    assert kinds(CITY_NODE, NATIONAL) == [(RouteKind.UP, PROVINCE)]
    assert kinds(PROVINCE_NODE, NATIONAL) == [(RouteKind.UP, NATIONAL)]
    assert kinds(NATIONAL_NODE, NATIONAL) == [(RouteKind.LOCAL, NATIONAL)]
    # the national node reaches the county: down, down, down
    assert kinds(NATIONAL_NODE, COUNTY) == [(RouteKind.DOWN, PROVINCE)]
    assert kinds(PROVINCE_NODE, COUNTY) == [(RouteKind.DOWN, CITY)]
    assert kinds(CITY_NODE, COUNTY) == [(RouteKind.DOWN, COUNTY)]
    assert COUNTY_NODE.route(COUNTY) == Hop(RouteKind.LOCAL, COUNTY, None)
    # a Hunan licence for a Wuhan application: up to national, down to Hunan
    assert kinds(CITY_NODE, "433101") == [(RouteKind.UP, PROVINCE)]
    assert NATIONAL_NODE.route("433101") == Hop(RouteKind.DOWN, "430000", "hunan:1")


def test_shortcuts_skip_levels() -> None:
    county = Router(
        Topology(COUNTY, parent="wuhan:1", shortcuts={NATIONAL: "national:1", "430000": "hn:1"})
    )
    assert county.route(NATIONAL) == Hop(RouteKind.SHORTCUT, NATIONAL, "national:1")
    assert county.route("110000") == Hop(RouteKind.SHORTCUT, NATIONAL, "national:1")
    assert county.route("433101") == Hop(RouteKind.SHORTCUT, "430000", "hn:1")  # most specific
    national = Router(
        Topology(
            NATIONAL,
            children={PROVINCE: "hubei:1"},
            shortcuts={COUNTY: "jiangan:1", PROVINCE: "hubei-direct:1"},
        )
    )
    assert national.route(COUNTY) == Hop(RouteKind.SHORTCUT, COUNTY, "jiangan:1")
    assert national.route(CITY) == Hop(RouteKind.DOWN, PROVINCE, "hubei:1")  # child wins a tie
    # a shortcut up never serves a target inside this node's own subtree (it would loop)
    city = Router(Topology(CITY, parent="hubei:1", shortcuts={NATIONAL: "national:1"}))
    with pytest.raises(NotFound) as info:
        city.route(COUNTY)
    assert info.value.reason == "REGION_UNKNOWN"


def test_unknown_regions_are_refused() -> None:
    root_province = Router(Topology(PROVINCE, children={CITY: "wuhan:1"}))  # no parent: a root
    with pytest.raises(NotFound, match="nothing above node 420000") as info:
        root_province.route("433101")
    assert (info.value.reason, info.value.metadata) == ("REGION_UNKNOWN", {"region": "433101"})
    with pytest.raises(NotFound, match="nothing below node 100000"):
        NATIONAL_NODE.route("650000")  # 新疆: no child serves it
    with pytest.raises(NotFound):
        PROVINCE_NODE.route("420200")  # 黄石: below the province, no child for it
    with pytest.raises(InvalidArgument) as bad:
        PROVINCE_NODE.route("99")
    assert bad.value.reason == "INVALID_REGION_CODE"
    assert bad.value.violations[0].field == "target_region"


def test_loops_are_refused() -> None:
    with pytest.raises(FailedPrecondition) as info:
        CITY_NODE.route(NATIONAL, path=[COUNTY, CITY])
    assert info.value.reason == "ROUTING_LOOP"
    # the next hop already handled it (e.g. a misconfigured parent pointing back down)
    with pytest.raises(FailedPrecondition, match="next hop 420000"):
        CITY_NODE.route(NATIONAL, path=[PROVINCE])
    assert CITY_NODE.route(NATIONAL, path=[COUNTY]).kind is RouteKind.UP


def test_deadline_budget_per_hop() -> None:
    plan = COUNTY_NODE.plan(NATIONAL, deadline_ms=1_000, now_ms=0)
    assert (plan.hop.kind, plan.deadline_ms, plan.timeout_seconds) == (RouteKind.UP, 980, 0.98)
    local = NATIONAL_NODE.plan(NATIONAL, deadline_ms=1_000, now_ms=999)
    assert (local.deadline_ms, local.timeout_seconds) == (1_000, 0.001)
    with pytest.raises(DeadlineExceeded) as info:
        COUNTY_NODE.plan(NATIONAL, deadline_ms=1_000, now_ms=975)  # 25 ms < 20 + 10
    assert info.value.reason == "DEADLINE_BUDGET_EXHAUSTED"
    assert info.value.code.name == "DEADLINE_EXCEEDED"
    with pytest.raises(DeadlineExceeded, match="passed 1 ms ago"):
        NATIONAL_NODE.plan(NATIONAL, deadline_ms=1_000, now_ms=1_001)
    # four hops of 20 ms each: the county's 100 ms leaves the national node 40 ms
    deadline = 100
    for router in (COUNTY_NODE, CITY_NODE, PROVINCE_NODE):
        deadline = router.plan(NATIONAL, deadline_ms=deadline, now_ms=0).deadline_ms
    assert deadline == 40


def test_topology_validation_and_config(tmp_path: Path) -> None:
    bad: dict[str, Any]
    for bad in (
        {"region": "42"},
        {"region": NATIONAL, "parent": "x:1"},
        {"region": PROVINCE, "children": {"430100": "x:1"}},
        {"region": PROVINCE, "children": {PROVINCE: "x:1"}},
        {"region": PROVINCE, "shortcuts": {PROVINCE: "x:1"}},
        {"region": COUNTY, "parent_region": "430000"},
    ):
        with pytest.raises(InvalidArgument):
            Topology(**bad)
    # a county directly under its province (省直辖县) names its parent explicitly
    xiantao = Router(Topology("429004", parent="hubei:1", parent_region=PROVINCE))
    assert xiantao.route(NATIONAL) == Hop(RouteKind.UP, PROVINCE, "hubei:1")
    path = tmp_path / "city.toml"
    path.write_text(
        '[node]\nregion_code = "420100"\n[federation]\nparent = "hubei:50051"\n'
        '[federation.children]\n"420102" = "jiangan:50051"\n'
        '[federation.shortcuts]\n"43" = "hunan:50051"\n',
        encoding="utf-8",
    )
    router = Router(Topology.from_config(load_config(path, env={})))
    assert kinds(router, COUNTY, "433101", NATIONAL) == [
        (RouteKind.DOWN, COUNTY),
        (RouteKind.SHORTCUT, "430000"),
        (RouteKind.UP, PROVINCE),
    ]
