"""Rows of the vault's tables ⇄ domain values, for :mod:`licence_vault.sql`.

Documents: since the JWS moved out of the blob store, the ``record`` column
of a licence's *issue* event holds the licence JWS itself (the issuer's
signed record of the issue), written in the transaction that inserts the
licence. Older issue events hold ``sha256:<hex>`` and their licence's JWS
is in the blob store. Either way the domain sees ``sha256:<hex>`` as the
issue event's record (:func:`event_record`); the vault checks a document
against the licence's ``jws_digest`` before using it
(:mod:`licence_vault.documents`).

Example::

    row = licence_row_values(licence)            # for insert(licence table)
    licence = licence_from_row(result_row)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import orjson

from licence_vault.holder import HolderCodeType
from licence_vault.model import Consent, FetchBasis, Licence, LicenceEvent, LicenceStatus, UseRecord
from licence_vault.store import FetchQuery, FetchSnapshot
from zhida.blobstore import sha256_hex

__all__ = [
    "DIGEST_PREFIX",
    "EVENT_ROW",
    "LICENCE_ROW",
    "REQUEST_ROW",
    "consent_from_row",
    "event_record",
    "event_values",
    "licence_from_row",
    "licence_row_values",
    "snapshots_from_rows",
    "stored_document",
    "use_from_row",
    "use_values",
]

DIGEST_PREFIX = "sha256:"
ISSUE = "issue"
# Column orders of the rows the batch insert writes (see licence_row_values, event_values).
LICENCE_ROW = (
    "licence_id", "lineage", "version", "type_code", "issuer_code", "holder_code", "status",
    "status_idx", "issued_at", "valid_from", "valid_until", "jws_digest", "pdf_digest",
    "status_reason", "status_changed_at", "payload",
)  # fmt: skip
EVENT_ROW = (
    "lineage", "licence_id", "action", "at", "actor_org", "actor_subject", "reason", "record",
    "new_licence_id",
)  # fmt: skip
REQUEST_ROW = ("issuer_code", "request_id", "licence_id", "request_hash")


def licence_row_values(licence: Licence) -> dict[str, Any]:
    """The ``licence`` table row of ``licence`` (also used by the bulk loader of the bench)."""
    return {
        "licence_id": licence.licence_id,
        "lineage": licence.lineage,
        "version": licence.version,
        "type_code": licence.type_code,
        "issuer_code": licence.issuer_code,
        "holder_code": licence.holder_code,
        "status": licence.status.value,
        "status_idx": licence.status_idx,
        "issued_at": licence.issued_at,
        "valid_from": licence.valid_from,
        "valid_until": licence.valid_until,
        "jws_digest": licence.jws_digest,
        "pdf_digest": licence.pdf_digest,
        "status_reason": licence.status_reason,
        "status_changed_at": licence.status_changed_at,
        "payload": orjson.dumps(licence.payload, option=orjson.OPT_SORT_KEYS).decode("utf-8"),
    }


def _as_date(value: date | datetime | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(value)


def licence_from_row(row: Any) -> Licence:
    payload: dict[str, Any] = orjson.loads(row.payload)
    # identifiers in the table were checked when written: read the serial, skip the re-check
    serial = int(row.licence_id.rsplit(".", 3)[1])
    status_ref = payload.get("status", {}).get("status_list", {})
    return Licence(
        licence_id=row.licence_id,
        type_code=row.type_code,
        type_name=str(payload.get("证照类型名称", "")),
        issuer_code=row.issuer_code,
        issuer_name=str(payload.get("颁发机构", "")),
        serial=serial,
        version=row.version,
        holder_code=row.holder_code,
        holder_code_type=HolderCodeType(payload.get("持证主体代码类型", "111")),
        holder_name=str(payload.get("持证主体", "")),
        status=LicenceStatus(row.status),
        status_idx=row.status_idx,
        status_uri=str(status_ref.get("uri", "")),
        issued_at=row.issued_at,
        valid_from=_as_date(row.valid_from),
        valid_until=_as_date(row.valid_until) if row.valid_until is not None else None,
        jws_digest=row.jws_digest,
        pdf_digest=row.pdf_digest,
        payload=payload,
        status_reason=row.status_reason or "",
        status_changed_at=row.status_changed_at,
    )


def event_values(event: LicenceEvent, document: str = "") -> dict[str, Any]:
    """The ``licence_event`` row; an issue event's ``document`` (its JWS) replaces its record."""
    return {
        "lineage": event.lineage,
        "licence_id": event.licence_id,
        "action": event.action,
        "at": event.at,
        "actor_org": event.actor_org,
        "actor_subject": event.actor_subject[:256],
        "reason": event.reason,
        "record": document or event.record,
        "new_licence_id": event.new_licence_id,
    }


def stored_document(action: str, record: str | None) -> str | None:
    """The JWS an event row holds: an issue event's record unless it is a digest."""
    if action != ISSUE or not record or record.startswith(DIGEST_PREFIX):
        return None
    return record


def event_record(action: str, record: str | None) -> str:
    """The record as the domain sees it: a stored issue document becomes its digest."""
    document = stored_document(action, record)
    if document is not None:
        return DIGEST_PREFIX + sha256_hex(document.encode("ascii"))
    return record or ""


def consent_from_row(row: Any) -> Consent:
    return Consent(
        consent_id=row.consent_id,
        holder_code=row.holder_code,
        organisation=row.organisation,
        type_codes=tuple(t for t in row.type_codes.split(",") if t),
        matter_code=row.matter_code,
        valid_until=row.valid_until,
        created_at=row.created_at,
        withdrawn_at=row.withdrawn_at,
        withdraw_reason=row.withdraw_reason or "",
    )


def use_from_row(r: Any) -> UseRecord:
    return UseRecord(
        annotation_id=r.annotation_id,
        licence_id=r.licence_id,
        holder_code=r.holder_code,
        requester_org=r.requester_org,
        requester_subject=r.requester_subject,
        matter_code=r.matter_code,
        matter_name=r.matter_name,
        basis=FetchBasis(r.basis),
        consent_id=r.consent_id or "",
        legal_basis=r.legal_basis or "",
        used_at=r.used_at,
        use_until=r.use_until,
        watermark=r.watermark,
        status_at_use=LicenceStatus(r.status_at_use),
        pdf_digest=r.pdf_digest,
    )


def use_values(u: UseRecord) -> dict[str, Any]:
    return {
        "annotation_id": u.annotation_id,
        "licence_id": u.licence_id,
        "holder_code": u.holder_code,
        "requester_org": u.requester_org,
        "requester_subject": u.requester_subject[:256],
        "matter_code": u.matter_code,
        "matter_name": u.matter_name,
        "basis": u.basis.value,
        "consent_id": u.consent_id,
        "legal_basis": u.legal_basis,
        "used_at": u.used_at,
        "use_until": u.use_until,
        "watermark": u.watermark,
        "status_at_use": u.status_at_use.value,
        "pdf_digest": u.pdf_digest,
    }


def snapshots_from_rows(
    queries: Sequence[FetchQuery], consent_rows: Sequence[Any], licence_rows: Sequence[Any]
) -> list[FetchSnapshot]:
    """Each query's consent, licences (newest first) and stored JWS, from the batch's rows."""
    consents = {r.consent_id: consent_from_row(r) for r in consent_rows}
    found: dict[str, list[tuple[Licence, str | None]]] = {}
    for r in licence_rows:
        entry = (licence_from_row(r), stored_document(ISSUE, r.record))
        found.setdefault(r.holder_code, []).append(entry)
    out = []
    for q in queries:
        mine = [e for e in found.get(q.holder_code, ()) if e[0].type_code in q.type_codes]
        mine.sort(key=lambda e: (e[0].issued_at, e[0].licence_id), reverse=True)
        out.append(
            FetchSnapshot(
                consents.get(q.consent_id) if q.consent_id else None,
                [lic for lic, _doc in mine],
                {lic.licence_id: doc for lic, doc in mine if doc is not None},
            )
        )
    return out
