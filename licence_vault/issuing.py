"""Issuing licences: validation, identifiers, signing, idempotent batches.

:class:`Issuing` is a base class of :class:`~licence_vault.vault.Vault`. An
issue request is checked (type, holder, face data, validity; every bad field
named), gets a GB/T 36904 identifier and a status-list index from counters
reserved per batch, is signed as a JWS (and rendered as a sealed PDF) and is
stored: the licence row, its request id, its issue event and its JWS in one
durable transaction, the PDF in the blob store before that. A retry with the
same request id returns the first attempt's licence; the same id with other
content is refused (``REQUEST_ID_REUSED``).

Example::

    items = vault.issue_batch(actor, requests, with_pdf=False)
    [item.result.licence.licence_id for item in items if item.result]
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from licence_vault.days import licence_day
from licence_vault.documents import checked_jws
from licence_vault.holder import HolderCodeType, validate_holder
from licence_vault.identifier import LicenceId
from licence_vault.model import IssueRequest, Licence, LicenceEvent, LicenceStatus
from licence_vault.results import (
    Actor,
    BatchItem,
    IssueResult,
    PdfRenderer,
    bad,
    text_field,
)
from licence_vault.signer import IssuerSeal, LicenceSigner
from licence_vault.status_list import status_list_uri
from licence_vault.store import IssuedItem, LicenceStore, RequestIdsTaken
from licence_vault.types import LicenceType, TypeRegistry
from zhida.blobstore import BlobStore, sha256_hex
from zhida.errors import AlreadyExists, FailedPrecondition, FieldViolation, NotFound, ZhidaError

__all__ = ["MAX_BATCH", "Issuing", "request_hash"]

MAX_BATCH = 1000
LONG_TERM = "长期"
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}")
BLOB_WRITERS = 16  # concurrent PDF writes of a batch (each waits for its own fsync)


def request_hash(request: IssueRequest) -> str:
    """What must match for a retry with the same request id: the request, minus its id."""
    body = {
        "type_code": request.type_code,
        "holder_code": request.holder_code.strip().upper(),
        "holder_name": request.holder_name.strip(),
        "holder_code_type": request.holder_code_type.value if request.holder_code_type else "",
        "data": {k: str(v).strip() for k, v in sorted(request.data.items())},
        "valid_from": request.valid_from.isoformat() if request.valid_from else "",
        "valid_until": request.valid_until.isoformat() if request.valid_until else "",
        "issue_date": request.issue_date.isoformat() if request.issue_date else "",
        "matter_code": request.matter_code,
        "matter_name": request.matter_name,
        "extension": dict(sorted(request.extension.items())),
    }
    text = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


@dataclass(frozen=True, slots=True)
class _Checked:
    """An issue request that passed validation, with defaults applied."""

    request: IssueRequest
    licence_type: LicenceType
    holder_code: str
    holder_code_type: HolderCodeType
    holder_name: str
    data: dict[str, str]
    issue_date: date
    valid_from: date
    valid_until: date | None
    hash: str


class Issuing:
    """Issue and batch issue; see the module docstring."""

    store: LicenceStore
    blobs: BlobStore
    signer: LicenceSigner
    types: TypeRegistry
    pdf: PdfRenderer | None
    clock: Callable[[], datetime]
    status_base_uri: str
    _pool: ThreadPoolExecutor | None
    _pool_lock: threading.Lock

    # -- issue ------------------------------------------------------------------------

    def status_uri(self, issuer_code: str) -> str:
        return status_list_uri(self.status_base_uri, issuer_code)

    def check_request(self, request: IssueRequest, today: date, prefix: str = "") -> _Checked:
        """Validate one issue request (every bad field named) and apply the defaults."""
        p = prefix
        if not isinstance(request.request_id, str) or not _REQUEST_ID.fullmatch(request.request_id):
            raise bad(
                f"{p}request_id",
                "must be 1-128 characters of A-Z a-z 0-9 . _ : / @ -",
                "INVALID_REQUEST_ID",
            )
        licence_type = self.types.get(request.type_code, f"{p}type_code")
        code_type = request.holder_code_type or licence_type.holder_type
        if code_type is not licence_type.holder_type:
            raise bad(
                f"{p}holder_code_type",
                f"a {licence_type.name} is held by a holder with code type "
                f"{licence_type.holder_type.value} ({licence_type.holder_type.label})",
                "HOLDER_TYPE_MISMATCH",
            )
        holder = validate_holder(request.holder_code, code_type, field=f"{p}holder_code")
        holder_name = text_field(request.holder_name, f"{p}holder_name")
        data = licence_type.check_data(request.data, holder_code=holder, prefix=f"{p}data")
        issue_date = request.issue_date or today
        if issue_date > today:
            raise bad(f"{p}issue_date", "lies in the future", "INVALID_VALIDITY")
        valid_from = request.valid_from or issue_date
        valid_until = request.valid_until
        if valid_until is None and licence_type.default_validity_years is not None:
            valid_until = _add_years(valid_from, licence_type.default_validity_years) - timedelta(
                days=1
            )
        if valid_until is None and licence_type.valid_until_required:
            raise bad(f"{p}valid_until", "is required for this type", "INVALID_VALIDITY")
        if valid_until is not None:
            if valid_until < valid_from:
                raise bad(f"{p}valid_until", "lies before valid_from", "INVALID_VALIDITY")
            limit = licence_type.max_validity_years
            if limit is not None and valid_until >= _add_years(valid_from, limit):
                raise bad(
                    f"{p}valid_until",
                    f"a {licence_type.name} is valid for at most {limit} years",
                    "INVALID_VALIDITY",
                )
        text_field(request.matter_code, f"{p}matter_code", max_length=64, required=False)
        text_field(request.matter_name, f"{p}matter_name", required=False)
        if len(request.extension) > 32:
            raise bad(f"{p}extension", "has more than 32 entries")
        for key, value in request.extension.items():
            text_field(key, f"{p}extension", max_length=64)
            text_field(value, f"{p}extension.{key}", max_length=500, required=False)
        return _Checked(
            request=request,
            licence_type=licence_type,
            holder_code=holder,
            holder_code_type=code_type,
            holder_name=holder_name,
            data=data,
            issue_date=issue_date,
            valid_from=valid_from,
            valid_until=valid_until,
            hash=request_hash(request),
        )

    def _payload(
        self,
        checked: _Checked,
        ident: LicenceId,
        seal: IssuerSeal,
        status_idx: int,
        region_code: str,
        now: datetime,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        t = checked.licence_type
        request = checked.request
        payload: dict[str, Any] = {
            "证照标识": str(ident),
            "证照名称": t.document_title,
            "证照类型名称": t.name,
            "证照类型代码": t.code,
            "证照编号": checked.data.get(t.number_field or "", "") or f"{ident.serial:010d}",
            "版本号": f"{ident.version:03d}",
            "颁发机构": seal.issuer_name,
            "颁发机构代码": ident.issuer_code,
            "颁证日期": checked.issue_date.isoformat(),
            "有效期起始日期": checked.valid_from.isoformat(),
            "有效期截止日期": (
                checked.valid_until.isoformat() if checked.valid_until else LONG_TERM
            ),
            "行政区划代码": region_code or ident.issuer_code[2:8],
            "持证主体": checked.holder_name,
            "持证主体代码": checked.holder_code,
            "持证主体代码类型": checked.holder_code_type.value,
            "照面信息": checked.data,
            "iat": int(now.timestamp()),
            "status": {
                "status_list": {"idx": status_idx, "uri": self.status_uri(ident.issuer_code)}
            },
        }
        if request.matter_code or request.matter_name:
            payload["关联事项编码"] = request.matter_code
            payload["关联事项名称"] = request.matter_name
        if request.extension:
            payload["扩展信息"] = dict(request.extension)
        if extra:
            payload.update(extra)
        return payload

    def _make(
        self,
        checked: _Checked,
        ident: LicenceId,
        seal: IssuerSeal,
        status_idx: int,
        actor: Actor,
        now: datetime,
        extra: dict[str, Any] | None = None,
        *,
        with_pdf: bool = True,
    ) -> tuple[Licence, str, list[bytes]]:
        """Sign (and render) one licence: the licence, its JWS (stored with its row) and the
        documents for the blob store (its PDF, if rendered), stored by :meth:`_store`."""
        payload = self._payload(checked, ident, seal, status_idx, actor.region_code, now, extra)
        token = self.signer.sign_licence(ident.issuer_code, payload)
        documents: list[bytes] = []
        licence = Licence(
            licence_id=payload["证照标识"],
            type_code=checked.licence_type.code,
            type_name=checked.licence_type.name,
            issuer_code=ident.issuer_code,
            issuer_name=seal.issuer_name,
            serial=ident.serial,
            version=ident.version,
            holder_code=checked.holder_code,
            holder_code_type=checked.holder_code_type,
            holder_name=checked.holder_name,
            status=LicenceStatus.VALID,
            status_idx=status_idx,
            status_uri=self.status_uri(ident.issuer_code),
            issued_at=now,
            valid_from=checked.valid_from,
            valid_until=checked.valid_until,
            jws_digest=sha256_hex(token.encode("ascii")),
            pdf_digest=None,
            payload=payload,
        )
        if self.pdf is not None and with_pdf:
            pdf = self.pdf.render(licence, checked.licence_type, seal)
            documents.append(pdf)
            licence = replace(licence, pdf_digest=sha256_hex(pdf))
        return licence, token, documents

    def _store(self, documents: Sequence[bytes]) -> None:
        """Write documents to the blob store now (one licence's: no threads needed)."""
        for document in documents:
            self.blobs.put(document)

    def _writer(self) -> ThreadPoolExecutor:
        """Threads that write a batch's PDFs while the next ones are signed.

        Each filesystem write waits for its own fsync; many in flight share
        the journal's commits, and signing (CPU) overlaps the waiting (I/O).
        """
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=BLOB_WRITERS, thread_name_prefix="vault-blobs"
                )
            return self._pool

    def issue(self, actor: Actor, request: IssueRequest, *, field_prefix: str = "") -> IssueResult:
        """Issue one licence (or return the one a retry of ``request_id`` issued).

        ``field_prefix`` goes before the field paths of violations (``draft.``).
        """
        item = self.issue_batch(actor, [request], field_prefixes=[field_prefix])[0]
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def issue_batch(
        self,
        actor: Actor,
        requests: Sequence[IssueRequest],
        *,
        field_prefixes: Sequence[str] | None = None,
        with_pdf: bool = True,
    ) -> list[BatchItem]:
        """Issue many licences for one issuer; each request succeeds or fails on its own.

        Refusals that concern the whole batch (no valid seal, too many
        requests) raise; a bad request only fails its own item. Its field
        violations are named ``requests[i].<field>`` unless ``field_prefixes``
        gives each request's prefix. ``with_pdf=False`` issues the JWS only
        (no sealed PDF; annotated copies are still rendered at fetch).
        """
        if len(requests) > MAX_BATCH:
            raise bad("requests", f"holds more than {MAX_BATCH} requests", "BATCH_TOO_LARGE")
        now = self.clock()
        seal = self.signer.issuer(actor.organisation, at=now)
        today = licence_day(now)
        out: dict[int, BatchItem] = {}
        checked: dict[int, _Checked] = {}
        for i, request in enumerate(requests):
            try:
                prefix = field_prefixes[i] if field_prefixes else f"requests[{i}]."
                checked[i] = self.check_request(request, today, prefix=prefix)
            except ZhidaError as exc:
                out[i] = BatchItem(i, str(request.request_id), error=exc)
        seen: dict[str, int] = {}
        for i in list(checked):
            rid = checked[i].request.request_id
            if rid in seen:  # the same id twice in one batch: the first wins, like a retry
                first = checked[seen[rid]]
                if first.hash != checked[i].hash:
                    out[i] = BatchItem(i, rid, error=_reused(rid))
                    del checked[i]
            else:
                seen[rid] = i
        self._issue_checked(actor, seal, checked, seen, out, now, with_pdf)
        return [out[i] for i in range(len(requests))]

    def _issue_checked(
        self,
        actor: Actor,
        seal: IssuerSeal,
        checked: dict[int, _Checked],
        first_of: dict[str, int],
        out: dict[int, BatchItem],
        now: datetime,
        with_pdf: bool,
        attempts: int = 3,
    ) -> None:
        issuer = actor.organisation
        for _ in range(attempts):
            pending = {i: c for i, c in checked.items() if i not in out}
            if not pending:
                return
            self._resolve_existing(issuer, pending, first_of, out)
            todo = [
                (i, c)
                for i, c in pending.items()
                if i not in out and first_of[c.request.request_id] == i
            ]
            if todo:
                counts: dict[str, int] = {}
                for _i, c in todo:
                    counts[c.licence_type.code] = counts.get(c.licence_type.code, 0) + 1
                reservation = self.store.reserve(issuer, counts, len(todo))
                next_serial = dict(reservation.serial_start)
                items: list[tuple[int, IssuedItem, str]] = []
                writes: list[Future[str]] = []
                writer = self._writer() if len(todo) > 1 and with_pdf and self.pdf else None
                for n, (i, c) in enumerate(todo):
                    serial = next_serial[c.licence_type.code]
                    next_serial[c.licence_type.code] = serial + 1
                    ident = LicenceId(c.licence_type.code, issuer, serial, 1)
                    licence, token, docs = self._make(
                        c, ident, seal, reservation.status_start + n, actor, now, with_pdf=with_pdf
                    )
                    if writer is None:
                        self._store(docs)
                    else:
                        writes.extend(writer.submit(self.blobs.put, d) for d in docs)
                    event = LicenceEvent(
                        licence_id=licence.licence_id,
                        lineage=licence.lineage,
                        action="issue",
                        at=now,
                        actor_org=issuer,
                        actor_subject=actor.subject,
                        record=f"sha256:{licence.jws_digest}",
                    )
                    items.append(
                        (i, IssuedItem(licence, c.request.request_id, c.hash, event, token), token)
                    )
                for write in writes:
                    write.result()  # every PDF is stored before its row exists
                try:
                    self.store.insert_issued([item for _i, item, _t in items])
                except RequestIdsTaken:
                    continue  # a concurrent retry won some ids: resolve them, issue the rest
                for i, item, token in items:
                    out[i] = BatchItem(i, item.request_id, IssueResult(item.licence, token, True))
            # duplicates within the batch share their first request's result
            for i, c in pending.items():
                if i not in out:
                    first = out.get(first_of[c.request.request_id])
                    if first is not None:
                        result = first.result
                        out[i] = BatchItem(
                            i,
                            c.request.request_id,
                            result=replace(result, created=False) if result else None,
                            error=first.error,
                        )
            if all(i in out for i in checked):
                return
        raise FailedPrecondition("issue kept conflicting with concurrent retries", reason="ABORTED")

    def _resolve_existing(
        self,
        issuer: str,
        pending: dict[int, _Checked],
        first_of: dict[str, int],
        out: dict[int, BatchItem],
    ) -> None:
        ids = sorted({c.request.request_id for c in pending.values()})
        existing = self.store.find_requests(issuer, ids)
        if not existing:
            return
        licences = {
            lic.licence_id: lic for lic in self.store.get_many([v[0] for v in existing.values()])
        }
        documents = self.store.documents(list(licences.values()))
        for i, c in pending.items():
            hit = existing.get(c.request.request_id)
            if hit is None:
                continue
            licence_id, stored_hash = hit
            if stored_hash != c.hash:
                out[i] = BatchItem(i, c.request.request_id, error=_reused(c.request.request_id))
                continue
            licence = licences.get(licence_id)
            if licence is None:  # inserted together with the request row: cannot happen
                raise NotFound(f"licence {licence_id} of a stored request is missing")
            token = checked_jws(licence, documents.get(licence_id), self.blobs)
            out[i] = BatchItem(i, c.request.request_id, IssueResult(licence, token, False))


def _reused(request_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"request id {request_id!r} was already used for a different licence request",
        reason="REQUEST_ID_REUSED",
        violations=[FieldViolation("request_id", "was used for a different request")],
    )
