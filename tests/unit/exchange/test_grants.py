"""The grant index: O(1) checks, expiry, revocation, rate limits, reload."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from exchange.grants import GrantIndex
from exchange.model import Grant, GrantState
from exchange.ratelimit import RateLimiter, TokenBucket
from tests.unit.exchange.conftest import CONDITIONAL, DAY, UNCONDITIONAL, World
from zhida.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)


def granted(world: World, rate: int | None = None, days: int = 30) -> Grant:
    spec = world.spec(items=("姓名", "公民身份号码"))
    spec = dataclasses.replace(
        spec, period=dataclasses.replace(spec.period, end=world.clock.now + days * DAY)
    )
    req = world.book.apply(world.requester, spec)
    world.book.approve(world.provider_admin, req.id, rate_limit_per_minute=rate)
    return world.index.check(world.requester.organisation, CONDITIONAL, world.clock.now)


def test_no_grant(world: World) -> None:
    with pytest.raises(PermissionDenied) as err:
        world.index.check(world.requester.organisation, CONDITIONAL, world.clock.now)
    assert err.value.reason == "NO_GRANT"
    granted(world)
    with pytest.raises(PermissionDenied) as err:
        world.index.check(world.other_admin.organisation, CONDITIONAL, world.clock.now)
    assert err.value.reason == "NO_GRANT"
    with pytest.raises(PermissionDenied) as err:
        world.index.check(world.requester.organisation, UNCONDITIONAL, world.clock.now)
    assert err.value.reason == "NO_GRANT"


def test_delivery_on_an_expired_grant(world: World) -> None:
    grant = granted(world, days=2)
    world.clock.advance(2 * DAY)
    with pytest.raises(PermissionDenied) as err:
        world.index.admit(grant.requester_org, CONDITIONAL, world.clock.now)
    assert err.value.reason == "GRANT_EXPIRED"
    assert err.value.metadata["grant_id"] == grant.id


def test_grant_not_yet_valid(world: World) -> None:
    start = world.clock.now + DAY
    spec = world.spec()
    spec = dataclasses.replace(spec, period=dataclasses.replace(spec.period, start=start))
    req = world.book.apply(world.requester, spec)
    world.book.approve(world.provider_admin, req.id)
    with pytest.raises(PermissionDenied) as err:
        world.index.check(req.requester_org, CONDITIONAL, world.clock.now)
    assert err.value.reason == "GRANT_NOT_YET_VALID"
    world.clock.advance(DAY)
    world.index.check(req.requester_org, CONDITIONAL, world.clock.now)


def test_revocation_is_immediate_and_provider_admin_only(world: World) -> None:
    grant = granted(world)
    for who in (world.provider_clerk, world.other_admin, world.requester):
        with pytest.raises(PermissionDenied) as err:
            world.index.revoke(who, grant.id, "no")
        assert err.value.reason == "NOT_PROVIDER_ADMIN"
    with pytest.raises(InvalidArgument):
        world.index.revoke(world.provider_admin, grant.id, " ")
    world.clock.advance(timedelta(seconds=1))
    revoked = world.index.revoke(world.provider_admin, grant.id, "用途已完成")
    assert revoked.state is GrantState.REVOKED
    assert revoked.revoked_at == world.clock.now
    assert revoked.revoked_by == world.provider_admin.subject
    with pytest.raises(PermissionDenied) as err:
        world.index.admit(grant.requester_org, CONDITIONAL, world.clock.now)
    assert err.value.reason == "GRANT_REVOKED"
    assert "用途已完成" in err.value.message
    assert world.repo.get_grant(grant.id) == revoked
    with pytest.raises(FailedPrecondition) as ferr:
        world.index.revoke(world.provider_admin, grant.id, "again")
    assert ferr.value.reason == "GRANT_REVOKED"


def test_revoke_unknown_or_expired(world: World) -> None:
    with pytest.raises(NotFound):
        world.index.revoke(world.provider_admin, "nope", "x")
    grant = granted(world, days=1)
    world.clock.advance(DAY)
    with pytest.raises(FailedPrecondition) as err:
        world.index.revoke(world.provider_admin, grant.id, "x")
    assert err.value.reason == "GRANT_EXPIRED"
    assert world.repo.get_grant(grant.id) == grant


def test_reload_rebuilds_the_same_answers(world: World) -> None:
    grant = granted(world)
    fresh = GrantIndex(world.repo, world.clock)
    assert fresh.check(grant.requester_org, CONDITIONAL, world.clock.now) == grant
    world.index.revoke(world.provider_admin, grant.id, "x")
    fresh.reload()
    with pytest.raises(PermissionDenied) as err:
        fresh.check(grant.requester_org, CONDITIONAL, world.clock.now)
    assert err.value.reason == "GRANT_REVOKED"


def test_superseded_grant_does_not_shadow_the_active_one(world: World) -> None:
    old = granted(world)
    new = granted(world)
    assert new.id != old.id
    world.index.put(world.repo.get_grant(old.id) or old)  # a late write of the old one
    assert world.index.check(new.requester_org, CONDITIONAL, world.clock.now).id == new.id
    fresh = GrantIndex(world.repo, world.clock)
    assert fresh.check(new.requester_org, CONDITIONAL, world.clock.now).id == new.id


def test_rate_limit(world: World) -> None:
    grant = granted(world, rate=3)
    org, now = grant.requester_org, world.clock.now
    for _ in range(3):
        world.index.admit(org, CONDITIONAL, now)
    with pytest.raises(ResourceExhausted) as err:
        world.index.admit(org, CONDITIONAL, now)
    assert err.value.reason == "RATE_LIMITED"
    assert err.value.metadata["retry_after_ms"] == "20000"
    world.clock.advance(timedelta(seconds=20))
    world.index.admit(org, CONDITIONAL, world.clock.now)
    with pytest.raises(ResourceExhausted):
        world.index.admit(org, CONDITIONAL, world.clock.now)
    world.index.check(org, CONDITIONAL, world.clock.now)  # checks never consume tokens


def test_unlimited_grant_and_costs(world: World) -> None:
    grant = granted(world)
    for _ in range(1000):
        world.index.admit(grant.requester_org, CONDITIONAL, world.clock.now)
    limiter = RateLimiter()
    limited = dataclasses.replace(grant, rate_limit_per_minute=10)
    limiter.take(limited, world.clock.now, cost=10)
    with pytest.raises(ResourceExhausted):
        limiter.take(limited, world.clock.now, cost=1)
    limiter.forget(grant.id)
    limiter.take(limited, world.clock.now, cost=10)


def test_bucket_never_exceeds_capacity() -> None:
    b = TokenBucket(rate_per_minute=60, now=0.0)
    assert b.try_take(60, 3600.0) == 0.0
    assert b.try_take(1, 3600.0) == pytest.approx(1.0)
    with pytest.raises(InvalidArgument):
        TokenBucket(rate_per_minute=0, now=0.0)
