"""``zhida.licence.v1.LicenceVaultService``: the vault over gRPC.

Translates protobuf to :class:`~licence_vault.vault.Vault` calls and back
(:mod:`licence_vault.wire`), adds the rules a role table cannot express (an
issuer reads only its own licences, a holder only its own; the holder is the
token's subject), runs blocking work in the runtime's I/O threads and writes
every change, every fetch (refused ones too) and every verification to the
node's audit log *before* the call returns.

Example::

    stub = LicenceVaultServiceStub(channel)
    reply = stub.IssueLicence(pb.IssueLicenceRequest(draft=draft), metadata=issuer_md)
    reply.licence.licence_id, reply.jws
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit_log.events import Action, Outcome
from licence_vault.holder import detect_code_type, validate_holder
from licence_vault.matters import MatterRegistry
from licence_vault.model import FetchBasis, Licence
from licence_vault.signer import open_signer
from licence_vault.sql import SqlLicenceStore
from licence_vault.types import TypeRegistry
from licence_vault.vault import MAX_BATCH, Actor, FetchResult, Vault
from licence_vault.wire import (
    BASES,
    STATUS_NUMBERS,
    annotation_message,
    consent_message,
    draft_request,
    event_message,
    licence_message,
    matter_message,
    parse_date,
    type_message,
    verification_message,
)
from zhida.auth.principal import Principal, Role
from zhida.errors import (
    FieldViolation,
    IntegrityError,
    InvalidArgument,
    PermissionDenied,
    ZhidaError,
)
from zhida.licence.v1 import licence_vault_service_pb2 as pb
from zhida.licence.v1 import licence_vault_service_pb2_grpc as pb_grpc
from zhida.server.context import current_principal
from zhida.server.runtime import NodeRuntime

log = logging.getLogger("zhida.licence")

MAX_PAGE = 500


def status_base_uri(node_name: str) -> str:
    """Where this node's status lists live: ``zhida://<node>/licence/v1/status-lists``."""
    return f"zhida://{node_name}/licence/v1/status-lists"


def open_vault(runtime: NodeRuntime) -> Vault:
    """The vault of a serving node: its database, blob store and signing deployment."""
    signer, pdf = open_signer(runtime.config)
    return Vault(
        SqlLicenceStore(runtime.database),
        runtime.blobstore,
        signer,
        pdf=pdf,
        status_base_uri=status_base_uri(runtime.config.node.name),
    )


def _actor(principal: Principal) -> Actor:
    return Actor(principal.organisation, principal.subject, principal.region_code)


def _holder(principal: Principal) -> str:
    """The holder a holder token stands for: its subject, a resident ID or a USCC."""
    return validate_holder(principal.subject, detect_code_type(principal.subject), field="sub")


class LicenceVaultService(pb_grpc.LicenceVaultServiceServicer):
    """See ``protos/zhida/licence/v1/licence_vault_service.proto``."""

    def __init__(self, runtime: NodeRuntime, vault: Vault | None = None) -> None:
        self._runtime = runtime
        self._recorder = runtime.recorder
        # Opened on first use, in an I/O thread: a development node makes its
        # signing PKI then (seconds), and nodes start without waiting for it.
        self._vault = vault
        self._vault_lock = threading.Lock()
        self._types = pb.ListLicenceTypesResponse(
            types=[type_message(t) for t in TypeRegistry.builtin().all()],
            matters=[matter_message(m) for m in MatterRegistry.builtin().all()],
        )

    @property
    def vault(self) -> Vault:
        """The vault; handlers use it only after ``await self._ready()``."""
        if self._vault is None:
            with self._vault_lock:
                if self._vault is None:
                    self._vault = open_vault(self._runtime)
        return self._vault

    async def _ready(self) -> None:
        if self._vault is None:
            await self._runtime.run_blocking(lambda: self.vault)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._runtime.run_blocking(fn, *args, **kwargs)

    async def _integrity_failure(self, exc: IntegrityError, licence_id: str = "") -> None:
        """A stored document failed its hash check: log it, record it, never serve it."""
        log.error(
            "stored licence document failed its integrity check: %s",
            exc.message,
            extra={"licence_id": licence_id, "reason": exc.reason},
        )
        await self._recorder.record(
            Action.LICENCE_FETCH,
            outcome=Outcome.ERROR,
            reason=exc.reason,
            licence_id=licence_id or None,
            details={"error": "stored document failed its hash check"},
        )

    # -- types --------------------------------------------------------------------------------

    async def ListLicenceTypes(
        self, request: pb.ListLicenceTypesRequest, context: Any
    ) -> pb.ListLicenceTypesResponse:
        return self._types  # the registries are fixed for the life of the process

    # -- issue --------------------------------------------------------------------------------

    async def IssueLicence(
        self, request: pb.IssueLicenceRequest, context: Any
    ) -> pb.IssueLicenceResponse:
        await self._ready()
        actor = _actor(current_principal())
        draft = draft_request(request.draft, "draft.")
        try:
            result = await self._run(lambda: self.vault.issue(actor, draft, field_prefix="draft."))
        except IntegrityError as exc:
            await self._integrity_failure(exc)
            raise
        await self._recorder.record(
            Action.LICENCE_ISSUE,
            licence_id=result.licence.licence_id,
            holder_id=result.licence.holder_code,
            details={
                "type_code": result.licence.type_code,
                "request_id": draft.request_id,
                "created": str(result.created).lower(),
            },
        )
        return pb.IssueLicenceResponse(
            licence=licence_message(result.licence), jws=result.jws, created=result.created
        )

    async def BatchIssueLicences(
        self, request: pb.BatchIssueLicencesRequest, context: Any
    ) -> pb.BatchIssueLicencesResponse:
        await self._ready()
        actor = _actor(current_principal())
        if len(request.drafts) > MAX_BATCH:
            raise InvalidArgument(
                f"a batch holds at most {MAX_BATCH} drafts", reason="BATCH_TOO_LARGE"
            )
        drafts, prefixes = [], []
        early: dict[int, ZhidaError] = {}
        for i, draft in enumerate(request.drafts):
            try:
                drafts.append(draft_request(draft, f"drafts[{i}]."))
                prefixes.append(f"drafts[{i}].")
            except ZhidaError as exc:
                early[i] = exc
        items = (
            await self._run(
                lambda: self.vault.issue_batch(
                    actor, drafts, field_prefixes=prefixes, with_pdf=not request.jws_only
                )
            )
            if drafts
            else []
        )
        # one event per licence issued, appended together (one group commit, not one each)
        await asyncio.gather(
            *(
                self._recorder.record(
                    Action.LICENCE_ISSUE,
                    licence_id=item.result.licence.licence_id,
                    holder_id=item.result.licence.holder_code,
                    details={
                        "type_code": item.result.licence.type_code,
                        "request_id": item.request_id,
                        "batch": "true",
                    },
                )
                for item in items
                if item.result is not None and item.result.created
            )
        )
        outcomes: list[pb.IssueOutcome] = []
        remaining = iter(items)
        for i, draft in enumerate(request.drafts):
            error = early.get(i)
            if error is not None:
                outcomes.append(_error_outcome(i, draft.request_id, error))
                continue
            item = next(remaining)
            if item.error is not None:
                outcomes.append(_error_outcome(i, item.request_id, item.error))
                continue
            assert item.result is not None
            outcomes.append(
                pb.IssueOutcome(
                    index=i,
                    request_id=item.request_id,
                    licence=licence_message(item.result.licence),
                    created=item.result.created,
                    jws=item.result.jws if request.include_jws else "",
                )
            )
        return pb.BatchIssueLicencesResponse(outcomes=outcomes)

    # -- lifecycle ----------------------------------------------------------------------------

    async def AmendLicence(
        self, request: pb.AmendLicenceRequest, context: Any
    ) -> pb.AmendLicenceResponse:
        await self._ready()
        actor = _actor(current_principal())
        result = await self._run(
            lambda: self.vault.amend(
                actor,
                request.licence_id,
                changes=dict(request.changes),
                reason=request.reason,
                holder_name=request.holder_name or None,
                valid_until=parse_date(request.valid_until, "valid_until"),
            )
        )
        await self._recorder.record(
            Action.LICENCE_AMEND,
            licence_id=request.licence_id,
            holder_id=result.licence.holder_code,
            details={"new_licence_id": result.licence.licence_id, "reason": request.reason[:500]},
        )
        return pb.AmendLicenceResponse(
            licence=licence_message(result.licence),
            jws=result.jws,
            superseded_licence_id=request.licence_id,
        )

    async def _change(self, action: Action, fn: Any, licence_id: str, reason: str) -> Licence:
        actor = _actor(current_principal())
        licence: Licence = await self._run(fn, actor, licence_id, reason)
        await self._recorder.record(
            action,
            licence_id=licence.licence_id,
            holder_id=licence.holder_code,
            details={"reason": reason[:500], "status": licence.status.value},
        )
        return licence

    async def SuspendLicence(
        self, request: pb.SuspendLicenceRequest, context: Any
    ) -> pb.SuspendLicenceResponse:
        await self._ready()
        licence = await self._change(
            Action.LICENCE_SUSPEND, self.vault.suspend, request.licence_id, request.reason
        )
        return pb.SuspendLicenceResponse(licence=licence_message(licence))

    async def ResumeLicence(
        self, request: pb.ResumeLicenceRequest, context: Any
    ) -> pb.ResumeLicenceResponse:
        await self._ready()
        licence = await self._change(
            Action.LICENCE_RESUME, self.vault.resume, request.licence_id, request.reason
        )
        return pb.ResumeLicenceResponse(licence=licence_message(licence))

    async def RevokeLicence(
        self, request: pb.RevokeLicenceRequest, context: Any
    ) -> pb.RevokeLicenceResponse:
        await self._ready()
        licence = await self._change(
            Action.LICENCE_REVOKE, self.vault.revoke, request.licence_id, request.reason
        )
        return pb.RevokeLicenceResponse(licence=licence_message(licence))

    # -- reads --------------------------------------------------------------------------------

    def _may_read(self, principal: Principal, licence: Licence) -> None:
        if principal.role is Role.AUDITOR:
            return
        if principal.role is Role.ISSUER and principal.organisation == licence.issuer_code:
            return
        if principal.role is Role.HOLDER and _holder(principal) == licence.holder_code:
            return
        raise PermissionDenied(
            "only the issuing department, the holder or an auditor may read this licence",
            reason="NOT_YOUR_LICENCE",
        )

    async def GetLicence(
        self, request: pb.GetLicenceRequest, context: Any
    ) -> pb.GetLicenceResponse:
        await self._ready()
        principal = current_principal()
        licence: Licence = await self._run(self.vault.get, request.licence_id)
        self._may_read(principal, licence)
        try:
            jws = await self._run(self.vault.read_jws, licence)
        except IntegrityError as exc:
            await self._integrity_failure(exc, licence.licence_id)
            raise
        return pb.GetLicenceResponse(licence=licence_message(licence), jws=jws)

    async def GetLicenceHistory(
        self, request: pb.GetLicenceHistoryRequest, context: Any
    ) -> pb.GetLicenceHistoryResponse:
        await self._ready()
        principal = current_principal()
        versions, events = await self._run(self.vault.history, request.licence_id)
        self._may_read(principal, versions[-1])
        return pb.GetLicenceHistoryResponse(
            versions=[licence_message(v) for v in versions],
            events=[event_message(e) for e in events],
        )

    # -- status lists and trust ---------------------------------------------------------------

    async def GetStatusList(
        self, request: pb.GetStatusListRequest, context: Any
    ) -> pb.GetStatusListResponse:
        await self._ready()
        issuer = request.issuer_code.strip()
        if request.uri:
            issuer = self.vault.issuer_for_uri(request.uri)
        if not issuer:
            raise InvalidArgument(
                "give issuer_code or uri",
                reason="INVALID_ARGUMENT",
                violations=[FieldViolation("issuer_code", "is required without uri")],
            )
        token = await self._run(self.vault.status_list_token, issuer)
        return pb.GetStatusListResponse(token=token, uri=self.vault.status_uri(issuer))

    async def GetTrustMaterial(
        self, request: pb.GetTrustMaterialRequest, context: Any
    ) -> pb.GetTrustMaterialResponse:
        await self._ready()
        signer = self.vault.signer
        registry = signer.seal_registry()
        return pb.GetTrustMaterialResponse(
            trust_bundle_json=signer.trust_bundle().to_json(),
            seals_json=[s.to_json() for s in signer.seals()],
            seal_revocations_json=registry.revocations.to_json(),
            seal_maker_keys_pem=[
                k.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
                for k in signer.seal_maker_keys()
            ],
            status_list_base_uri=self.vault.status_base_uri,
        )

    # -- consent ------------------------------------------------------------------------------

    async def GrantConsent(
        self, request: pb.GrantConsentRequest, context: Any
    ) -> pb.GrantConsentResponse:
        await self._ready()
        holder = _holder(current_principal())
        if not request.HasField("valid_until"):
            raise InvalidArgument(
                "valid_until is required",
                reason="INVALID_CONSENT_PERIOD",
                violations=[FieldViolation("valid_until", "is required")],
            )
        until = request.valid_until.ToDatetime(tzinfo=UTC)
        consent = await self._run(
            self.vault.grant_consent,
            holder,
            request.organisation,
            list(request.type_codes),
            request.matter_code,
            until,
        )
        await self._recorder.record(
            Action.CONSENT_GIVE,
            holder_id=holder,
            matter=consent.matter_code,
            details={
                "consent_id": consent.consent_id,
                "organisation": consent.organisation,
                "type_codes": ",".join(consent.type_codes),
                "valid_until": consent.valid_until.isoformat(),
            },
        )
        return pb.GrantConsentResponse(consent=consent_message(consent))

    async def WithdrawConsent(
        self, request: pb.WithdrawConsentRequest, context: Any
    ) -> pb.WithdrawConsentResponse:
        await self._ready()
        holder = _holder(current_principal())
        consent = await self._run(
            self.vault.withdraw_consent, holder, request.consent_id, request.reason
        )
        await self._recorder.record(
            Action.CONSENT_WITHDRAW,
            holder_id=holder,
            matter=consent.matter_code,
            details={"consent_id": consent.consent_id, "organisation": consent.organisation},
        )
        return pb.WithdrawConsentResponse(consent=consent_message(consent))

    async def ListConsents(
        self, request: pb.ListConsentsRequest, context: Any
    ) -> pb.ListConsentsResponse:
        await self._ready()
        holder = _holder(current_principal())
        consents = await self._run(self.vault.consents_of, holder)
        return pb.ListConsentsResponse(consents=[consent_message(c) for c in consents])

    # -- fetch --------------------------------------------------------------------------------

    async def FetchLicences(
        self, request: pb.FetchLicencesRequest, context: Any
    ) -> pb.FetchLicencesResponse:
        await self._ready()
        actor = _actor(current_principal())
        types = list(request.type_codes)
        try:
            result: FetchResult = await self._run(
                lambda: self.vault.fetch(
                    actor,
                    request.holder_code,
                    types,
                    request.matter_code,
                    request.consent_id,
                    with_pdf=request.annotated_pdf,
                )
            )
        except PermissionDenied as exc:
            await self._recorder.record(
                Action.LICENCE_FETCH,
                outcome=Outcome.DENIED,
                reason=exc.reason,
                holder_id=_printable(request.holder_code),
                matter=_printable(request.matter_code),
                details=_fetch_details(request.consent_id, types),
            )
            raise
        except IntegrityError as exc:
            await self._integrity_failure(exc)
            raise
        await asyncio.gather(
            *(
                self._recorder.record(
                    Action.LICENCE_FETCH,
                    licence_id=item.licence.licence_id,
                    holder_id=item.licence.holder_code,
                    matter=item.use.matter_code,
                    purpose=item.use.watermark,
                    legal_basis=item.use.legal_basis or None,
                    details={
                        "basis": item.use.basis.value,
                        "annotation_id": item.use.annotation_id,
                        "status": item.status.value,
                        **({"consent_id": item.use.consent_id} if item.use.consent_id else {}),
                    },
                )
                for item in result.items
            )
        )
        return pb.FetchLicencesResponse(
            basis=BASES[result.basis],
            matter_name=result.matter.name,
            legal_basis=(
                result.matter.legal_basis or "" if result.basis is FetchBasis.LEGAL_BASIS else ""
            ),
            consent_id=result.consent.consent_id if result.consent else "",
            licences=[
                pb.FetchedLicence(
                    licence=licence_message(item.licence, item.status),
                    status=STATUS_NUMBERS[item.status],
                    jws=item.jws or "",
                    annotated_pdf=item.pdf or b"",
                    annotation=annotation_message(item.use),
                )
                for item in result.items
            ],
        )

    # -- holder's view ------------------------------------------------------------------------

    async def ListMyLicences(
        self, request: pb.ListMyLicencesRequest, context: Any
    ) -> pb.ListMyLicencesResponse:
        await self._ready()
        holder = _holder(current_principal())
        licences = await self._run(
            lambda: self.vault.holder_licences(
                holder, include_superseded=request.include_superseded
            )
        )
        today = datetime.now(UTC).date()
        return pb.ListMyLicencesResponse(
            licences=[licence_message(lic, lic.effective_status(today)) for lic in licences]
        )

    async def ListLicenceUses(
        self, request: pb.ListLicenceUsesRequest, context: Any
    ) -> pb.ListLicenceUsesResponse:
        await self._ready()
        holder = _holder(current_principal())
        size = request.page_size or 100
        if not 1 <= size <= MAX_PAGE:
            raise InvalidArgument(
                f"page_size must be 1..{MAX_PAGE}",
                reason="INVALID_PAGE_SIZE",
                violations=[FieldViolation("page_size", f"must be 1..{MAX_PAGE}")],
            )
        before = 0
        if request.page_token:
            if not request.page_token.isdigit():
                raise InvalidArgument(
                    "bad page token",
                    reason="INVALID_PAGE_TOKEN",
                    violations=[FieldViolation("page_token", "is not a token of this list")],
                )
            before = int(request.page_token)
        page = await self._run(
            lambda: self.vault.holder_uses(holder, before=before, limit=size + 1)
        )
        more = len(page) > size
        page = page[:size]
        return pb.ListLicenceUsesResponse(
            uses=[annotation_message(use) for _cursor, use in page],
            next_page_token=str(page[-1][0]) if more and page else "",
        )

    # -- verify -------------------------------------------------------------------------------

    async def VerifyLicence(
        self, request: pb.VerifyLicenceRequest, context: Any
    ) -> pb.VerifyLicenceResponse:
        await self._ready()
        which = request.WhichOneof("document")
        if which == "licence_id":
            try:
                _licence, verification = await self._run(self.vault.verify_id, request.licence_id)
            except IntegrityError as exc:
                await self._integrity_failure(exc, request.licence_id)
                raise
        elif which == "jws":
            verification = await self._run(self.vault.verify_jws, request.jws)
        elif which == "pdf":
            verification = await self._run(self.vault.verify_pdf, request.pdf)
        else:
            raise InvalidArgument(
                "give licence_id, jws or pdf",
                reason="INVALID_ARGUMENT",
                violations=[FieldViolation("document", "is required")],
            )
        await self._recorder.record(
            Action.LICENCE_VERIFY,
            licence_id=verification.licence_id or None,
            details={
                "valid": str(verification.valid).lower(),
                "result": verification.reason or "OK",
            },
        )
        return verification_message(verification)


def _printable(text: str, limit: int = 128) -> str | None:
    """``text`` if it can go into an audit event as given (refused input may be anything)."""
    value = text.strip()[:limit]
    return value if value and value.isprintable() else None


def _fetch_details(consent_id: str, types: list[str]) -> Mapping[str, str]:
    listed = ",".join(t for t in types if t.isprintable())[:500]
    details = {"type_codes": listed or "-"}
    if (consent := _printable(consent_id, 64)) is not None:
        details["consent_id"] = consent
    return details


def _error_outcome(index: int, request_id: str, error: ZhidaError) -> pb.IssueOutcome:
    return pb.IssueOutcome(
        index=index,
        request_id=request_id,
        error_reason=error.reason,
        error_message=error.message,
        error_fields=[v.field for v in error.violations],
    )
