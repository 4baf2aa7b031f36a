"""Consents, fetch snapshots and use records of :class:`~licence_vault.sql.SqlLicenceStore`.

The holder's side of the store (:mod:`licence_vault.access` uses it): consents
given and withdrawn (durable before they answer), the one read snapshot a
batch of fetches needs (on the driver, :mod:`licence_vault.sql_fast`) and the
use records the fetches leave, written through the store's
:class:`~licence_vault.journal.UseJournal`. :class:`AccessQueries` is the
store's base class; the store supplies the transactions, driver paths and
journal.

Example::

    store = SqlLicenceStore(database)            # an AccessQueries
    store.add_consent(consent)
    snapshot, = store.snapshots([FetchQuery(consent.consent_id, holder, (type_code,))])
    store.record_uses(uses)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, insert, select, update
from sqlalchemy.engine import Connection

from licence_vault.journal import UseJournal
from licence_vault.model import Consent, UseRecord
from licence_vault.models import LicenceConsentRow, LicenceUseRow
from licence_vault.sql_fast import DriverPaths
from licence_vault.sql_rows import consent_from_row, snapshots_from_rows, use_from_row
from licence_vault.store import FetchQuery, FetchSnapshot
from zhida.errors import NotFound

__all__ = ["AccessQueries"]

_CONSENT = cast(Table, LicenceConsentRow.__table__)
_U = cast(Table, LicenceUseRow.__table__)


class AccessQueries(ABC):
    """Consent and use queries; :class:`~licence_vault.sql.SqlLicenceStore` supplies
    ``_tx``, ``_driver`` and ``_journal``."""

    _driver: DriverPaths
    _journal: UseJournal[UseRecord]

    @abstractmethod
    def _tx(self, *, durable: bool | None = None) -> AbstractContextManager[Connection]:
        """One transaction, durable on request (the store's own)."""

    def add_consent(self, consent: Consent) -> None:
        with self._tx(durable=True) as s:
            s.execute(
                insert(_CONSENT),
                [
                    {
                        "consent_id": consent.consent_id,
                        "holder_code": consent.holder_code,
                        "organisation": consent.organisation,
                        "type_codes": ",".join(consent.type_codes),
                        "matter_code": consent.matter_code,
                        "valid_until": consent.valid_until,
                        "created_at": consent.created_at,
                        "withdrawn_at": consent.withdrawn_at,
                        "withdraw_reason": consent.withdraw_reason,
                    }
                ],
            )

    def get_consent(self, consent_id: str) -> Consent | None:
        with self._tx() as s:
            row = s.execute(select(_CONSENT).where(_CONSENT.c.consent_id == consent_id)).first()
        return consent_from_row(row) if row is not None else None

    def withdraw_consent(self, consent_id: str, at: datetime, reason: str) -> Consent:
        with self._tx(durable=True) as s:
            s.execute(
                update(_CONSENT)
                .where(and_(_CONSENT.c.consent_id == consent_id, _CONSENT.c.withdrawn_at.is_(None)))
                .values(withdrawn_at=at, withdraw_reason=reason)
            )
            row = s.execute(select(_CONSENT).where(_CONSENT.c.consent_id == consent_id)).first()
        if row is None:
            raise NotFound(f"no consent {consent_id}", reason="CONSENT_NOT_FOUND")
        return consent_from_row(row)

    def consents_of(self, holder_code: str) -> list[Consent]:
        with self._tx() as s:
            rows = s.execute(
                select(_CONSENT)
                .where(_CONSENT.c.holder_code == holder_code)
                .order_by(_CONSENT.c.created_at.desc())
            ).all()
        return [consent_from_row(r) for r in rows]

    def snapshots(self, queries: Sequence[FetchQuery]) -> list[FetchSnapshot]:
        # One read snapshot and two statements for the whole batch, on the driver.
        consent_ids = sorted({q.consent_id for q in queries if q.consent_id})
        holders = sorted({q.holder_code for q in queries})
        types = sorted({t for q in queries for t in q.type_codes})
        if not holders or not types:
            return [FetchSnapshot(None, [], {}) for _q in queries]
        consent_rows, rows = self._driver.snapshot(consent_ids, holders, types)
        return snapshots_from_rows(queries, consent_rows, rows)

    def record_uses(self, uses: Sequence[UseRecord], companions: Sequence[Any] = ()) -> None:
        if uses or companions:
            self._journal.write(uses, companions)

    def add_uses(self, uses: Sequence[UseRecord]) -> None:
        self._driver.insert_uses(uses, durable=True)

    def uses_of(
        self, holder_code: str, *, before: int = 0, limit: int = 100
    ) -> list[tuple[int, UseRecord]]:
        stmt = select(_U).where(_U.c.holder_code == holder_code)
        if before > 0:
            stmt = stmt.where(_U.c.id < before)
        with self._tx() as s:
            rows = s.execute(stmt.order_by(_U.c.id.desc()).limit(limit)).all()
        return [(int(r.id), use_from_row(r)) for r in rows]
