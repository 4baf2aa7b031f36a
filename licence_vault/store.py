"""The vault's storage interface: what :class:`~licence_vault.vault.Vault` needs persisted.

Operations are coarse so that each is one transaction in the implementation
(:mod:`licence_vault.sql` for SQLite and PostgreSQL): counters are reserved
in their own short transaction (gaps are harmless: a serial or status index
that was reserved but never used stays unused), then signed licences are
inserted together with their request ids, history and documents (a
licence's JWS is stored with its issue event, not in the blob store; PDFs
stay in the blob store); a status change is a compare-and-set on the stored
status, so two concurrent changes cannot both win (the expiry job's too).

Example::

    store = SqlLicenceStore(database)
    reservation = store.reserve(issuer, {type_code: 3})
    ...
    store.insert_issued([IssuedItem(licence, request_id, request_hash, event, jws)])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from licence_vault.model import Consent, Licence, LicenceEvent, LicenceStatus, UseRecord
from zhida.errors import AlreadyExists

__all__ = [
    "FetchQuery",
    "FetchSnapshot",
    "IssuedItem",
    "LicenceStore",
    "RequestIdsTaken",
    "Reservation",
    "StatusListState",
]


@dataclass(frozen=True, slots=True)
class Reservation:
    """Counter ranges reserved for one batch of one issuer."""

    serial_start: Mapping[str, int]  # type code -> first serial of the range
    status_start: int  # first status-list index of the range


@dataclass(frozen=True, slots=True)
class IssuedItem:
    licence: Licence
    request_id: str
    request_hash: str
    event: LicenceEvent
    jws: str = ""  # the licence JWS, stored with the issue event ("": in the blob store)


@dataclass(frozen=True, slots=True)
class FetchQuery:
    """What one fetch reads: a consent (if an id is given) and the holder's licences."""

    consent_id: str
    holder_code: str
    type_codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FetchSnapshot:
    """What the store holds for a :class:`FetchQuery`."""

    consent: Consent | None
    licences: list[Licence]  # current (not superseded) licences of the types, newest first
    documents: Mapping[str, str]  # licence id -> stored JWS (unchecked; see documents())


@dataclass(frozen=True, slots=True)
class StatusListState:
    """What the issuer's current status list depends on."""

    issuer_code: str
    next_index: int  # indices below have been reserved
    version: int  # bumped by every status change


class RequestIdsTaken(AlreadyExists):
    """Some request ids of an insert were already used (a concurrent retry won)."""

    default_reason = "REQUEST_ID_TAKEN"

    def __init__(self, request_ids: Sequence[str]) -> None:
        super().__init__(f"request ids already used: {', '.join(request_ids[:5])}")
        self.request_ids = tuple(request_ids)


class LicenceStore(Protocol):
    # -- issue ------------------------------------------------------------------
    def reserve(
        self, issuer_code: str, serials: Mapping[str, int], status_indices: int
    ) -> Reservation:
        """Reserve ``serials[type]`` serial numbers per type and ``status_indices`` indices."""
        ...

    def find_requests(
        self, issuer_code: str, request_ids: Sequence[str]
    ) -> dict[str, tuple[str, str]]:
        """request id -> (licence id, request hash) for the ids already used by the issuer."""
        ...

    def insert_issued(self, items: Sequence[IssuedItem]) -> None:
        """Insert licences, their request ids, issue events and JWS atomically and durably.

        RequestIdsTaken (nothing inserted) if a request id is already used.
        """
        ...

    # -- read -------------------------------------------------------------------
    def get(self, licence_id: str) -> Licence | None: ...

    def get_many(self, licence_ids: Sequence[str]) -> list[Licence]: ...

    def documents(self, licences: Sequence[Licence]) -> dict[str, str]:
        """licence id -> the stored JWS, unchecked; licences whose JWS is in the blob
        store (issued before documents moved to the database) are absent."""
        ...

    def find_pdf(self, digest: str) -> tuple[Licence, UseRecord | None] | None:
        """The licence whose original PDF, or annotated copy (then with its use), has ``digest``."""
        ...

    def versions(self, lineage: str) -> list[Licence]:
        """Every version of a licence, oldest first."""
        ...

    def by_holder(
        self, holder_code: str, type_codes: Sequence[str] = (), *, include_superseded: bool = False
    ) -> list[Licence]:
        """The holder's licences (of ``type_codes`` if given), newest issue first."""
        ...

    def count(self) -> int:
        """Number of licence versions stored."""
        ...

    def by_issuer(self, issuer_code: str, *, after: str = "", limit: int = 100) -> list[Licence]:
        """The issuer's licences in identifier order, after ``after``."""
        ...

    def history(self, lineage: str) -> list[LicenceEvent]:
        """Every event of every version of a licence, oldest first."""
        ...

    # -- lifecycle -----------------------------------------------------------------
    def change_status(
        self,
        licence_id: str,
        expected: LicenceStatus,
        new: LicenceStatus,
        event: LicenceEvent,
        *,
        reason: str,
        at: datetime,
    ) -> Licence:
        """Compare-and-set the status and append ``event``; the updated licence.

        FailedPrecondition(STATUS_CHANGED) if the stored status is not ``expected``.
        """
        ...

    def amend(
        self, old: Licence, new: Licence, events: Sequence[LicenceEvent], jws: str = ""
    ) -> None:
        """Mark ``old`` superseded (its status must still be ``old.status``), insert ``new``
        (with ``jws``, its document) and ``events``."""
        ...

    def due_to_expire(self, today: date, *, after: str = "", limit: int = 200) -> list[Licence]:
        """Licences stored valid whose ``valid_until`` is before ``today``, in identifier
        order after ``after`` (a page of the expiry job)."""
        ...

    def expire(self, events: Sequence[LicenceEvent], *, at: datetime) -> list[str]:
        """For each ``expire`` event: mark its licence expired if it is still valid and
        append the event; one durable transaction. The ids it expired (the others
        changed meanwhile and are left alone)."""
        ...

    # -- status lists ----------------------------------------------------------------
    def status_list_state(self, issuer_code: str) -> StatusListState: ...

    def status_entries(self, issuer_code: str) -> dict[int, int]:
        """Status-list index -> 2-bit value for the issuer's licences that are not valid."""
        ...

    def issuers(self) -> list[str]:
        """Issuers with at least one reserved status index."""
        ...

    # -- consent and use ---------------------------------------------------------------
    def add_consent(self, consent: Consent) -> None: ...

    def get_consent(self, consent_id: str) -> Consent | None: ...

    def withdraw_consent(self, consent_id: str, at: datetime, reason: str) -> Consent:
        """Set withdrawn_at (once); the updated consent. NotFound if unknown."""
        ...

    def consents_of(self, holder_code: str) -> list[Consent]: ...

    def add_uses(self, uses: Sequence[UseRecord]) -> None:
        """Write use records durably."""
        ...

    def snapshots(self, queries: Sequence[FetchQuery]) -> list[FetchSnapshot]:
        """What each query reads, all from one consistent snapshot."""
        ...

    def record_uses(self, uses: Sequence[UseRecord], companions: Sequence[Any] = ()) -> None:
        """Write use records; return once they are durable. ``companions`` (opaque:
        the node's audit events) are made durable with them through the store's
        companion commit (ValueError if it has none). Concurrent callers share
        transactions (:class:`~licence_vault.journal.UseJournal`)."""
        ...

    def uses_of(
        self, holder_code: str, *, before: int = 0, limit: int = 100
    ) -> list[tuple[int, UseRecord]]:
        """The holder's use records, newest first, as (cursor, record); ``before`` a cursor."""
        ...
