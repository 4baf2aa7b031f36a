"""Fixtures for the catalogue tests: a stepping clock, principals, an in-memory registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import (
    DataItem,
    DataType,
    Demand,
    ResourceCode,
    ResourceSpec,
    ShareType,
)
from catalog_registry.negative_list import NegativeList
from catalog_registry.registry import CatalogRegistry
from catalog_registry.sample_data import (
    DEPARTMENTS,
    department_principal,
    load_sample,
    sample_admin,
)
from zhida.auth.principal import Principal, Role


class StepClock:
    """Each call returns a time one second after the previous one."""

    def __init__(self) -> None:
        self.now = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def repo() -> InMemoryCatalogRepository:
    return InMemoryCatalogRepository()


@pytest.fixture
def registry(repo: InMemoryCatalogRepository, clock: StepClock) -> CatalogRegistry:
    return CatalogRegistry(repo, clock)


@pytest.fixture
def negative(repo: InMemoryCatalogRepository, clock: StepClock) -> NegativeList:
    return NegativeList(repo, clock)


@pytest.fixture
def admin() -> Principal:
    return sample_admin()


@pytest.fixture
def police() -> Principal:
    """武汉市公安局, a department principal."""
    return department_principal("wh-police")


@pytest.fixture
def samr() -> Principal:
    """武汉市市场监督管理局, another department."""
    return department_principal("wh-samr")


def principal(role: Role, key: str = "wh-police") -> Principal:
    dept = DEPARTMENTS[key]
    return Principal(
        subject=f"{role.claim}@{key}",
        role=role,
        organisation=dept.uscc,
        region_code=dept.region_code,
        expires_at=4_102_444_800,
    )


SpecFactory = Callable[..., ResourceSpec]


def make_spec(
    code: str = "1-01-001-0000-000101",
    *,
    name: str = "居民户籍登记信息",
    dept: str = "wh-police",
    share: ShareType = ShareType.CONDITIONAL,
    items: tuple[DataItem, ...] | None = None,
    **changes: object,
) -> ResourceSpec:
    d = DEPARTMENTS[dept]
    spec = ResourceSpec(
        code=ResourceCode.parse(code),
        name=name,
        description=f"{d.name}的{name}",
        provider_code=d.uscc,
        provider_name=d.name,
        region_code=d.region_code,
        items=items
        or (
            DataItem("姓名", DataType.STRING),
            DataItem("公民身份号码", DataType.STRING),
            DataItem("人像照片", DataType.BINARY),
        ),
        share_type=share,
        share_conditions="" if share is ShareType.UNCONDITIONAL else "经审核同意后共享",
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


@pytest.fixture
def spec() -> ResourceSpec:
    return make_spec()


@pytest.fixture
def sample_demands(registry: CatalogRegistry, negative: NegativeList) -> list[Demand]:
    """The sample catalogue loaded (published) into ``registry``; returns its filed demands."""
    return load_sample(registry, negative)
