"""Consent, fetch (with consent or legal basis), annotated copies, the holder's view."""

from __future__ import annotations

from datetime import timedelta

import pytest

from licence_vault.model import FetchBasis, LicenceStatus
from licence_vault.types import BUSINESS_LICENCE, DRUG_BUSINESS_PERMIT, FOOD_BUSINESS_PERMIT
from licence_vault.vault import Actor, Vault
from tests.unit.licence_vault.conftest import Clock
from tests.unit.licence_vault.support import (
    OTHER_APP,
    RESTAURANT,
    business_licence,
    food_permit,
    tamper_stored_jws,
)
from zhida.db import Database
from zhida.errors import IntegrityError, InvalidArgument, PermissionDenied

MATTER = "YJS-KBCYD"  # 开办餐饮店
TYPES = [BUSINESS_LICENCE.code, FOOD_BUSINESS_PERMIT.code]


def _restaurant(vault: Vault, issuer: Actor) -> tuple[str, str]:
    a = vault.issue(issuer, business_licence()).licence.licence_id
    b = vault.issue(issuer, food_permit()).licence.licence_id
    return a, b


def test_fetch_with_consent_returns_valid_licences_and_records_each_use(
    vault: Vault, issuer: Actor, portal: Actor, clock: Clock
) -> None:
    bl, fp = _restaurant(vault, issuer)
    consent = vault.grant_consent(
        RESTAURANT, portal.organisation, TYPES, MATTER, clock.now + timedelta(days=7)
    )
    result = vault.fetch(portal, RESTAURANT, TYPES, MATTER, consent.consent_id)
    assert result.basis is FetchBasis.CONSENT
    assert result.consent == consent
    assert {i.licence.licence_id for i in result.items} == {bl, fp}
    for item in result.items:
        assert item.status is LicenceStatus.VALID
        assert item.jws is not None
        assert vault.verify_jws(item.jws).valid
        assert item.use.watermark.startswith("仅供开办餐饮店使用 " + portal.organisation)
        assert item.use.requester_org == portal.organisation
        assert item.use.consent_id == consent.consent_id
        assert item.use.use_until <= consent.valid_until
    uses = vault.holder_uses(RESTAURANT)
    assert {u.licence_id for _c, u in uses} == {bl, fp}
    assert all(u.matter_name == "开办餐饮店" and u.basis is FetchBasis.CONSENT for _c, u in uses)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("none", "CONSENT_REQUIRED"),
        ("unknown", "CONSENT_NOT_FOUND"),
        ("other_holder", "CONSENT_NOT_FOUND"),
        ("expired", "CONSENT_EXPIRED"),
        ("withdrawn", "CONSENT_WITHDRAWN"),
        ("wrong_org", "CONSENT_WRONG_ORGANISATION"),
        ("wrong_type", "CONSENT_WRONG_TYPE"),
        ("type_not_for_matter", "TYPE_NOT_FOR_MATTER"),
    ],
)
def test_fetch_refusals(
    vault: Vault, issuer: Actor, portal: Actor, clock: Clock, case: str, reason: str
) -> None:
    _restaurant(vault, issuer)
    until = clock.now + timedelta(days=7)
    consent_types = [BUSINESS_LICENCE.code] if case == "wrong_type" else TYPES
    consent = vault.grant_consent(RESTAURANT, portal.organisation, consent_types, MATTER, until)
    consent_id, actor, types = consent.consent_id, portal, TYPES
    if case == "none":
        consent_id = ""
    elif case == "unknown":
        consent_id = "0" * 32
    elif case == "other_holder":
        other = vault.grant_consent("91420100MA4L0T3K5B", portal.organisation, TYPES, MATTER, until)
        consent_id = other.consent_id
    elif case == "expired":
        clock.advance(days=8)
    elif case == "withdrawn":
        vault.withdraw_consent(RESTAURANT, consent_id, "不再办理")
    elif case == "wrong_org":
        actor = Actor(OTHER_APP, "someone-else")
    elif case == "type_not_for_matter":
        types = [DRUG_BUSINESS_PERMIT.code]
    with pytest.raises(PermissionDenied) as err:
        vault.fetch(actor, RESTAURANT, types, MATTER, consent_id)
    assert err.value.reason == reason
    assert vault.holder_uses(RESTAURANT) == []  # nothing released, nothing recorded as use


def test_fetch_of_a_revoked_licence_returns_only_its_status(
    vault: Vault, issuer: Actor, portal: Actor, clock: Clock
) -> None:
    bl, fp = _restaurant(vault, issuer)
    vault.revoke(issuer, fp, "依法吊销")
    consent = vault.grant_consent(
        RESTAURANT, portal.organisation, TYPES, MATTER, clock.now + timedelta(days=1)
    )
    result = vault.fetch(portal, RESTAURANT, TYPES, MATTER, consent.consent_id)
    by_id = {i.licence.licence_id: i for i in result.items}
    assert by_id[fp].status is LicenceStatus.REVOKED
    assert by_id[fp].jws is None
    assert by_id[fp].pdf is None
    assert by_id[fp].use.status_at_use is LicenceStatus.REVOKED
    assert by_id[bl].status is LicenceStatus.VALID
    assert by_id[bl].jws is not None


def test_legal_basis_fetch_needs_no_consent_and_is_recorded_as_such(
    vault: Vault, issuer: Actor
) -> None:
    _restaurant(vault, issuer)
    court = Actor(OTHER_APP, "bankruptcy-administrator")
    result = vault.fetch(court, RESTAURANT, [BUSINESS_LICENCE.code], "YJS-QYPCHC")
    assert result.basis is FetchBasis.LEGAL_BASIS
    assert result.consent is None
    (item,) = result.items
    assert item.use.basis is FetchBasis.LEGAL_BASIS
    assert "企业破产法" in item.use.legal_basis
    assert item.use.watermark.startswith("仅供企业破产信息核查使用")


def test_consent_validation_and_withdrawal(vault: Vault, portal: Actor, clock: Clock) -> None:
    until = clock.now + timedelta(days=1)
    with pytest.raises(InvalidArgument) as err:
        vault.grant_consent(RESTAURANT, portal.organisation, TYPES, MATTER, clock.now)
    assert err.value.reason == "INVALID_CONSENT_PERIOD"
    with pytest.raises(InvalidArgument) as err:
        vault.grant_consent(RESTAURANT, portal.organisation, [], MATTER, until)
    with pytest.raises(InvalidArgument) as err:
        vault.grant_consent(RESTAURANT, "123", TYPES, MATTER, until)
    assert err.value.reason == "INVALID_USCC"
    with pytest.raises(InvalidArgument) as err:
        vault.grant_consent(RESTAURANT, portal.organisation, TYPES, "YJS-NOPE", until)
    assert err.value.reason == "UNKNOWN_MATTER"
    consent = vault.grant_consent(RESTAURANT, portal.organisation, TYPES, MATTER, until)
    assert vault.consents_of(RESTAURANT) == [consent]
    withdrawn = vault.withdraw_consent(RESTAURANT, consent.consent_id, "不办了")
    assert withdrawn.withdrawn_at is not None
    assert withdrawn.withdraw_reason == "不办了"
    assert vault.withdraw_consent(RESTAURANT, consent.consent_id, "again") == withdrawn


def test_fetch_refuses_when_a_stored_document_was_tampered_with(
    vault: Vault, issuer: Actor, portal: Actor, clock: Clock, sqlite_db: Database
) -> None:
    bl, _fp = _restaurant(vault, issuer)
    tamper_stored_jws(sqlite_db, bl)
    consent = vault.grant_consent(
        RESTAURANT, portal.organisation, TYPES, MATTER, clock.now + timedelta(days=1)
    )
    with pytest.raises(IntegrityError):
        vault.fetch(portal, RESTAURANT, TYPES, MATTER, consent.consent_id)
    assert vault.holder_uses(RESTAURANT) == []


def test_holder_sees_own_licences_and_uses_newest_first(
    vault: Vault, issuer: Actor, portal: Actor, clock: Clock
) -> None:
    bl, fp = _restaurant(vault, issuer)
    assert {lic.licence_id for lic in vault.holder_licences(RESTAURANT)} == {bl, fp}
    consent = vault.grant_consent(
        RESTAURANT, portal.organisation, TYPES, MATTER, clock.now + timedelta(days=1)
    )
    vault.fetch(portal, RESTAURANT, [BUSINESS_LICENCE.code], MATTER, consent.consent_id)
    clock.advance(minutes=1)
    vault.fetch(portal, RESTAURANT, [FOOD_BUSINESS_PERMIT.code], MATTER, consent.consent_id)
    uses = vault.holder_uses(RESTAURANT)
    assert [u.licence_id for _c, u in uses] == [fp, bl]
    older = vault.holder_uses(RESTAURANT, before=uses[0][0])
    assert [u.licence_id for _c, u in older] == [bl]


def test_fetch_after_the_end_date_returns_the_licence_expired_without_its_document(
    vault: Vault, issuer: Actor, portal: Actor, clock: Clock
) -> None:
    tomorrow = vault.today() + timedelta(days=1)
    fp = vault.issue(issuer, food_permit(valid_until=tomorrow)).licence.licence_id
    bl = vault.issue(issuer, business_licence()).licence.licence_id  # 长期
    clock.advance(days=2)
    consent = vault.grant_consent(
        RESTAURANT, portal.organisation, TYPES, MATTER, clock.now + timedelta(days=1)
    )
    for _run in ("derived", "stored"):  # before and after the expiry job stores it
        result = vault.fetch(portal, RESTAURANT, TYPES, MATTER, consent.consent_id)
        by_id = {i.licence.licence_id: i for i in result.items}
        assert by_id[fp].status is LicenceStatus.EXPIRED
        assert (by_id[fp].jws, by_id[fp].pdf) == (None, None)
        assert by_id[fp].use.status_at_use is LicenceStatus.EXPIRED
        assert by_id[bl].status is LicenceStatus.VALID
        assert by_id[bl].jws is not None
        assert vault.expire_due().failed == 0
    assert vault.get(fp).status is LicenceStatus.EXPIRED
