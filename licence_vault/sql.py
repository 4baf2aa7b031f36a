"""The vault's store on SQLite and PostgreSQL (:class:`SqlLicenceStore`).

Implements :class:`licence_vault.store.LicenceStore` over the tables of
:mod:`licence_vault.models` with SQLAlchemy Core statements (the hot paths —
holder look-up, fetch, batch insert — avoid the ORM's per-object overhead).
Counters are bumped with ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` on
both dialects, so concurrent reservations never hand out the same range.

Durability: a write that answers "done" (issue, amend, status change,
consent) waits for the disk before it returns — SQLite commits it with
``synchronous=FULL`` (the node default ``NORMAL`` syncs only at checkpoints)
and PostgreSQL with ``synchronous_commit = on``. Use records go through a
:class:`~licence_vault.journal.UseJournal`: one transaction per batch of
concurrent fetches, made durable by itself or by the companion commit (the
node's audit log on the same database: written in its transaction).

A licence's JWS is stored with its issue event, in the transaction that
inserts the licence (see :mod:`licence_vault.sql_rows`); the fetch reads it
in the same snapshot as the licence. Consent, fetch-snapshot and use-record
queries are in the store's base class, :mod:`licence_vault.sql_access`; the
expiry job's in :mod:`licence_vault.sql_lifecycle`.

Example::

    from zhida.db import Database

    store = SqlLicenceStore(Database("sqlite:///.zhida/zhida.db"))
    for licence in store.by_holder("91420102MA4KXY128F"):
        print(licence.licence_id, licence.status)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Table,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from licence_vault.journal import Companion, UseJournal
from licence_vault.model import Licence, LicenceEvent, LicenceStatus, UseRecord
from licence_vault.models import (
    LicenceCounterRow,
    LicenceEventRow,
    LicenceRequestRow,
    LicenceRow,
    LicenceUseRow,
)
from licence_vault.sql_access import AccessQueries
from licence_vault.sql_fast import DriverPaths
from licence_vault.sql_lifecycle import LifecycleQueries
from licence_vault.sql_rows import (
    EVENT_ROW,
    ISSUE,
    LICENCE_ROW,
    REQUEST_ROW,
    event_record,
    event_values,
    licence_from_row,
    licence_row_values,
    stored_document,
    use_from_row,
)
from licence_vault.store import (
    IssuedItem,
    RequestIdsTaken,
    Reservation,
    StatusListState,
)
from zhida.db import Database
from zhida.db.engine import translated_errors
from zhida.errors import FailedPrecondition

__all__ = ["SqlLicenceStore", "licence_row_values"]

_L = cast(Table, LicenceRow.__table__)
_R = cast(Table, LicenceRequestRow.__table__)
_C = cast(Table, LicenceCounterRow.__table__)
_E = cast(Table, LicenceEventRow.__table__)
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


def _serial_counter(type_code: str, issuer_code: str) -> str:
    return f"serial/{type_code}/{issuer_code}"


def _status_counter(issuer_code: str) -> str:
    return f"status/{issuer_code}"


def _version_counter(issuer_code: str) -> str:
    return f"listver/{issuer_code}"


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


class SqlLicenceStore(AccessQueries, LifecycleQueries):
    """:class:`~licence_vault.store.LicenceStore` on a :class:`~zhida.db.Database`."""

    def __init__(self, database: Database, *, companion: Companion | None = None) -> None:
        """``companion``: see :class:`~licence_vault.journal.UseJournal`; it must commit
        durably to ``database`` itself (the node passes its audit log's append)."""
        self.database = database
        self._dialect = database.dialect
        self._driver = DriverPaths(database)
        self._journal: UseJournal[UseRecord] = UseJournal(
            self._driver.insert_uses, companion, rows=self._driver.use_rows
        )

    @property
    def companion(self) -> Companion | None:
        """The commit use records ride on (None: they are made durable on their own)."""
        return self._journal.companion

    @contextmanager
    def _tx(self, *, durable: bool | None = None) -> Iterator[Connection]:
        """One transaction on a pooled connection (Core only: no ORM session overhead).

        Commits when the block ends, rolls back on any exception; database
        failures surface as the zhida errors :class:`~zhida.db.Database` uses.
        ``durable``: True waits for the disk at commit, False does not (a later
        durable commit on the database covers it), None keeps the node default.
        """
        if durable is None:
            with translated_errors(), self.database.engine.begin() as conn:
                yield conn
            return
        with translated_errors(), self.database.engine.connect() as conn:
            sqlite_db = self._dialect == "sqlite"
            if sqlite_db and durable:  # a PRAGMA outside any transaction
                conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                    "PRAGMA synchronous=FULL"
                )
            try:
                with conn.begin():
                    if not sqlite_db:
                        mode = "on" if durable else "off"
                        conn.execute(text(f"SET LOCAL synchronous_commit = {mode}"))
                    yield conn
            finally:
                if sqlite_db and durable and not conn.invalidated:
                    with suppress(Exception):  # the pool's next user gets the node default
                        conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                            "PRAGMA synchronous=NORMAL"
                        )

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
        # One durable transaction of multi-row INSERTs on the driver: a batch of
        # a thousand licences, with their JWS, is one statement per table chunk.
        d = self._driver
        requests, licences, events = [], [], []
        for it in items:
            lic = licence_row_values(it.licence)
            lic["issued_at"] = d.bind_time(lic["issued_at"])
            lic["status_changed_at"] = d.bind_time(lic["status_changed_at"])
            lic["valid_from"] = d.bind_date(lic["valid_from"])
            lic["valid_until"] = d.bind_date(lic["valid_until"])
            ev = event_values(it.event, it.jws)
            ev["at"] = d.bind_time(ev["at"])
            requests.append(
                (it.licence.issuer_code, it.request_id, it.licence.licence_id, it.request_hash)
            )
            licences.append(tuple(lic[c] for c in LICENCE_ROW))
            events.append(tuple(ev[c] for c in EVENT_ROW))
        try:
            d.insert(
                [
                    ("licence_request", REQUEST_ROW, requests),
                    ("licence", LICENCE_ROW, licences),
                    ("licence_event", EVENT_ROW, events),
                ],
                durable=True,
            )
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
        return licence_from_row(row) if row is not None else None

    def get_many(self, licence_ids: Sequence[str]) -> list[Licence]:
        with self._tx() as s:
            rows = s.execute(
                select(*_LICENCE_COLUMNS).where(_L.c.licence_id.in_(list(licence_ids)))
            ).all()
        by_id = {r.licence_id: licence_from_row(r) for r in rows}
        return [by_id[i] for i in licence_ids if i in by_id]

    def documents(self, licences: Sequence[Licence]) -> dict[str, str]:
        if not licences:
            return {}
        stmt = select(_E.c.licence_id, _E.c.action, _E.c.record).where(
            _E.c.action == ISSUE,
            or_(
                *(
                    and_(_E.c.lineage == lic.lineage, _E.c.licence_id == lic.licence_id)
                    for lic in licences
                )
            ),
        )
        with self._tx() as s:
            rows = s.execute(stmt).all()
        found = {r.licence_id: stored_document(r.action, r.record) for r in rows}
        return {k: v for k, v in found.items() if v is not None}

    def find_pdf(self, digest: str) -> tuple[Licence, UseRecord | None] | None:
        with self._tx() as s:
            row = s.execute(select(*_LICENCE_COLUMNS).where(_L.c.pdf_digest == digest)).first()
            if row is not None:
                return licence_from_row(row), None
            use = s.execute(select(_U).where(_U.c.pdf_digest == digest)).first()
            if use is None:
                return None
            row = s.execute(
                select(*_LICENCE_COLUMNS).where(_L.c.licence_id == use.licence_id)
            ).first()
        return (licence_from_row(row), use_from_row(use)) if row is not None else None

    def versions(self, lineage: str) -> list[Licence]:
        with self._tx() as s:
            rows = s.execute(
                select(*_LICENCE_COLUMNS).where(_L.c.lineage == lineage).order_by(_L.c.version)
            ).all()
        return [licence_from_row(r) for r in rows]

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
        licences = [licence_from_row(r) for r in rows]
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
        return [licence_from_row(r) for r in rows]

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
                record=event_record(r.action, r.record),
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
        with self._tx(durable=True) as s:
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
            s.execute(insert(_E), [event_values(event)])
            issuer = s.execute(
                select(_L.c.issuer_code).where(_L.c.licence_id == licence_id)
            ).scalar_one()
            self._bump(s, _version_counter(issuer), 1)
            row = s.execute(select(*_LICENCE_COLUMNS).where(_L.c.licence_id == licence_id)).one()
        return licence_from_row(row)

    def amend(
        self, old: Licence, new: Licence, events: Sequence[LicenceEvent], jws: str = ""
    ) -> None:
        with self._tx(durable=True) as s:
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
            s.execute(
                insert(_E),
                [
                    event_values(
                        e, jws if (e.action, e.licence_id) == (ISSUE, new.licence_id) else ""
                    )
                    for e in events
                ],
            )
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

    def count(self) -> int:
        """Number of licence versions stored (for reports and benchmarks)."""
        with self._tx() as s:
            return int(s.execute(select(func.count()).select_from(_L)).scalar_one())
