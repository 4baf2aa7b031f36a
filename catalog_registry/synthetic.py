"""Synthetic catalogues at scale, for benchmarks and load tests (deterministic by seed).

Resource names combine what real catalogues combine: an optional region
prefix (武汉市…), an optional qualifier (个人/企业/年度/变更…), a subject owned
by a department (公安: 居民户籍, 机动车登记…; 市场监管: 营业执照, 食品经营许可…)
and a suffix (信息/数据/登记信息/证照信息/明细…). Providers are department ×
region with valid USCCs; regions are real-shaped GB/T 2260 codes under 湖北
and 湖南. Demands are phrased the way departments phrase them
("需要…", "申请获取…用于…", "…核验") and include some subjects nobody supplies.

Example::

    >>> from catalog_registry.synthetic import synthetic_resources, synthetic_demands
    >>> resources = list(synthetic_resources(1000, seed=1))
    >>> demands = list(synthetic_demands(100, seed=2))
    >>> len(resources), len(demands), resources[0].status.value
    (1000, 100, 'published')
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime

from catalog_registry.model import (
    DataItem,
    DataType,
    Demand,
    DemandSpec,
    Resource,
    ResourceClass,
    ResourceCode,
    ResourceSpec,
    ResourceStatus,
    ShareType,
)
from catalog_registry.repository import region_of
from catalog_registry.sample_data import GUOFA_2024_3, make_uscc

SUBJECTS: dict[str, tuple[str, ...]] = {
    "公安": (
        "居民户籍",
        "居民身份证",
        "出入境证件",
        "机动车登记",
        "机动车驾驶证",
        "交通违法",
        "居住证",
        "无犯罪记录证明",
        "流动人口",
        "户口迁移",
    ),
    "市场监管": (
        "市场主体登记",
        "营业执照",
        "食品经营许可",
        "食品生产许可",
        "特种设备使用登记",
        "企业年度报告",
        "行政处罚",
        "个体工商户登记",
        "药品经营许可",
        "股权出质登记",
    ),
    "人社": (
        "社会保险参保",
        "养老保险缴费",
        "失业保险金发放",
        "工伤认定",
        "职业资格证书",
        "就业登记",
        "退休审批",
        "社会保障卡",
        "劳动合同备案",
        "职称评审",
    ),
    "医保": (
        "基本医疗保险参保",
        "医保缴费",
        "医保个人账户",
        "医疗费用结算",
        "生育保险待遇",
        "异地就医备案",
        "定点医药机构",
    ),
    "卫健": (
        "出生医学证明",
        "预防接种",
        "医师执业注册",
        "护士执业注册",
        "医疗机构执业许可",
        "死亡医学证明",
        "母婴保健技术服务",
        "公共场所卫生许可",
    ),
    "民政": (
        "婚姻登记",
        "社会组织登记",
        "最低生活保障",
        "特困人员供养",
        "殡葬服务",
        "残疾人两项补贴",
        "养老机构备案",
    ),
    "交通运输": (
        "道路运输经营许可",
        "道路运输证",
        "道路运输从业资格",
        "出租汽车经营许可",
        "网约车运输证",
        "水路运输许可",
        "公路超限运输许可",
    ),
    "自然资源": (
        "国有土地使用权出让",
        "建设用地规划许可",
        "地质灾害隐患点",
        "测绘资质",
        "采矿许可",
    ),
    "住建": (
        "建筑工程施工许可",
        "商品房预售许可",
        "房屋网签备案",
        "建筑业企业资质",
        "住房公积金缴存",
        "物业服务企业",
    ),
    "税务": ("纳税人登记", "纳税信用等级", "欠税公告", "发票领用", "增值税申报"),
    "教育": ("学籍", "学历学位", "教师资格", "民办学校办学许可", "义务教育入学"),
    "消防": ("消防安全检查", "消防设计审查", "消防验收备案", "火灾事故调查"),
    "生态环境": ("排污许可", "环境影响评价审批", "危险废物经营许可"),
    "水务": ("取水许可", "排水许可", "供水用户"),
    "农业农村": ("农药经营许可", "动物防疫条件合格", "农村土地承包经营权"),
    "文旅": ("娱乐场所经营许可", "旅行社业务经营许可", "营业性演出许可"),
    "应急管理": ("安全生产许可", "危险化学品经营许可", "特种作业操作证"),
    "司法": ("律师执业", "公证", "法律援助", "人民调解"),
    "法院": ("失信被执行人", "企业破产案件", "限制高消费"),
}
# Subjects no department in the synthetic catalogue supplies (unmet demands).
MISSING_SUBJECTS = (
    "不动产登记",
    "残疾人证",
    "宠物犬登记",
    "船舶登记",
    "渔业捕捞许可",
    "烟草专卖零售许可",
    "人事档案",
    "献血记录",
)
QUALIFIERS = ("", "", "", "个人", "企业", "年度", "历史", "变更", "注销", "法人", "在册")
SUFFIXES = (
    "信息",
    "信息",
    "数据",
    "记录",
    "登记信息",
    "证照信息",
    "明细",
    "统计数据",
    "核验信息",
    "办理结果信息",
    "电子证照",
)
MATTERS = (
    "新生儿出生",
    "开办餐饮店",
    "退休",
    "开办运输企业",
    "企业信息变更",
    "教育入学",
    "社会保障卡居民服务",
    "残疾人服务",
    "企业注销登记",
    "信用修复",
)
CITY_NAMES = (
    "武汉",
    "黄石",
    "十堰",
    "宜昌",
    "襄阳",
    "鄂州",
    "荆门",
    "孝感",
    "荆州",
    "黄冈",
    "咸宁",
    "随州",
    "长沙",
    "株洲",
    "湘潭",
    "衡阳",
    "邵阳",
    "岳阳",
    "常德",
    "张家界",
)
_COMMON_ITEMS = ("姓名", "公民身份号码", "统一社会信用代码", "单位名称", "办理日期", "状态")
_DEPTS = tuple(SUBJECTS)


def regions() -> list[tuple[str, str]]:
    """(code, name prefix) for 湖北, 湖南, 20 cities and 8 counties under each city."""
    out = [("420000", "湖北省"), ("430000", "湖南省")]
    for i, city in enumerate(CITY_NAMES):
        code = f"{42 if i < 12 else 43}{(i % 12) + 1:02d}00"
        out.append((code, f"{city}市"))
        out += [(code[:4] + f"{k:02d}", f"{city}市第{k}区") for k in range(1, 9)]
    return out


def _items(subject: str, rnd: random.Random) -> tuple[DataItem, ...]:
    own = (
        DataItem(f"{subject}编号", DataType.STRING),
        DataItem(f"{subject}日期", DataType.DATE),
        DataItem(f"{subject}机关", DataType.STRING),
    )
    common = tuple(DataItem(n, DataType.STRING) for n in rnd.sample(_COMMON_ITEMS, 3))
    return common + own


def synthetic_resources(
    n: int, *, seed: int = 0, when: datetime = datetime(2025, 1, 1, tzinfo=UTC)
) -> Iterator[Resource]:
    """``n`` published resources with unique codes and realistic names."""
    rnd = random.Random(seed)  # noqa: S311 - test data, not secrets
    region_list = regions()
    shares = (ShareType.UNCONDITIONAL, ShareType.UNCONDITIONAL, ShareType.CONDITIONAL)
    for i in range(n):
        d = rnd.randrange(len(_DEPTS))
        dept = _DEPTS[d]
        s = rnd.randrange(len(SUBJECTS[dept]))
        subject = SUBJECTS[dept][s]
        region_code, region_name = region_list[rnd.randrange(len(region_list))]
        prefix = region_name if rnd.random() < 0.3 else ""
        name = f"{prefix}{rnd.choice(QUALIFIERS)}{subject}{rnd.choice(SUFFIXES)}"
        share = rnd.choice(shares)
        code = ResourceCode(ResourceClass(1 + i % 3), d + 1, s + 1, i // 999_999, i % 999_999 + 1)
        spec = ResourceSpec(
            code=code,
            name=name,
            description=f"{region_name}{dept}部门{subject}业务数据",
            provider_code=make_uscc(region_code, 20_000 + d),
            provider_name=f"{region_name}{dept}局",
            region_code=region_code,
            items=_items(subject, rnd),
            share_type=share,
            share_conditions="" if share is ShareType.UNCONDITIONAL else "经审核同意后共享",
        )
        yield Resource(
            spec,
            region_of(region_code).level,
            2,
            ResourceStatus.PUBLISHED,
            when,
            when,
            published_at=when,
        )


_PHRASES = (
    "需要{s}{x}",
    "申请获取{r}{s}数据用于{m}",
    "{m}需核验{s}",
    "查询{q}{s}情况",
    "请提供{d}部门的{s}{x}",
    "{s}",
    "{q}{s}{x}",
)


def synthetic_demands(
    n: int,
    *,
    seed: int = 0,
    missing_ratio: float = 0.1,
    when: datetime = datetime(2025, 3, 1, tzinfo=UTC),
) -> Iterator[Demand]:
    """``n`` demands phrased as departments write them; some want unsupplied subjects."""
    rnd = random.Random(seed)  # noqa: S311 - test data, not secrets
    region_list = regions()
    for i in range(n):
        if rnd.random() < missing_ratio:
            dept, subject = "未知", rnd.choice(MISSING_SUBJECTS)
        else:
            dept = rnd.choice(_DEPTS)
            subject = rnd.choice(SUBJECTS[dept])
        region_code, region_name = region_list[rnd.randrange(len(region_list))]
        matter = rnd.choice(MATTERS)
        text = rnd.choice(_PHRASES).format(
            s=subject,
            x=rnd.choice(SUFFIXES),
            r=region_name,
            m=matter,
            q=rnd.choice(QUALIFIERS),
            d=dept,
        )
        items = (f"{subject}编号",) if rnd.random() < 0.2 else ()
        spec = DemandSpec(
            requester_code=make_uscc(region_code, 30_000 + i % 50),
            requester_name=f"{region_name}政务服务中心",
            purpose="高效办成一件事集成办理",
            legal_basis=GUOFA_2024_3,
            region_scope=region_code,
            wanted_text=text,
            item_names=items,
            matter=matter,
        )
        yield Demand(f"syn-{i}", spec, when, "synthetic")
