"""Keyword search with filters and stable keyset page tokens."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import DataItem, DataType, Demand, ResourceStatus, ShareType
from catalog_registry.registry import CatalogRegistry
from catalog_registry.sample_data import DEPARTMENTS
from catalog_registry.search import SearchPage, SearchRequest, search
from tests.unit.catalog_registry.conftest import make_spec
from zhida.auth.principal import Principal
from zhida.errors import InvalidArgument, PermissionDenied
from zhida.regions import Level


def names(page: SearchPage) -> list[str]:
    return [h.resource.name for h in page.hits]


@pytest.fixture
def loaded(repo: InMemoryCatalogRepository, sample_demands: list[Demand]) -> None:
    return None


pytestmark = pytest.mark.usefixtures("loaded")


def test_chinese_keywords_rank_by_share_of_grams(
    repo: InMemoryCatalogRepository, police: Principal
) -> None:
    page = search(repo, police, SearchRequest(keywords="食品经营许可"))
    assert names(page)[:2] == ["食品经营许可信息", "食品经营许可信息"]
    assert page.hits[0].score == 1000
    assert [h.resource.key for h in page.hits[:2]] == sorted(h.resource.key for h in page.hits[:2])
    assert all(a.score >= b.score for a, b in zip(page.hits, page.hits[1:], strict=False))


def test_keywords_search_item_names_too(repo: InMemoryCatalogRepository, police: Principal) -> None:
    page = search(repo, police, SearchRequest(keywords="准驾车型"))
    assert names(page)[0] == "机动车驾驶证信息"


def test_english_keywords_find_a_resource(
    registry: CatalogRegistry, repo: InMemoryCatalogRepository, police: Principal
) -> None:
    items = (DataItem("GeoJSON 边界", DataType.STRING), DataItem("名称", DataType.STRING))
    spec = make_spec(
        "3-12-002-0000-000101", name="城市 GIS 地理信息", items=items, share=ShareType.UNCONDITIONAL
    )
    registry.register(police, spec)
    registry.publish(police, spec.code)
    page = search(repo, police, SearchRequest(keywords="GIS"))
    assert [(h.resource.key, h.score) for h in page.hits] == [("3-12-002-0000-000101", 1000)]
    by_item = search(repo, police, SearchRequest(keywords="geojson"))  # any case, item names
    assert names(by_item) == ["城市 GIS 地理信息"]
    mixed = search(repo, police, SearchRequest(keywords="GIS OFD"))  # one word of two
    assert [(h.resource.key, h.score) for h in mixed.hits] == [("3-12-002-0000-000101", 500)]
    assert names(search(repo, police, SearchRequest(keywords="OFD"))) == []


def test_filters(repo: InMemoryCatalogRepository, police: Principal) -> None:
    wh = DEPARTMENTS["wh-samr"].uscc
    by_provider = search(repo, police, SearchRequest(provider_code=wh))
    assert names(by_provider) == ["市场主体登记信息(营业执照)"]
    exact = search(repo, police, SearchRequest(region_code="420100", page_size=100))
    assert {h.resource.region_code for h in exact.hits} == {"420100"}
    below = search(
        repo, police, SearchRequest(region_code="420100", include_subregions=True, page_size=100)
    )
    assert {h.resource.region_code for h in below.hits} == {"420100", "420102"}
    counties = search(repo, police, SearchRequest(level=Level.COUNTY, page_size=100))
    assert {h.resource.region_code for h in counties.hits} == {"420102", "433101"}
    not_shared = search(repo, police, SearchRequest(share_type=ShareType.NOT_SHARED))
    assert names(not_shared) == ["个人生物识别信息"]
    combined = search(
        repo,
        police,
        SearchRequest(keywords="营业执照", region_code="430000", include_subregions=True),
    )
    assert [h.resource.region_code for h in combined.hits] == ["433100"]


def test_status_filter_and_draft_visibility(
    registry: CatalogRegistry,
    repo: InMemoryCatalogRepository,
    police: Principal,
    samr: Principal,
    admin: Principal,
) -> None:
    registry.register(police, make_spec(name="暂住人口登记信息"))
    published = search(repo, police, SearchRequest(keywords="暂住人口"))
    assert names(published) == []
    drafts = SearchRequest(
        keywords="暂住人口", statuses=(ResourceStatus.DRAFT,), provider_code=police.organisation
    )
    assert names(search(repo, police, drafts)) == ["暂住人口登记信息"]
    assert names(search(repo, admin, SearchRequest(statuses=(ResourceStatus.DRAFT,)))) == [
        "暂住人口登记信息"
    ]
    with pytest.raises(PermissionDenied) as info:
        search(repo, samr, drafts)
    assert info.value.reason == "DRAFTS_NOT_VISIBLE"


def _all_pages(
    repo: InMemoryCatalogRepository,
    who: Principal,
    request: SearchRequest,
    between: Callable[[], None] | None = None,
) -> list[str]:
    """Follow page tokens to the end, calling ``between`` after each page."""
    seen: list[str] = []
    token = ""
    while True:
        page = search(repo, who, dataclasses.replace(request, page_token=token))
        seen += [h.resource.key for h in page.hits]
        token = page.next_page_token
        if not token:
            return seen
        if between:
            between()


@pytest.mark.parametrize("keywords", ["", "信息", "登记信息"])
def test_pages_cover_everything_once(
    repo: InMemoryCatalogRepository, police: Principal, keywords: str
) -> None:
    everything = search(repo, police, SearchRequest(keywords=keywords, page_size=100))
    assert not everything.next_page_token
    paged = _all_pages(repo, police, SearchRequest(keywords=keywords, page_size=3))
    assert paged == [h.resource.key for h in everything.hits]
    assert len(paged) == len(set(paged)) > 3


@pytest.mark.parametrize("keywords", ["", "信息"])
def test_pagination_is_stable_under_inserts(
    registry: CatalogRegistry, repo: InMemoryCatalogRepository, police: Principal, keywords: str
) -> None:
    before = [
        h.resource.key
        for h in search(repo, police, SearchRequest(keywords=keywords, page_size=100)).hits
    ]
    # While paging, publish rows that sort before the cursor, inside the rest, and at the end.
    codes = [
        "1-01-001-0000-000900",
        "2-01-001-0000-000902",
        "3-99-999-0000-000901",
        "1-01-001-0000-000903",
        "3-99-999-0000-000904",
        "2-99-001-0000-000905",
    ]

    def insert() -> None:
        if codes:
            code = codes.pop(0)
            registry.register(
                police, make_spec(code, name="居民户籍迁移信息", share=ShareType.UNCONDITIONAL)
            )
            registry.publish(police, code)

    paged = _all_pages(repo, police, SearchRequest(keywords=keywords, page_size=4), insert)
    assert not codes
    assert len(paged) == len(set(paged))  # nothing repeated
    assert set(before) <= set(paged)  # nothing that existed was skipped
    assert [k for k in paged if k in before] == before  # and the order held


def test_page_token_is_bound_to_its_query(
    repo: InMemoryCatalogRepository, police: Principal
) -> None:
    first = search(repo, police, SearchRequest(keywords="信息", page_size=2))
    assert first.next_page_token
    with pytest.raises(InvalidArgument) as info:
        search(
            repo,
            police,
            SearchRequest(keywords="登记", page_size=2, page_token=first.next_page_token),
        )
    assert info.value.reason == "INVALID_PAGE_TOKEN"
    for junk in ["%%%", "e30", first.next_page_token[:-3] + "AAA"]:
        with pytest.raises(InvalidArgument) as info:
            search(repo, police, SearchRequest(keywords="信息", page_token=junk))
        assert info.value.reason == "INVALID_PAGE_TOKEN"


def test_invalid_search_requests(repo: InMemoryCatalogRepository, police: Principal) -> None:
    with pytest.raises(InvalidArgument) as info:
        search(
            repo,
            police,
            SearchRequest(page_size=101, region_code="42", provider_code="x", statuses=()),
        )
    assert info.value.reason == "INVALID_SEARCH"
    assert {v.field for v in info.value.violations} == {
        "page_size",
        "region_code",
        "provider_code",
        "statuses",
    }
