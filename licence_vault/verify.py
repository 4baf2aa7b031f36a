"""Verifying a licence: signature, seal and chain, content, validity period, current status.

:class:`LicenceVerifier` runs the checks a relying party needs, in order, and
returns a :class:`Verification` (it never raises for a bad licence):

1. the JWS: signature, certificate chain to a trusted root, the seal
   (:class:`signing.jws.JwsVerifier`) — reason: the signing failure
   (``BAD_SIGNATURE``, ``SEAL_REVOKED``, …);
2. the content: a GB/T 36904 identifier with a correct check character, the
   signer's USCC equal to the issuer code in the identifier and the metadata,
   a status reference — ``NOT_A_LICENCE`` / ``ISSUER_MISMATCH``;
3. the validity period against the day — ``NOT_YET_VALID`` / ``EXPIRED``;
4. the current status from a :data:`StatusSource`: the vault's own records, or
   the issuer's signed status list through a
   :class:`~licence_vault.status_list.StatusListCache` (offline verifiers) —
   ``REVOKED`` / ``SUSPENDED`` / ``SUPERSEDED`` / ``STATUS_UNAVAILABLE``.

A sealed licence PDF made by the vault carries the same identifier, validity
period and status reference in its catalog (``/ZhidaLicence``, covered by the
PAdES signature; :func:`pdf_licence_claims`), so an offline verifier checks a
PDF's period and status as it does a JWS's (:meth:`LicenceVerifier.check_claims`).

Example::

    cache = StatusListCache(fetch_token, ChainVerifier(trust))
    verifier = LicenceVerifier(JwsVerifier(trust, seals), status_list_source(cache))
    result = verifier.verify(token)
    print(result.valid, result.reason, result.status)
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from licence_vault.days import licence_day
from licence_vault.identifier import LicenceId
from licence_vault.model import LicenceStatus, UseRecord
from licence_vault.status_list import StatusListCache, parse_status_claim
from signing.jws import JwsVerifier, VerifiedLicence
from signing.pki import DepartmentIdentity
from zhida.errors import ZhidaError

__all__ = [
    "ANNOTATION_CLAIMS",
    "PDF_CLAIMS_ENTRY",
    "PDF_CLAIM_KEYS",
    "LicenceVerifier",
    "StatusSource",
    "Verification",
    "annotation_claims",
    "check_annotation",
    "check_period",
    "pdf_licence_claims",
    "status_list_source",
]

PDF_CLAIMS_ENTRY = "/ZhidaLicence"
"""Catalog entry of a vault-made PDF: ``<< /Claims (JSON of PDF_CLAIM_KEYS of the payload) >>``."""
PDF_CLAIM_KEYS = ("证照标识", "颁发机构代码", "有效期起始日期", "有效期截止日期", "status")
ANNOTATION_CLAIMS = ("加注", "加注件标识", "加注件使用期限")
"""An annotated copy's claims: its watermark, its use record's id, until when it may be used."""
LONG_TERM = "长期"

StatusSource = Callable[[str, Mapping[str, Any]], LicenceStatus]
"""(licence id, payload) -> the licence's current status; may raise ZhidaError."""

_STATUS_REASONS = {
    LicenceStatus.REVOKED: "REVOKED",
    LicenceStatus.SUSPENDED: "SUSPENDED",
    LicenceStatus.SUPERSEDED: "SUPERSEDED",
    LicenceStatus.EXPIRED: "EXPIRED",
}


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome: ``valid`` only when every check passed and the status is valid."""

    valid: bool
    reason: str = ""  # stable code when not valid
    message: str = ""
    licence_id: str = ""
    status: LicenceStatus | None = None
    issuer_code: str = ""
    issuer_name: str = ""
    signed_at: datetime | None = None
    seal_id: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


def status_list_source(cache: StatusListCache) -> StatusSource:
    """Status from the issuer's signed Token Status List (cached per its ttl)."""

    def status(licence_id: str, payload: Mapping[str, Any]) -> LicenceStatus:
        idx, uri = parse_status_claim(payload)
        issuer = LicenceId.parse(licence_id).issuer_code
        value = cache.get(uri, issuer_code=issuer).status(idx)
        return LicenceStatus.from_list_value(value)

    return status


class LicenceVerifier:
    """Verifies licence JWS tokens; thread-safe."""

    def __init__(self, jws: JwsVerifier, status: StatusSource) -> None:
        self.jws = jws
        self.status = status

    def verify(
        self, token: str, *, today: date | None = None, now: datetime | None = None
    ) -> Verification:
        clock = now or datetime.now(UTC)
        day = today or licence_day(clock)
        try:
            verified = self.jws.verify(token, now=clock)
        except ZhidaError as exc:
            return Verification(False, exc.reason, exc.message)
        return self.check_content(verified, day)

    def check_content(self, verified: VerifiedLicence, day: date) -> Verification:
        return self.check_claims(
            verified.payload, verified.department, verified.seal.seal_id, verified.signed_at, day
        )

    def check_claims(
        self,
        payload: dict[str, Any],
        department: DepartmentIdentity,
        seal_id: str,
        signed_at: datetime,
        day: date,
    ) -> Verification:
        """Steps 2-4 on a payload whose signature (JWS or PDF) ``department`` made."""
        base: dict[str, Any] = {
            "issuer_code": department.uscc,
            "issuer_name": department.name,
            "signed_at": signed_at,
            "seal_id": seal_id,
            "payload": payload,
        }
        raw_id = payload.get("证照标识")
        try:
            ident = LicenceId.parse(raw_id if isinstance(raw_id, str) else "")
            parse_status_claim(payload)
        except ZhidaError as exc:
            return Verification(False, "NOT_A_LICENCE", exc.message, **base)
        licence_id = str(ident)
        if not (ident.issuer_code == department.uscc == payload.get("颁发机构代码")):
            return Verification(
                False,
                "ISSUER_MISMATCH",
                f"signed by {department.uscc}, but the licence names issuer {ident.issuer_code}",
                licence_id,
                **base,
            )
        try:
            status = self.status(licence_id, payload)
        except ZhidaError as exc:
            return Verification(
                False,
                "STATUS_UNAVAILABLE",
                f"cannot learn the current status: {exc.message}",
                licence_id,
                **base,
            )
        if status is not LicenceStatus.VALID:
            return Verification(
                False,
                _STATUS_REASONS[status],
                f"the licence is {status.value} ({status.label})",
                licence_id,
                status,
                **base,
            )
        outside = check_period(payload, day)
        if outside is not None:
            reason, message = outside
            shown = {"EXPIRED": LicenceStatus.EXPIRED, "NOT_A_LICENCE": None}.get(reason, status)
            return Verification(False, reason, message, licence_id, shown, **base)
        return Verification(True, "", "valid", licence_id, status, **base)


def check_period(payload: Mapping[str, Any], day: date) -> tuple[str, str] | None:
    """None if ``day`` lies in the payload's validity period, else (reason, message):
    ``NOT_YET_VALID``, ``EXPIRED`` or ``NOT_A_LICENCE`` (no readable period)."""
    try:
        valid_from = date.fromisoformat(str(payload.get("有效期起始日期")))
        until = str(payload.get("有效期截止日期"))
        valid_until = None if until == LONG_TERM else date.fromisoformat(until)
    except ValueError:
        return "NOT_A_LICENCE", "unreadable validity period"
    if day < valid_from:
        return "NOT_YET_VALID", f"valid from {valid_from.isoformat()}"
    if valid_until is not None and day > valid_until:
        return "EXPIRED", f"expired on {valid_until.isoformat()}"
    return None


def annotation_claims(use: UseRecord) -> dict[str, str]:
    """The claims (:data:`ANNOTATION_CLAIMS`) an annotated copy made by ``use`` carries."""
    return {
        "加注": use.watermark,
        "加注件标识": use.annotation_id,
        "加注件使用期限": use.use_until.astimezone(UTC).isoformat(),
    }


def check_annotation(claims: Mapping[str, Any], now: datetime) -> tuple[str, str] | None:
    """None unless ``claims`` are an annotated copy's whose use ended before ``now``:
    then (``ANNOTATION_EXPIRED``, message), as the vault says of that copy online."""
    until_text = claims.get("加注件使用期限")
    if until_text is None:
        return None
    try:
        until = datetime.fromisoformat(str(until_text))
    except ValueError:
        return "ANNOTATION_EXPIRED", "unreadable use-until time of an annotated copy"
    if until.tzinfo is None or now > until:
        return (
            "ANNOTATION_EXPIRED",
            f"this copy ({claims.get('加注', '')}) could be used until {until.isoformat()}",
        )
    return None


def pdf_licence_claims(pdf: bytes) -> dict[str, Any] | None:
    """The licence claims a vault-made PDF carries (:data:`PDF_CLAIMS_ENTRY`), or None.

    Call it only on a PDF whose signature verified and covers the whole file:
    then the catalog read here is the signed one.
    """
    from pyhanko.pdf_utils.reader import PdfFileReader  # pyHanko only when a PDF is read

    try:
        entry = PdfFileReader(io.BytesIO(pdf), strict=False).root.get(PDF_CLAIMS_ENTRY)
        claims = json.loads(str(entry["/Claims"])) if entry is not None else None
    except Exception:  # bytes from anyone: no claims, never a crash
        return None
    return claims if isinstance(claims, dict) else None
