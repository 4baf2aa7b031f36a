"""The vault's plain data: licences, lifecycle events, consents, uses (no SQL, no gRPC).

A :class:`Licence` is one *version* of a licence: its GB/T 36904 identifier,
its GB/T 36903 metadata (the signed payload, kept verbatim in ``payload``),
its stored documents (blob digests of the JWS and, when rendered, the PDF),
its position in the issuer's status list and its current status.

Statuses and their IETF Token Status List values (2 bits):

========== ===== =====================================================
status     value meaning
========== ===== =====================================================
valid      0x00  in force (unless its validity period has ended: expired)
revoked    0x01  withdrawn by the issuer (INVALID), with a reason; final
suspended  0x02  temporarily not in force (SUSPENDED); resume makes it valid
superseded 0x03  an amendment replaced this version (application-specific)
========== ===== =====================================================

``expired`` (validity period over) is derived at read time by
:meth:`Licence.effective_status` and stored by the expiry job
(:mod:`licence_vault.lifecycle`, ``zhida licence expire``) with a signed
``expire`` event. It has no status-list value of its own: the list keeps IETF
Token Status List semantics (VALID / INVALID / SUSPENDED, plus the
application value for superseded), and an expired licence's entry stays
VALID (0) — the end of its validity is in the signed payload
(``有效期截止日期``), which every verifier checks, online or offline, whether
or not it has the list. So a licence that lapses changes nothing in the
signed list, and a verifier never needs a fresh list to learn it.

Example::

    >>> LicenceStatus.REVOKED.list_value
    1
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from licence_vault.holder import HolderCodeType
from licence_vault.identifier import LicenceId

__all__ = [
    "Consent",
    "FetchBasis",
    "IssueRequest",
    "Licence",
    "LicenceEvent",
    "LicenceStatus",
    "UseRecord",
]


class LicenceStatus(enum.StrEnum):
    VALID = "valid"
    REVOKED = "revoked"
    SUSPENDED = "suspended"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"  # validity period over: derived on read, stored by the expiry job

    @property
    def list_value(self) -> int:
        """The 2-bit Token Status List value."""
        return _LIST_VALUES[self]

    @property
    def label(self) -> str:
        return _LABELS[self]

    @classmethod
    def from_list_value(cls, value: int) -> LicenceStatus:
        for status, v in _LIST_VALUES.items():
            if v == value and status is not LicenceStatus.EXPIRED:
                return status
        raise ValueError(f"status value {value} is not used by zhida")


_LIST_VALUES = {
    LicenceStatus.VALID: 0,
    LicenceStatus.REVOKED: 1,
    LicenceStatus.SUSPENDED: 2,
    LicenceStatus.SUPERSEDED: 3,
    LicenceStatus.EXPIRED: 0,
}
_LABELS = {
    LicenceStatus.VALID: "有效",
    LicenceStatus.REVOKED: "已注销",
    LicenceStatus.SUSPENDED: "已暂停",
    LicenceStatus.SUPERSEDED: "已变更（旧版本）",
    LicenceStatus.EXPIRED: "已过期",
}


@dataclass(frozen=True, slots=True)
class IssueRequest:
    """What an issuing department asks the vault to issue.

    ``request_id`` makes the issue idempotent per issuer: retrying with the
    same id returns the licence of the first attempt.
    """

    request_id: str
    type_code: str
    holder_code: str
    holder_name: str
    data: dict[str, str]
    holder_code_type: HolderCodeType | None = None  # default: the type's holder kind
    valid_from: date | None = None  # default: the issue date
    valid_until: date | None = None  # default: the type's validity rule
    issue_date: date | None = None  # default: today (historical imports give theirs)
    matter_code: str = ""  # the 事项 the licence was issued under
    matter_name: str = ""
    extension: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Licence:
    """One version of a licence, as stored."""

    licence_id: str
    type_code: str
    type_name: str
    issuer_code: str
    issuer_name: str
    serial: int
    version: int
    holder_code: str
    holder_code_type: HolderCodeType
    holder_name: str
    status: LicenceStatus
    status_idx: int
    status_uri: str
    issued_at: datetime
    valid_from: date
    valid_until: date | None
    jws_digest: str
    pdf_digest: str | None
    payload: dict[str, Any]
    status_reason: str = ""
    status_changed_at: datetime | None = None

    @property
    def ident(self) -> LicenceId:
        return LicenceId(self.type_code, self.issuer_code, self.serial, self.version)

    @property
    def lineage(self) -> str:
        return self.ident.lineage

    @property
    def data(self) -> dict[str, str]:
        face: dict[str, str] = self.payload.get("照面信息", {})
        return face

    def effective_status(self, today: date) -> LicenceStatus:
        """The stored status, or EXPIRED for a valid licence past its validity (before
        the expiry job has stored it). A suspended one stays suspended: see
        :mod:`licence_vault.lifecycle`."""
        expired = self.valid_until is not None and today > self.valid_until
        if self.status is LicenceStatus.VALID and expired:
            return LicenceStatus.EXPIRED
        return self.status


@dataclass(frozen=True, slots=True)
class LicenceEvent:
    """One entry of a licence's history: issue, amend, suspend, resume, revoke, expire.

    ``record`` is the issuer's signed JWS of the change (the issue event's
    record is the licence JWS itself, referenced by digest).
    """

    licence_id: str
    lineage: str
    action: str  # issue | amend | suspend | resume | revoke | expire
    at: datetime
    actor_org: str
    actor_subject: str
    reason: str = ""
    record: str = ""
    new_licence_id: str = ""  # amend: the version that replaced this one


class FetchBasis(enum.StrEnum):
    CONSENT = "consent"
    LEGAL_BASIS = "legal_basis"


@dataclass(frozen=True, slots=True)
class Consent:
    """A holder's consent that ``organisation`` use licences of ``type_codes`` for a matter."""

    consent_id: str
    holder_code: str
    organisation: str
    type_codes: tuple[str, ...]
    matter_code: str
    valid_until: datetime
    created_at: datetime
    withdrawn_at: datetime | None = None
    withdraw_reason: str = ""


@dataclass(frozen=True, slots=True)
class UseRecord:
    """One use of a licence: an annotated copy (加注件) made for a requester.

    The annotation says who made the copy, when, for which matter (the
    watermark text "仅供 <matter> 使用"), until when it may be used, and
    under which consent or legal basis.
    """

    annotation_id: str
    licence_id: str
    holder_code: str
    requester_org: str
    requester_subject: str
    matter_code: str
    matter_name: str
    basis: FetchBasis
    consent_id: str
    legal_basis: str
    used_at: datetime
    use_until: datetime
    watermark: str
    status_at_use: LicenceStatus = LicenceStatus.VALID
    pdf_digest: str | None = None
