"""A realistic sample catalogue for the demo regions and the "一件事" matters of the seeds.

Regions: national 100000; 湖北 420000 → 武汉 420100 → 江岸区 420102; 湖南
430000 → 湘西州 433100 → 吉首市 433101. Matters: 新生儿出生, 开办餐饮店, 退休,
开办运输企业. Providers carry valid USCCs (GB 32100 check character computed
with stdnum over a GB 11714 organisation code with its own check character).

A node's catalogue holds its own region's resources, so a node loads only
its part of the sample (:func:`sample_for_node`): the resources of its
region and below (with their negative-list entries) and the demands of the
departments there — less what belongs to another node below it when several
nodes share the sample (the demo's federation). A national node loads it all.

Example::

    >>> from catalog_registry.sample_data import sample_catalogue, make_uscc
    >>> cat = sample_catalogue()
    >>> len(cat.resources) >= 20, make_uscc("420100", 7)
    (True, '114201000000000784')
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from catalog_registry.model import (
    DataItem,
    DataType,
    Demand,
    DemandSpec,
    ResourceCode,
    ResourceFormat,
    ResourceSpec,
    ShareType,
    UpdateCycle,
)
from catalog_registry.negative_list import NegativeList
from catalog_registry.registry import CatalogRegistry
from catalog_registry.repository import region_of, region_within
from catalog_registry.sample_tables import (
    CONDITIONS,
    DATA_REGULATION,
    DEPARTMENTS,
    GUOFA_2024_3,
    PIPL_28,
    RESOURCE_ROWS,
    C,
    Department,
    N,
    U,
    make_uscc,
    org_code_check,
)
from zhida.auth.principal import Principal, Role
from zhida.regions import NATIONAL_CODE

__all__ = [
    "DATA_REGULATION",
    "DEPARTMENTS",
    "GUOFA_2024_3",
    "PIPL_28",
    "Department",
    "NegativeSpec",
    "SampleCatalogue",
    "department_principal",
    "home_node",
    "load_sample",
    "make_uscc",
    "org_code_check",
    "sample_admin",
    "sample_catalogue",
    "sample_demands",
    "sample_for_node",
    "sample_negative",
    "sample_resources",
]

_TYPES = {t.value: t for t in DataType}


def _items(spec: str, share_type: ShareType) -> tuple[DataItem, ...]:
    items: list[DataItem] = []
    for field in spec.split():
        name, type_ = field.split(":")
        blocked = type_.endswith("!")
        share = ShareType.NOT_SHARED if blocked and share_type is not ShareType.NOT_SHARED else None
        items.append(DataItem(name, _TYPES[type_.rstrip("!")], share_type=share))
    return tuple(items)


@dataclass(frozen=True, slots=True)
class NegativeSpec:
    code: str
    item_names: tuple[str, ...]
    legal_basis: str


@dataclass(frozen=True, slots=True)
class SampleCatalogue:
    resources: tuple[ResourceSpec, ...]
    demands: tuple[DemandSpec, ...]
    negative: tuple[NegativeSpec, ...]
    departments: dict[str, Department]


def sample_resources() -> tuple[ResourceSpec, ...]:
    out: list[ResourceSpec] = []
    for code, name, dept_key, share, cycle, items in RESOURCE_ROWS:
        dept = DEPARTMENTS[dept_key]
        conditions = {U: "", C: CONDITIONS, N: PIPL_28}[share]
        out.append(
            ResourceSpec(
                code=ResourceCode.parse(code),
                name=name,
                description=f"{dept.name}提供的{name}，支撑“高效办成一件事”集成办理",
                provider_code=dept.uscc,
                provider_name=dept.name,
                region_code=dept.region_code,
                items=_items(items, share),
                share_type=share,
                share_conditions=conditions,
                format=ResourceFormat.API
                if cycle is UpdateCycle.REALTIME
                else ResourceFormat.DATABASE,
                update_cycle=cycle,
                delivery_service="" if share is N else "hosted",  # the node's hosted provider
            )
        )
    return tuple(out)


def _demand(
    dept_key: str, text: str, matter: str, purpose: str, items: tuple[str, ...] = ()
) -> DemandSpec:
    dept = DEPARTMENTS[dept_key]
    return DemandSpec(
        requester_code=dept.uscc,
        requester_name=dept.name,
        purpose=purpose,
        legal_basis=GUOFA_2024_3,
        region_scope=dept.region_code,
        wanted_text=text,
        item_names=items,
        matter=matter,
    )


def sample_demands() -> tuple[DemandSpec, ...]:
    return (
        _demand(
            "ja-gov",
            "需要新生儿出生医学证明信息",
            "新生儿出生",
            "新生儿出生一件事：出生医学证明、户口登记、医保参保、社保卡申领一次办",
        ),
        _demand(
            "ja-gov",
            "城乡居民医保参保信息",
            "新生儿出生",
            "核验新生儿参保状态",
            ("公民身份号码", "参保状态"),
        ),
        _demand(
            "js-approval",
            "需要企业营业执照信息",
            "开办餐饮店",
            "开办餐饮店一件事：核验市场主体登记信息，免交营业执照复印件",
        ),
        _demand("js-approval", "食品经营许可证信息", "开办餐饮店", "餐饮店开业后续监管"),
        _demand(
            "xx-transport",
            "道路运输经营许可证信息",
            "开办运输企业",
            "开办运输企业一件事：核验道路运输经营许可",
        ),
        # Unmet, but like 武汉市民政局's 婚姻登记信息: on that department's to-do list.
        _demand(
            "ja-gov",
            "需要婚姻信息",
            "新生儿出生",
            "新生儿出生一件事：核验父母婚姻状况，办理出生登记",
        ),
        _demand("wh-civil", "残疾人证信息", "残疾人服务", "残疾人两项补贴资格核验"),
        _demand("xx-hrss", "需要职工人事档案信息", "退休", "退休一件事：核定视同缴费年限"),
    )


def sample_negative() -> tuple[NegativeSpec, ...]:
    return (
        NegativeSpec("1-01-003-0000-000004", (), PIPL_28),
        NegativeSpec("1-01-001-0000-000002", ("人像照片",), PIPL_28),
        NegativeSpec("2-03-004-0000-000016", ("个人银行账号",), PIPL_28),
    )


def sample_catalogue() -> SampleCatalogue:
    return SampleCatalogue(
        sample_resources(), sample_demands(), sample_negative(), dict(DEPARTMENTS)
    )


def home_node(region_code: str, nodes: Collection[str]) -> str | None:
    """The node of ``nodes`` whose catalogue holds a resource of ``region_code``: the lowest
    one whose region contains it (None when none does)."""
    holders = [n for n in nodes if region_within(region_code, n)]
    return max(holders, key=lambda n: region_of(n).level, default=None)


def sample_for_node(region: str, nodes: Collection[str] = ()) -> SampleCatalogue:
    """The part of the sample a node at ``region`` loads (see the module docstring).

    ``nodes``: the other nodes loading the sample; a resource or demand of a
    region below one of them that lies below ``region`` is left to that node.
    """
    everywhere = {region, *nodes}
    cat = sample_catalogue()
    regions = {d.uscc: d.region_code for d in DEPARTMENTS.values()}
    resources = tuple(s for s in cat.resources if home_node(s.region_code, everywhere) == region)
    codes = {s.code.text for s in resources}
    return SampleCatalogue(
        resources,
        tuple(d for d in cat.demands if home_node(regions[d.requester_code], everywhere) == region),
        tuple(n for n in cat.negative if n.code in codes),
        cat.departments,
    )


def sample_admin(expires_at: int = 4_102_444_800) -> Principal:
    """The 湖北省数据局 admin that loads the sample (runs the catalogue and the negative list)."""
    dept = DEPARTMENTS["hb-data"]
    return Principal(
        subject="admin@hb-data",
        role=Role.ADMIN,
        organisation=dept.uscc,
        region_code=dept.region_code,
        expires_at=expires_at,
    )


def department_principal(key: str, expires_at: int = 4_102_444_800) -> Principal:
    dept = DEPARTMENTS[key]
    return Principal(
        subject=f"clerk@{key}",
        role=Role.DEPARTMENT,
        organisation=dept.uscc,
        region_code=dept.region_code,
        expires_at=expires_at,
    )


def load_sample(registry: CatalogRegistry, negative: NegativeList) -> list[Demand]:
    """Register and publish the sample resources, list the negative entries, file the demands.

    The registry's node region decides which part (all of it without one).
    Each resource is registered by its own provider department; the negative
    list is filled by the admin before publishing, as the publish rule requires.
    """
    cat = sample_for_node(registry.node_region or NATIONAL_CODE)
    owners = {d.uscc: d.key for d in DEPARTMENTS.values()}
    for spec in cat.resources:
        registry.register(department_principal(owners[spec.provider_code]), spec)
    admin = sample_admin()
    for entry in cat.negative:
        negative.add(admin, entry.code, entry.item_names, entry.legal_basis)
    for spec in cat.resources:
        registry.publish(department_principal(owners[spec.provider_code]), spec.code)
    return [
        registry.file_demand(department_principal(owners[d.requester_code]), d) for d in cat.demands
    ]
