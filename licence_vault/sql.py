"""The vault's store on SQLite and PostgreSQL (:class:`SqlLicenceStore`).

Implements :class:`licence_vault.store.LicenceStore` over the tables of
:mod:`licence_vault.models` with SQLAlchemy Core statements (the hot paths —
holder look-up, batch insert — avoid the ORM's per-object overhead). Counters
are bumped with ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` on both
dialects, so concurrent reservations never hand out the same range.

Example::

    from zhida.db import Database
from zhida.db.engine import translated_errors

    store = SqlLicenceStore(Database("sqlite:///.zhida/zhida.db"))
    for licence in store.by_holder("91420102MA4KXY128F"):
        print(licence.licence_id, licence.status)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from licence_vault.holder import HolderCodeType
from licence_vault.model import Consent, FetchBasis, Licence, LicenceEvent, LicenceStatus, UseRecord
from licence_vault.models import (
    LicenceConsentRow,
    LicenceCounterRow,
    LicenceEventRow,
    LicenceRequestRow,
    LicenceRow,
    LicenceUseRow,
)
from licence_vault.store import IssuedItem, RequestIdsTaken, Reservation, StatusListState
from zhida.db import Database
from zhida.db.engine import translated_errors
from zhida.errors import FailedPrecondition, NotFound

__all__ = ["SqlLicenceStore", "licence_row_values"]

_L = cast(Table, LicenceRow.__table__)
_R = cast(Table, LicenceRequestRow.__table__)
_C = cast(Table, LicenceCounterRow.__table__)
_E = cast(Table, LicenceEventRow.__table__)
_CONSENT = cast(Table, LicenceConsentRow.__table__)
_U = cast(Table, LicenceUseRow.__table__)

_LICENCE_COLUMNS = (
    _L.c.licence_id, _L.c.version, _L.c.type_code, _L.c.issuer_code, _L.c.holder_code,
    _L.c.status, _L.c.status_idx, _L.c.issued_at, _L.c.valid_from, _L.c.valid_until,
    _L.c.jws_digest, _L.c.pdf_digest, _L.c.status_reason, _L.c.status_changed_at, _L.c.payload,
)  # fmt: skip
_INSERT_CHUNK = 500

# The hot look-ups, built once (statement construction costs more than running them).
_OF_HOLDER = select(*_LICENCE_COLUMNS).where(_L.c.holder_code == bindparam("holder"))
_NOT_SUPERSEDED = _L.c.status != LicenceStatus.SUPERSEDED.value
_OF_TYPES = _L.c.type_code.in_(bindparam("types", expanding=True))
_ALL_OF_HOLDER = _OF_HOLDER
_CURRENT_OF_HOLDER = _OF_HOLDER.where(_NOT_SUPERSEDED)
_ALL_OF_HOLDER_TYPES = _OF_HOLDER.where(_OF_TYPES)
_CURRENT_OF_HOLDER_TYPES = _OF_HOLDER.where(_OF_TYPES, _NOT_SUPERSEDED)
_CONSENT_BY_ID = select(_CONSENT).where(_CONSENT.c.consent_id == bindparam("consent_id"))


def _serial_counter(type_code: str, issuer_code: str) -> str:
    return f"serial/{type_code}/{issuer_code}"


def _status_counter(issuer_code: str) -> str:
    return f"status/{issuer_code}"


def _version_counter(issuer_code: str) -> str:
    return f"listver/{issuer_code}"


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
        "payload": json.dumps(licence.payload, ensure_ascii=False, sort_keys=True),
    }


def _licence(row: Any) -> Licence:
    payload: dict[str, Any] = json.loads(row.payload)
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


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _as_date(value: date | datetime | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(value)


def _event_values(event: LicenceEvent) -> dict[str, Any]:
    return {
        "lineage": event.lineage,
        "licence_id": event.licence_id,
        "action": event.action,
        "at": event.at,
        "actor_org": event.actor_org,
        "actor_subject": event.actor_subject[:256],
        "reason": event.reason,
        "record": event.record,
        "new_licence_id": event.new_licence_id,
    }


def _consent(row: Any) -> Consent:
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


def _use(r: Any) -> UseRecord:
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


class _Pending:
    __slots__ = ("done", "error", "uses")

    def __init__(self, uses: Sequence[UseRecord]) -> None:
        self.uses = uses
        self.done = False
        self.error: BaseException | None = None


class _GroupWriter:
    """Group commit for use records: concurrent callers share one transaction.

    A caller queues its records; if no write is under way it takes every
    queued record and writes them in one transaction, else it waits for the
    writer, which either wrote its records too or left it to write the next
    batch. Every caller returns only once its records are committed, and gets
    the error if their transaction failed (then none of that batch is stored).
    """

    def __init__(self, write: Callable[[Sequence[UseRecord]], None]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._busy = False

    def write(self, uses: Sequence[UseRecord]) -> None:
        mine = _Pending(uses)
        with self._cond:
            self._queue.append(mine)
            while self._busy and not mine.done:
                self._cond.wait()
            if not mine.done:
                self._busy = True
                batch, self._queue = self._queue, []
        if not mine.done:
            error: BaseException | None = None
            try:
                self._write([u for p in batch for u in p.uses])
            except BaseException as exc:
                error = exc
            with self._cond:
                for p in batch:
                    p.done, p.error = True, error
                self._busy = False
                self._cond.notify_all()
        if mine.error is not None:
            raise mine.error


class SqlLicenceStore:
    """:class:`~licence_vault.store.LicenceStore` on a :class:`~zhida.db.Database`."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._dialect = database.dialect
        self._use_writer = _GroupWriter(self.add_uses)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One transaction on a pooled connection (Core only: no ORM session overhead).

        Commits when the block ends, rolls back on any exception; database
        failures surface as the zhida errors :class:`~zhida.db.Database` uses.
        """
        with translated_errors(), self.database.engine.begin() as conn:
            yield conn

    # -- counters ----------------------------------------------------------------------

    def _bump(self, session: Connection, name: str, by: int) -> int:
        """Add ``by`` to counter ``name`` (created at 0); return the value *before*."""
        ins = (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(_C)
        stmt = (
            ins.values(name=name, value=by)
            .on_conflict_do_update(index_elements=[_C.c.name], set_={"value": _C.c.value + by})
            .returning(_C.c.value)
        )
        after: int = session.execute(stmt).scalar_one()
        return after - by

    def reserve(
        self, issuer_code: str, serials: Mapping[str, int], status_indices: int
    ) -> Reservation:
        with self._tx() as s:
            starts = {
                type_code: self._bump(s, _serial_counter(type_code, issuer_code), n) + 1
                for type_code, n in sorted(serials.items())
                if n > 0
            }
            status_start = self._bump(s, _status_counter(issuer_code), status_indices)
        return Reservation(starts, status_start)

    # -- issue --------------------------------------------------------------------------

    def find_requests(
        self, issuer_code: str, request_ids: Sequence[str]
    ) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        with self._tx() as s:
            for i in range(0, len(request_ids), _INSERT_CHUNK):
                chunk = list(request_ids[i : i + _INSERT_CHUNK])
                rows = s.execute(
                    select(_R.c.request_id, _R.c.licence_id, _R.c.request_hash).where(
                        _R.c.issuer_code == issuer_code, _R.c.request_id.in_(chunk)
                    )
                )
                for request_id, licence_id, request_hash in rows:
                    found[request_id] = (licence_id, request_hash)
        return found

    def insert_issued(self, items: Sequence[IssuedItem]) -> None:
        if not items:
            return
        try:
            with self._tx() as s:
                for i in range(0, len(items), _INSERT_CHUNK):
                    chunk = items[i : i + _INSERT_CHUNK]
                    s.execute(
                        insert(_R),
                        [
                            {
                                "issuer_code": it.licence.issuer_code,
                                "request_id": it.request_id,
                                "licence_id": it.licence.licence_id,
                                "request_hash": it.request_hash,
                            }
                            for it in chunk
                        ],
                    )
                    s.execute(insert(_L), [licence_row_values(it.licence) for it in chunk])
                    s.execute(insert(_E), [_event_values(it.event) for it in chunk])
        except SqlIntegrityError:
            issuer = items[0].licence.issuer_code
            taken = self.find_requests(issuer, [it.request_id for it in items])
            if taken:
                raise RequestIdsTaken(sorted(taken)) from None
            raise

    # -- read ---------------------------------------------------------------------------

    def get(self, licence_id: str) -> Licence | None:
        with self._tx() as s:
            row = s.execute(select(*_LICENCE_COLUMNS).where(_L.c.licence_id == licence_id)).first()
        return _licence(row) if row is not None else None

    def get_many(self, licence_ids: Sequence[str]) -> list[Licence]:
        with self._tx() as s:
            rows = s.execute(
                select(*_LICENCE_COLUMNS).where(_L.c.licence_id.in_(list(licence_ids)))
            ).all()
        by_id = {r.licence_id: _licence(r) for r in rows}
        return [by_id[i] for i in licence_ids if i in by_id]

    def find_pdf(self, digest: str) -> tuple[Licence, UseRecord | None] | None:
        with self._tx() as s:
            row = s.execute(select(*_LICENCE_COLUMNS).where(_L.c.pdf_digest == digest)).first()
            if row is not None:
                return _licence(row), None
            use = s.execute(select(_U).where(_U.c.pdf_digest == digest)).first()
            if use is None:
                return None
            row = s.execute(
                select(*_LICENCE_COLUMNS).where(_L.c.licence_id == use.licence_id)
            ).first()
        return (_licence(row), _use(use)) if row is not None else None

    def versions(self, lineage: str) -> list[Licence]:
        with self._tx() as s:
            rows = s.execute(
                select(*_LICENCE_COLUMNS).where(_L.c.lineage == lineage).order_by(_L.c.version)
            ).all()
        return [_licence(r) for r in rows]

    def by_holder(
        self, holder_code: str, type_codes: Sequence[str] = (), *, include_superseded: bool = False
    ) -> list[Licence]:
        stmt = _ALL_OF_HOLDER if include_superseded else _CURRENT_OF_HOLDER
        params: dict[str, Any] = {"holder": holder_code}
        if type_codes:
            stmt = _ALL_OF_HOLDER_TYPES if include_superseded else _CURRENT_OF_HOLDER_TYPES
            params["types"] = list(type_codes)
        with self._tx() as s:
            rows = s.execute(stmt, params).all()
        licences = [_licence(r) for r in rows]
        licences.sort(key=lambda lic: (lic.issued_at, lic.licence_id), reverse=True)
        return licences

    def by_issuer(self, issuer_code: str, *, after: str = "", limit: int = 100) -> list[Licence]:
        with self._tx() as s:
            rows = s.execute(
                select(*_LICENCE_COLUMNS)
                .where(_L.c.issuer_code == issuer_code, _L.c.licence_id > after)
                .order_by(_L.c.licence_id)
                .limit(limit)
            ).all()
        return [_licence(r) for r in rows]

    def history(self, lineage: str) -> list[LicenceEvent]:
        with self._tx() as s:
            rows = s.execute(select(_E).where(_E.c.lineage == lineage).order_by(_E.c.id)).all()
        return [
            LicenceEvent(
                licence_id=r.licence_id,
                lineage=r.lineage,
                action=r.action,
                at=r.at,
                actor_org=r.actor_org,
                actor_subject=r.actor_subject,
                reason=r.reason or "",
                record=r.record or "",
                new_licence_id=r.new_licence_id or "",
            )
            for r in rows
        ]

    # -- lifecycle -----------------------------------------------------------------------

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
        with self._tx() as s:
            result = s.execute(
                update(_L)
                .where(_L.c.licence_id == licence_id, _L.c.status == expected.value)
                .values(status=new.value, status_reason=reason, status_changed_at=at)
            )
            if _rowcount(result) != 1:
                raise FailedPrecondition(
                    f"licence {licence_id} is no longer {expected.value}",
                    reason="STATUS_CHANGED",
                )
            s.execute(insert(_E), [_event_values(event)])
            issuer = s.execute(
                select(_L.c.issuer_code).where(_L.c.licence_id == licence_id)
            ).scalar_one()
            self._bump(s, _version_counter(issuer), 1)
            row = s.execute(select(*_LICENCE_COLUMNS).where(_L.c.licence_id == licence_id)).one()
        return _licence(row)

    def amend(self, old: Licence, new: Licence, events: Sequence[LicenceEvent]) -> None:
        with self._tx() as s:
            result = s.execute(
                update(_L)
                .where(_L.c.licence_id == old.licence_id, _L.c.status == old.status.value)
                .values(
                    status=LicenceStatus.SUPERSEDED.value,
                    status_reason=f"superseded by {new.licence_id}",
                    status_changed_at=new.issued_at,
                )
            )
            if _rowcount(result) != 1:
                raise FailedPrecondition(
                    f"licence {old.licence_id} can no longer be amended", reason="STATUS_CHANGED"
                )
            s.execute(insert(_L), [licence_row_values(new)])
            s.execute(insert(_E), [_event_values(e) for e in events])
            self._bump(s, _version_counter(old.issuer_code), 1)

    # -- status lists ------------------------------------------------------------------------

    def status_list_state(self, issuer_code: str) -> StatusListState:
        names = [_status_counter(issuer_code), _version_counter(issuer_code)]
        with self._tx() as s:
            values = dict(
                s.execute(select(_C.c.name, _C.c.value).where(_C.c.name.in_(names))).all()
            )
        return StatusListState(
            issuer_code, int(values.get(names[0], 0)), int(values.get(names[1], 0))
        )

    def status_entries(self, issuer_code: str) -> dict[int, int]:
        with self._tx() as s:
            rows = s.execute(
                select(_L.c.status_idx, _L.c.status).where(
                    _L.c.issuer_code == issuer_code,
                    _L.c.status != LicenceStatus.VALID.value,
                )
            ).all()
        return {int(idx): LicenceStatus(status).list_value for idx, status in rows}

    def issuers(self) -> list[str]:
        with self._tx() as s:
            names = s.execute(select(_C.c.name).where(_C.c.name.like("status/%"))).scalars()
            return sorted(n.removeprefix("status/") for n in names)

    # -- consent and use -----------------------------------------------------------------------

    def add_consent(self, consent: Consent) -> None:
        with self._tx() as s:
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
        return _consent(row) if row is not None else None

    def withdraw_consent(self, consent_id: str, at: datetime, reason: str) -> Consent:
        with self._tx() as s:
            s.execute(
                update(_CONSENT)
                .where(and_(_CONSENT.c.consent_id == consent_id, _CONSENT.c.withdrawn_at.is_(None)))
                .values(withdrawn_at=at, withdraw_reason=reason)
            )
            row = s.execute(select(_CONSENT).where(_CONSENT.c.consent_id == consent_id)).first()
        if row is None:
            raise NotFound(f"no consent {consent_id}", reason="CONSENT_NOT_FOUND")
        return _consent(row)

    def consents_of(self, holder_code: str) -> list[Consent]:
        with self._tx() as s:
            rows = s.execute(
                select(_CONSENT)
                .where(_CONSENT.c.holder_code == holder_code)
                .order_by(_CONSENT.c.created_at.desc())
            ).all()
        return [_consent(r) for r in rows]

    def fetch(
        self,
        consent_id: str,
        holder_code: str,
        type_codes: Sequence[str],
        decide: Callable[[Consent | None, list[Licence]], Sequence[UseRecord]],
    ) -> None:
        # The reads are one read-only snapshot (on SQLite it neither waits for
        # nor holds the write lock); the use records are then written, durably
        # before this returns, in a transaction shared with concurrent fetches.
        with self.database.read() as s:
            consent = None
            if consent_id:
                row = s.execute(_CONSENT_BY_ID, {"consent_id": consent_id}).first()
                consent = _consent(row) if row is not None else None
            params = {"holder": holder_code, "types": list(type_codes)}
            rows = s.execute(_CURRENT_OF_HOLDER_TYPES, params).all()
        licences = sorted(
            (_licence(r) for r in rows),
            key=lambda lic: (lic.issued_at, lic.licence_id),
            reverse=True,
        )
        uses = decide(consent, licences)
        if uses:
            self._use_writer.write(uses)

    def add_uses(self, uses: Sequence[UseRecord]) -> None:
        with self._tx() as s:
            self._insert_uses(s, uses)

    @staticmethod
    def _insert_uses(s: Connection, uses: Sequence[UseRecord]) -> None:
        if uses:
            s.execute(
                insert(_U),
                [
                    {
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
                    for u in uses
                ],
            )

    def uses_of(
        self, holder_code: str, *, before: int = 0, limit: int = 100
    ) -> list[tuple[int, UseRecord]]:
        stmt = select(_U).where(_U.c.holder_code == holder_code)
        if before > 0:
            stmt = stmt.where(_U.c.id < before)
        with self._tx() as s:
            rows = s.execute(stmt.order_by(_U.c.id.desc()).limit(limit)).all()
        return [(int(r.id), _use(r)) for r in rows]

    def count(self) -> int:
        """Number of licence versions stored (for reports and benchmarks)."""
        with self._tx() as s:
            return int(s.execute(select(func.count()).select_from(_L)).scalar_one())
