"""Consent, fetch and the holder's view: the handlers that hand licences out.

A mixin of :class:`~licence_vault.service.LicenceVaultService`. Fetches
without an annotated PDF go through a :class:`~licence_vault.fetch_batcher.FetchBatcher`
(one thread, many fetches per transaction); when the node's audit log shares
the vault's database the fetch's audit events are committed together with
its use records (:mod:`licence_vault.journal`), otherwise appended after.
Either way a fetch is answered only once both are durable; a refused fetch
is audited with its reason.

Example::

    reply = stub.FetchLicences(pb.FetchLicencesRequest(holder_code=holder,
        type_codes=[type_code], matter_code="YJS-KBCYD", consent_id=consent_id), metadata=md)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from audit_log.events import Action, AuditEvent, Outcome
from licence_vault.fetch_batcher import FetchBatcher
from licence_vault.model import FetchBasis, Licence, LicenceStatus
from licence_vault.service_base import MAX_PAGE, ServiceBase, actor_of, holder_of
from licence_vault.vault import FetchRequest, FetchResult
from licence_vault.wire import (
    BASES,
    STATUS_NUMBERS,
    annotation_message,
    consent_message,
    licence_message,
)
from zhida.errors import FieldViolation, IntegrityError, InvalidArgument, PermissionDenied
from zhida.licence.v1 import licence_vault_service_pb2 as pb
from zhida.server.context import current_principal

__all__ = ["AccessHandlers"]


class AccessHandlers(ServiceBase):
    """GrantConsent, WithdrawConsent, ListConsents, FetchLicences, ListMyLicences,
    ListLicenceUses."""

    # -- consent ------------------------------------------------------------------------------

    async def GrantConsent(
        self, request: pb.GrantConsentRequest, context: Any
    ) -> pb.GrantConsentResponse:
        await self._ready()
        holder = holder_of(current_principal())
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
        holder = holder_of(current_principal())
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
        holder = holder_of(current_principal())
        consents = await self._run(self.vault.consents_of, holder)
        return pb.ListConsentsResponse(consents=[consent_message(c) for c in consents])

    # -- fetch --------------------------------------------------------------------------------

    def _fetches(self) -> FetchBatcher:
        if self._batcher is None:
            with self._batcher_lock:
                if self._batcher is None:
                    self._batcher = FetchBatcher(self.vault.fetch_many)
        return self._batcher

    def _fetch_one(self, request: FetchRequest) -> FetchResult:
        (outcome,) = self.vault.fetch_many([request])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _fetch_events(self, result: FetchResult) -> list[AuditEvent]:
        """One ``licence.fetch`` event per licence handed out (built in the call's context)."""
        return [
            self._recorder.event(
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
        ]

    async def FetchLicences(
        self, request: pb.FetchLicencesRequest, context: Any
    ) -> pb.FetchLicencesResponse:
        await self._ready()
        actor = actor_of(current_principal())
        types = list(request.type_codes)
        # With a companion, the audit events commit with the use records (one
        # durable flush per batch of fetches); without, they are appended after.
        rides = getattr(self.vault.store, "companion", None) is not None
        fetch = FetchRequest(
            actor,
            request.holder_code,
            types,
            request.matter_code,
            request.consent_id,
            with_pdf=request.annotated_pdf,
            record=self._fetch_events if rides else None,
        )
        try:
            if request.annotated_pdf:  # rendering takes long: not in the batch thread
                result: FetchResult = await self._run(self._fetch_one, fetch)
            else:
                result = await self._fetches().fetch(fetch)
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
            await self._integrity_failure(exc, exc.metadata.get("licence_id", ""))
            raise
        if not rides:
            events = self._fetch_events(result)
            await asyncio.gather(*(self._recorder.log.append_async(e) for e in events))
        return pb.FetchLicencesResponse(
            basis=BASES[result.basis],
            matter_name=result.matter.name,
            legal_basis=(
                result.matter.legal_basis or "" if result.basis is FetchBasis.LEGAL_BASIS else ""
            ),
            consent_id=result.consent.consent_id if result.consent else "",
            licences=[
                pb.FetchedLicence(
                    licence=_licence_pb(item.licence, item.status),
                    status=STATUS_NUMBERS[item.status],
                    jws=item.jws or "",
                    annotated_pdf=item.pdf or b"",
                    annotation=_annotation(item.use),
                )
                for item in result.items
            ],
        )

    # -- holder's view ------------------------------------------------------------------------

    async def ListMyLicences(
        self, request: pb.ListMyLicencesRequest, context: Any
    ) -> pb.ListMyLicencesResponse:
        await self._ready()
        holder = holder_of(current_principal())
        licences = await self._run(
            lambda: self.vault.holder_licences(
                holder, include_superseded=request.include_superseded
            )
        )
        today = self.vault.today()
        return pb.ListMyLicencesResponse(
            licences=[licence_message(lic, lic.effective_status(today)) for lic in licences]
        )

    async def ListLicenceUses(
        self, request: pb.ListLicenceUsesRequest, context: Any
    ) -> pb.ListLicenceUsesResponse:
        await self._ready()
        holder = holder_of(current_principal())
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


_LICENCE_PB: dict[tuple[object, ...], pb.Licence] = {}
_LICENCE_PB_MAX = 4096


def _licence_pb(licence: Licence, status: LicenceStatus) -> pb.Licence:
    """``licence_message``, remembered: a licence version is fetched again and again.

    The key holds everything the message shows that can change for a stored
    version (status and its reason and time); the rest is fixed by the version,
    whose signed JWS digest is in the key too.
    """
    key = (
        licence.licence_id, licence.version, licence.jws_digest, licence.pdf_digest,
        licence.status, status, licence.status_reason, licence.status_changed_at,
        licence.status_idx, licence.status_uri,
    )  # fmt: skip
    message = _LICENCE_PB.get(key)
    if message is None:
        if len(_LICENCE_PB) >= _LICENCE_PB_MAX:
            _LICENCE_PB.clear()
        message = _LICENCE_PB[key] = licence_message(licence, status)
    return message


# the fetch path's name for it (a test keeps it equal to wire.annotation_message)
_annotation = annotation_message


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
