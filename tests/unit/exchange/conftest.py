"""Fixtures for the exchange tests: a settable clock, a small catalogue, the use cases.

The catalogue holds, all provided by 武汉市公安局 (wh-police):

* ``CONDITIONAL`` 1-01-001-0000-000101 (姓名, 公民身份号码, 人像照片, 指纹; 指纹
  negative-listed, 人像照片 not shared);
* ``UNCONDITIONAL`` 1-01-001-0000-000102 (姓名, 住址) and an item of it
  (户籍类别) that is conditional;
* ``NOT_SHARED`` 1-01-001-0000-000103, ``RETIRED`` ...000104, ``DRAFT`` ...000105.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import (
    DataItem,
    DataType,
    Resource,
    ResourceStatus,
    ShareType,
)
from catalog_registry.negative_list import NegativeList
from catalog_registry.sample_data import DEPARTMENTS, PIPL_28, department_principal
from exchange.grants import GrantIndex
from exchange.memory import InMemoryExchangeRepository
from exchange.model import Period
from exchange.requests import ApplicationSpec, ShareRequests
from tests.unit.catalog_registry.conftest import make_spec
from zhida.auth.principal import Principal, Role
from zhida.regions import Level

CONDITIONAL = "1-01-001-0000-000101"
UNCONDITIONAL = "1-01-001-0000-000102"
NOT_SHARED = "1-01-001-0000-000103"
RETIRED = "1-01-001-0000-000104"
DRAFT = "1-01-001-0000-000105"
T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)
S = DataType.STRING


class Clock:
    """Returns ``now``; tests move it with :meth:`advance`."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"id-{self.n:04d}"


def _resource(code: str, share: ShareType, items: tuple[DataItem, ...], **kw: object) -> Resource:
    spec = make_spec(code, share=share, items=items)
    status = kw.get("status", ResourceStatus.PUBLISHED)
    assert isinstance(status, ResourceStatus)
    return Resource(spec, Level.CITY, 1, status, T0 - DAY, T0 - DAY)


def catalogue() -> list[Resource]:
    person = (
        DataItem("姓名", S),
        DataItem("公民身份号码", S),
        DataItem("人像照片", DataType.BINARY, share_type=ShareType.NOT_SHARED),
        DataItem("指纹", DataType.BINARY, share_type=ShareType.NOT_SHARED),
    )
    open_items = (
        DataItem("姓名", S),
        DataItem("住址", S),
        DataItem("户籍类别", S, share_type=ShareType.CONDITIONAL),
    )
    return [
        _resource(CONDITIONAL, ShareType.CONDITIONAL, person),
        _resource(UNCONDITIONAL, ShareType.UNCONDITIONAL, open_items),
        _resource(NOT_SHARED, ShareType.NOT_SHARED, (DataItem("姓名", S),)),
        _resource(
            RETIRED, ShareType.CONDITIONAL, (DataItem("姓名", S),), status=ResourceStatus.RETIRED
        ),
        _resource(
            DRAFT, ShareType.CONDITIONAL, (DataItem("姓名", S),), status=ResourceStatus.DRAFT
        ),
    ]


def role_principal(key: str, role: Role) -> Principal:
    return dataclasses.replace(department_principal(key), role=role, subject=f"{role.claim}@{key}")


@dataclasses.dataclass
class World:
    clock: Clock
    catalog: InMemoryCatalogRepository
    negative: NegativeList
    repo: InMemoryExchangeRepository
    index: GrantIndex
    book: ShareRequests
    provider_admin: Principal  # admin of wh-police
    provider_clerk: Principal  # department role of wh-police
    requester: Principal  # 江岸区市场监督管理局 clerk
    other_admin: Principal  # admin of another organisation

    def spec(
        self, code: str = CONDITIONAL, items: tuple[str, ...] = ("姓名",), **kw: object
    ) -> ApplicationSpec:
        base = ApplicationSpec(
            resource_code=code,
            items=items,
            purpose="核验市场主体登记人身份",
            legal_basis="《市场主体登记管理条例》第十九条",
            period=Period(self.clock.now, self.clock.now + 30 * DAY),
            expected_volume=100,
        )
        return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture
def world() -> World:
    clock = Clock()
    catalog = InMemoryCatalogRepository()
    catalog.insert_resources(catalogue())
    negative = NegativeList(catalog, clock)
    admin = role_principal("hb-data", Role.ADMIN)
    negative.add(admin, CONDITIONAL, ("指纹",), PIPL_28)
    repo = InMemoryExchangeRepository()
    index = GrantIndex(repo, clock)
    book = ShareRequests(repo, catalog.get_resource, negative.may_release, index, clock, Ids())
    assert DEPARTMENTS["wh-police"].uscc != DEPARTMENTS["ja-samr"].uscc
    return World(
        clock=clock,
        catalog=catalog,
        negative=negative,
        repo=repo,
        index=index,
        book=book,
        provider_admin=role_principal("wh-police", Role.ADMIN),
        provider_clerk=department_principal("wh-police"),
        requester=department_principal("ja-samr"),
        other_admin=role_principal("wh-samr", Role.ADMIN),
    )
