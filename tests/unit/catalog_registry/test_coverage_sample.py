"""Coverage rows over the sample catalogue, and the sample catalogue itself."""

from __future__ import annotations

from stdnum.cn import uscc

from catalog_registry.coverage import coverage
from catalog_registry.matching import MatchIndex
from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import Demand, ResourceStatus, ShareType
from catalog_registry.sample_data import DEPARTMENTS, PIPL_28, sample_catalogue
from catalog_registry.validation import validate_demand, validate_spec


def test_sample_catalogue_is_valid_and_covers_the_matters() -> None:
    cat = sample_catalogue()
    assert all(uscc.is_valid(d.uscc) for d in DEPARTMENTS.values())
    assert all(validate_spec(s) == [] for s in cat.resources)
    assert all(validate_demand(d) == [] for d in cat.demands)
    names = {s.name for s in cat.resources}
    for wanted in (
        "出生医学证明信息",
        "居民户籍登记信息",
        "社会保障卡信息",
        "城乡居民基本医疗保险参保信息",
        "市场主体登记信息(营业执照)",
        "食品经营许可信息",
        "公众聚集场所投入使用营业前消防安全检查信息",
        "职工基本养老保险参保缴费信息",
        "职工退休审批信息",
        "道路运输经营许可信息",
        "个人生物识别信息",
    ):
        assert wanted in names
    assert {s.share_type for s in cat.resources} == set(ShareType)
    assert {s.region_code for s in cat.resources} >= {
        "100000",
        "420000",
        "420100",
        "420102",
        "433100",
        "433101",
    }
    assert {d.matter for d in cat.demands} >= {"新生儿出生", "开办餐饮店", "退休", "开办运输企业"}
    assert any("第二十八条" in n.legal_basis for n in cat.negative)
    assert PIPL_28.startswith("《中华人民共和国个人信息保护法》第二十八条")


def test_loading_publishes_everything(
    repo: InMemoryCatalogRepository, sample_demands: list[Demand]
) -> None:
    cat = sample_catalogue()
    published = list(repo.iter_resources(ResourceStatus.PUBLISHED))
    assert len(published) == len(cat.resources)
    assert len(sample_demands) == len(cat.demands)
    assert len(repo.negative_entries()) == len(cat.negative)


def test_coverage_rows(repo: InMemoryCatalogRepository, sample_demands: list[Demand]) -> None:
    index = MatchIndex.from_resources(repo.iter_resources(ResourceStatus.PUBLISHED))
    report = coverage(repo, index)
    by_dept = {(r.region_code, r.department_name): r for r in report.departments}
    police = by_dept[("420100", "武汉市公安局")]
    assert (police.resources_supplied, police.negative_listed_items) == (1, 1)
    mps = by_dept[("100000", "中华人民共和国公安部")]
    assert (mps.resources_supplied, mps.negative_listed_items) == (3, 3)  # whole 生物识别: 3 items
    jiangan = by_dept[("420102", "武汉市江岸区政务服务和大数据管理局")]
    assert (jiangan.demands_filed, jiangan.demands_met, jiangan.demands_unmet) == (3, 2, 1)
    civil = by_dept[("420100", "武汉市民政局")]
    assert (civil.demands_filed, civil.demands_unmet) == (1, 1)
    regions = {r.region_code: r for r in report.regions}
    assert set(regions) == {"100000", "420000", "420100", "420102", "433100", "433101"}
    assert sum(r.resources_supplied for r in report.regions) == len(sample_catalogue().resources)
    assert sum(r.demands_filed for r in report.regions) == len(sample_demands)
    assert regions["420100"].negative_listed_items == 2  # 人像照片 + 个人银行账号
    assert [r.region_code for r in report.regions] == sorted(regions)
    assert all(r.department_code == "" for r in report.regions)
