"""Negative-list entries travel with their resource through the change feed, up and down.

Three nodes (江岸区 → 武汉 → 湖北), each a LiveCatalog on its own SQLite file, so
CheckRelease, the supply list and the coverage report are those a node serves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from catalog_registry import wire
from catalog_registry.federation import ImportOutcome, ImportReport
from catalog_registry.live import LiveCatalog
from catalog_registry.model import Change, NegativeEntry, ResourceCode
from catalog_registry.sample_data import GUOFA_2024_3, PIPL_28, department_principal, sample_admin
from tests.unit.catalog_registry.conftest import StepClock, make_spec
from tests.unit.catalog_registry.sql_support import open_store
from tests.unit.catalog_registry.test_federation import Node, node
from zhida.errors import FailedPrecondition, InvalidArgument

COUNTY_CODE = "2-04-001-0000-000010"  # 江岸区市场监督管理局, at 420102
PROVINCE_CODE = "1-05-001-0000-000001"  # 湖北省卫生健康委员会, at 420000
PHOTO = "人像照片"
ADMIN = sample_admin()


@dataclasses.dataclass
class Chain:
    county: LiveCatalog
    city: LiveCatalog
    province: LiveCatalog


def _publish(live: LiveCatalog, code: str, dept: str, region: str | None = None) -> None:
    who = department_principal(dept)
    spec = make_spec(code, dept=dept)
    live.registry.register(who, dataclasses.replace(spec, region_code=region or spec.region_code))
    live.registry.publish(who, code)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    with ExitStack() as stack:
        county, city, province = (
            LiveCatalog(open_store(f"sqlite:///{tmp_path / r}.db", stack), r, clock=StepClock())
            for r in ("420102", "420100", "420000")
        )
        _publish(county, COUNTY_CODE, "ja-samr")
        _publish(province, PROVINCE_CODE, "hb-health")
        yield Chain(county, city, province)


def up(child: LiveCatalog, parent: LiveCatalog, since: int = 0) -> ImportReport:
    """The child's feed after ``since``; from 0 again, as a push that lost its cursor."""
    region = child.federation.node_region
    changes, _ = child.federation.export_changes(since, limit=1000)
    return parent.federation.import_from_child(node(region), region, changes)


def down(parent: LiveCatalog, child: LiveCatalog) -> ImportReport:
    changes, _ = parent.federation.export_changes(0, limit=1000)
    return child.federation.import_from_parent(changes)


def refusal(live: LiveCatalog, code: str, item: str) -> tuple[bool, str, str]:
    release = live.check_release(code, item)
    return release.allowed, release.reason, release.legal_basis


def test_an_entry_travels_up_and_is_enforced_at_every_level(chain: Chain) -> None:
    assert up(chain.county, chain.city).imported == 2  # registered, published
    entry = chain.county.negative_list().add(ADMIN, COUNTY_CODE, (PHOTO,), PIPL_28)
    changes, _ = chain.county.federation.export_changes(2, limit=100)
    assert [(c.resource.version, c.negative_entries) for c in changes] == [(2, (entry,))]
    report = up(chain.county, chain.city)
    assert [r.outcome for r in report.results] == [ImportOutcome.REPLAYED] * 2 + [
        ImportOutcome.IMPORTED  # the entry alone: a change of the version held
    ]
    # the province's first sync: the entry comes with the versions
    assert [r.outcome for r in up(chain.city, chain.province).results] == [
        ImportOutcome.IMPORTED, ImportOutcome.IMPORTED, ImportOutcome.STALE,
    ]  # fmt: skip
    for live in (chain.city, chain.province):
        assert refusal(live, COUNTY_CODE, PHOTO) == (False, "NEGATIVE_LISTED", PIPL_28)
        assert live.check_release(COUNTY_CODE, PHOTO).entry == entry  # who listed it, when
        assert live.check_release(COUNTY_CODE, "姓名").allowed
        assert live.negative_entries(COUNTY_CODE, 10, "") == ([entry], "")
    supplied, _ = chain.city.supply(ADMIN, None, "420102", 10, "")
    assert [(s.resource.key, s.withheld) for s in supplied] == [(COUNTY_CODE, (PHOTO,))]
    rows = {r.department_code: r for r in chain.province.coverage().departments}
    assert rows[make_spec(dept="ja-samr").provider_code].negative_listed_items == 1


def test_a_removal_travels_too_and_replays_change_nothing(chain: Chain) -> None:
    chain.county.negative_list().add(ADMIN, COUNTY_CODE, (PHOTO,), PIPL_28)
    up(chain.county, chain.city)
    up(chain.city, chain.province)
    pushed = (chain.county.repo.last_sequence(), chain.city.repo.last_sequence())
    chain.county.negative_list().remove(ADMIN, COUNTY_CODE, (PHOTO,))
    assert [r.outcome for r in up(chain.county, chain.city, pushed[0]).results] == [
        ImportOutcome.IMPORTED
    ]
    assert up(chain.city, chain.province, pushed[1]).imported == 1
    for live in (chain.city, chain.province):
        assert live.check_release(COUNTY_CODE, PHOTO).allowed
        assert live.negative_entries(None, 10, "") == ([], "")
    feeds = [live.repo.last_sequence() for live in (chain.city, chain.province)]
    for child, parent in ((chain.county, chain.city), (chain.city, chain.province)):
        again = up(child, parent)  # every page once more: nothing is written
        assert ImportOutcome.IMPORTED not in {r.outcome for r in again.results}
    assert [live.repo.last_sequence() for live in (chain.city, chain.province)] == feeds
    assert chain.province.negative_entries(None, 10, "") == ([], "")


def test_entries_come_down_from_the_parent_and_stay_its_own(chain: Chain) -> None:
    entry = chain.province.negative_list().add(ADMIN, PROVINCE_CODE, (), GUOFA_2024_3)
    down(chain.province, chain.city)
    down(chain.city, chain.county)
    assert refusal(chain.county, PROVINCE_CODE, "姓名") == (False, "NEGATIVE_LISTED", GUOFA_2024_3)
    assert chain.county.negative_entries(PROVINCE_CODE, 10, "") == ([entry], "")
    for change in (
        lambda: chain.county.negative_list().remove(ADMIN, PROVINCE_CODE, ()),
        lambda: chain.county.negative_list().add(ADMIN, PROVINCE_CODE, (PHOTO,), PIPL_28),
    ):
        with pytest.raises(FailedPrecondition) as info:
            change()
        assert (info.value.reason, info.value.metadata["home_region"]) == (
            "IMPORTED_RESOURCE",
            "420000",
        )
    assert chain.county.negative_entries(PROVINCE_CODE, 10, "") == ([entry], "")
    chain.province.negative_list().remove(ADMIN, PROVINCE_CODE, ())
    down(chain.province, chain.city)
    down(chain.city, chain.county)
    assert chain.county.check_release(PROVINCE_CODE, "姓名").allowed


def test_copies_pushed_up_are_changed_only_at_their_node(chain: Chain) -> None:
    up(chain.county, chain.city)
    with pytest.raises(FailedPrecondition) as info:
        chain.city.negative_list().add(ADMIN, COUNTY_CODE, (PHOTO,), PIPL_28)
    assert (info.value.reason, info.value.metadata["home_region"]) == (
        "IMPORTED_RESOURCE",
        "420102",
    )
    assert chain.city.check_release(COUNTY_CODE, PHOTO).allowed
    # a resource of 武昌区 (no node of its own) registered at the city is the city's
    _publish(chain.city, "2-04-001-0000-000030", "wh-samr", region="420106")
    chain.city.negative_list().add(ADMIN, "2-04-001-0000-000030", (PHOTO,), PIPL_28)
    assert refusal(chain.city, "2-04-001-0000-000030", PHOTO)[1] == "NEGATIVE_LISTED"


# -- the feed itself, in memory -----------------------------------------------------------------
def _listed_county(clock: StepClock) -> tuple[Node, list[Change]]:
    county = Node("420102", clock)
    who = department_principal("ja-samr")
    county.registry.register(who, make_spec(COUNTY_CODE, dept="ja-samr"))
    entry = NegativeEntry(ResourceCode.parse(COUNTY_CODE), (PHOTO,), PIPL_28, "admin", clock())
    county.repo.add_negative_entry(entry)
    changes, _ = county.federation.export_changes(0, limit=100)
    return county, changes


def test_same_entries_again_are_stale_and_bad_entries_refused(clock: StepClock) -> None:
    _, changes = _listed_county(clock)
    city = Node("420100", clock)
    first = city.federation.import_from_child(node("420102"), "420102", changes)
    assert [r.outcome for r in first.results] == [ImportOutcome.IMPORTED, ImportOutcome.STALE]
    held = len(city.repo.changes_since(0, 100))
    resource, entry = changes[-1].resource, changes[-1].negative_entries[0]
    forged = [
        dataclasses.replace(entry, resource_code=ResourceCode.parse("2-04-001-0000-000011")),
        dataclasses.replace(entry, legal_basis=" "),
    ]
    bad = [Change(20 + i, resource, "420102", 20 + i, (e,)) for i, e in enumerate(forged)]
    bad.append(Change(30, resource, "420102", 30, (entry, dataclasses.replace(entry))))
    same = Change(31, resource, "420102", 31, (entry,))
    report = city.federation.import_from_child(node("420102"), "420102", [*bad, same])
    assert [(r.outcome, r.reason) for r in report.results] == [
        (ImportOutcome.REFUSED, "INVALID_NEGATIVE_ENTRY")
    ] * 3 + [(ImportOutcome.STALE, "")]
    assert len(city.repo.changes_since(0, 100)) == held
    assert city.repo.negative_entries() == [entry]


def test_entries_cross_the_wire(clock: StepClock) -> None:
    _, changes = _listed_county(clock)
    messages = [wire.change_to_pb(c) for c in changes]
    assert wire.changes_from_pb(messages) == changes
    messages[1].negative_entries[0].ClearField("added_at")
    messages[1].negative_entries[0].resource_code = "9-99"
    with pytest.raises(InvalidArgument) as info:
        wire.changes_from_pb(messages)
    assert info.value.reason == "INVALID_CHANGE"
    assert {v.field for v in info.value.violations} == {
        "changes[1].negative_entries[0].resource_code",
        "changes[1].negative_entries[0].added_at",
    }
