"""Share requests: application checks, decisions, withdrawal, pending lists."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from catalog_registry.model import ResourceStatus
from catalog_registry.sample_data import PIPL_28
from exchange.grants import GrantIndex
from exchange.model import SYSTEM_DECIDER, GrantState, Period, RequestState
from exchange.requests import ShareRequests
from tests.unit.exchange.conftest import (
    CONDITIONAL,
    DAY,
    DRAFT,
    NOT_SHARED,
    RETIRED,
    UNCONDITIONAL,
    World,
    role_principal,
)
from zhida.auth.principal import Role
from zhida.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied


def fields(err: InvalidArgument) -> set[str]:
    return {v.field for v in err.violations}


# -- application --------------------------------------------------------------------------


def test_conditional_request_waits_for_a_decision(world: World) -> None:
    req = world.book.apply(world.requester, world.spec(items=("姓名", "公民身份号码")))
    assert req.state is RequestState.SUBMITTED
    assert req.requester_org == world.requester.organisation
    assert req.requester_region == "420102"
    assert req.provider_org == world.provider_admin.organisation
    assert req.submitted_at == world.clock.now
    assert req.decision is None
    assert world.repo.get_request(req.id) == req
    assert world.index.current(req.requester_org, CONDITIONAL) is None


def test_unconditional_request_is_granted_at_once(world: World) -> None:
    req = world.book.apply(world.requester, world.spec(UNCONDITIONAL, ("姓名", "住址")))
    assert req.state is RequestState.APPROVED
    assert req.decision is not None
    assert req.decision.decided_by == SYSTEM_DECIDER
    grant = world.index.check(world.requester.organisation, UNCONDITIONAL, world.clock.now)
    assert grant.items == frozenset({"姓名", "住址"})
    assert grant.id == req.decision.grant_id
    assert world.repo.get_grant(grant.id) == grant


def test_conditional_item_of_unconditional_resource_needs_a_decision(world: World) -> None:
    req = world.book.apply(world.requester, world.spec(UNCONDITIONAL, ("姓名", "户籍类别")))
    assert req.state is RequestState.SUBMITTED


def test_code_accepts_other_forms_and_is_stored_canonical(world: World) -> None:
    req = world.book.apply(world.requester, world.spec("1010010000000101"))
    assert req.resource_code == CONDITIONAL


@pytest.mark.parametrize("code", ["1-01-001-0000-000999", DRAFT])
def test_unknown_or_draft_resource_is_not_found(world: World, code: str) -> None:
    with pytest.raises(NotFound) as err:
        world.book.apply(world.requester, world.spec(code))
    assert err.value.reason == "RESOURCE_NOT_FOUND"


def test_malformed_code_is_invalid(world: World) -> None:
    with pytest.raises(InvalidArgument) as err:
        world.book.apply(world.requester, world.spec("not-a-code"))
    assert err.value.reason == "INVALID_RESOURCE_CODE"
    assert fields(err.value) == {"resource_code"}


def test_retired_resource_is_refused(world: World) -> None:
    with pytest.raises(FailedPrecondition) as err:
        world.book.apply(world.requester, world.spec(RETIRED))
    assert err.value.reason == "RESOURCE_RETIRED"


def test_items_not_in_the_resource(world: World) -> None:
    with pytest.raises(InvalidArgument) as err:
        world.book.apply(world.requester, world.spec(items=("姓名", "婚姻状况", "姓名")))
    assert err.value.reason == "INVALID_SHARE_REQUEST"
    assert fields(err.value) == {"items[1]", "items[2]"}
    assert "婚姻状况" in err.value.violations[0].description


def test_no_items(world: World) -> None:
    with pytest.raises(InvalidArgument) as err:
        world.book.apply(world.requester, world.spec(items=()))
    assert fields(err.value) == {"items"}


@pytest.mark.parametrize("blank", ["", "   "])
def test_missing_purpose_and_legal_basis(world: World, blank: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        world.book.apply(world.requester, world.spec(purpose=blank, legal_basis=blank))
    assert fields(err.value) == {"purpose", "legal_basis"}


def test_every_problem_is_reported_at_once(world: World) -> None:
    now = world.clock.now
    bad = world.spec(
        items=("无此项",),
        purpose="",
        period=Period(now - 2 * DAY, now - DAY),
        expected_volume=-1,
    )
    with pytest.raises(InvalidArgument) as err:
        world.book.apply(world.requester, bad)
    assert fields(err.value) == {"items[0]", "purpose", "period", "expected_volume"}


def test_period_in_the_past_or_inverted(world: World) -> None:
    now = world.clock.now
    for period, problem in [
        (Period(now - 10 * DAY, now - DAY), "ends in the past"),
        (Period(now + 2 * DAY, now + DAY), "must end after it starts"),
    ]:
        with pytest.raises(InvalidArgument) as err:
            world.book.apply(world.requester, world.spec(period=period))
        assert problem in [v.description for v in err.value.violations]


def test_negative_listed_item_refused_with_its_legal_basis(world: World) -> None:
    with pytest.raises(FailedPrecondition) as err:
        world.book.apply(world.requester, world.spec(items=("姓名", "指纹")))
    assert err.value.reason == "NEGATIVE_LISTED"
    assert PIPL_28 in err.value.message
    assert err.value.metadata["legal_basis"] == PIPL_28
    assert err.value.metadata["item"] == "指纹"
    assert world.repo.requests_of(world.requester.organisation) == []


def test_not_shared_item_and_resource_refused_even_with_a_legal_basis(world: World) -> None:
    for spec in [world.spec(items=("人像照片",)), world.spec(NOT_SHARED)]:
        with pytest.raises(FailedPrecondition) as err:
            world.book.apply(world.requester, spec)
        assert err.value.reason == "NOT_SHARED"


@pytest.mark.parametrize("role", [Role.HOLDER, Role.APPLICATION, Role.AUDITOR, Role.NODE])
def test_only_departments_and_admins_apply(world: World, role: Role) -> None:
    with pytest.raises(PermissionDenied) as err:
        world.book.apply(role_principal("ja-samr", role), world.spec())
    assert err.value.reason == "ROLE_NOT_ALLOWED"


# -- decisions ----------------------------------------------------------------------------


def test_approve_everything_creates_the_grant(world: World) -> None:
    req = world.book.apply(world.requester, world.spec(items=("姓名", "公民身份号码")))
    world.clock.advance(timedelta(hours=1))
    approved = world.book.approve(world.provider_admin, req.id, rate_limit_per_minute=60)
    assert approved.state is RequestState.APPROVED
    decision = approved.decision
    assert decision is not None
    assert decision.decided_by == world.provider_admin.subject
    assert decision.decided_at == world.clock.now == approved.updated_at
    assert decision.items_granted == frozenset({"姓名", "公民身份号码"})
    grant = world.index.check(req.requester_org, CONDITIONAL, world.clock.now)
    assert grant.id == decision.grant_id
    assert grant.rate_limit_per_minute == 60
    assert grant.valid_until == req.period.end
    assert grant.purpose == req.purpose


def test_approve_fewer_items_and_a_shorter_period(world: World) -> None:
    req = world.book.apply(world.requester, world.spec(items=("姓名", "公民身份号码")))
    until = world.clock.now + 7 * DAY
    approved = world.book.approve(world.provider_admin, req.id, items=("姓名",), until=until)
    assert approved.decision is not None
    assert approved.decision.items_granted == frozenset({"姓名"})
    assert approved.decision.until_granted == until
    grant = world.index.check(req.requester_org, CONDITIONAL, world.clock.now)
    assert grant.items == frozenset({"姓名"})
    assert grant.valid_until == until


def test_approval_never_grants_more(world: World) -> None:
    req = world.book.apply(world.requester, world.spec(items=("姓名",)))
    with pytest.raises(InvalidArgument) as err:
        world.book.approve(
            world.provider_admin,
            req.id,
            items=("姓名", "公民身份号码"),
            until=req.period.end + DAY,
            rate_limit_per_minute=0,
        )
    assert err.value.reason == "INVALID_DECISION"
    assert fields(err.value) == {"items[1]", "until", "rate_limit_per_minute"}
    assert world.book.get(req.id).state is RequestState.SUBMITTED


def test_reject_needs_a_reason(world: World) -> None:
    req = world.book.apply(world.requester, world.spec())
    with pytest.raises(InvalidArgument):
        world.book.reject(world.provider_admin, req.id, "  ")
    rejected = world.book.reject(world.provider_admin, req.id, "用途与申请事项无关")
    assert rejected.state is RequestState.REJECTED
    assert rejected.decision is not None
    assert rejected.decision.reason == "用途与申请事项无关"
    assert world.index.current(req.requester_org, CONDITIONAL) is None


@pytest.mark.parametrize("who", ["provider_clerk", "other_admin", "requester"])
def test_only_the_provider_admin_decides(world: World, who: str) -> None:
    req = world.book.apply(world.requester, world.spec())
    principal = getattr(world, who)
    with pytest.raises(PermissionDenied) as err:
        world.book.approve(principal, req.id)
    assert err.value.reason == "NOT_PROVIDER_ADMIN"
    with pytest.raises(PermissionDenied):
        world.book.reject(principal, req.id, "no")
    assert world.book.get(req.id).state is RequestState.SUBMITTED


def test_double_decisions_are_refused(world: World) -> None:
    req = world.book.apply(world.requester, world.spec())
    world.book.approve(world.provider_admin, req.id)
    with pytest.raises(FailedPrecondition) as err:
        world.book.approve(world.provider_admin, req.id)
    assert err.value.reason == "ALREADY_DECIDED"
    with pytest.raises(FailedPrecondition) as err:
        world.book.reject(world.provider_admin, req.id, "changed my mind")
    assert err.value.reason == "ALREADY_DECIDED"
    assert len(list(world.repo.iter_grants())) == 1


def test_decision_on_unknown_request(world: World) -> None:
    with pytest.raises(NotFound) as err:
        world.book.approve(world.provider_admin, "nope")
    assert err.value.reason == "REQUEST_NOT_FOUND"


def test_approval_rechecks_the_negative_list(world: World) -> None:
    req = world.book.apply(world.requester, world.spec(items=("姓名", "公民身份号码")))
    admin = role_principal("hb-data", Role.ADMIN)
    world.negative.add(admin, CONDITIONAL, ("公民身份号码",), PIPL_28)
    with pytest.raises(FailedPrecondition) as err:
        world.book.approve(world.provider_admin, req.id)
    assert err.value.reason == "NEGATIVE_LISTED"
    assert world.book.get(req.id).state is RequestState.SUBMITTED
    assert list(world.repo.iter_grants()) == []
    world.book.approve(world.provider_admin, req.id, items=("姓名",))


def test_new_grant_supersedes_the_previous_one(world: World) -> None:
    first = world.book.apply(world.requester, world.spec(items=("姓名",)))
    world.book.approve(world.provider_admin, first.id)
    second = world.book.apply(world.requester, world.spec(items=("姓名", "公民身份号码")))
    approved = world.book.approve(world.provider_admin, second.id)
    grants = {g.request_id: g for g in world.repo.iter_grants()}
    assert grants[first.id].state is GrantState.REVOKED
    assert "superseded" in grants[first.id].revoked_reason
    assert approved.decision is not None
    now = world.clock.now
    assert world.index.check(first.requester_org, CONDITIONAL, now).id == approved.decision.grant_id
    assert list(world.repo.iter_grants(GrantState.ACTIVE)) == [grants[second.id]]


def test_a_stale_grant_index_elsewhere_still_supersedes(world: World) -> None:
    """Another worker's index lags a grant written here: the store refuses two
    live grants, and the approval is decided again on the store's view."""
    lagging = GrantIndex(world.repo, world.clock)  # loaded now: it never sees the first grant
    elsewhere = ShareRequests(
        world.repo, world.catalog.get_resource, world.negative.may_release, lagging, world.clock
    )
    first = world.book.apply(world.requester, world.spec(items=("姓名",)))
    world.book.approve(world.provider_admin, first.id)
    second = world.book.apply(world.requester, world.spec(items=("姓名", "公民身份号码")))
    approved = elsewhere.approve(world.provider_admin, second.id)
    assert approved.decision is not None
    active = list(world.repo.iter_grants(GrantState.ACTIVE))
    assert [g.id for g in active] == [approved.decision.grant_id]
    superseded = [g for g in world.repo.iter_grants() if g.request_id == first.id]
    assert superseded[0].state is GrantState.REVOKED
    assert f"superseded by grant {approved.decision.grant_id}" == superseded[0].revoked_reason


# -- withdrawal and listing ---------------------------------------------------------------


def test_withdraw_only_by_the_requester_and_only_while_submitted(world: World) -> None:
    req = world.book.apply(world.requester, world.spec())
    with pytest.raises(PermissionDenied) as denied:
        world.book.withdraw(world.provider_admin, req.id)
    assert denied.value.reason == "NOT_REQUESTER"
    world.clock.advance(timedelta(minutes=5))
    withdrawn = world.book.withdraw(world.requester, req.id)
    assert withdrawn.state is RequestState.WITHDRAWN
    assert withdrawn.withdrawn_at == world.clock.now == withdrawn.updated_at
    with pytest.raises(FailedPrecondition) as err:
        world.book.withdraw(world.requester, req.id)
    assert err.value.reason == "REQUEST_WITHDRAWN"
    with pytest.raises(FailedPrecondition) as err:
        world.book.approve(world.provider_admin, req.id)
    assert err.value.reason == "REQUEST_WITHDRAWN"


def test_withdraw_after_decision_is_refused(world: World) -> None:
    req = world.book.apply(world.requester, world.spec())
    world.book.reject(world.provider_admin, req.id, "无依据")
    with pytest.raises(FailedPrecondition) as err:
        world.book.withdraw(world.requester, req.id)
    assert err.value.reason == "ALREADY_DECIDED"


def test_pending_oldest_first_for_the_provider_admin_only(world: World) -> None:
    ids = []
    for items in [("姓名",), ("公民身份号码",), ("姓名", "公民身份号码")]:
        ids.append(world.book.apply(world.requester, world.spec(items=items)).id)
        world.clock.advance(timedelta(minutes=1))
    world.book.withdraw(world.requester, ids[1])
    pending = world.book.pending(world.provider_admin)
    assert [r.id for r in pending] == [ids[0], ids[2]]
    assert pending[0].purpose
    assert pending[0].items == ("姓名",)
    assert world.book.pending(world.other_admin) == []
    with pytest.raises(PermissionDenied):
        world.book.pending(world.provider_clerk)


def test_approval_rechecks_the_resource(world: World) -> None:
    req = world.book.apply(world.requester, world.spec(items=("姓名", "公民身份号码")))
    current = world.catalog.get_resource(CONDITIONAL)
    assert current is not None
    fewer = dataclasses.replace(current.spec, items=current.spec.items[:1])
    changed = dataclasses.replace(current, spec=fewer, version=2)
    world.catalog.replace_resource(changed, expected_version=1)
    with pytest.raises(FailedPrecondition) as err:
        world.book.approve(world.provider_admin, req.id)
    assert err.value.reason == "ITEM_NOT_IN_RESOURCE"
    retired = dataclasses.replace(changed, version=3, status=ResourceStatus.RETIRED)
    world.catalog.replace_resource(retired, expected_version=2)
    with pytest.raises(FailedPrecondition) as err:
        world.book.approve(world.provider_admin, req.id, items=("姓名",))
    assert err.value.reason == "RESOURCE_RETIRED"
    assert list(world.repo.iter_grants()) == []
    assert world.book.get(req.id).state is RequestState.SUBMITTED
