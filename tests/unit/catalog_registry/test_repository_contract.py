"""The CatalogRepository contract, run against every implementation in ``FACTORIES``.

Each factory gets the test's ``pytest.FixtureRequest`` and an ``ExitStack`` for
clean-up. The SQL store runs on SQLite (a file in ``tmp_path``) and on
PostgreSQL (a clean schema of the session's test database, as the ``db_url``
fixture of ``tests/fixtures/postgres.py`` prepares it), migrated to head.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest

from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import (
    Demand,
    DemandSpec,
    NegativeEntry,
    Resource,
    ResourceCode,
    ResourceStatus,
    ShareType,
)
from catalog_registry.repository import CatalogRepository, ResourceQuery, SortKey
from catalog_registry.sample_data import GUOFA_2024_3, PIPL_28
from catalog_registry.text import query_grams
from tests.unit.catalog_registry.conftest import make_spec
from tests.unit.catalog_registry.sql_support import database_url, open_store
from zhida.errors import Aborted, AlreadyExists, NotFound
from zhida.regions import Level

T0 = datetime(2025, 1, 1, tzinfo=UTC)
Factory = Callable[[pytest.FixtureRequest, ExitStack], CatalogRepository]


def sql_store(dialect: str) -> Factory:
    """A factory of SQL stores on an empty, migrated database of ``dialect``."""

    def make(request: pytest.FixtureRequest, stack: ExitStack) -> CatalogRepository:
        tmp_path = request.getfixturevalue("tmp_path")
        return open_store(database_url(request, dialect, tmp_path), stack)

    return make


FACTORIES: dict[str, Factory] = {
    "memory": lambda request, stack: InMemoryCatalogRepository(),
    "sqlite": sql_store("sqlite"),
    "postgresql": sql_store("postgresql"),
}
_MARKS = {"postgresql": [pytest.mark.integration]}


@pytest.fixture(params=[pytest.param(n, marks=_MARKS.get(n, [])) for n in sorted(FACTORIES)])
def store(request: pytest.FixtureRequest) -> Iterator[CatalogRepository]:
    with ExitStack() as stack:
        yield FACTORIES[request.param](request, stack)


def res(
    code: str,
    name: str = "居民户籍登记信息",
    *,
    version: int = 1,
    status: ResourceStatus = ResourceStatus.PUBLISHED,
    dept: str = "wh-police",
    share: ShareType = ShareType.CONDITIONAL,
) -> Resource:
    spec = make_spec(code, name=name, dept=dept, share=share)
    level = {"100000": Level.NATIONAL}.get(spec.region_code, Level.CITY)
    if spec.region_code.endswith("0000") and spec.region_code != "100000":
        level = Level.PROVINCE
    elif not spec.region_code.endswith("00"):
        level = Level.COUNTY
    return Resource(spec, level, version, status, T0, T0)


def test_insert_is_all_or_nothing(store: CatalogRepository) -> None:
    assert store.insert_resources([res("1-01-001-0000-000001")]) == [1]
    with pytest.raises(AlreadyExists) as info:
        store.insert_resources([res("1-01-001-0000-000002"), res("1-01-001-0000-000001")])
    assert info.value.reason == "RESOURCE_EXISTS"
    assert info.value.metadata["code"] == "1-01-001-0000-000001"
    assert [v.field for v in info.value.violations] == ["resources[1].code"]
    with pytest.raises(AlreadyExists) as info:
        store.insert_resources([res("1-01-001-0000-000001")])
    assert [v.field for v in info.value.violations] == ["code"]
    with pytest.raises(AlreadyExists) as info:
        store.insert_resources([res("1-01-001-0000-000003"), res("1-01-001-0000-000003")])
    assert [v.field for v in info.value.violations] == ["resources[1].code"]
    assert [r.key for r in store.iter_resources()] == ["1-01-001-0000-000001"]
    assert len(store.changes_since(0, 100)) == 1


def test_replace_is_compare_and_set(store: CatalogRepository) -> None:
    store.insert_resources([res("1-01-001-0000-000001")])
    v2 = res("1-01-001-0000-000001", "新名称", version=2)
    assert store.replace_resource(v2, expected_version=1) == 2
    with pytest.raises(Aborted) as info:
        store.replace_resource(res("1-01-001-0000-000001", version=3), expected_version=1)
    assert info.value.reason == "VERSION_CONFLICT"
    with pytest.raises(NotFound):
        store.replace_resource(res("1-01-001-0000-000009"), expected_version=1)
    assert store.get_resource("1-01-001-0000-000001") == v2
    assert [r.version for r in store.resource_history("1-01-001-0000-000001")] == [1, 2]
    assert store.resource_history("1-01-001-0000-000009") == []


def test_iteration_order_and_status_filter(store: CatalogRepository) -> None:
    store.insert_resources(
        [
            res("3-01-001-0000-000001"),
            res("1-01-001-0000-000002"),
            res("2-01-001-0000-000003", status=ResourceStatus.DRAFT),
        ]
    )
    assert [r.key for r in store.iter_resources()] == [
        "1-01-001-0000-000002",
        "2-01-001-0000-000003",
        "3-01-001-0000-000001",
    ]
    assert [r.key for r in store.iter_resources(ResourceStatus.DRAFT)] == ["2-01-001-0000-000003"]


def test_change_feed_and_idempotent_import(store: CatalogRepository) -> None:
    store.insert_resources([res("1-01-001-0000-000001"), res("1-01-001-0000-000002")])
    incoming = res("1-01-001-0000-000003", dept="ja-samr")
    assert store.import_resource(
        incoming, origin_region="420102", origin_sequence=7, expected_version=None
    )
    assert store.was_imported("420102", 7)
    assert not store.was_imported("420102", 8)
    assert not store.import_resource(
        incoming, origin_region="420102", origin_sequence=7, expected_version=None
    )
    with pytest.raises(AlreadyExists):
        store.import_resource(
            incoming, origin_region="420102", origin_sequence=8, expected_version=None
        )
    changes = store.changes_since(0, 100)
    assert [c.sequence for c in changes] == [1, 2, 3]
    assert [(c.origin_region, c.origin_sequence) for c in changes] == [
        (None, None),
        (None, None),
        ("420102", 7),
    ]
    assert [c.sequence for c in store.changes_since(1, 1)] == [2]
    assert store.changes_since(3, 10) == []


def test_demands(store: CatalogRepository) -> None:
    spec = DemandSpec(
        requester_code="114201000001300310",
        requester_name="x",
        purpose="p",
        legal_basis=GUOFA_2024_3,
        region_scope="420102",
        wanted_text="w",
    )
    first, second = Demand("d1", spec, T0, "s"), Demand("d0", spec, T0, "s")
    store.insert_demand(first)
    store.insert_demand(second)
    with pytest.raises(AlreadyExists):
        store.insert_demand(first)
    assert store.get_demand("d1") == first
    assert store.get_demand("nope") is None
    assert [d.id for d in store.iter_demands()] == ["d1", "d0"]


def test_negative_entries(store: CatalogRepository) -> None:
    code = ResourceCode.parse("1-01-001-0000-000001")
    other = ResourceCode.parse("1-01-001-0000-000002")
    entries = [
        NegativeEntry(code, ("人像照片",), PIPL_28, "a", T0),
        NegativeEntry(other, (), PIPL_28, "a", T0),
        NegativeEntry(code, (), PIPL_28, "a", T0),
    ]
    for e in entries:
        store.add_negative_entry(e)
    with pytest.raises(AlreadyExists):
        store.add_negative_entry(dataclasses.replace(entries[0], legal_basis="另一依据"))
    assert store.negative_entries() == entries
    assert store.negative_entries(code.text) == [entries[0], entries[2]]
    unknown, malformed = "1-01-001-0000-000009", "not a code"
    assert store.negative_entries_of([other.text, code.text, unknown, malformed]) == {
        other.text: [entries[1]], code.text: [entries[0], entries[2]], unknown: [], malformed: [],
    }  # fmt: skip
    assert store.remove_negative_entry(code.text, ())
    assert not store.remove_negative_entry(code.text, ())
    assert store.negative_entries() == entries[:2]


def test_negative_entries_travel_in_the_feed(store: CatalogRepository) -> None:
    """Entry writes append a change of the resource's current version; imports replace."""
    code = "1-01-001-0000-000001"
    store.insert_resources([res(code)])
    photo = NegativeEntry(ResourceCode.parse(code), ("人像照片",), PIPL_28, "a", T0)
    store.add_negative_entry(photo)
    store.add_negative_entry(dataclasses.replace(photo, resource_code=ResourceCode.parse(
        "1-01-001-0000-000009")))  # fmt: skip
    assert store.remove_negative_entry(code, ("人像照片",))
    assert not store.remove_negative_entry(code, ("人像照片",))
    feed = store.changes_since(0, 100)
    # insert, add, remove: the entry for a resource not stored changes no feed
    assert [(c.sequence, c.resource.key, c.resource.version) for c in feed] == [
        (1, code, 1), (2, code, 1), (3, code, 1),
    ]  # fmt: skip
    assert store.resource_origin(code) is None
    assert store.resource_origin("1-01-001-0000-000009") is None

    copy = "1-01-001-0000-000002"
    listed = [dataclasses.replace(photo, resource_code=ResourceCode.parse(copy))]
    assert store.import_resource(
        res(copy), origin_region="420102", origin_sequence=4, expected_version=None,
        negative_entries=listed,
    )  # fmt: skip
    assert store.negative_entries(copy) == listed
    assert store.resource_origin(copy) == "420102"
    whole = [dataclasses.replace(listed[0], item_names=(), legal_basis=GUOFA_2024_3)]
    assert store.import_negative_entries(
        copy, whole, version=1, origin_region="420102", origin_sequence=5
    )
    assert not store.import_negative_entries(  # a replay writes nothing
        copy, [], version=1, origin_region="420102", origin_sequence=5
    )
    assert store.negative_entries(copy) == whole
    last = store.changes_since(3, 100)
    assert [(c.resource.key, c.resource.version, c.origin_region, c.origin_sequence)
            for c in last] == [(copy, 1, "420102", 4), (copy, 1, "420102", 5)]  # fmt: skip
    with pytest.raises(Aborted):
        store.import_negative_entries(copy, [], version=2, origin_region="420102",
                                      origin_sequence=6)  # fmt: skip
    with pytest.raises(NotFound):
        store.import_negative_entries("1-01-001-0000-000008", [], version=1,
                                      origin_region="420102", origin_sequence=7)  # fmt: skip
    assert not store.was_imported("420102", 6)
    assert store.import_negative_entries(
        copy, [], version=1, origin_region="420102", origin_sequence=8
    )
    assert store.negative_entries(copy) == []
    assert [e.resource_code.text for e in store.negative_entries()] == ["1-01-001-0000-000009"]


def _query(**kw: object) -> ResourceQuery:
    return ResourceQuery(**kw)  # type: ignore[arg-type]


def test_search_semantics(store: CatalogRepository) -> None:
    store.insert_resources(
        [
            res("1-01-001-0000-000001", "食品经营许可信息", dept="ja-samr"),
            res("1-01-001-0000-000002", "食品生产许可信息", dept="js-samr"),
            res("1-01-001-0000-000003", "营业执照信息", share=ShareType.UNCONDITIONAL),
            res("1-01-001-0000-000004", "食品经营许可信息", status=ResourceStatus.RETIRED),
        ]
    )
    grams = tuple(sorted(query_grams("食品经营许可")))
    rows = store.search_resources(_query(grams=grams))
    n = len(grams)
    assert [(r.score, r.resource.key) for r in rows][:2] == [
        (1000, "1-01-001-0000-000001"),
        (1000 * 2 // n, "1-01-001-0000-000002"),
    ]  # 食品, 许可
    # Keyset: strictly after the given sort key.
    after = store.search_resources(_query(grams=grams, after=rows[0].sort_key))
    assert [r.resource.key for r in after] == [r.resource.key for r in rows[1:]]
    assert store.search_resources(_query(grams=grams, limit=1)) == rows[:1]
    # Filters.
    assert [
        r.resource.key
        for r in store.search_resources(_query(region_code="420000", include_subregions=True))
    ] == ["1-01-001-0000-000001", "1-01-001-0000-000003"]
    assert [
        r.resource.key
        for r in store.search_resources(
            _query(level=Level.COUNTY, share_type=ShareType.CONDITIONAL)
        )
    ] == ["1-01-001-0000-000001", "1-01-001-0000-000002"]
    assert [
        r.resource.key for r in store.search_resources(_query(statuses=(ResourceStatus.RETIRED,)))
    ] == ["1-01-001-0000-000004"]
    assert [
        r.resource.key
        for r in store.search_resources(_query(after=SortKey(0, "1-01-001-0000-000002")))
    ] == ["1-01-001-0000-000003"]
    assert store.search_resources(_query(grams=("无此词",))) == []
