"""The electronic-licence vault (电子证照库): issue, lifecycle, status lists, consent, fetch.

:class:`Vault` is the domain: it validates, decides and orchestrates; it
knows nothing of gRPC or SQL. It persists through a
:class:`~licence_vault.store.LicenceStore` — licences, history and each
licence's JWS, written in one transaction — keeps PDFs in the node's
content-addressed :class:`~zhida.blobstore.BlobStore` and signs through a
:class:`~licence_vault.signer.LicenceSigner`. Every document read is
re-hashed (:mod:`licence_vault.documents`): a tampered document raises
IntegrityError and is never returned.

Rules it enforces:

* only a department whose seal is valid now may issue, and only the issuing
  department may amend, suspend, resume or revoke its licences
  (PermissionDenied ``NOT_ISSUER``);
* an issue is idempotent per (issuer, request id): a retry returns the
  licence of the first attempt; the same id with different content is
  refused (``REQUEST_ID_REUSED``);
* an amendment makes version n+1 (new identifier, new status index, signed
  anew) and marks version n superseded; old versions stay verifiable;
* a licence whose validity has ended is expired: reads say so at once,
  :meth:`Vault.expire_due` stores it; it can no longer be amended, suspended
  or resumed, only revoked (:mod:`licence_vault.lifecycle`);
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
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any

from licence_vault.access import ConsentAndFetch
from licence_vault.days import licence_day
from licence_vault.documents import read_jws
from licence_vault.identifier import LicenceId
from licence_vault.issuing import MAX_BATCH, Issuing
from licence_vault.lifecycle import (
    EXPIRY_SUBJECT,
    ExpiryReport,
    change_record,
    expire_due,
    refuse_if_ended,
)
from licence_vault.matters import MatterRegistry
from licence_vault.model import (
    IssueRequest,
    Licence,
    LicenceEvent,
    LicenceStatus,
)
from licence_vault.results import (
    MAX_REASON,
    Actor,
    BatchItem,
    FetchedLicence,
    FetchRequest,
    FetchResult,
    IssueResult,
    PdfRenderer,
    bad,
    text_field,
)
from licence_vault.signer import LicenceSigner
from licence_vault.status_list import StatusList
from licence_vault.store import LicenceStore
from licence_vault.types import TypeRegistry
from licence_vault.verify import (
    LicenceVerifier,
    Verification,
    annotation_claims,
    check_annotation,
)
from signing.jws import JwsVerifier
from zhida.blobstore import BlobStore
from zhida.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
)

__all__ = [
    "MAX_BATCH",
    "Actor",
    "BatchItem",
    "ExpiryReport",
    "FetchRequest",
    "FetchResult",
    "FetchedLicence",
    "IssueResult",
    "PdfRenderer",
    "Vault",
]

STATUS_TOKEN_REFRESH_SECONDS = 3600


class Vault(Issuing, ConsentAndFetch):
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

    # -- documents ------------------------------------------------------------------------

    def read_jws(self, licence: Licence) -> str:
        """The stored JWS; IntegrityError(BLOB_HASH_MISMATCH) if the stored bytes changed."""
        return read_jws(self.store, self.blobs, licence)

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
        return change_record(self.signer, actor, licence, action, reason, now, **extra)

    def _transition(
        self,
        actor: Actor,
        licence_id: str,
        reason: str,
        action: str,
        allowed_from: tuple[LicenceStatus, ...],
        new: LicenceStatus,
    ) -> Licence:
        reason = text_field(reason, "reason", max_length=MAX_REASON)
        licence = self._own(actor, licence_id)
        now = self.clock()
        if new is not LicenceStatus.REVOKED:  # a lapsed licence may still be 注销'd
            refuse_if_ended(licence, action, licence_day(now))
        if licence.status not in allowed_from:
            raise FailedPrecondition(
                f"cannot {action} licence {licence_id}: it is {licence.status.value}",
                reason="INVALID_STATUS_TRANSITION",
                metadata={"status": licence.status.value},
            )
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
            (LicenceStatus.VALID, LicenceStatus.SUSPENDED, LicenceStatus.EXPIRED),
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
        reason = text_field(reason, "reason", max_length=MAX_REASON)
        old = self._own(actor, licence_id)
        now = self.clock()
        refuse_if_ended(old, "amend", licence_day(now))
        if old.status is not LicenceStatus.VALID:
            raise FailedPrecondition(
                f"only a valid licence can be amended; {licence_id} is {old.status.value}",
                reason="INVALID_STATUS_TRANSITION",
                metadata={"status": old.status.value},
            )
        if not changes and holder_name is None and valid_until is None:
            raise bad("changes", "must change something", "NOTHING_TO_AMEND")
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
        checked = self.check_request(request, licence_day(now))
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
        self.store.amend(old, new, events, token)
        return IssueResult(new, token, True)

    def expire_due(
        self,
        *,
        subject: str = EXPIRY_SUBJECT,
        batch_size: int = 200,
        on_progress: Callable[[ExpiryReport], None] | None = None,
    ) -> ExpiryReport:
        """Store ``expired``, with a signed ``expire`` event, for every valid licence whose
        validity ended before today (the vault's clock); idempotent. See
        :func:`licence_vault.lifecycle.expire_due`."""
        return expire_due(
            self.store,
            self.signer,
            now=self.clock(),
            subject=subject,
            batch_size=batch_size,
            on_progress=on_progress,
        )

    def today(self) -> date:
        """The vault's day in Beijing, which validity periods are judged on (see
        :mod:`licence_vault.days`)."""
        return licence_day(self.clock())

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
        return self.verifier.verify(token.strip(), now=now, today=licence_day(now))

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
        status = licence.effective_status(licence_day(now))
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
        # the copy's use period, from its use record here (zhida verify reads it from the PDF)
        ended = check_annotation(annotation_claims(use), now) if use is not None else None
        if ended is not None:
            return Verification(False, *ended, licence.licence_id, status, **base)
        return Verification(True, "", "valid", licence.licence_id, status, **base)
