"""Licence dates are Beijing calendar days (licence_vault.days), not UTC days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from licence_vault.days import licence_day
from licence_vault.model import LicenceStatus
from licence_vault.types import FOOD_BUSINESS_PERMIT
from licence_vault.vault import Actor, Vault
from tests.unit.licence_vault.conftest import Clock
from tests.unit.licence_vault.support import PORTAL, RESTAURANT, food_permit
from zhida.errors import InvalidArgument

MATTER = "YJS-KBCYD"


def test_the_day_turns_at_midnight_in_beijing() -> None:
    assert licence_day(datetime(2026, 12, 31, 15, 59, 59, tzinfo=UTC)) == date(2026, 12, 31)
    assert licence_day(datetime(2026, 12, 31, 16, 0, tzinfo=UTC)) == date(2027, 1, 1)
    with pytest.raises(ValueError, match="aware"):
        licence_day(datetime(2026, 12, 31, 16, 0))  # naive: which zone is meant is unknown


def _before_beijing_midnight(clock: Clock) -> date:
    """Move the clock to 23:30 Beijing time (15:30 UTC) of a day near now; that day."""
    day = licence_day(clock.now)
    clock.now = datetime(day.year, day.month, day.day, 15, 30, tzinfo=UTC)
    return day


def test_a_licence_lapses_at_midnight_beijing_time(
    vault: Vault, issuer: Actor, clock: Clock
) -> None:
    day = _before_beijing_midnight(clock)
    permit = food_permit("fp-midnight", valid_until=day)
    licence = vault.issue(issuer, permit).licence
    token = vault.read_jws(licence)
    assert vault.today() == day
    assert vault.verify_jws(token).valid  # 23:30 in Beijing: its last day
    assert vault.expire_due().due == 0
    clock.advance(hours=1)  # 00:30 in Beijing, still 16:30 the same day in UTC
    assert clock.now.date() == day  # the UTC day would still say valid
    assert vault.today() == day + timedelta(days=1)
    result = vault.verify_jws(token)
    assert (result.valid, result.reason) == (False, "EXPIRED")
    assert vault.get(licence.licence_id).effective_status(vault.today()) is LicenceStatus.EXPIRED
    assert vault.expire_due().expired == 1


def test_issue_date_and_watermark_carry_the_beijing_day(
    vault: Vault, issuer: Actor, clock: Clock
) -> None:
    day = _before_beijing_midnight(clock)
    clock.advance(hours=1)  # 00:30 the next day in Beijing
    licence = vault.issue(issuer, food_permit("fp-after-midnight")).licence
    assert licence.valid_from == day + timedelta(days=1)  # from its issue date, by default
    with pytest.raises(InvalidArgument) as err:  # the day after Beijing's today
        vault.issue(issuer, food_permit("fp-future", issue_date=day + timedelta(days=2)))
    assert err.value.reason == "INVALID_VALIDITY"
    consent = vault.grant_consent(
        RESTAURANT, PORTAL, [FOOD_BUSINESS_PERMIT.code], MATTER, clock.now + timedelta(hours=1)
    )
    fetched = vault.fetch(
        Actor(PORTAL, "portal"), RESTAURANT, [FOOD_BUSINESS_PERMIT.code], MATTER,
        consent.consent_id,
    )  # fmt: skip
    (item,) = fetched.items
    assert item.use.watermark.endswith((day + timedelta(days=1)).isoformat())
