"""Amend, suspend, resume, revoke, expire: ownership, transitions, signed history, status lists."""

from __future__ import annotations

from datetime import timedelta

import pytest

from licence_vault.days import licence_day
from licence_vault.model import LicenceStatus
from licence_vault.signer import KeyStoreSigner
from licence_vault.status_list import StatusListCache, verify_status_list_token
from licence_vault.vault import Actor, Vault
from licence_vault.verify import LicenceVerifier, status_list_source
from signing.jws import JwsVerifier
from tests.unit.licence_vault.conftest import STATUS_BASE, Clock
from tests.unit.licence_vault.support import JIANGAN_SAMR, WUHAN_SAMR, business_licence, food_permit
from zhida.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

OTHER_DEPT = Actor(WUHAN_SAMR, "clerk-zhao")


def test_amend_makes_a_new_version_and_supersedes_the_old(
    vault: Vault, issuer: Actor, signer: KeyStoreSigner
) -> None:
    v1 = vault.issue(issuer, food_permit()).licence
    amended = vault.amend(
        issuer, v1.licence_id, changes={"经营项目": "热食类食品制售"}, reason="经营项目变更"
    )
    v2 = amended.licence
    assert v2.version == 2
    assert v2.serial == v1.serial
    assert v2.lineage == v1.lineage
    assert v2.licence_id != v1.licence_id
    assert v2.status_idx != v1.status_idx
    assert v2.data["经营项目"] == "热食类食品制售"
    assert v2.payload["前一版本证照标识"] == v1.licence_id
    assert vault.get(v1.licence_id).status is LicenceStatus.SUPERSEDED
    # the old version still verifies cryptographically, and says it is superseded
    old = vault.verify_jws(vault.read_jws(vault.get(v1.licence_id)))
    assert not old.valid
    assert old.reason == "SUPERSEDED"
    assert old.status is LicenceStatus.SUPERSEDED
    assert vault.verify_jws(amended.jws).valid
    versions, events = vault.history(v2.licence_id)
    assert [v.version for v in versions] == [1, 2]
    assert [(e.action, e.licence_id) for e in events] == [
        ("issue", v1.licence_id), ("amend", v1.licence_id), ("issue", v2.licence_id),
    ]  # fmt: skip
    # the amend record is signed by the issuer
    record = JwsVerifier(signer.trust_bundle(), signer.seal_registry()).verify(events[1].record)
    assert record.payload["证照变更记录"]["新版本证照标识"] == v2.licence_id
    # a superseded version cannot be amended again; the holder sees only the current one
    with pytest.raises(FailedPrecondition):
        vault.amend(issuer, v1.licence_id, changes={"经营项目": "x"}, reason="again")
    assert [lic.licence_id for lic in vault.holder_licences(v1.holder_code)] == [v2.licence_id]


def test_amend_checks_the_new_data(vault: Vault, issuer: Actor) -> None:
    v1 = vault.issue(issuer, food_permit()).licence
    with pytest.raises(InvalidArgument) as err:
        vault.amend(issuer, v1.licence_id, changes={"主体业态": "火锅"}, reason="x")
    assert err.value.reason == "INVALID_LICENCE_DATA"
    with pytest.raises(InvalidArgument) as err:
        vault.amend(issuer, v1.licence_id, changes={}, reason="x")
    assert err.value.reason == "NOTHING_TO_AMEND"
    assert vault.get(v1.licence_id).status is LicenceStatus.VALID


def test_suspend_resume_revoke(vault: Vault, issuer: Actor) -> None:
    lic = vault.issue(issuer, business_licence()).licence
    assert vault.suspend(issuer, lic.licence_id, "停业整顿").status is LicenceStatus.SUSPENDED
    with pytest.raises(FailedPrecondition) as err:
        vault.suspend(issuer, lic.licence_id, "again")
    assert err.value.reason == "INVALID_STATUS_TRANSITION"
    assert vault.resume(issuer, lic.licence_id, "整顿完成").status is LicenceStatus.VALID
    revoked = vault.revoke(issuer, lic.licence_id, "依法吊销")
    assert revoked.status is LicenceStatus.REVOKED
    assert revoked.status_reason == "依法吊销"
    for change in (vault.resume, vault.suspend, vault.revoke):
        with pytest.raises(FailedPrecondition):
            change(issuer, lic.licence_id, "no way back")
    _versions, events = vault.history(lic.licence_id)
    assert [e.action for e in events] == ["issue", "suspend", "resume", "revoke"]
    assert all(e.record for e in events)
    assert events[-1].reason == "依法吊销"


def test_only_the_issuing_department_may_change_a_licence(vault: Vault, issuer: Actor) -> None:
    lic = vault.issue(issuer, business_licence()).licence
    for change in (vault.suspend, vault.revoke):
        with pytest.raises(PermissionDenied) as err:
            change(OTHER_DEPT, lic.licence_id, "不是我发的")
        assert err.value.reason == "NOT_ISSUER"
    with pytest.raises(PermissionDenied):
        vault.amend(OTHER_DEPT, lic.licence_id, changes={"法定代表人": "王五"}, reason="x")
    assert vault.get(lic.licence_id).status is LicenceStatus.VALID


def test_unknown_licence_and_missing_reason(vault: Vault, issuer: Actor) -> None:
    lic = vault.issue(issuer, business_licence()).licence
    with pytest.raises(InvalidArgument):
        vault.revoke(issuer, lic.licence_id, "  ")
    missing = lic.ident.next_version()
    with pytest.raises(NotFound):
        vault.revoke(issuer, str(missing), "x")


def test_expiry_by_date(vault: Vault, issuer: Actor) -> None:
    lic = vault.issue(issuer, food_permit()).licence
    token = vault.read_jws(lic)
    assert vault.verify_jws(token).valid
    assert lic.valid_until is not None
    day_after = lic.valid_until + timedelta(days=1)
    result = vault.verifier.verify(token, today=day_after)
    assert not result.valid
    assert result.reason == "EXPIRED"
    assert result.status is LicenceStatus.EXPIRED
    assert vault.get(lic.licence_id).effective_status(day_after) is LicenceStatus.EXPIRED
    early = vault.verifier.verify(token, today=lic.valid_from - timedelta(days=1))
    assert early.reason == "NOT_YET_VALID"


def test_status_list_follows_every_change(
    vault: Vault, issuer: Actor, signer: KeyStoreSigner
) -> None:
    a = vault.issue(issuer, business_licence()).licence
    b = vault.issue(issuer, food_permit()).licence
    uri = f"{STATUS_BASE}/{JIANGAN_SAMR}"
    first = vault.status_list_token(JIANGAN_SAMR)
    assert vault.status_list_token(JIANGAN_SAMR) == first  # cached while nothing changed
    lst = verify_status_list_token(
        first, signer.chain_verifier(), uri=uri, issuer_code=JIANGAN_SAMR
    )
    assert (lst.status(a.status_idx), lst.status(b.status_idx)) == (0, 0)
    vault.revoke(issuer, a.licence_id, "吊销")
    vault.suspend(issuer, b.licence_id, "整顿")
    second = vault.status_list_token(JIANGAN_SAMR)
    assert second != first
    lst = verify_status_list_token(second, signer.chain_verifier(), uri=uri)
    assert (lst.status(a.status_idx), lst.status(b.status_idx)) == (1, 2)
    # a verifier that only has the list (offline) reaches the same verdicts
    fetched: list[str] = []

    def fetch(u: str) -> str:
        fetched.append(u)
        return vault.status_list_token(vault.issuer_for_uri(u))

    cache = StatusListCache(fetch, signer.chain_verifier())
    offline = LicenceVerifier(
        JwsVerifier(signer.trust_bundle(), signer.seal_registry()), status_list_source(cache)
    )
    assert offline.verify(vault.read_jws(a)).reason == "REVOKED"
    assert offline.verify(vault.read_jws(b)).reason == "SUSPENDED"
    assert fetched == [uri]  # one fetch, then the cache
    with pytest.raises(NotFound):
        vault.status_list_token(WUHAN_SAMR)


def test_status_list_signed_by_another_department_is_refused(
    vault: Vault, issuer: Actor, signer: KeyStoreSigner
) -> None:
    vault.issue(issuer, business_licence())
    uri = f"{STATUS_BASE}/{JIANGAN_SAMR}"
    from licence_vault.status_list import StatusList

    forged = signer.sign_status_list(WUHAN_SAMR, uri, StatusList(16384))
    from signing.errors import VerificationError

    with pytest.raises(VerificationError):
        verify_status_list_token(forged, signer.chain_verifier(), uri=uri, issuer_code=JIANGAN_SAMR)
    tampered = forged[:-4] + ("AAAA" if not forged.endswith("AAAA") else "BBBB")
    with pytest.raises(VerificationError):
        verify_status_list_token(tampered, signer.chain_verifier(), uri=uri)


def _lapsing(vault: Vault, issuer: Actor, clock: Clock, request_id: str) -> str:
    """A food permit valid until tomorrow (the vault's day); the clock is not moved."""
    tomorrow = licence_day(clock.now) + timedelta(days=1)
    return vault.issue(issuer, food_permit(request_id, valid_until=tomorrow)).licence.licence_id


def test_expiry_job_stores_expired_with_a_signed_event_and_is_idempotent(
    vault: Vault, issuer: Actor, signer: KeyStoreSigner, clock: Clock
) -> None:
    lapsing = _lapsing(vault, issuer, clock, "fp-lapsing")
    lasting = vault.issue(issuer, business_licence()).licence.licence_id  # 长期: never expires
    assert vault.expire_due().due == 0  # nothing has ended yet
    list_before = vault.status_list_token(JIANGAN_SAMR)
    clock.advance(days=2)
    # before the job runs, reads already say expired (derived from the dates)
    assert vault.get(lapsing).effective_status(vault.today()) is LicenceStatus.EXPIRED
    progress: list[int] = []
    report = vault.expire_due(on_progress=lambda r: progress.append(r.expired))
    assert (report.due, report.expired, report.skipped, report.failed) == (1, 1, 0, 0)
    assert progress == [1]
    stored = vault.get(lapsing)
    assert stored.status is LicenceStatus.EXPIRED
    assert stored.status_changed_at == clock.now
    assert vault.get(lasting).status is LicenceStatus.VALID
    _versions, events = vault.history(lapsing)
    assert [e.action for e in events] == ["issue", "expire"]
    verifier = JwsVerifier(signer.trust_bundle(), signer.seal_registry())
    record = verifier.verify(events[1].record, now=clock.now)
    change = record.payload["证照变更记录"]
    assert (change["证照标识"], change["操作"]) == (lapsing, "expire")
    assert change["操作机构代码"] == JIANGAN_SAMR
    assert vault.verify_id(lapsing)[1].reason == "EXPIRED"
    # expiry has no status-list value: the signed list is unchanged (IETF semantics)
    assert vault.status_list_token(JIANGAN_SAMR) == list_before
    again = vault.expire_due()
    assert (again.due, again.expired) == (0, 0)
    assert [e.action for e in vault.history(lapsing)[1]] == ["issue", "expire"]


def test_a_lapsed_licence_can_only_be_revoked(vault: Vault, issuer: Actor, clock: Clock) -> None:
    stored = _lapsing(vault, issuer, clock, "fp-stored")
    suspended = _lapsing(vault, issuer, clock, "fp-suspended")
    vault.suspend(issuer, suspended, "停业整顿")
    clock.advance(days=2)
    assert vault.expire_due().expired == 1  # the suspension stays (and in the status list)
    assert vault.get(suspended).status is LicenceStatus.SUSPENDED
    today = vault.today()
    historical = food_permit(
        "fp-derived", issue_date=today - timedelta(days=30), valid_until=today - timedelta(days=1)
    )
    derived = vault.issue(issuer, historical).licence.licence_id  # expired, not yet stored
    assert vault.get(derived).status is LicenceStatus.VALID
    for licence_id in (stored, derived):
        with pytest.raises(FailedPrecondition) as err:
            vault.amend(issuer, licence_id, changes={"经营项目": "热食类食品制售"}, reason="x")
        assert err.value.reason == "LICENCE_EXPIRED"
        assert err.value.metadata["status"] == "expired"
        with pytest.raises(FailedPrecondition) as err:
            vault.suspend(issuer, licence_id, "整顿")
        assert err.value.reason == "LICENCE_EXPIRED"
    with pytest.raises(FailedPrecondition) as err:
        vault.resume(issuer, suspended, "整顿完成")
    assert err.value.reason == "LICENCE_EXPIRED"
    assert [e.action for e in vault.history(derived)[1]] == ["issue"]  # nothing was stored
    # 行政许可法 §70(一): the issuer still 注销s a licence that lapsed
    assert vault.revoke(issuer, stored, "有效期届满未延续").status is LicenceStatus.REVOKED
    assert vault.revoke(issuer, suspended, "有效期届满").status is LicenceStatus.REVOKED
