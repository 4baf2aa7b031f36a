"""Registry use cases: lifecycle, ownership, history, negative-list rule, demands."""

from __future__ import annotations

import dataclasses

import pytest

from catalog_registry.model import (
    DataItem,
    DataType,
    DemandSpec,
    Resource,
    ResourceStatus,
    ShareType,
)
from catalog_registry.negative_list import NegativeList
from catalog_registry.registry import CatalogRegistry
from catalog_registry.sample_data import DEPARTMENTS, GUOFA_2024_3, PIPL_28, department_principal
from tests.unit.catalog_registry.conftest import make_spec, principal
from zhida.auth.principal import Principal, Role
from zhida.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from zhida.regions import Level


def test_register_creates_draft_version_one(registry: CatalogRegistry, police: Principal) -> None:
    r = registry.register(police, make_spec())
    assert (r.version, r.status, r.level) == (1, ResourceStatus.DRAFT, Level.CITY)
    assert r.created_at == r.updated_at
    assert r.updated_by == police.subject
    assert registry.get(police, r.key) == r


def test_duplicate_code_is_refused(registry: CatalogRegistry, police: Principal) -> None:
    registry.register(police, make_spec())
    with pytest.raises(AlreadyExists) as info:
        registry.register(police, make_spec(name="另一个名称"))
    assert info.value.reason == "RESOURCE_EXISTS"
    assert info.value.metadata["code"] == "1-01-001-0000-000101"
    assert [v.field for v in info.value.violations] == ["code"]


def test_register_invalid_spec_lists_violations(
    registry: CatalogRegistry, police: Principal
) -> None:
    bad = make_spec(items=(DataItem("", DataType.STRING),), region_code="420002")
    with pytest.raises(InvalidArgument) as info:
        registry.register(police, bad)
    assert info.value.reason == "INVALID_RESOURCE"
    assert {v.field for v in info.value.violations} == {"items[0].name", "region_code"}


def test_department_registers_only_its_own_resources(
    registry: CatalogRegistry, samr: Principal
) -> None:
    with pytest.raises(PermissionDenied) as info:
        registry.register(samr, make_spec())  # provider is 武汉市公安局
    assert info.value.reason == "NOT_RESOURCE_OWNER"


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.HOLDER, Role.APPLICATION, Role.ISSUER])
def test_other_roles_cannot_register(registry: CatalogRegistry, role: Role) -> None:
    with pytest.raises(PermissionDenied) as info:
        registry.register(principal(role), make_spec())
    assert info.value.reason == "ROLE_NOT_ALLOWED"


def test_admin_registers_for_any_department(registry: CatalogRegistry, admin: Principal) -> None:
    assert registry.register(admin, make_spec()).provider_name == "武汉市公安局"


def test_update_keeps_history(registry: CatalogRegistry, police: Principal) -> None:
    v1 = registry.register(police, make_spec())
    v2 = registry.update(police, make_spec(name="居民户籍信息"), expected_version=1)
    v3 = registry.update(police, make_spec(name="居民户口登记信息"))
    assert (v2.version, v3.version, v3.name, v3.status) == (
        2,
        3,
        "居民户口登记信息",
        ResourceStatus.DRAFT,
    )
    assert v3.created_at == v1.created_at < v2.updated_at < v3.updated_at
    history = registry.history(police, v1.key)
    assert [h.version for h in history] == [1, 2, 3]
    assert [h.name for h in history] == ["居民户籍登记信息", "居民户籍信息", "居民户口登记信息"]


def test_update_by_non_owner_is_denied(
    registry: CatalogRegistry, police: Principal, samr: Principal
) -> None:
    registry.register(police, make_spec())
    with pytest.raises(PermissionDenied) as info:
        registry.update(samr, make_spec(name="篡改"))
    assert info.value.reason == "NOT_RESOURCE_OWNER"
    assert info.value.metadata["provider_code"] == DEPARTMENTS["wh-police"].uscc
    assert registry.get(police, "1-01-001-0000-000101").version == 1


def test_admin_may_update_and_move_provider(
    registry: CatalogRegistry, police: Principal, admin: Principal
) -> None:
    registry.register(police, make_spec())
    d = DEPARTMENTS["wh-samr"]
    moved = make_spec(provider_code=d.uscc, provider_name=d.name)
    with pytest.raises(PermissionDenied) as info:
        registry.update(police, moved)
    assert info.value.reason == "PROVIDER_CHANGE_NOT_ALLOWED"
    assert registry.update(admin, moved).provider_code == d.uscc


def test_stale_expected_version_is_aborted(registry: CatalogRegistry, police: Principal) -> None:
    registry.register(police, make_spec())
    registry.update(police, make_spec(name="居民户籍信息"))
    with pytest.raises(Aborted) as info:
        registry.update(police, make_spec(name="另一个"), expected_version=1)
    assert info.value.reason == "VERSION_CONFLICT"


def test_lifecycle_draft_published_retired(registry: CatalogRegistry, police: Principal) -> None:
    code = registry.register(police, make_spec(share=ShareType.UNCONDITIONAL)).key
    published = registry.publish(police, code)
    assert (published.status, published.version) == (ResourceStatus.PUBLISHED, 2)
    assert published.published_at is not None
    updated = registry.update(police, make_spec(name="居民户籍信息", share=ShareType.UNCONDITIONAL))
    assert updated.status is ResourceStatus.PUBLISHED
    retired = registry.retire(police, code)
    assert (retired.status, retired.version) == (ResourceStatus.RETIRED, 4)
    assert retired.retired_at is not None
    assert retired.published_at == published.published_at
    statuses = [r.status.value for r in registry.history(police, code)]
    assert statuses == ["draft", "published", "published", "retired"]


@pytest.mark.parametrize(
    ("steps", "action"),
    [
        ((), "retire"),
        (("publish",), "publish"),
        (("publish", "retire"), "publish"),
        (("publish", "retire"), "retire"),
    ],
)
def test_invalid_transitions(
    registry: CatalogRegistry, police: Principal, steps: tuple[str, ...], action: str
) -> None:
    code = registry.register(police, make_spec()).key
    for step in steps:
        getattr(registry, step)(police, code)
    with pytest.raises(FailedPrecondition) as info:
        getattr(registry, action)(police, code)
    assert info.value.reason == "INVALID_TRANSITION"
    assert info.value.metadata["action"] == action


def test_retired_resource_cannot_change(registry: CatalogRegistry, police: Principal) -> None:
    code = registry.register(police, make_spec()).key
    registry.publish(police, code)
    registry.retire(police, code)
    with pytest.raises(FailedPrecondition) as info:
        registry.update(police, make_spec(name="复活"))
    assert info.value.reason == "INVALID_TRANSITION"


def test_non_owner_cannot_publish_or_retire(
    registry: CatalogRegistry, police: Principal, samr: Principal
) -> None:
    code = registry.register(police, make_spec()).key
    for action in ("publish", "retire"):
        with pytest.raises(PermissionDenied) as info:
            getattr(registry, action)(samr, code)
        assert info.value.reason == "NOT_RESOURCE_OWNER"


@pytest.mark.parametrize("action", ["get", "history", "publish", "retire"])
def test_unknown_resource(registry: CatalogRegistry, police: Principal, action: str) -> None:
    with pytest.raises(NotFound) as info:
        getattr(registry, action)(police, "3-99-999-9999-999999")
    assert info.value.reason == "RESOURCE_NOT_FOUND"


def test_update_of_unknown_resource(registry: CatalogRegistry, police: Principal) -> None:
    with pytest.raises(NotFound):
        registry.update(police, make_spec())


def test_malformed_code_argument(registry: CatalogRegistry, police: Principal) -> None:
    with pytest.raises(InvalidArgument) as info:
        registry.get(police, "1-01")
    assert info.value.reason == "INVALID_RESOURCE_CODE"


def test_drafts_are_hidden_from_other_departments(
    registry: CatalogRegistry, police: Principal, samr: Principal, admin: Principal
) -> None:
    code = registry.register(police, make_spec(share=ShareType.UNCONDITIONAL)).key
    assert registry.get(admin, code).status is ResourceStatus.DRAFT
    with pytest.raises(NotFound):
        registry.get(samr, code)
    registry.publish(police, code)
    assert registry.get(samr, code).status is ResourceStatus.PUBLISHED
    assert [r.version for r in registry.history(samr, code)] == [2]


def test_publish_refused_while_negative_listed_item_is_shareable(
    registry: CatalogRegistry, negative: NegativeList, police: Principal, admin: Principal
) -> None:
    code = registry.register(police, make_spec()).key
    negative.add(admin, code, ["人像照片"], PIPL_28)
    with pytest.raises(FailedPrecondition) as info:
        registry.publish(police, code)
    assert info.value.reason == "NEGATIVE_LISTED_SHAREABLE"
    assert [v.field for v in info.value.violations] == ["items[2].share_type"]
    assert "第二十八条" in info.value.violations[0].description
    # Mark the item not shared: now it publishes.
    items = make_spec().items
    fixed = make_spec(
        items=(*items[:2], dataclasses.replace(items[2], share_type=ShareType.NOT_SHARED))
    )
    registry.update(police, fixed)
    assert registry.publish(police, code).status is ResourceStatus.PUBLISHED
    # A published resource cannot be updated back into offering the item.
    with pytest.raises(FailedPrecondition):
        registry.update(police, make_spec())


def test_whole_resource_entry_requires_not_shared(
    registry: CatalogRegistry, negative: NegativeList, police: Principal, admin: Principal
) -> None:
    code = registry.register(police, make_spec(name="个人生物识别信息")).key
    negative.add(admin, code, [], PIPL_28)
    with pytest.raises(FailedPrecondition) as info:
        registry.publish(police, code)
    assert [v.field for v in info.value.violations] == ["share_type"]
    registry.update(
        police,
        make_spec(name="个人生物识别信息", share=ShareType.NOT_SHARED, share_conditions=PIPL_28),
    )
    assert registry.publish(police, code).share_type is ShareType.NOT_SHARED


def test_listeners_see_every_new_version(registry: CatalogRegistry, police: Principal) -> None:
    seen: list[Resource] = []
    registry.add_listener(seen.append)
    code = registry.register(police, make_spec(share=ShareType.UNCONDITIONAL)).key
    registry.publish(police, code)
    assert [(r.version, r.status.value) for r in seen] == [(1, "draft"), (2, "published")]


def test_register_many_is_all_or_nothing(registry: CatalogRegistry, police: Principal) -> None:
    good = make_spec()
    bad = make_spec("1-01-001-0000-000102", name="")
    with pytest.raises(InvalidArgument) as info:
        registry.register_many(police, [good, bad])
    assert [v.field for v in info.value.violations] == ["resources[1].name"]
    assert list(registry.repository.iter_resources()) == []
    registry.register(police, good)
    with pytest.raises(AlreadyExists):
        registry.register_many(police, [make_spec("1-01-001-0000-000103"), good])
    assert [r.key for r in registry.repository.iter_resources()] == [good.code.text]


def _demand_spec(key: str = "ja-gov", **changes: object) -> DemandSpec:
    d = DEPARTMENTS[key]
    spec = DemandSpec(
        requester_code=d.uscc,
        requester_name=d.name,
        purpose="新生儿出生一件事",
        legal_basis=GUOFA_2024_3,
        region_scope=d.region_code,
        wanted_text="出生医学证明信息",
        matter="新生儿出生",
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def test_file_demand(registry: CatalogRegistry, admin: Principal) -> None:
    gov = department_principal("ja-gov")
    demand = registry.file_demand(gov, _demand_spec())
    assert demand.id.startswith("dm-")
    assert demand.filed_by == gov.subject
    assert registry.get_demand(gov, demand.id) == demand
    other = registry.file_demand(admin, _demand_spec("js-approval"))
    assert [d.id for d in registry.list_demands(admin)] == [demand.id, other.id]
    assert registry.list_demands(admin, requester_code=gov.organisation) == [demand]


def test_demand_for_another_department_is_denied(
    registry: CatalogRegistry, police: Principal
) -> None:
    with pytest.raises(PermissionDenied) as info:
        registry.file_demand(police, _demand_spec())
    assert info.value.reason == "NOT_REQUESTING_DEPARTMENT"


def test_invalid_demand_and_unknown_demand(registry: CatalogRegistry) -> None:
    gov = department_principal("ja-gov")
    with pytest.raises(InvalidArgument) as info:
        registry.file_demand(gov, _demand_spec(legal_basis=""))
    assert info.value.reason == "INVALID_DEMAND"
    with pytest.raises(NotFound):
        registry.get_demand(gov, "dm-nope")
