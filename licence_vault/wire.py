"""Protobuf ⇄ domain conversions of ``zhida.licence.v1`` (used by the service and the CLI).

Example::

    message = licence_message(vault.get(licence_id))
    request = draft_request(pb.LicenceDraft(request_id="r1", type_code=..., ...))
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from licence_vault.holder import HolderCodeType
from licence_vault.matters import Matter
from licence_vault.model import (
    Consent,
    FetchBasis,
    IssueRequest,
    Licence,
    LicenceEvent,
    LicenceStatus,
    UseRecord,
)
from licence_vault.types import LicenceType
from licence_vault.verify import Verification
from zhida.errors import FieldViolation, InvalidArgument
from zhida.licence.v1 import licence_vault_service_pb2 as pb

__all__ = [
    "STATUS_NUMBERS",
    "annotation_message",
    "consent_message",
    "draft_request",
    "event_message",
    "licence_message",
    "parse_date",
    "status_from_number",
    "timestamp",
    "type_message",
    "verification_message",
]

STATUS_NUMBERS = {
    LicenceStatus.VALID: pb.LICENCE_STATUS_VALID,
    LicenceStatus.REVOKED: pb.LICENCE_STATUS_REVOKED,
    LicenceStatus.SUSPENDED: pb.LICENCE_STATUS_SUSPENDED,
    LicenceStatus.SUPERSEDED: pb.LICENCE_STATUS_SUPERSEDED,
    LicenceStatus.EXPIRED: pb.LICENCE_STATUS_EXPIRED,
}
_STATUSES = {v: k for k, v in STATUS_NUMBERS.items()}
HOLDER_TYPES = {
    HolderCodeType.RESIDENT_ID: pb.HOLDER_CODE_TYPE_RESIDENT_ID,
    HolderCodeType.USCC: pb.HOLDER_CODE_TYPE_USCC,
}
_HOLDER_TYPES = {v: k for k, v in HOLDER_TYPES.items()}
BASES = {
    FetchBasis.CONSENT: pb.FETCH_BASIS_CONSENT,
    FetchBasis.LEGAL_BASIS: pb.FETCH_BASIS_LEGAL_BASIS,
}


def status_from_number(number: int) -> LicenceStatus:
    return _STATUSES[pb.LicenceStatus.ValueType(number)]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    if value.tzinfo is None:  # local time, as astimezone reads it
        stamp = Timestamp()
        stamp.FromDatetime(value.astimezone(UTC))
        return stamp
    # integer arithmetic: exact, and several times cheaper than FromDatetime (pure Python)
    delta = value - _EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def parse_date(text: str, field: str) -> date | None:
    """``YYYY-MM-DD`` or empty (None); InvalidArgument naming ``field`` otherwise."""
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(
            f"{field} must be a date YYYY-MM-DD, got {text[:20]!r}",
            reason="INVALID_DATE",
            violations=[FieldViolation(field, "must be a date YYYY-MM-DD")],
        ) from None


def draft_request(draft: pb.LicenceDraft, prefix: str = "") -> IssueRequest:
    holder_type = draft.holder_code_type
    if holder_type not in (pb.HOLDER_CODE_TYPE_UNSPECIFIED, *_HOLDER_TYPES):
        raise InvalidArgument(
            f"unknown holder code type {holder_type}",
            reason="INVALID_ARGUMENT",
            violations=[FieldViolation(f"{prefix}holder_code_type", "unknown value")],
        )
    return IssueRequest(
        request_id=draft.request_id,
        type_code=draft.type_code,
        holder_code=draft.holder_code,
        holder_name=draft.holder_name,
        data=dict(draft.data),
        holder_code_type=_HOLDER_TYPES.get(holder_type),
        valid_from=parse_date(draft.valid_from, f"{prefix}valid_from"),
        valid_until=parse_date(draft.valid_until, f"{prefix}valid_until"),
        issue_date=parse_date(draft.issue_date, f"{prefix}issue_date"),
        matter_code=draft.matter_code,
        matter_name=draft.matter_name,
        extension=dict(draft.extension),
    )


def licence_message(licence: Licence, status: LicenceStatus | None = None) -> pb.Licence:
    return pb.Licence(
        licence_id=licence.licence_id,
        type_code=licence.type_code,
        type_name=licence.type_name,
        issuer_code=licence.issuer_code,
        issuer_name=licence.issuer_name,
        version=licence.version,
        holder_code=licence.holder_code,
        holder_code_type=HOLDER_TYPES[licence.holder_code_type],
        holder_name=licence.holder_name,
        status=STATUS_NUMBERS[status or licence.status],
        status_reason=licence.status_reason,
        status_changed_at=timestamp(licence.status_changed_at),
        issued_at=timestamp(licence.issued_at),
        valid_from=licence.valid_from.isoformat(),
        valid_until=licence.valid_until.isoformat() if licence.valid_until else "",
        metadata_json=orjson.dumps(licence.payload, option=orjson.OPT_SORT_KEYS).decode("utf-8"),
        jws_sha256=licence.jws_digest,
        pdf_sha256=licence.pdf_digest or "",
        status_list_index=licence.status_idx,
        status_list_uri=licence.status_uri,
    )


def event_message(event: LicenceEvent) -> pb.LicenceEvent:
    return pb.LicenceEvent(
        licence_id=event.licence_id,
        action=event.action,
        time=timestamp(event.at),
        actor_organisation=event.actor_org,
        actor_subject=event.actor_subject,
        reason=event.reason,
        record=event.record,
        new_licence_id=event.new_licence_id,
    )


def consent_message(consent: Consent) -> pb.Consent:
    return pb.Consent(
        consent_id=consent.consent_id,
        holder_code=consent.holder_code,
        organisation=consent.organisation,
        type_codes=list(consent.type_codes),
        matter_code=consent.matter_code,
        valid_until=timestamp(consent.valid_until),
        created_at=timestamp(consent.created_at),
        withdrawn_at=timestamp(consent.withdrawn_at),
        withdraw_reason=consent.withdraw_reason,
    )


def annotation_message(use: UseRecord) -> pb.Annotation:
    return pb.Annotation(
        annotation_id=use.annotation_id,
        licence_id=use.licence_id,
        requester_organisation=use.requester_org,
        requester_subject=use.requester_subject,
        matter_code=use.matter_code,
        matter_name=use.matter_name,
        watermark=use.watermark,
        made_at=timestamp(use.used_at),
        use_until=timestamp(use.use_until),
        basis=BASES[use.basis],
        consent_id=use.consent_id,
        legal_basis=use.legal_basis,
        status=STATUS_NUMBERS[use.status_at_use],
    )


def type_message(t: LicenceType) -> pb.LicenceType:
    return pb.LicenceType(
        code=t.code,
        name=t.name,
        defining_agency=t.defining_agency,
        holder_code_type=HOLDER_TYPES[t.holder_type],
        fields=[
            pb.LicenceField(
                key=f.key,
                kind=f.kind.value,
                required=f.required,
                choices=list(f.choices),
                pattern=f.pattern or "",
            )
            for f in t.fields
        ],
        default_validity_years=t.default_validity_years or 0,
        max_validity_years=t.max_validity_years or 0,
        valid_until_required=t.valid_until_required,
    )


def matter_message(m: Matter) -> pb.Matter:
    return pb.Matter(
        code=m.code, name=m.name, type_codes=list(m.type_codes), legal_basis=m.legal_basis or ""
    )


def verification_message(v: Verification) -> pb.VerifyLicenceResponse:
    return pb.VerifyLicenceResponse(
        valid=v.valid,
        reason=v.reason,
        message=v.message,
        licence_id=v.licence_id,
        status=STATUS_NUMBERS[v.status] if v.status else pb.LICENCE_STATUS_UNSPECIFIED,
        issuer_code=v.issuer_code,
        issuer_name=v.issuer_name,
        signed_at=timestamp(v.signed_at),
        seal_id=v.seal_id,
        metadata_json=json.dumps(v.payload, ensure_ascii=False, sort_keys=True)
        if v.payload
        else "",
    )
