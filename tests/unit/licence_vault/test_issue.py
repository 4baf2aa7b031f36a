"""Issuing: identifiers, metadata, signatures, blobs, idempotency and every bad input."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from licence_vault.holder import HolderCodeType
from licence_vault.identifier import LicenceId
from licence_vault.model import LicenceStatus
from licence_vault.signer import NO_VALID_SEAL, KeyStoreSigner
from licence_vault.status_list import parse_status_claim
from licence_vault.types import BUSINESS_LICENCE, FOOD_BUSINESS_PERMIT
from licence_vault.vault import Actor, Vault
from signing.jws import JwsVerifier
from tests.unit.licence_vault.conftest import STATUS_BASE, Clock
from tests.unit.licence_vault.support import (
    JIANGAN_SAMR,
    RESTAURANT,
    UNSEALED_ISSUER,
    birth_certificate,
    business_licence,
    food_permit,
    tamper_stored_jws,
)
from zhida.blobstore import FilesystemBlobStore
from zhida.db import Database
from zhida.errors import AlreadyExists, FailedPrecondition, IntegrityError, InvalidArgument


def test_issue_signs_stores_and_describes_the_licence(
    vault: Vault, issuer: Actor, signer: KeyStoreSigner, blobs: FilesystemBlobStore
) -> None:
    result = vault.issue(issuer, food_permit())
    lic = result.licence
    assert result.created
    ident = LicenceId.parse(lic.licence_id)
    assert (ident.type_code, ident.issuer_code, ident.serial, ident.version) == (
        FOOD_BUSINESS_PERMIT.code, JIANGAN_SAMR, 1, 1,
    )  # fmt: skip
    assert lic.status is LicenceStatus.VALID
    assert lic.valid_until == lic.valid_from.replace(year=lic.valid_from.year + 5) - timedelta(1)
    # the JWS is stored with the licence (not as a blob), under its hash, and verifies
    # with the department's seal
    assert vault.store.documents([lic]) == {lic.licence_id: result.jws}
    assert vault.read_jws(lic) == result.jws
    assert not blobs.exists(lic.jws_digest)
    verified = JwsVerifier(signer.trust_bundle(), signer.seal_registry()).verify(result.jws)
    assert verified.department.uscc == JIANGAN_SAMR
    assert verified.seal.name == "武汉市江岸区市场监督管理局电子证照专用章"
    p = verified.payload
    assert p == lic.payload
    # GB/T 36903 metadata
    assert p["证照标识"] == lic.licence_id
    assert p["证照类型名称"] == "食品经营许可证"
    assert p["证照类型代码"] == FOOD_BUSINESS_PERMIT.code
    assert p["证照编号"] == "JY24201020012345"
    assert p["颁发机构"] == "武汉市江岸区市场监督管理局"
    assert p["颁发机构代码"] == JIANGAN_SAMR
    assert p["持证主体代码"] == RESTAURANT
    assert p["持证主体代码类型"] == "001"
    assert p["版本号"] == "001"
    assert p["行政区划代码"] == "420102"
    assert parse_status_claim(p) == (lic.status_idx, f"{STATUS_BASE}/{JIANGAN_SAMR}")
    # history starts with the issue
    versions, events = vault.history(lic.licence_id)
    assert [v.licence_id for v in versions] == [lic.licence_id]
    assert [e.action for e in events] == ["issue"]


def test_serials_count_per_type_and_status_indices_per_issuer(vault: Vault, issuer: Actor) -> None:
    a = vault.issue(issuer, business_licence("a")).licence
    b = vault.issue(issuer, food_permit("b")).licence
    c = vault.issue(issuer, business_licence("c", holder="91420100MA4L0T3K5B")).licence
    assert (a.serial, b.serial, c.serial) == (1, 1, 2)
    assert len({a.status_idx, b.status_idx, c.status_idx}) == 3


def test_a_retried_issue_returns_the_same_licence(vault: Vault, issuer: Actor) -> None:
    first = vault.issue(issuer, business_licence("req-7"))
    again = vault.issue(issuer, business_licence("req-7"))
    assert not again.created
    assert again.licence.licence_id == first.licence.licence_id
    assert again.jws == first.jws
    assert len(vault.holder_licences(RESTAURANT)) == 1
    # the same id with different content is refused
    with pytest.raises(AlreadyExists) as err:
        vault.issue(issuer, business_licence("req-7", data={"法定代表人": "李四"}))
    assert err.value.reason == "REQUEST_ID_REUSED"
    # request ids are per issuer: another department may use the same id
    other = Actor("114201000000301708", "clerk-9")
    assert vault.issue(other, business_licence("req-7")).created


def test_batch_issue_reports_each_row(vault: Vault, issuer: Actor) -> None:
    bad = replace(food_permit("row-2"), holder_code="91420102MA4KXY128A")
    items = vault.issue_batch(
        issuer, [business_licence("row-1"), bad, food_permit("row-3"), business_licence("row-1")]
    )
    assert [i.error is None for i in items] == [True, False, True, True]
    assert items[1].error is not None
    assert items[1].error.reason == "INVALID_HOLDER_ID"
    assert items[1].error.violations[0].field == "requests[1].holder_code"
    assert items[3].result is not None
    assert items[0].result is not None
    assert items[3].result.licence.licence_id == items[0].result.licence.licence_id
    # the whole batch again: nothing new
    again = vault.issue_batch(issuer, [business_licence("row-1"), food_permit("row-3")])
    assert [i.result.created for i in again if i.result] == [False, False]


@pytest.mark.parametrize(
    ("request_", "reason", "field"),
    [
        (replace(business_licence(), type_code="111000000000170137999"), "UNKNOWN_LICENCE_TYPE",
         "type_code"),
        (replace(business_licence(), type_code="bogus"), "UNKNOWN_LICENCE_TYPE", "type_code"),
        (business_licence(data={"名称": ""}), "INVALID_LICENCE_DATA", "data.名称"),
        (business_licence(data={"成立日期": "2024-02-30"}), "INVALID_LICENCE_DATA",
         "data.成立日期"),
        (business_licence(data={"类型": "公司"}), "INVALID_LICENCE_DATA", "data.类型"),
        (business_licence(data={"统一社会信用代码": "91420100MA4L0T3K5B"}),
         "INVALID_LICENCE_DATA", "data.统一社会信用代码"),  # not the holder
        (food_permit(data={"许可证编号": "JY1"}), "INVALID_LICENCE_DATA", "data.许可证编号"),
        (replace(business_licence(), holder_code="91420102MA4KXY1280"), "INVALID_HOLDER_ID",
         "holder_code"),
        (replace(birth_certificate(), holder_code="420102202401150046"), "INVALID_HOLDER_ID",
         "holder_code"),
        (replace(business_licence(), holder_code_type=HolderCodeType.RESIDENT_ID),
         "HOLDER_TYPE_MISMATCH", "holder_code_type"),
        (replace(business_licence(), holder_name=" "), "INVALID_ARGUMENT", "holder_name"),
        (replace(business_licence(), request_id=""), "INVALID_REQUEST_ID", "request_id"),
        (replace(food_permit(), valid_until=date(2000, 1, 1)), "INVALID_VALIDITY", "valid_until"),
        (replace(food_permit(), valid_from=date(2024, 1, 1), valid_until=date(2030, 1, 1)),
         "INVALID_VALIDITY", "valid_until"),  # more than five years
        (replace(business_licence(), issue_date=date(2999, 1, 1)), "INVALID_VALIDITY",
         "issue_date"),
    ],
)  # fmt: skip
def test_bad_issue_requests(
    vault: Vault, issuer: Actor, request_: object, reason: str, field: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        vault.issue(issuer, request_)  # type: ignore[arg-type]
    assert err.value.reason == reason
    assert field in {v.field for v in err.value.violations}
    assert vault.store.status_list_state(JIANGAN_SAMR).next_index == 0  # nothing reserved


def test_an_issuer_without_a_seal_cannot_issue(vault: Vault) -> None:
    with pytest.raises(FailedPrecondition) as err:
        vault.issue(Actor(UNSEALED_ISSUER, "clerk"), business_licence())
    assert err.value.reason == NO_VALID_SEAL


def test_an_issuer_whose_seal_expired_or_was_revoked_cannot_issue(
    vault: Vault, issuer: Actor, signer: KeyStoreSigner, clock: Clock
) -> None:
    seal = signer.credentials[JIANGAN_SAMR].seal
    clock.now = seal.valid_until + timedelta(days=1)
    with pytest.raises(FailedPrecondition) as err:
        vault.issue(issuer, business_licence("late"))
    assert err.value.reason == NO_VALID_SEAL
    assert "SEAL_EXPIRED" in err.value.metadata["failure"]
    clock.now = datetime.now(UTC)
    signer.seal_registry().revocations.revoke(seal.seal_id, "印章遗失")
    with pytest.raises(FailedPrecondition) as err:
        vault.issue(issuer, business_licence("revoked"))
    assert err.value.metadata["failure"] == "SEAL_REVOKED"


def test_a_tampered_document_is_detected_on_read_and_never_served(
    vault: Vault, issuer: Actor, sqlite_db: Database
) -> None:
    lic = vault.issue(issuer, business_licence()).licence
    tamper_stored_jws(sqlite_db, lic.licence_id)
    with pytest.raises(IntegrityError) as err:
        vault.read_jws(lic)
    assert err.value.reason == "BLOB_HASH_MISMATCH"
    with pytest.raises(IntegrityError):
        vault.verify_id(lic.licence_id)
    # a retry of the issue must not hand out the tampered document either
    with pytest.raises(IntegrityError):
        vault.issue(issuer, business_licence())


def test_long_term_licence_has_no_end(vault: Vault, issuer: Actor) -> None:
    lic = vault.issue(issuer, business_licence()).licence
    assert lic.valid_until is None
    assert lic.payload["有效期截止日期"] == "长期"
    assert BUSINESS_LICENCE.default_validity_years is None
