"""Consent, fetch and the holder's view: the part of the vault that hands licences out.

:class:`ConsentAndFetch` is a base class of :class:`~licence_vault.vault.Vault`.
A fetch needs the holder's consent (right organisation, matter and types, not
expired, not withdrawn) unless the matter has a legal basis; only valid
licences come with their documents — revoked, suspended or expired ones are
returned with their status only; every licence handed out leaves one use
record (加注件), durable before the fetch returns.

Fetches are batched (:meth:`ConsentAndFetch.fetch_many`): a batch is read in
one snapshot with two statements, each fetch is decided on its own (one
refusal does not affect the others), and the batch's use records — with the
node's audit events, when the store has that companion commit — are written
in one transaction and made durable by one flush.

Example::

    consent = vault.grant_consent(holder, portal_org, [type_code], "YJS-KBCYD", until)
    result = vault.fetch(Actor(portal_org, "portal"), holder, [type_code], "YJS-KBCYD",
                         consent.consent_id)
    result.items[0].jws, result.items[0].use.annotation_id
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from licence_vault.days import licence_day
from licence_vault.documents import checked_jws
from licence_vault.holder import detect_code_type, validate_holder, validate_uscc_code
from licence_vault.matters import Matter, MatterRegistry
from licence_vault.model import Consent, FetchBasis, Licence, LicenceStatus, UseRecord
from licence_vault.results import (
    MAX_REASON,
    Actor,
    FetchedLicence,
    FetchRequest,
    FetchResult,
    PdfRenderer,
    bad,
    text_field,
)
from licence_vault.signer import LicenceSigner
from licence_vault.store import FetchQuery, FetchSnapshot, LicenceStore
from licence_vault.types import TypeRegistry
from zhida.blobstore import BlobStore
from zhida.errors import NotFound, PermissionDenied, ZhidaError

__all__ = ["ConsentAndFetch"]

MAX_CONSENT_DAYS = 366 * 3


@functools.lru_cache(maxsize=65536)
def _holder(code: str) -> str:
    """The validated compact holder code (stdnum checks cost more than the rest of a fetch)."""
    return validate_holder(code, detect_code_type(code))


class ConsentAndFetch:
    """Consents, fetches and the holder's view; see the module docstring."""

    store: LicenceStore
    blobs: BlobStore
    signer: LicenceSigner
    types: TypeRegistry
    matters: MatterRegistry
    pdf: PdfRenderer | None
    clock: Callable[[], datetime]

    # -- consent ---------------------------------------------------------------------------

    def grant_consent(
        self,
        holder_code: str,
        organisation: str,
        type_codes: Sequence[str],
        matter_code: str,
        valid_until: datetime,
    ) -> Consent:
        holder = _holder(holder_code)
        org = validate_uscc_code(organisation, field="organisation")
        matter = self.matters.get(matter_code)
        if not type_codes:
            raise bad("type_codes", "must name at least one licence type")
        types = []
        for i, code in enumerate(type_codes):
            self.types.get(code, f"type_codes[{i}]")
            if code not in matter.type_codes:
                raise bad(
                    f"type_codes[{i}]",
                    f"is not used by the matter {matter.name}",
                    "TYPE_NOT_FOR_MATTER",
                )
            if code not in types:
                types.append(code)
        now = self.clock()
        if valid_until.tzinfo is None or valid_until <= now:
            raise bad("valid_until", "must be a future time", "INVALID_CONSENT_PERIOD")
        if valid_until > now + timedelta(days=MAX_CONSENT_DAYS):
            raise bad(
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
        reason = text_field(reason, "reason", max_length=MAX_REASON, required=False)
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
        holder = _holder(holder_code)
        matter = self.matters.get(matter_code)
        if not type_codes:
            raise bad("type_codes", "must name at least one licence type")
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
        record: Callable[[FetchResult], Sequence[Any]] | None = None,
    ) -> FetchResult:
        """The holder's current licences of ``type_codes`` for ``matter_code``.

        Valid licences come with their JWS (and, ``with_pdf``, an annotated PDF
        copy when this vault renders PDFs); others with their status only.
        Every returned licence gets a use record, durable before this returns;
        the consent, the licences and their JWS are read in one snapshot.
        ``record``: see :class:`~licence_vault.results.FetchRequest`.
        IntegrityError if a stored document was altered: nothing is returned
        or recorded then.
        """
        request = FetchRequest(
            actor, holder_code, type_codes, matter_code, consent_id, with_pdf, record
        )
        (outcome,) = self.fetch_many([request])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def fetch_many(self, requests: Sequence[FetchRequest]) -> list[FetchResult | Exception]:
        """Several fetches at once: each request's result, or the error that refused it.

        Reads are one snapshot; the use records of every successful fetch (and
        their ``record`` companions) are written together and are durable
        before this returns. If that write fails, every fetch of the batch
        that had not already failed gets its error.
        """
        now = self.clock()
        out: dict[int, FetchResult | Exception] = {}
        checked: list[tuple[int, FetchRequest, str, Matter, list[str]]] = []
        for i, r in enumerate(requests):
            try:
                holder, matter, types = self._fetch_request(
                    r.holder_code, r.type_codes, r.matter_code
                )
            except ZhidaError as exc:
                out[i] = exc
                continue
            checked.append((i, r, holder, matter, types))
        if not checked:
            return [out[i] for i in range(len(requests))]
        queries = [FetchQuery(r.consent_id.strip(), h, tuple(t)) for _i, r, h, _m, t in checked]
        snapshots = self.store.snapshots(queries)
        uses: list[UseRecord] = []
        companions: list[Any] = []
        done: list[tuple[int, FetchResult]] = []
        for (i, r, holder, matter, types), snapshot in zip(checked, snapshots, strict=True):
            try:
                result = self._decide(r, holder, matter, types, snapshot, now)
                extra = r.record(result) if r.record is not None else ()
            except Exception as exc:  # this fetch fails; the others go on
                out[i] = exc
                continue
            uses.extend(item.use for item in result.items)
            companions.extend(extra)
            done.append((i, result))
        try:
            self.store.record_uses(uses, companions)
        except Exception as exc:
            out.update((i, exc) for i, _result in done)
        else:
            out.update(done)
        return [out[i] for i in range(len(requests))]

    def _decide(
        self,
        request: FetchRequest,
        holder: str,
        matter: Matter,
        types: Sequence[str],
        snapshot: FetchSnapshot,
        now: datetime,
    ) -> FetchResult:
        actor, consent_id = request.actor, request.consent_id
        basis = self._basis(actor, holder, matter, types, consent_id, snapshot.consent, now)
        granted = snapshot.consent if basis is FetchBasis.CONSENT else None
        use_until = now + timedelta(days=matter.use_days)
        if granted is not None:
            use_until = min(use_until, granted.valid_until)
        today = licence_day(now)
        watermark = f"{matter.watermark} {actor.organisation} {today.isoformat()}"
        items: list[FetchedLicence] = []
        for licence in snapshot.licences:
            status = licence.effective_status(today)
            jws = None
            if status is LicenceStatus.VALID:
                stored = snapshot.documents.get(licence.licence_id)
                jws = checked_jws(licence, stored, self.blobs)
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
            if jws is not None and self.pdf is not None and request.with_pdf:
                seal = self.signer.issuer(licence.issuer_code, at=now)
                pdf = self.pdf.render(
                    licence, self.types.get(licence.type_code), seal, annotation=use
                )
                use = replace(use, pdf_digest=self.blobs.put(pdf))
            items.append(FetchedLicence(licence, status, jws, pdf, use))
        return FetchResult(basis, matter, granted, items)

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
