"""What the SQL store adds to the contract: the keyword index follows every version, writes
are atomic even in their side tables, the change feed stays gapless under concurrent
writers, and optimistic concurrency holds between threads (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from catalog_registry import sql
from catalog_registry.codec import resource_from_json, resource_to_json
from catalog_registry.model import (
    DataItem,
    DataType,
    Demand,
    DemandSpec,
    NegativeEntry,
    Resource,
    ResourceCode,
    ResourceStatus,
    ShareType,
)
from catalog_registry.models import FeedRow, GramRow
from catalog_registry.repository import ResourceQuery
from catalog_registry.sample_data import DEPARTMENTS, GUOFA_2024_3, PIPL_28
from catalog_registry.sql import SqlCatalogRepository
from catalog_registry.text import query_grams
from tests.unit.catalog_registry.sql_support import DIALECTS, database_url, open_store
from tests.unit.catalog_registry.test_repository_contract import res
from zhida.errors import Aborted, AlreadyExists

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(params=DIALECTS)
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[SqlCatalogRepository]:
    with ExitStack() as stack:
        yield open_store(database_url(request, request.param, tmp_path), stack)  # type: ignore[arg-type]


def _keys(store: SqlCatalogRepository, words: str) -> list[str]:
    query = ResourceQuery(grams=tuple(sorted(query_grams(words))), limit=50)
    return [r.resource.key for r in store.search_resources(query)]


def _df(store: SqlCatalogRepository, gram: str) -> int:
    with store.database.session() as s:
        return int(s.scalar(select(GramRow.df).where(GramRow.gram == gram)) or 0)


def _last_sequence(store: SqlCatalogRepository) -> int:
    with store.database.session() as s:
        return int(s.scalar(select(FeedRow.last_sequence)) or 0)


def test_keyword_index_follows_each_version(store: SqlCatalogRepository) -> None:
    store.insert_resources([res("1-01-001-0000-000001", "食品经营许可信息")])
    assert _keys(store, "食品经营") == ["1-01-001-0000-000001"]
    assert _df(store, "食品") == 1
    renamed = res("1-01-001-0000-000001", "营业执照信息", version=2)
    store.replace_resource(renamed, expected_version=1)
    assert _keys(store, "食品经营") == []
    assert _keys(store, "营业执照") == ["1-01-001-0000-000001"]
    assert (_df(store, "食品"), _df(store, "营业")) == (0, 1)
    assert [r.version for r in store.resource_history("1-01-001-0000-000001")] == [1, 2]


def test_failed_writes_leave_no_trace(store: SqlCatalogRepository) -> None:
    store.insert_resources([res("1-01-001-0000-000001", "婚姻登记信息")])
    before = (_last_sequence(store), _df(store, "登记"))
    with pytest.raises(AlreadyExists):
        store.insert_resources(
            [res("1-01-001-0000-000002", "婚姻登记信息"), res("1-01-001-0000-000001")]
        )
    with pytest.raises(Aborted):
        store.replace_resource(res("1-01-001-0000-000001", "别名", version=3), expected_version=2)
    assert (_last_sequence(store), _df(store, "登记")) == before
    assert _keys(store, "别名") == []
    assert store.get_resource("1-01-001-0000-000002") is None


def test_compare_and_set_between_threads(store: SqlCatalogRepository) -> None:
    store.insert_resources([res("1-01-001-0000-000001")])
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def writer(i: int) -> None:
        barrier.wait()
        try:
            store.replace_resource(
                res("1-01-001-0000-000001", f"名称{i}", version=2), expected_version=1
            )
            outcomes.append("ok")
        except Aborted as error:
            outcomes.append(error.reason)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["VERSION_CONFLICT"] * 3 + ["ok"]
    assert [r.version for r in store.resource_history("1-01-001-0000-000001")] == [1, 2]


def test_change_feed_is_gapless_for_a_reader_under_concurrent_writers(
    store: SqlCatalogRepository,
) -> None:
    seen: list[int] = []
    done = threading.Event()

    def reader() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            for change in store.changes_since(cursor, 100):
                seen.append(change.sequence)
                cursor = change.sequence
            if finished:
                return
            # Poll, don't spin: a reader that never gives up the GIL stretches every
            # writer's locked transaction (one GIL hand-off per statement) until the
            # others time out on SQLite's write lock.
            time.sleep(0.001)

    def writer(w: int) -> None:
        for i in range(8):
            store.insert_resources([res(f"1-01-00{w + 1}-0000-00000{i + 1}")])

    read = threading.Thread(target=reader)
    read.start()
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in writers:
        t.start()
    for t in writers:
        t.join(60)
    done.set()
    read.join(60)
    assert seen == list(range(1, 25))  # every sequence, once, in order: none skipped


def test_imports_are_idempotent_and_keep_their_origin(store: SqlCatalogRepository) -> None:
    incoming = res("3-01-001-0000-000001", dept="ja-samr")
    assert store.import_resource(
        incoming, origin_region="420102", origin_sequence=9, expected_version=None
    )
    newer = dataclasses.replace(incoming, version=2, status=ResourceStatus.RETIRED)
    assert store.import_resource(
        newer, origin_region="420102", origin_sequence=12, expected_version=1
    )
    assert not store.import_resource(
        newer, origin_region="420102", origin_sequence=12, expected_version=2
    )
    feed = store.changes_since(0, 10)
    assert [(c.origin_region, c.origin_sequence, c.resource.version) for c in feed] == [
        ("420102", 9, 1),
        ("420102", 12, 2),
    ]
    assert store.last_sequence() == 2


def test_negative_list_version_and_demand_pages(store: SqlCatalogRepository) -> None:
    version = store.negative_list_version()
    code = ResourceCode.parse("1-01-001-0000-000001")
    store.add_negative_entry(NegativeEntry(code, ("指纹",), PIPL_28, "admin", T0))
    assert store.negative_list_version() == version + 1
    assert store.remove_negative_entry(code.text, ("指纹",))
    assert store.negative_list_version() == version + 2
    ja, js = DEPARTMENTS["ja-gov"], DEPARTMENTS["js-approval"]
    for i, dept in enumerate((ja, js, ja, ja)):
        spec = DemandSpec(dept.uscc, dept.name, "p", GUOFA_2024_3, dept.region_code, "营业执照")
        store.insert_demand(Demand(f"d{i}", spec, T0, "clerk"))
    first = store.demand_page(0, 2, ja.uscc)
    assert [d.id for _, d in first] == ["d0", "d2"]
    assert [d.id for _, d in store.demand_page(first[-1][0], 2, ja.uscc)] == ["d3"]
    assert [d.id for d in store.iter_demands()] == ["d0", "d1", "d2", "d3"]


def test_iteration_pages_through_everything(
    store: SqlCatalogRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql, "PAGE", 2)
    codes = [f"1-01-001-0000-00000{i}" for i in range(1, 6)]
    store.insert_resources([res(c) for c in reversed(codes)])
    assert [r.key for r in store.iter_resources()] == codes


def test_codec_round_trips_every_field() -> None:
    base = res("2-03-004-0000-000016", "住房公积金缴存信息", share=ShareType.CONDITIONAL)
    spec = dataclasses.replace(
        base.spec,
        items=(
            DataItem("个人银行账号", DataType.STRING, "账号", ShareType.NOT_SHARED),
            DataItem("缴存基数", DataType.DECIMAL),
        ),
        related_codes=(ResourceCode.parse("1-01-001-0000-000002"),),
        delivery_service="zhida.exchange.v1.DataService/Query",
    )
    resource = Resource(
        spec, base.level, 3, ResourceStatus.RETIRED, T0, T0,
        published_at=datetime(2025, 2, 1, 8, 30, 15, 123456, tzinfo=UTC),
        retired_at=datetime(2025, 3, 1, tzinfo=UTC), updated_by="admin@hb-data",
    )  # fmt: skip
    assert resource_from_json(resource_to_json(resource)) == resource
