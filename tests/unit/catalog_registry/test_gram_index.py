"""The in-memory gram index answers keyword searches exactly like the reference, and stays so.

The random queries of ``test_sql_search`` (keywords only: the index answers
those) run against the SQL store with ``search_index=True`` and against the
in-memory reference, page by page, with budgets and thresholds forcing each
path: filter first, the top-level walk, lower levels one at a time or all
at once, bitmaps, sets and binary searches as membership tests. Then the catalogue
changes — new versions (renamed, retired, moved), new resources, imports,
some written through another store on the same database as another process
would — and the index, caught up from the change feed, still agrees.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from sqlalchemy import update

from catalog_registry import gram_index, gram_search, sql_gram_index
from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import Resource, ResourceCode, ResourceStatus, ShareType
from catalog_registry.models import FeedRow
from catalog_registry.repository import CatalogRepository, ResourceQuery
from catalog_registry.sql import SqlCatalogRepository
from catalog_registry.synthetic import synthetic_resources
from tests.unit.catalog_registry.sql_support import DIALECTS, database_url, open_store
from tests.unit.catalog_registry.test_sql_search import _catalogue, _pages, _queries

PLANS: dict[str, dict[str, tuple[object, object]]] = {
    "default": {},
    "filter_first": {"FILTER_FIRST_WORK": (gram_search, 10**9)},
    "walk_then_filter": {"FILTER_FIRST_WORK": (gram_search, 0)},
    "never_filter_first": {"narrowed": (gram_index.GramIndex, lambda *args: None)},
    "one_level_at_a_time": {"POSTING_BUDGET": (gram_search, 0)},
    "short_walk_probe": {"_WALK_PROBE": (gram_search, 1)},
    "all_levels_at_once": {"POSTING_BUDGET": (gram_search, 10**9)},
    "sets_only": {"DENSE_MIN": (gram_index, 10**9)},
    "binary_search": {"BISECT_COST": (gram_index, 10**9)},
    "bitmaps_everywhere": {"DENSE_MIN": (gram_index, 1), "DENSE_SHARE": (gram_index, 10**9)},
}


def _keyword_queries(seed: int, count: int) -> Iterator[ResourceQuery]:
    return (q for q in _queries(seed, count * 2) if q.grams)


@pytest.fixture(params=DIALECTS)
def stores(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SqlCatalogRepository, InMemoryCatalogRepository]]:
    with ExitStack() as stack:
        url = database_url(request, request.param, tmp_path_factory.mktemp("grams"))
        store = open_store(url, stack, search_index=True)
        store.insert_resources(_catalogue())
        reference = InMemoryCatalogRepository()
        reference.insert_resources(_catalogue())
        yield store, reference


def _agree(store: CatalogRepository, reference: CatalogRepository, seed: int) -> int:
    checked = 0
    for query in _keyword_queries(seed, 40):
        expected = _pages(reference, query)
        assert _pages(store, query) == expected, query
        checked += bool(expected)
    return checked


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_index_search_equals_reference(
    plan: str,
    stores: tuple[SqlCatalogRepository, InMemoryCatalogRepository],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, (module, value) in PLANS[plan].items():
        monkeypatch.setattr(module, name, value)
    store, reference = stores
    store.prepare_search_index()
    assert store.gram_index is not None
    searched = _spy(monkeypatch)
    assert _agree(store, reference, seed=sorted(PLANS).index(plan)) > 15
    assert searched, "the index answered no query"


def test_index_follows_the_change_feed(
    stores: tuple[SqlCatalogRepository, InMemoryCatalogRepository],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, reference = stores
    store.prepare_search_index()
    other = SqlCatalogRepository(store.database)  # another process's writes
    rnd = random.Random(3)
    resources = {r.key: r for r in _catalogue()}
    fresh = [
        dataclasses.replace(r, spec=dataclasses.replace(r.spec, code=_shift(r)))
        for r in synthetic_resources(40, seed=11)
    ]
    for step in range(60):
        writer = store if step % 2 else other
        if step % 10 == 9:
            batch, fresh = fresh[:4], fresh[4:]
            writer.insert_resources(batch)
            reference.insert_resources(batch)
            resources.update((r.key, r) for r in batch)
            continue
        old = resources[rnd.choice(sorted(resources))]
        new = _changed(old, rnd)
        if step % 7 == 3:
            writer.import_resource(
                new, origin_region="420000", origin_sequence=step, expected_version=old.version
            )
            reference.import_resource(
                new, origin_region="420000", origin_sequence=step, expected_version=old.version
            )
        else:
            writer.replace_resource(new, expected_version=old.version)
            reference.replace_resource(new, expected_version=old.version)
        resources[new.key] = new
        if step % 15 == 14:
            assert _agree(store, reference, seed=step) > 10
    searched = _spy(monkeypatch)
    assert _agree(store, reference, seed=99) > 10
    assert searched


def test_far_behind_rebuilds_and_stale_rows_fall_back_to_sql(
    stores: tuple[SqlCatalogRepository, InMemoryCatalogRepository],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, reference = stores
    store.prepare_search_index()
    monkeypatch.setattr(sql_gram_index, "REBUILD_AFTER", 0)
    old = next(r for r in _catalogue() if r.status is ResourceStatus.PUBLISHED)
    new = _changed(old, random.Random(1))
    for repo in (store, reference):
        repo.replace_resource(new, expected_version=old.version)
    assert _agree(store, reference, seed=5) > 10
    # rows read at another version than the index ranked: tried again, then SQL answers
    monkeypatch.setattr(gram_index.GramIndex, "version", lambda self, key: -1)
    assert store.gram_index is not None
    assert store.gram_index.search(next(_keyword_queries(1, 1))) is None
    assert _agree(store, reference, seed=6) > 10


def test_a_gap_in_the_sequences_is_no_reason_to_give_up(
    stores: tuple[SqlCatalogRepository, InMemoryCatalogRepository],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, reference = stores
    store.prepare_search_index()
    with store.database.session() as session:  # sequences taken, no change written
        session.execute(update(FeedRow).values(last_sequence=FeedRow.last_sequence + 5))
    searched = _spy(monkeypatch)
    answered: list[object] = []
    original = sql_gram_index.SqlGramIndex.search

    def search(self: sql_gram_index.SqlGramIndex, query: ResourceQuery) -> object:
        found = original(self, query)
        answered.append(found)
        return found

    monkeypatch.setattr(sql_gram_index.SqlGramIndex, "search", search)
    assert _agree(store, reference, seed=12) > 10
    assert searched
    assert answered
    assert all(a is not None for a in answered)  # the index answered every one


def test_the_first_search_builds_in_the_background(
    stores: tuple[SqlCatalogRepository, InMemoryCatalogRepository],
) -> None:
    store, reference = stores
    assert store.gram_index is not None
    assert not store.gram_index.ready
    assert _agree(store, reference, seed=8) > 10  # answered by SQL meanwhile
    deadline = time.monotonic() + 30
    while not store.gram_index.ready:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert _agree(store, reference, seed=9) > 10


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[ResourceQuery]:
    """The queries the index ranks from now on."""
    searched: list[ResourceQuery] = []
    original = gram_index.GramIndex.search

    def search(self: gram_index.GramIndex, query: ResourceQuery) -> list[tuple[int, int]]:
        searched.append(query)
        return original(self, query)

    monkeypatch.setattr(gram_index.GramIndex, "search", search)
    return searched


def _shift(resource: Resource) -> ResourceCode:
    """A code no catalogue resource has (a sequence number past them)."""
    code = resource.spec.code
    return dataclasses.replace(code, sequence=code.sequence + 500_000)


def _changed(old: Resource, rnd: random.Random) -> Resource:
    """The next version: renamed, re-described, re-itemised, re-shared, another status, or
    moved to another provider and region (of the same level)."""
    spec = old.spec
    pick = rnd.randrange(6)
    if pick == 0:
        spec = dataclasses.replace(spec, name=f"{spec.name[:-2]}营业执照明细")
    elif pick == 1:
        spec = dataclasses.replace(spec, description=f"居民身份证{spec.description}")
    elif pick == 2:
        spec = dataclasses.replace(spec, items=spec.items[:2])
    elif pick == 3:
        share = rnd.choice(list(ShareType))
        conditions = "" if share is ShareType.UNCONDITIONAL else "经审核同意后共享"
        spec = dataclasses.replace(spec, share_type=share, share_conditions=conditions)
    elif pick == 5:
        other = rnd.choice([r for r in _catalogue() if r.level is old.level])
        spec = dataclasses.replace(
            spec,
            provider_code=other.provider_code,
            provider_name=other.spec.provider_name,
            region_code=other.region_code,
        )
    status = rnd.choice(list(ResourceStatus)) if pick == 4 else old.status
    return dataclasses.replace(old, spec=spec, version=old.version + 1, status=status)
