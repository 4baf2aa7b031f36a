"""Demand ↔ supply matching: exact first, Chinese similarity, region scope, to-do lists."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

import pytest

from catalog_registry.matching import MatchIndex, MatchReason
from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import Demand, DemandSpec, ResourceCode, ResourceStatus
from catalog_registry.registry import CatalogRegistry
from catalog_registry.sample_data import DEPARTMENTS, GUOFA_2024_3, department_principal
from catalog_registry.synthetic import synthetic_demands, synthetic_resources
from catalog_registry.text import grams, query_grams
from catalog_registry.todo import UNASSIGNED, unmet_report
from tests.unit.catalog_registry.conftest import make_spec

WHEN = datetime(2025, 6, 1, tzinfo=UTC)


def demand(
    text: str = "",
    *,
    dept: str = "js-approval",
    items: tuple[str, ...] = (),
    codes: tuple[str, ...] = (),
    matter: str = "",
) -> Demand:
    d = DEPARTMENTS[dept]
    spec = DemandSpec(
        requester_code=d.uscc,
        requester_name=d.name,
        purpose="一件事",
        legal_basis=GUOFA_2024_3,
        region_scope=d.region_code,
        wanted_text=text,
        item_names=items,
        wanted_codes=tuple(ResourceCode.parse(c) for c in codes),
        matter=matter,
    )
    return Demand(f"t-{text}-{items}", spec, WHEN, "test")


@pytest.fixture
def index(repo: InMemoryCatalogRepository, sample_demands: list[Demand]) -> MatchIndex:
    return MatchIndex.from_resources(repo.iter_resources(ResourceStatus.PUBLISHED))


def test_text_grams() -> None:
    assert grams("营业执照") == {"营业", "业执", "执照", "营业执", "业执照"}
    assert grams("OFD 版式文件 v2") == {"ofd", "v2", "版式", "式文", "文件", "版式文", "式文件"}
    assert grams("证") == {"证"}
    assert query_grams("需要企业的营业执照信息") == grams("企业") | grams("营业执照信息")


def test_business_licence_phrasing_finds_market_registration(index: MatchIndex) -> None:
    result = index.match(demand("需要企业营业执照信息"))
    top = result.candidates[0]
    assert top.name == "市场主体登记信息(营业执照)"
    assert top.provider_name.startswith("湘西")  # 吉首's branch; 武汉's copy is out of scope
    assert top.reasons == (MatchReason.SIMILAR_NAME,)
    assert result.met


@pytest.mark.parametrize(
    ("text", "dept", "expected"),
    [
        ("需要新生儿出生医学证明信息", "ja-gov", "出生医学证明信息"),
        ("新生儿的医疗保险参保情况", "ja-gov", "城乡居民基本医疗保险参保信息"),
        ("食品经营许可证信息", "js-approval", "食品经营许可信息"),
        ("申请获取道路运输经营许可证数据", "xx-transport", "道路运输经营许可信息"),
        ("核验营业前消防安全检查结果", "ja-gov", "公众聚集场所投入使用营业前消防安全检查信息"),
        ("查询退休人员养老保险缴费年限", "ja-gov", "职工基本养老保险参保缴费信息"),
        ("驾驶证", "xx-transport", "机动车驾驶证信息"),
    ],
)
def test_realistic_phrasings_rank_the_right_resource_top(
    index: MatchIndex, text: str, dept: str, expected: str
) -> None:
    assert index.match(demand(text, dept=dept)).candidates[0].name == expected


def test_exact_code_then_exact_items_then_similar(index: MatchIndex) -> None:
    result = index.match(
        demand(
            "市场主体登记信息(营业执照)",
            items=("许可证编号", "经营项目"),
            codes=("2-03-001-0000-000005",),
        )
    )  # 社会保障卡信息 (湖北)
    tiers = [(c.tier, c.name) for c in result.candidates]
    assert tiers[0] == (0, "社会保障卡信息")
    assert tiers[1] == (1, "食品经营许可信息")
    assert tiers[2] == (2, "市场主体登记信息(营业执照)")
    assert result.candidates[0].reasons[0] is MatchReason.EXACT_CODE
    assert result.candidates[1].matched_items == ("经营项目", "许可证编号")
    assert result.candidates[1].score == 1.0


def test_partial_item_match_is_no_exact_match(index: MatchIndex) -> None:
    result = index.match(demand(items=("公民身份号码", "宠物芯片号"), dept="ja-gov"))
    assert not result.met
    assert all(c.tier == 2 for c in result.candidates)
    assert index.match(demand(items=("宠物芯片号",), dept="ja-gov")).candidates == ()


def test_region_scope_excludes_other_branches(index: MatchIndex) -> None:
    # 武汉 (湖北) has a 市场主体登记 resource too, but 吉首 (湖南) cannot use it.
    names = {(c.name, c.region_code) for c in index.match(demand("市场主体登记信息")).candidates}
    assert ("市场主体登记信息(营业执照)", "420100") not in names
    assert ("市场主体登记信息(营业执照)", "433100") in names
    # National resources serve every region.
    assert (
        index.match(demand("机动车驾驶证信息", dept="ja-gov")).candidates[0].region_code == "100000"
    )


def test_unmet_demands_grouped_per_candidate_provider(
    index: MatchIndex, sample_demands: list[Demand]
) -> None:
    matches = index.match_all(sample_demands)
    unmet = {m.demand.spec.wanted_text for m in matches if not m.met}
    assert unmet == {"需要婚姻信息", "残疾人证信息", "需要职工人事档案信息"}
    todo = unmet_report(matches)  # the default threshold
    assert [(t.provider_name, [u.demand.spec.wanted_text for u in t.demands]) for t in todo] == [
        ("武汉市民政局", ["需要婚姻信息"]),  # like its 婚姻登记信息, not enough to meet it
        ("", ["残疾人证信息", "需要职工人事档案信息"]),
    ]
    assert todo[0].provider_code == DEPARTMENTS["wh-civil"].uscc
    assert todo[0].demands[0].near_misses[0].name == "婚姻登记信息"
    assert todo[-1].provider_code == UNASSIGNED
    extra = index.match(demand("企业年报公示信息补充", dept="ja-gov"))
    assert not extra.met
    assert extra.candidates[0].name == "企业年度报告信息"
    report = unmet_report([*matches, extra], min_assign=0.05)
    samr = next(t for t in report if t.provider_name == "国家市场监督管理总局")
    assert [u.demand for u in samr.demands] == [extra.demand]


def test_index_is_incremental(registry: CatalogRegistry, repo: InMemoryCatalogRepository) -> None:
    index = MatchIndex()
    registry.add_listener(index.sync)
    police = department_principal("wh-police")
    code = registry.register(police, make_spec(name="居住证办理信息", share=_U)).key
    ask = demand("居住证信息", dept="ja-gov")
    assert index.match(ask).candidates == ()  # drafts are no supply
    registry.publish(police, code)
    assert index.match(ask).candidates[0].code == code
    registry.update(police, make_spec(name="流动人口登记信息", share=_U))
    assert index.match(ask).candidates == ()
    assert index.match(demand("流动人口登记", dept="ja-gov")).candidates[0].code == code
    registry.retire(police, code)
    assert len(index) == 0
    assert code not in index
    assert index.match(demand("流动人口登记", dept="ja-gov")).candidates == ()


def test_add_remove_keeps_document_frequencies_consistent() -> None:
    resources = list(synthetic_resources(300, seed=5))
    full = MatchIndex.from_resources(resources)
    churned = MatchIndex.from_resources(resources)
    for r in resources[:100]:
        churned.remove(r.key)
    for r in resources[:100]:
        churned.add(dataclasses.replace(r))
    for d in synthetic_demands(50, seed=6):
        a, b = full.match(d), churned.match(d)
        assert [(c.code, c.score) for c in a.candidates] == [
            (c.code, c.score) for c in b.candidates
        ]


def test_english_words_match_case_insensitively(registry: CatalogRegistry) -> None:
    index = MatchIndex()
    registry.add_listener(index.sync)
    police = department_principal("wh-police")
    code = registry.register(police, make_spec(name="GIS 地理信息 Open Data", share=_U)).key
    registry.publish(police, code)
    assert index.match(demand("gis open data", dept="ja-gov")).candidates[0].code == code


def test_matching_speed_smoke() -> None:
    """A small version of the 10k × 100k benchmark (bench_catalog.py runs the full one)."""
    index = MatchIndex.from_resources(synthetic_resources(5_000, seed=1))
    demands = list(synthetic_demands(500, seed=2))
    start = time.perf_counter()
    results = index.match_all(demands)
    elapsed = time.perf_counter() - start
    assert sum(r.met for r in results) > 250  # 10% want unsupplied subjects; small catalogue
    assert elapsed < 2.5  # about 0.2 s here; the bound leaves room for a loaded machine


_U = make_spec().share_type.UNCONDITIONAL
