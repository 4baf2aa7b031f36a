"""The SQL search returns exactly what the in-memory reference returns, page by page.

Random queries (subjects, suffixes, common words, two subjects at once,
English, unknown words) with random filters and page sizes run against the
in-memory store and the SQL store holding the same 300 resources (drafts and
retired ones among them), paging with the keyset of each last row. The SQL
store's plans are forced through its budgets, so every path is compared: the
top-level walk, level queries one level at a time and many at once, and
filter-first scoring.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any, TypeVar

import pytest

from catalog_registry import sql_search
from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import Resource, ResourceStatus, ShareType
from catalog_registry.repository import CatalogRepository, ResourceQuery
from catalog_registry.sql import SqlCatalogRepository
from catalog_registry.synthetic import QUALIFIERS, SUBJECTS, SUFFIXES, regions, synthetic_resources
from catalog_registry.text import query_grams
from tests.unit.catalog_registry.sql_support import DIALECTS, database_url, open_store
from zhida.regions import Level

# Budgets forcing each plan, and the query builders each plan must have used.
PLANS = {
    "default": ({}, ("_walk_stmt",)),
    "one_level_at_a_time": (
        {"FILTER_FIRST_CAP": 0, "POSTING_BUDGET": 0},
        ("_walk_stmt", "_band_stmt"),
    ),
    "all_levels_at_once": (
        {"FILTER_FIRST_CAP": 0, "POSTING_BUDGET": 10**9},
        ("_walk_stmt", "_band_stmt"),
    ),
    "filter_first": ({"FILTER_FIRST_CAP": 10**9}, ("_filter_first_stmt",)),
}
T = TypeVar("T")
ALL_SUBJECTS = [s for subjects in SUBJECTS.values() for s in subjects]


def _catalogue() -> list[Resource]:
    out = []
    for i, r in enumerate(synthetic_resources(300, seed=7)):
        status = (ResourceStatus.DRAFT, ResourceStatus.RETIRED)[i % 2] if i % 9 == 0 else r.status
        out.append(dataclasses.replace(r, status=status))
    return out


@pytest.fixture(scope="module")
def reference() -> InMemoryCatalogRepository:
    repo = InMemoryCatalogRepository()
    repo.insert_resources(_catalogue())
    return repo


@pytest.fixture(scope="module", params=DIALECTS)
def sql_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SqlCatalogRepository]:
    with ExitStack() as stack:
        url = database_url(request, request.param, tmp_path_factory.mktemp("search"))
        store = open_store(url, stack)
        store.insert_resources(_catalogue())
        store.analyze()
        yield store


def _keywords(rnd: random.Random) -> str:
    subject = rnd.choice(ALL_SUBJECTS)
    return rnd.choice(
        [
            subject,
            f"{rnd.choice(QUALIFIERS)}{subject}{rnd.choice(SUFFIXES)}",
            f"需要{subject}信息",
            f"{subject} {rnd.choice(ALL_SUBJECTS)}",
            "信息",
            "业务数据 信息",
            "武汉市 登记",
            "OFD api 营业执照",
            "无此词",
        ]
    )


def _queries(seed: int, count: int) -> Iterator[ResourceQuery]:
    rnd = random.Random(seed)
    resources = _catalogue()
    region_list = [code for code, _ in regions()] + ["100000"]
    for _ in range(count):
        pick = rnd.choice(resources)
        statuses = rnd.choice(
            [
                (ResourceStatus.PUBLISHED,),
                (ResourceStatus.PUBLISHED, ResourceStatus.RETIRED),
                (ResourceStatus.DRAFT,),
                tuple(ResourceStatus),
            ]
        )
        yield ResourceQuery(
            grams=tuple(sorted(query_grams(_keywords(rnd)))) if rnd.random() < 0.85 else (),
            provider_code=pick.provider_code if rnd.random() < 0.15 else None,
            region_code=rnd.choice(region_list) if rnd.random() < 0.3 else None,
            include_subregions=rnd.random() < 0.7,
            level=rnd.choice(list(Level)) if rnd.random() < 0.15 else None,
            share_type=rnd.choice(list(ShareType)) if rnd.random() < 0.15 else None,
            statuses=statuses,
            limit=rnd.randint(1, 9),
        )


def _pages(store: CatalogRepository, query: ResourceQuery, pages: int = 6) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for _ in range(pages):
        rows = store.search_resources(query)
        out += [(r.score, r.resource.key) for r in rows]
        if len(rows) < query.limit:
            break
        query = dataclasses.replace(query, after=rows[-1].sort_key)
    return out


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_sql_search_equals_reference(
    plan: str,
    sql_store: SqlCatalogRepository,
    reference: InMemoryCatalogRepository,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    budgets, used = PLANS[plan]
    for name, value in budgets.items():
        monkeypatch.setattr(sql_search, name, value)
    calls: Counter[str] = Counter()
    for name in ("_walk_stmt", "_band_stmt", "_filter_first_stmt"):
        monkeypatch.setattr(sql_search, name, _counted(getattr(sql_search, name), name, calls))
    checked = 0
    for query in _queries(seed=sorted(PLANS).index(plan), count=60):
        expected = _pages(reference, query)
        assert _pages(sql_store, query) == expected, query
        checked += bool(expected)
    assert checked > 20  # most random queries find something
    assert all(calls[name] for name in used), calls


def _counted(fn: Callable[..., T], name: str, calls: Counter[str]) -> Callable[..., T]:
    def wrapper(*args: Any, **kwargs: Any) -> T:
        calls[name] += 1
        return fn(*args, **kwargs)

    return wrapper


def test_full_rows_come_back(
    sql_store: SqlCatalogRepository, reference: InMemoryCatalogRepository
) -> None:
    query = ResourceQuery(grams=tuple(query_grams("营业执照")), limit=5)
    assert sql_store.search_resources(query) == reference.search_resources(query)


def test_forged_page_token_code_is_refused(sql_store: SqlCatalogRepository) -> None:
    from catalog_registry.repository import SortKey
    from zhida.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as info:
        sql_store.search_resources(ResourceQuery(after=SortKey(0, "not-a-code")))
    assert info.value.reason == "INVALID_PAGE_TOKEN"
