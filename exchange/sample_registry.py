"""A synthetic business registry (市场主体登记) for the example provider, the demo and benchmarks.

Company ``i`` is the same in every run: a valid unified social credit code
(GB 32100 check character by python-stdnum over a GB 11714 organisation code,
registered in a Wuhan district), a Chinese name, legal representative,
capital, date of establishment, business scope, address and status — the
items of the catalogue resource 市场主体登记信息(营业执照) ``1-02-001-0000-000008``
of 武汉市市场监督管理局 — plus fields a registry holds but the resource does not
offer (:data:`EXTRA_ITEMS`: the representative's identity number, a phone
number, an internal note), so that minimisation at the node is visible.

Example::

    >>> rec = company(7)
    >>> rec["统一社会信用代码"], rec["企业名称"]
    ('914201030000000862', '武汉市江汉区华信餐饮管理有限公司')
    >>> from stdnum.cn import ric, uscc
    >>> all(uscc.is_valid(company(i)["统一社会信用代码"]) for i in range(100))
    True
    >>> all(ric.is_valid(company(i)["法定代表人身份证号码"]) for i in range(100))
    True
"""

from __future__ import annotations

from datetime import date, timedelta

from stdnum.cn import ric

from catalog_registry.model import (
    DataItem,
    DataType,
    ResourceCode,
    ResourceFormat,
    ResourceSpec,
    ShareType,
    UpdateCycle,
)
from catalog_registry.sample_tables import DEPARTMENTS, make_uscc

RESOURCE_CODE = "1-02-001-0000-000008"
KEY_ITEM = "统一社会信用代码"
ITEMS = (
    "统一社会信用代码",
    "企业名称",
    "法定代表人",
    "注册资本",
    "成立日期",
    "经营范围",
    "住所",
    "登记状态",
)
EXTRA_ITEMS = ("法定代表人身份证号码", "联系电话", "内部审查意见")
ITEM_TYPES = {
    "统一社会信用代码": DataType.STRING, "企业名称": DataType.STRING, "法定代表人": DataType.STRING,
    "注册资本": DataType.DECIMAL, "成立日期": DataType.DATE, "经营范围": DataType.STRING,
    "住所": DataType.STRING, "登记状态": DataType.CODE,
}  # fmt: skip
PROVIDER = DEPARTMENTS["wh-samr"]  # 武汉市市场监督管理局

_DISTRICTS = (
    ("420102", "江岸区", "沿江大道"), ("420103", "江汉区", "解放大道"),
    ("420104", "硚口区", "中山大道"), ("420106", "武昌区", "中北路"),
    ("420111", "洪山区", "珞喻路"), ("420105", "汉阳区", "汉阳大道"),
)  # fmt: skip
_WORDS = (
    "德盛",
    "华信",
    "长江",
    "楚天",
    "光谷",
    "汉正",
    "晴川",
    "黄鹤",
    "东湖",
    "江城",
    "知音",
    "荆楚",
)
_TRADES = (
    ("科技", "软件开发；信息技术咨询服务"), ("餐饮管理", "餐饮服务；食品销售"),
    ("商贸", "日用百货销售；五金产品零售"), ("建筑工程", "建设工程施工；建筑材料销售"),
    ("物流", "道路货物运输；仓储服务"), ("文化传媒", "广告设计、代理；会议及展览服务"),
)  # fmt: skip
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = (
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "涛",
    "明",
    "超",
    "秀英",
)
_STATUS = ("存续", "存续", "存续", "在业", "迁出", "注销")


def _person_id(i: int, district: str) -> str:
    born = date(1985, 1, 1) + timedelta(days=(i * 97) % 5000)
    body = f"{district}{born:%Y%m%d}{i % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")  # stdnum expects a placeholder check


def company(i: int) -> dict[str, str]:
    """Company ``i`` (0, 1, 2, …): every item of the resource and the extra ones."""
    region, district, road = _DISTRICTS[i % len(_DISTRICTS)]
    word = _WORDS[(i // len(_DISTRICTS)) % len(_WORDS)]
    trade, scope = _TRADES[(i // 7) % len(_TRADES)]
    n = i // (len(_DISTRICTS) * len(_WORDS))
    name = f"武汉市{district}{word}{trade}有限公司" + (f"（{n}）" if n else "")
    person = _SURNAMES[i % len(_SURNAMES)] + _GIVEN[(i // 3) % len(_GIVEN)]
    founded = date(2005, 1, 1) + timedelta(days=(i * 37) % 7000)
    return {
        "统一社会信用代码": make_uscc(region, i + 1, kind="91"),
        "企业名称": name,
        "法定代表人": person,
        "注册资本": f"{(i % 50 + 1) * 10}.00",
        "成立日期": founded.isoformat(),
        "经营范围": scope,
        "住所": f"湖北省武汉市{district}{road}{i % 900 + 1}号",
        "登记状态": _STATUS[i % len(_STATUS)],
        "法定代表人身份证号码": _person_id(i, region),
        "联系电话": f"027-{8000_0000 + i * 7 % 1000_0000:08d}",
        "内部审查意见": "无异常" if i % 5 else "曾列入经营异常名录，已移出",
    }


def companies(count: int) -> list[dict[str, str]]:
    """Companies ``0 … count-1``."""
    return [company(i) for i in range(count)]


def registry_spec(
    code: str = RESOURCE_CODE,
    *,
    delivery_service: str = "samr-registry",
    share: ShareType = ShareType.CONDITIONAL,
    name: str = "市场主体登记信息(营业执照)",
) -> ResourceSpec:
    """The catalogue entry of the registry, delivered by ``delivery_service`` ("" = hosted)."""
    return ResourceSpec(
        code=ResourceCode.parse(code),
        name=name,
        description=f"{PROVIDER.name}登记的市场主体基本信息",
        provider_code=PROVIDER.uscc,
        provider_name=PROVIDER.name,
        region_code=PROVIDER.region_code,
        items=tuple(DataItem(n, t) for n, t in ITEM_TYPES.items()),
        share_type=share,
        share_conditions="" if share is ShareType.UNCONDITIONAL else "经审核同意后共享",
        format=ResourceFormat.API,
        update_cycle=UpdateCycle.REALTIME,
        delivery_service=delivery_service,
    )
