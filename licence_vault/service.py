"""``zhida.licence.v1.LicenceVaultService``: the vault over gRPC.

Translates protobuf to :class:`~licence_vault.vault.Vault` calls and back
(:mod:`licence_vault.wire`), adds the rules a role table cannot express (an
issuer reads only its own licences, a holder only its own; the holder is the
token's subject), runs blocking work in the runtime's I/O threads and writes
every change, every fetch (refused ones too) and every verification to the
node's audit log *before* the call returns. The consent, fetch and holder's
view handlers live in :mod:`licence_vault.service_access`, the shared
plumbing (opening the vault, the caller's identity) in
:mod:`licence_vault.service_base`.

Example::

    stub = LicenceVaultServiceStub(channel)
    reply = stub.IssueLicence(pb.IssueLicenceRequest(draft=draft), metadata=issuer_md)
    reply.licence.licence_id, reply.jws
"""

from __future__ import annotations

import asyncio
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit_log.events import Action
from licence_vault.model import Licence
from licence_vault.service_access import AccessHandlers
from licence_vault.service_base import actor_of, holder_of
from licence_vault.vault import MAX_BATCH
from licence_vault.wire import (
    draft_request,
    event_message,
    licence_message,
    parse_date,
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


class LicenceVaultService(AccessHandlers, pb_grpc.LicenceVaultServiceServicer):
    """See ``protos/zhida/licence/v1/licence_vault_service.proto``."""

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
        actor = actor_of(current_principal())
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
        lic = result.licence  # a historical import may have lapsed already
        return pb.IssueLicenceResponse(
            licence=licence_message(lic, lic.effective_status(self.vault.today())),
            jws=result.jws,
            created=result.created,
        )

    async def BatchIssueLicences(
        self, request: pb.BatchIssueLicencesRequest, context: Any
    ) -> pb.BatchIssueLicencesResponse:
        await self._ready()
        actor = actor_of(current_principal())
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
        today = self.vault.today()
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
                    licence=licence_message(
                        item.result.licence, item.result.licence.effective_status(today)
                    ),
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
        actor = actor_of(current_principal())
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
        actor = actor_of(current_principal())
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
        if principal.role is Role.HOLDER and holder_of(principal) == licence.holder_code:
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
        # the effective status: a lapsed licence reads as expired before the job stores it
        status = licence.effective_status(self.vault.today())
        return pb.GetLicenceResponse(licence=licence_message(licence, status), jws=jws)

    async def GetLicenceHistory(
        self, request: pb.GetLicenceHistoryRequest, context: Any
    ) -> pb.GetLicenceHistoryResponse:
        await self._ready()
        principal = current_principal()
        versions, events = await self._run(self.vault.history, request.licence_id)
        self._may_read(principal, versions[-1])
        today = self.vault.today()
        return pb.GetLicenceHistoryResponse(
            versions=[licence_message(v, v.effective_status(today)) for v in versions],
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


def _error_outcome(index: int, request_id: str, error: ZhidaError) -> pb.IssueOutcome:
    return pb.IssueOutcome(
        index=index,
        request_id=request_id,
        error_reason=error.reason,
        error_message=error.message,
        error_fields=[v.field for v in error.violations],
    )
