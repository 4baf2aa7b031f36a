"""The electronic-licence vault (电子证照库): issue, lifecycle, status lists, consent, fetch.

:class:`Vault` is the domain: it validates, decides and orchestrates; it
knows nothing of gRPC or SQL. It persists through a
:class:`~licence_vault.store.LicenceStore`, keeps documents in the node's
content-addressed :class:`~zhida.blobstore.BlobStore` (every read re-hashed:
a tampered document raises IntegrityError and is never returned) and signs
through a :class:`~licence_vault.signer.LicenceSigner`.

Rules it enforces:

* only a department whose seal is valid now may issue, and only the issuing
  department may amend, suspend, resume or revoke its licences
  (PermissionDenied ``NOT_ISSUER``);
* an issue is idempotent per (issuer, request id): a retry returns the
  licence of the first attempt; the same id with different content is
  refused (``REQUEST_ID_REUSED``);
* an amendment makes version n+1 (new identifier, new status index, signed
  anew) and marks version n superseded; old versions stay verifiable;
* every change is signed by the issuer and appended to the licence's history;
* a fetch needs the holder's consent (right organisation, matter, types, not
  expired, not withdrawn) unless the matter has a legal basis; only valid
  licences come with their documents — revoked, suspended or expired ones are
  returned with their status only;
* every fetch leaves one use record (annotated copy, 加注件) per licence.

Example::

    vault = Vault(SqlLicenceStore(db), blobs, open_dev_signer(dir, DEMO_ORGS),
                  status_base_uri="zhida://node/licence/status")
    issued = vault.issue(Actor("11420102000040176F", "clerk-1"), request)
    vault.revoke(Actor("11420102000040176F", "clerk-1"), issued.licence.licence_id, "吊销")
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from licence_vault.holder import HolderCodeType, detect_code_type, validate_holder
from licence_vault.identifier import LicenceId
from licence_vault.matters import Matter, MatterRegistry
from licence_vault.model import (
    Consent,
    FetchBasis,
    IssueRequest,
    Licence,
    LicenceEvent,
    LicenceStatus,
    UseRecord,
)
from licence_vault.signer import IssuerSeal, LicenceSigner
from licence_vault.status_list import StatusList, status_list_uri
from licence_vault.store import IssuedItem, LicenceStore, RequestIdsTaken
from licence_vault.types import LicenceType, TypeRegistry
from licence_vault.verify import LicenceVerifier, Verification
from signing.jws import JwsVerifier
from zhida.blobstore import BlobStore, sha256_hex
from zhida.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ZhidaError,
)

__all__ = [
    "Actor",
    "BatchItem",
    "FetchResult",
    "FetchedLicence",
    "IssueResult",
    "PdfRenderer",
    "Vault",
]

MAX_BATCH = 1000
MAX_REASON = 500
MAX_CONSENT_DAYS = 366 * 3
LONG_TERM = "长期"
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}")
STATUS_TOKEN_REFRESH_SECONDS = 3600
BLOB_WRITERS = 16  # concurrent blob writes of a batch (each waits for its own fsync)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an organisation (USCC) and the caller's subject."""

    organisation: str
    subject: str
    region_code: str = ""


@dataclass(frozen=True, slots=True)
class IssueResult:
    licence: Licence
    jws: str
    created: bool  # False: a retry that found the first attempt's licence


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One request of a batch: its licence, or the error that refused it."""

    index: int
    request_id: str
    result: IssueResult | None = None
    error: ZhidaError | None = None


@dataclass(frozen=True, slots=True)
class FetchedLicence:
    licence: Licence
    status: LicenceStatus  # effective (expired derived from the date)
    jws: str | None  # only for valid licences
    pdf: bytes | None  # annotated copy, when PDFs are rendered
    use: UseRecord


@dataclass(frozen=True, slots=True)
class FetchResult:
    basis: FetchBasis
    matter: Matter
    consent: Consent | None
    items: list[FetchedLicence]


class PdfRenderer(Protocol):
    """Renders and seals a licence PDF (optionally as an annotated copy with a watermark)."""

    def render(
        self,
        licence: Licence,
        licence_type: LicenceType,
        seal: IssuerSeal,
        *,
        watermark: str | None = None,
    ) -> bytes: ...


def _bad(field: str, problem: str, reason: str = "INVALID_ARGUMENT") -> InvalidArgument:
    return InvalidArgument(
        f"{field} {problem}", reason=reason, violations=[FieldViolation(field, problem)]
    )


def _text(value: str, field: str, *, max_length: int = 200, required: bool = True) -> str:
    text = (value or "").strip()
    if required and not text:
        raise _bad(field, "is required")
    if len(text) > max_length:
        raise _bad(field, f"is longer than {max_length} characters")
    if re.search(r"[\x00-\x1f\x7f]", text):
        raise _bad(field, "contains a control character")
    return text


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


class Vault:
    """See the module docstring. Thread-safe; share one per process."""

    def __init__(
        self,
        store: LicenceStore,
        blobs: BlobStore,
        signer: LicenceSigner,
        *,
        status_base_uri: str,
        types: TypeRegistry | None = None,
        matters: MatterRegistry | None = None,
        pdf: PdfRenderer | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.signer = signer
        self.types = types or TypeRegistry.builtin()
        self.matters = matters or MatterRegistry.builtin()
        self.pdf = pdf
        self.clock = clock
        self.status_base_uri = status_base_uri.rstrip("/")
        self._status_lock = threading.Lock()
        self._status_tokens: dict[str, tuple[tuple[int, int], float, str]] = {}
        self._verifier: tuple[object, object, LicenceVerifier] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def verifier(self) -> LicenceVerifier:
        """A verifier on the signer's current trust and seals (rebuilt when they change)."""
        chains, seals = self.signer.chain_verifier(), self.signer.seal_registry()
        cached = self._verifier
        if cached is None or cached[0] is not chains or cached[1] is not seals:
            verifier = LicenceVerifier(JwsVerifier(chains, seals), self._stored_status)
            cached = self._verifier = (chains, seals, verifier)
        return cached[2]

    # -- issue ------------------------------------------------------------------------

    def status_uri(self, issuer_code: str) -> str:
        return status_list_uri(self.status_base_uri, issuer_code)

    def check_request(self, request: IssueRequest, today: date, prefix: str = "") -> _Checked:
        """Validate one issue request (every bad field named) and apply the defaults."""
        p = prefix
        if not isinstance(request.request_id, str) or not _REQUEST_ID.fullmatch(request.request_id):
            raise _bad(
                f"{p}request_id",
                "must be 1-128 characters of A-Z a-z 0-9 . _ : / @ -",
                "INVALID_REQUEST_ID",
            )
        licence_type = self.types.get(request.type_code, f"{p}type_code")
        code_type = request.holder_code_type or licence_type.holder_type
        if code_type is not licence_type.holder_type:
            raise _bad(
                f"{p}holder_code_type",
                f"a {licence_type.name} is held by a holder with code type "
                f"{licence_type.holder_type.value} ({licence_type.holder_type.label})",
                "HOLDER_TYPE_MISMATCH",
            )
        holder = validate_holder(request.holder_code, code_type, field=f"{p}holder_code")
        holder_name = _text(request.holder_name, f"{p}holder_name")
        data = licence_type.check_data(request.data, holder_code=holder, prefix=f"{p}data")
        issue_date = request.issue_date or today
        if issue_date > today:
            raise _bad(f"{p}issue_date", "lies in the future", "INVALID_VALIDITY")
        valid_from = request.valid_from or issue_date
        valid_until = request.valid_until
        if valid_until is None and licence_type.default_validity_years is not None:
            valid_until = _add_years(valid_from, licence_type.default_validity_years) - timedelta(
                days=1
            )
        if valid_until is None and licence_type.valid_until_required:
            raise _bad(f"{p}valid_until", "is required for this type", "INVALID_VALIDITY")
        if valid_until is not None:
            if valid_until < valid_from:
                raise _bad(f"{p}valid_until", "lies before valid_from", "INVALID_VALIDITY")
            limit = licence_type.max_validity_years
            if limit is not None and valid_until >= _add_years(valid_from, limit):
                raise _bad(
                    f"{p}valid_until",
                    f"a {licence_type.name} is valid for at most {limit} years",
                    "INVALID_VALIDITY",
                )
        _text(request.matter_code, f"{p}matter_code", max_length=64, required=False)
        _text(request.matter_name, f"{p}matter_name", required=False)
        if len(request.extension) > 32:
            raise _bad(f"{p}extension", "has more than 32 entries")
        for key, value in request.extension.items():
            _text(key, f"{p}extension", max_length=64)
            _text(value, f"{p}extension.{key}", max_length=500, required=False)
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
        """Sign (and render) one licence; the documents are stored by :meth:`_store`."""
        payload = self._payload(checked, ident, seal, status_idx, actor.region_code, now, extra)
        token = self.signer.sign_licence(ident.issuer_code, payload)
        documents = [token.encode("ascii")]
        licence = Licence(
            licence_id=str(ident),
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
            jws_digest=sha256_hex(documents[0]),
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
        """Threads that write a batch's documents while the next ones are signed.

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
            raise _bad("requests", f"holds more than {MAX_BATCH} requests", "BATCH_TOO_LARGE")
        now = self.clock()
        seal = self.signer.issuer(actor.organisation, at=now)
        today = now.astimezone(UTC).date()
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
                writer = self._writer() if len(todo) > 1 else None
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
                        (i, IssuedItem(licence, c.request.request_id, c.hash, event), token)
                    )
                for write in writes:
                    write.result()  # every document is stored before its row exists
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
            token = self.read_jws(licence)
            out[i] = BatchItem(i, c.request.request_id, IssueResult(licence, token, False))

    # -- documents ------------------------------------------------------------------------

    def read_jws(self, licence: Licence) -> str:
        """The stored JWS; IntegrityError(BLOB_HASH_MISMATCH) if the stored bytes changed."""
        return self.blobs.get(licence.jws_digest).decode("ascii")

    def read_pdf(self, licence: Licence) -> bytes | None:
        return self.blobs.get(licence.pdf_digest) if licence.pdf_digest else None

    # -- read ---------------------------------------------------------------------------

    def get(self, licence_id: str) -> Licence:
        LicenceId.parse(licence_id)
        licence = self.store.get(licence_id.strip())
        if licence is None:
            raise NotFound(f"no licence {licence_id}", reason="LICENCE_NOT_FOUND")
        return licence

    def history(self, licence_id: str) -> tuple[list[Licence], list[LicenceEvent]]:
        licence = self.get(licence_id)
        return self.store.versions(licence.lineage), self.store.history(licence.lineage)

    # -- lifecycle ------------------------------------------------------------------------

    def _own(self, actor: Actor, licence_id: str) -> Licence:
        licence = self.get(licence_id)
        if licence.issuer_code != actor.organisation:
            raise PermissionDenied(
                f"licence {licence_id} was issued by {licence.issuer_code}; only the issuing "
                "department may change it",
                reason="NOT_ISSUER",
            )
        return licence

    def _change_record(
        self, actor: Actor, licence: Licence, action: str, reason: str, now: datetime, **extra: str
    ) -> str:
        record = {
            "证照变更记录": {
                "证照标识": licence.licence_id,
                "操作": action,
                "原因": reason,
                "操作时间": now.astimezone(UTC).isoformat(timespec="seconds"),
                "操作机构代码": actor.organisation,
                "操作人": actor.subject,
                **extra,
            },
            "iat": int(now.timestamp()),
        }
        return self.signer.sign_licence(licence.issuer_code, record)

    def _transition(
        self,
        actor: Actor,
        licence_id: str,
        reason: str,
        action: str,
        allowed_from: tuple[LicenceStatus, ...],
        new: LicenceStatus,
    ) -> Licence:
        reason = _text(reason, "reason", max_length=MAX_REASON)
        licence = self._own(actor, licence_id)
        if licence.status not in allowed_from:
            raise FailedPrecondition(
                f"cannot {action} licence {licence_id}: it is {licence.status.value}",
                reason="INVALID_STATUS_TRANSITION",
                metadata={"status": licence.status.value},
            )
        now = self.clock()
        self.signer.issuer(actor.organisation, at=now)  # the seal must still be valid
        record = self._change_record(actor, licence, action, reason, now)
        event = LicenceEvent(
            licence_id=licence.licence_id,
            lineage=licence.lineage,
            action=action,
            at=now,
            actor_org=actor.organisation,
            actor_subject=actor.subject,
            reason=reason,
            record=record,
        )
        return self.store.change_status(
            licence.licence_id, licence.status, new, event, reason=reason, at=now
        )

    def suspend(self, actor: Actor, licence_id: str, reason: str) -> Licence:
        return self._transition(
            actor, licence_id, reason, "suspend", (LicenceStatus.VALID,), LicenceStatus.SUSPENDED
        )

    def resume(self, actor: Actor, licence_id: str, reason: str) -> Licence:
        return self._transition(
            actor, licence_id, reason, "resume", (LicenceStatus.SUSPENDED,), LicenceStatus.VALID
        )

    def revoke(self, actor: Actor, licence_id: str, reason: str) -> Licence:
        return self._transition(
            actor,
            licence_id,
            reason,
            "revoke",
            (LicenceStatus.VALID, LicenceStatus.SUSPENDED),
            LicenceStatus.REVOKED,
        )

    def amend(
        self,
        actor: Actor,
        licence_id: str,
        *,
        changes: dict[str, str],
        reason: str,
        holder_name: str | None = None,
        valid_until: date | None = None,
    ) -> IssueResult:
        """Issue version n+1 with ``changes`` applied to the data (``""`` removes a field)."""
        reason = _text(reason, "reason", max_length=MAX_REASON)
        old = self._own(actor, licence_id)
        if old.status is not LicenceStatus.VALID:
            raise FailedPrecondition(
                f"only a valid licence can be amended; {licence_id} is {old.status.value}",
                reason="INVALID_STATUS_TRANSITION",
                metadata={"status": old.status.value},
            )
        if not changes and holder_name is None and valid_until is None:
            raise _bad("changes", "must change something", "NOTHING_TO_AMEND")
        now = self.clock()
        seal = self.signer.issuer(actor.organisation, at=now)
        data = dict(old.data)
        for key, value in changes.items():
            if value == "":
                data.pop(key, None)
            else:
                data[key] = value
        payload = old.payload
        request = IssueRequest(
            request_id=f"amend-{old.licence_id}",
            type_code=old.type_code,
            holder_code=old.holder_code,
            holder_name=holder_name if holder_name is not None else old.holder_name,
            holder_code_type=old.holder_code_type,
            data=data,
            valid_from=old.valid_from,
            valid_until=valid_until if valid_until is not None else old.valid_until,
            issue_date=date.fromisoformat(payload["颁证日期"]),
            matter_code=str(payload.get("关联事项编码", "")),
            matter_name=str(payload.get("关联事项名称", "")),
            extension=dict(payload.get("扩展信息", {})),
        )
        checked = self.check_request(request, now.astimezone(UTC).date())
        ident = old.ident.next_version()
        reservation = self.store.reserve(actor.organisation, {}, 1)
        extra = {"前一版本证照标识": old.licence_id, "变更原因": reason}
        new, token, documents = self._make(
            checked, ident, seal, reservation.status_start, actor, now, extra
        )
        self._store(documents)
        record = self._change_record(
            actor, old, "amend", reason, now, 新版本证照标识=new.licence_id
        )
        events = [
            LicenceEvent(
                licence_id=old.licence_id,
                lineage=old.lineage,
                action="amend",
                at=now,
                actor_org=actor.organisation,
                actor_subject=actor.subject,
                reason=reason,
                record=record,
                new_licence_id=new.licence_id,
            ),
            LicenceEvent(
                licence_id=new.licence_id,
                lineage=new.lineage,
                action="issue",
                at=now,
                actor_org=actor.organisation,
                actor_subject=actor.subject,
                reason=reason,
                record=f"sha256:{new.jws_digest}",
            ),
        ]
        self.store.amend(old, new, events)
        return IssueResult(new, token, True)

    # -- status lists ------------------------------------------------------------------------

    def status_list_token(self, issuer_code: str) -> str:
        """The issuer's current signed ``statuslist+jwt`` (re-signed only when it changed)."""
        state = self.store.status_list_state(issuer_code)
        if state.next_index == 0:
            raise NotFound(
                f"no status list for issuer {issuer_code}", reason="STATUS_LIST_NOT_FOUND"
            )
        capacity = StatusList.capacity_for(state.next_index)
        key = (capacity, state.version)
        with self._status_lock:
            cached = self._status_tokens.get(issuer_code)
        if (
            cached is not None
            and cached[0] == key
            and time.monotonic() - cached[1] < STATUS_TOKEN_REFRESH_SECONDS
        ):
            return cached[2]
        entries = self.store.status_entries(issuer_code)
        status_list = StatusList.from_entries(capacity, entries)
        token = self.signer.sign_status_list(issuer_code, self.status_uri(issuer_code), status_list)
        with self._status_lock:
            self._status_tokens[issuer_code] = (key, time.monotonic(), token)
        return token

    def issuer_for_uri(self, uri: str) -> str:
        """The issuer code of one of this vault's status list URIs."""
        prefix = self.status_base_uri + "/"
        if not uri.startswith(prefix):
            raise NotFound(
                f"{uri} is not a status list of this vault", reason="STATUS_LIST_NOT_FOUND"
            )
        return uri[len(prefix) :]

    # -- verification ---------------------------------------------------------------------

    def _stored_status(self, licence_id: str, payload: Any) -> LicenceStatus:
        licence = self.store.get(licence_id)
        if licence is None:
            raise NotFound(f"licence {licence_id} is not in this vault", reason="LICENCE_NOT_FOUND")
        if licence.jws_digest and payload != licence.payload:
            raise FailedPrecondition(
                "the presented licence differs from the stored one", reason="CONTENT_MISMATCH"
            )
        return licence.status

    def verify_jws(self, token: str) -> Verification:
        now = self.clock()
        return self.verifier.verify(token.strip(), now=now, today=now.astimezone(UTC).date())

    def verify_id(self, licence_id: str) -> tuple[Licence, Verification]:
        """Verify the stored document of ``licence_id`` (IntegrityError if it was altered)."""
        licence = self.get(licence_id)
        return licence, self.verify_jws(self.read_jws(licence))

    def verify_pdf(self, pdf: bytes) -> Verification:
        """Verify a sealed PDF (original or annotated copy) and look up its licence's status.

        The PAdES signature, chain and seal are checked by the signing
        deployment's verifier; the document is then found by its hash among the
        PDFs this vault made, which gives the licence (and for an annotated
        copy, until when it may be used).
        """
        from signing.verify import verify_document

        now = self.clock()
        result = verify_document(
            pdf, self.signer.trust_bundle(), self.signer.seal_registry(), now=now
        )
        if not result.valid or result.department is None:
            return Verification(False, result.reason, result.message)
        base: dict[str, Any] = {
            "issuer_code": result.department.uscc,
            "issuer_name": result.department.name,
            "signed_at": result.signed_at,
            "seal_id": result.seal.seal_id if result.seal else "",
        }
        found = self.store.find_pdf(hashlib.sha256(pdf).hexdigest())
        if found is None:
            return Verification(
                False,
                "UNKNOWN_DOCUMENT",
                "the seal signature is valid, but this vault made no such document",
                **base,
            )
        licence, use = found
        if licence.issuer_code != result.department.uscc:
            return Verification(
                False, "ISSUER_MISMATCH", "signed by another department", licence.licence_id, **base
            )
        status = licence.effective_status(now.astimezone(UTC).date())
        base["payload"] = licence.payload
        if status is not LicenceStatus.VALID:
            return Verification(
                False,
                status.name,
                f"the licence is {status.value} ({status.label})",
                licence.licence_id,
                status,
                **base,
            )
        if use is not None and now > use.use_until:
            return Verification(
                False,
                "ANNOTATION_EXPIRED",
                f"this copy ({use.watermark}) could be used until {use.use_until.isoformat()}",
                licence.licence_id,
                status,
                **base,
            )
        return Verification(True, "", "valid", licence.licence_id, status, **base)

    # -- consent ---------------------------------------------------------------------------

    def grant_consent(
        self,
        holder_code: str,
        organisation: str,
        type_codes: Sequence[str],
        matter_code: str,
        valid_until: datetime,
    ) -> Consent:
        from licence_vault.holder import validate_uscc_code

        holder = validate_holder(holder_code, detect_code_type(holder_code))
        org = validate_uscc_code(organisation, field="organisation")
        matter = self.matters.get(matter_code)
        if not type_codes:
            raise _bad("type_codes", "must name at least one licence type")
        types = []
        for i, code in enumerate(type_codes):
            self.types.get(code, f"type_codes[{i}]")
            if code not in matter.type_codes:
                raise _bad(
                    f"type_codes[{i}]",
                    f"is not used by the matter {matter.name}",
                    "TYPE_NOT_FOR_MATTER",
                )
            if code not in types:
                types.append(code)
        now = self.clock()
        if valid_until.tzinfo is None or valid_until <= now:
            raise _bad("valid_until", "must be a future time", "INVALID_CONSENT_PERIOD")
        if valid_until > now + timedelta(days=MAX_CONSENT_DAYS):
            raise _bad(
                "valid_until",
                f"a consent lasts at most {MAX_CONSENT_DAYS} days",
                "INVALID_CONSENT_PERIOD",
            )
        consent = Consent(
            consent_id=uuid.uuid4().hex,
            holder_code=holder,
            organisation=org,
            type_codes=tuple(types),
            matter_code=matter.code,
            valid_until=valid_until.astimezone(UTC),
            created_at=now,
        )
        self.store.add_consent(consent)
        return consent

    def withdraw_consent(self, holder_code: str, consent_id: str, reason: str) -> Consent:
        consent = self.store.get_consent(consent_id.strip())
        if consent is None or consent.holder_code != holder_code.strip().upper():
            raise NotFound(f"no consent {consent_id} of this holder", reason="CONSENT_NOT_FOUND")
        if consent.withdrawn_at is not None:
            return consent
        reason = _text(reason, "reason", max_length=MAX_REASON, required=False)
        return self.store.withdraw_consent(consent.consent_id, self.clock(), reason)

    def consents_of(self, holder_code: str) -> list[Consent]:
        return self.store.consents_of(holder_code.strip().upper())

    # -- fetch --------------------------------------------------------------------------------

    def _check_consent(
        self,
        consent_id: str,
        consent: Consent | None,
        holder: str,
        actor: Actor,
        matter: Matter,
        type_codes: Sequence[str],
        now: datetime,
    ) -> Consent:
        def deny(reason: str, message: str) -> PermissionDenied:
            return PermissionDenied(message, reason=reason, metadata={"consent_id": consent_id})

        if consent is None or consent.holder_code != holder:
            raise deny("CONSENT_NOT_FOUND", f"the holder gave no consent {consent_id}")
        if consent.withdrawn_at is not None:
            raise deny("CONSENT_WITHDRAWN", f"consent {consent_id} was withdrawn by the holder")
        if consent.valid_until <= now:
            raise deny(
                "CONSENT_EXPIRED",
                f"consent {consent_id} expired at {consent.valid_until.isoformat()}",
            )
        if consent.organisation != actor.organisation:
            raise deny(
                "CONSENT_WRONG_ORGANISATION",
                f"consent {consent_id} was given to {consent.organisation}, "
                f"not to {actor.organisation}",
            )
        if consent.matter_code != matter.code:
            raise deny(
                "CONSENT_WRONG_MATTER",
                f"consent {consent_id} is for matter {consent.matter_code}, not {matter.code}",
            )
        outside = [c for c in type_codes if c not in consent.type_codes]
        if outside:
            names = ", ".join(self.types.get(c).name for c in outside)
            raise deny("CONSENT_WRONG_TYPE", f"consent {consent_id} does not cover {names}")
        return consent

    def _fetch_request(
        self, holder_code: str, type_codes: Sequence[str], matter_code: str
    ) -> tuple[str, Matter, list[str]]:
        holder = validate_holder(holder_code, detect_code_type(holder_code))
        matter = self.matters.get(matter_code)
        if not type_codes:
            raise _bad("type_codes", "must name at least one licence type")
        for i, code in enumerate(type_codes):
            self.types.get(code, f"type_codes[{i}]")
            if code not in matter.type_codes:
                raise PermissionDenied(
                    f"the matter {matter.name} does not use {self.types.get(code).name}",
                    reason="TYPE_NOT_FOR_MATTER",
                )
        return holder, matter, list(dict.fromkeys(type_codes))

    def _basis(
        self,
        actor: Actor,
        holder: str,
        matter: Matter,
        types: Sequence[str],
        consent_id: str,
        consent: Consent | None,
        now: datetime,
    ) -> FetchBasis:
        if consent_id.strip():
            self._check_consent(consent_id, consent, holder, actor, matter, types, now)
            return FetchBasis.CONSENT
        if matter.legal_basis is not None:
            return FetchBasis.LEGAL_BASIS
        raise PermissionDenied(
            f"the matter {matter.name} needs the holder's consent: give a consent id",
            reason="CONSENT_REQUIRED",
        )

    def authorise_fetch(
        self,
        actor: Actor,
        holder_code: str,
        type_codes: Sequence[str],
        matter_code: str,
        consent_id: str,
    ) -> tuple[str, Matter, Consent | None, FetchBasis]:
        """Validate a fetch and decide its basis; PermissionDenied with the reason if refused."""
        holder, matter, types = self._fetch_request(holder_code, type_codes, matter_code)
        consent = self.store.get_consent(consent_id.strip()) if consent_id.strip() else None
        basis = self._basis(actor, holder, matter, types, consent_id, consent, self.clock())
        return holder, matter, consent if basis is FetchBasis.CONSENT else None, basis

    def fetch(
        self,
        actor: Actor,
        holder_code: str,
        type_codes: Sequence[str],
        matter_code: str,
        consent_id: str = "",
        *,
        with_pdf: bool = False,
    ) -> FetchResult:
        """The holder's current licences of ``type_codes`` for ``matter_code``.

        Valid licences come with their JWS (and, ``with_pdf``, an annotated PDF
        copy when this vault renders PDFs); others with their status only.
        Every returned licence gets a use record, written in the same
        transaction that read the consent and the licences. IntegrityError if
        a stored document was altered: nothing is returned or recorded then.
        """
        holder, matter, types = self._fetch_request(holder_code, type_codes, matter_code)
        now = self.clock()
        today = now.astimezone(UTC).date()
        outcome: list[FetchResult] = []

        def decide(consent: Consent | None, licences: list[Licence]) -> list[UseRecord]:
            basis = self._basis(actor, holder, matter, types, consent_id, consent, now)
            granted = consent if basis is FetchBasis.CONSENT else None
            use_until = now + timedelta(days=matter.use_days)
            if granted is not None:
                use_until = min(use_until, granted.valid_until)
            watermark = f"{matter.watermark} {actor.organisation} {today.isoformat()}"
            items: list[FetchedLicence] = []
            for licence in licences:
                status = licence.effective_status(today)
                jws = self.read_jws(licence) if status is LicenceStatus.VALID else None
                use = UseRecord(
                    annotation_id=uuid.uuid4().hex,
                    licence_id=licence.licence_id,
                    holder_code=holder,
                    requester_org=actor.organisation,
                    requester_subject=actor.subject,
                    matter_code=matter.code,
                    matter_name=matter.name,
                    basis=basis,
                    consent_id=granted.consent_id if granted else "",
                    legal_basis=(matter.legal_basis or "") if granted is None else "",
                    used_at=now,
                    use_until=use_until,
                    watermark=watermark,
                    status_at_use=status,
                )
                pdf = None
                if jws is not None and self.pdf is not None and with_pdf:
                    seal = self.signer.issuer(licence.issuer_code, at=now)
                    pdf = self.pdf.render(
                        licence, self.types.get(licence.type_code), seal, watermark=watermark
                    )
                    use = replace(use, pdf_digest=self.blobs.put(pdf))
                items.append(FetchedLicence(licence, status, jws, pdf, use))
            outcome.append(FetchResult(basis, matter, granted, items))
            return [item.use for item in items]

        self.store.fetch(consent_id.strip(), holder, types, decide)
        return outcome[0]

    # -- holder's view -------------------------------------------------------------------------

    def holder_licences(
        self, holder_code: str, *, include_superseded: bool = False
    ) -> list[Licence]:
        return self.store.by_holder(
            holder_code.strip().upper(), include_superseded=include_superseded
        )

    def holder_uses(
        self, holder_code: str, *, before: int = 0, limit: int = 100
    ) -> list[tuple[int, UseRecord]]:
        return self.store.uses_of(holder_code.strip().upper(), before=before, limit=limit)


def _reused(request_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"request id {request_id!r} was already used for a different licence request",
        reason="REQUEST_ID_REUSED",
        violations=[FieldViolation("request_id", "was used for a different request")],
    )
