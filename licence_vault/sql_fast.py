"""Driver-level hot paths of :mod:`licence_vault.sql`: fetch snapshots and batch inserts.

A fetch batch reads consents and licences and writes use records; an issue
batch inserts a thousand licences with their JWS. Through SQLAlchemy Core
each statement and row costs more Python than the database work (cache
look-ups, bind and result processing, transaction events), and every sqlite3
call releases the GIL, which a thread then waits for while the event loop
runs. So these paths go straight to the pooled driver connection: fixed SQL
text, multi-row INSERTs on SQLite (``executemany`` on PostgreSQL), and values
converted here the way :class:`zhida.db.base.UTCDateTime` and ``Date`` would
(SQLite keeps naive UTC text with microseconds, PostgreSQL ``timestamptz``;
a test round-trips both). Driver errors surface as the zhida errors of
:mod:`zhida.db.engine` (a duplicate key as SQLAlchemy's IntegrityError).

Example::

    paths = DriverPaths(database)
    consents, licences = paths.snapshot(["c1"], ["91420102MA4KXY128F"], [type_code])
    paths.insert_uses(uses, durable=True)
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from sqlalchemy import exc

from licence_vault.model import UseRecord
from licence_vault.sql_rows import use_values
from zhida.db import Database
from zhida.db.engine import DetachedConnection, translate_error

__all__ = ["DriverPaths"]


class LicenceRaw(NamedTuple):
    """A licence row with its issue event's record, as :mod:`licence_vault.sql_rows` reads it."""

    licence_id: str
    version: int
    type_code: str
    issuer_code: str
    holder_code: str
    status: str
    status_idx: int
    issued_at: datetime | None
    valid_from: date | None
    valid_until: date | None
    jws_digest: str
    pdf_digest: str | None
    status_reason: str | None
    status_changed_at: datetime | None
    payload: str
    record: str | None


class ConsentRaw(NamedTuple):
    consent_id: str
    holder_code: str
    organisation: str
    type_codes: str
    matter_code: str
    valid_until: datetime | None
    created_at: datetime | None
    withdrawn_at: datetime | None
    withdraw_reason: str | None


_SELECT_LICENCES = (
    "SELECT l.licence_id, l.version, l.type_code, l.issuer_code, l.holder_code, l.status,"
    " l.status_idx, l.issued_at, l.valid_from, l.valid_until, l.jws_digest, l.pdf_digest,"
    " l.status_reason, l.status_changed_at, l.payload, e.record"
    " FROM licence l LEFT OUTER JOIN licence_event e ON e.lineage = l.lineage"
    " AND e.licence_id = l.licence_id AND e.action = 'issue'"
    " WHERE l.holder_code IN ({holders}) AND l.type_code IN ({types})"
    " AND l.status != 'superseded'"
)
_SELECT_CONSENTS = (
    "SELECT consent_id, holder_code, organisation, type_codes, matter_code, valid_until,"
    " created_at, withdrawn_at, withdraw_reason FROM licence_consent WHERE consent_id IN ({ids})"
)
_USE = (
    "annotation_id", "licence_id", "holder_code", "requester_org", "requester_subject",
    "matter_code", "matter_name", "basis", "consent_id", "legal_basis", "used_at", "use_until",
    "watermark", "status_at_use", "pdf_digest",
)  # fmt: skip
_USE_TIMES = ("used_at", "use_until")
_PG_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_SQLITE_ROWS_PER_INSERT = 500
_SQLITE_MAX_VARS = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999

Table = tuple[str, Sequence[str], Sequence[Sequence[Any]]]


def _insert_head(table: str, columns: Sequence[str]) -> str:
    """``INSERT INTO table (columns) VALUES `` for our own constant names."""
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608


def _utc(value: datetime | str | None) -> datetime | None:
    """A stored timestamp as an aware UTC datetime (SQLite text or a driver datetime)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _day(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


def _licence_raw(r: Sequence[Any]) -> LicenceRaw:
    return LicenceRaw(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], _utc(r[7]), _day(r[8]), _day(r[9]),
        r[10], r[11], r[12], _utc(r[13]), r[14], r[15],
    )  # fmt: skip


class DriverPaths:
    """The fetch batch's reads and writes on the pooled driver connections."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._engine = database.engine
        self._sqlite = database.dialect == "sqlite"
        self._mark = "?" if self._sqlite else "%s"
        self._dbapi: Any = self._engine.dialect.dbapi
        # SQLite: a connection of this store's own, for whichever thread finds it free
        # (in practice the fetch batch thread, two transactions per batch): no pool
        # checkout and return per transaction. Busy or absent: the pool as before.
        self._own: DetachedConnection | None = None
        self._own_lock = threading.Lock()

    def release(self) -> None:
        """Close the store's own connection (the next transaction opens a new one)."""
        with self._own_lock:
            own, self._own = self._own, None
        if own is not None:
            own.close()

    @contextmanager
    def _connection(self) -> Iterator[tuple[Any, bool]]:
        """A driver connection (and whether it is the store's own) for one transaction."""
        if self._sqlite and self._own_lock.acquire(blocking=False):
            try:
                if self._own is None:
                    self._own = self._database.detached_sqlite_connection()
                if self._own is not None:  # None: in-memory, the pool's one connection
                    yield self._own.driver, True
                    return
            finally:
                self._own_lock.release()
        try:
            raw = self._engine.raw_connection()
        except exc.SQLAlchemyError as error:
            raise (translate_error(error) or error) from error
        try:
            yield raw, False
        finally:
            raw.close()

    @contextmanager
    def _transaction(
        self, sqlite_begin: str, pg_first: str, *, sqlite_full: bool = False
    ) -> Iterator[Any]:
        """A cursor in a transaction on a driver connection; commits unless the block raises.

        SQLite connections run in autocommit mode (``zhida.db``), so the
        transaction is explicit (``sqlite_begin``); psycopg begins one itself
        before ``pg_first``. ``sqlite_full`` commits with ``synchronous=FULL``
        (the WAL fsynced; a per-connection pragma, set outside the transaction
        and reset after it). A driver error becomes its zhida error.
        """
        with self._connection() as (raw, own):
            try:
                cur = raw.cursor()
                if sqlite_full:
                    cur.execute("PRAGMA synchronous=FULL")
                try:
                    cur.execute(sqlite_begin if self._sqlite else pg_first)
                    try:
                        yield cur
                    except BaseException:
                        self._rollback(raw, cur)
                        raise
                    if self._sqlite:
                        cur.execute("COMMIT")
                    else:
                        raw.commit()
                finally:
                    if sqlite_full:
                        self._quietly(cur, "PRAGMA synchronous=NORMAL")  # the node default
                    cur.close()
            except self._dbapi.Error as error:
                self._rollback(raw, None)
                broken = (self._dbapi.OperationalError, self._dbapi.InterfaceError)
                if own and self._own is not None:  # start afresh with a new one next time
                    self._own.close()
                    self._own = None
                elif not self._sqlite and isinstance(error, broken):
                    raw.invalidate()  # the connection may be gone: the pool opens a new one
                wrapped = exc.DBAPIError.instance(None, None, error, self._dbapi.Error)
                raise (translate_error(wrapped) or wrapped) from error

    def _rollback(self, raw: Any, cur: Any) -> None:
        if self._sqlite:
            self._quietly(cur or raw.cursor(), "ROLLBACK")
            return
        with contextlib.suppress(self._dbapi.Error):  # a broken connection: nothing to undo
            raw.rollback()

    def _quietly(self, cur: Any, sql: str) -> None:
        # no transaction left, or a broken connection (the pool drops it)
        with contextlib.suppress(self._dbapi.Error):
            cur.execute(sql)

    def _marks(self, count: int) -> str:
        return ", ".join([self._mark] * count)

    def snapshot(
        self, consent_ids: Sequence[str], holders: Sequence[str], types: Sequence[str]
    ) -> tuple[list[ConsentRaw], list[LicenceRaw]]:
        """Consent rows and current licence rows (with their issue record), one snapshot.

        Timestamps and dates come back converted (aware UTC datetimes, dates).
        """
        licence_sql = _SELECT_LICENCES.format(
            holders=self._marks(len(holders)), types=self._marks(len(types))
        )
        consent_rows: list[Any] = []
        with self._transaction("BEGIN", _PG_SNAPSHOT) as cur:
            if consent_ids:
                ids = self._marks(len(consent_ids))
                cur.execute(_SELECT_CONSENTS.format(ids=ids), list(consent_ids))
                consent_rows = cur.fetchall()
            cur.execute(licence_sql, [*holders, *types])
            licence_rows = cur.fetchall()
        consents = [
            ConsentRaw(r[0], r[1], r[2], r[3], r[4], _utc(r[5]), _utc(r[6]), _utc(r[7]), r[8])
            for r in consent_rows
        ]
        licences = [_licence_raw(r) for r in licence_rows]
        return consents, licences

    def insert_uses(self, uses: Sequence[UseRecord], durable: bool) -> None:
        """Insert use records in one transaction; wait for the disk iff ``durable``."""
        self.insert(self.use_rows(uses), durable=durable)

    def use_rows(self, uses: Sequence[UseRecord]) -> list[tuple[str, tuple[str, ...], list[Any]]]:
        """The ``licence_use`` rows of ``uses``, bound for this database (one table)."""
        rows = []
        for use in uses:
            values = use_values(use)
            for key in _USE_TIMES:
                values[key] = self.bind_time(values[key])
            rows.append(tuple(values[c] for c in _USE))
        return [("licence_use", _USE, rows)]

    def insert(self, tables: Sequence[Table], *, durable: bool) -> None:
        """Insert rows into several tables in one transaction (multi-row INSERTs on SQLite:
        one statement per few hundred rows); wait for the disk iff ``durable``.

        ``tables``: (table, columns, rows), our constant names only. A duplicate
        key raises SQLAlchemy's IntegrityError and nothing is inserted.
        """
        if not any(rows for _t, _c, rows in tables):
            return
        if not self._sqlite:
            mode = "on" if durable else "off"
            with self._transaction("", f"SET LOCAL synchronous_commit = {mode}") as cur:
                for table, columns, rows in tables:
                    if rows:
                        cur.executemany(_insert_head(table, columns) + self._row(columns), rows)
            return
        with self._transaction("BEGIN IMMEDIATE", "", sqlite_full=durable) as cur:
            for table, columns, rows in tables:
                per = max(1, min(_SQLITE_ROWS_PER_INSERT, _SQLITE_MAX_VARS // len(columns)))
                for at in range(0, len(rows), per):
                    chunk = rows[at : at + per]
                    params = [value for row in chunk for value in row]
                    marks = ",".join([self._row(columns)] * len(chunk))
                    cur.execute(_insert_head(table, columns) + marks, params)

    def _row(self, columns: Sequence[str]) -> str:
        return "(" + self._marks(len(columns)) + ")"

    def bind_date(self, value: date | None) -> Any:
        """What SQLAlchemy's ``Date`` binds for ``value`` (SQLite: ISO text)."""
        if value is None or not self._sqlite:
            return value
        return value.isoformat()

    def bind_time(self, value: datetime | None) -> Any:
        """What :class:`~zhida.db.base.UTCDateTime` binds for ``value``."""
        if value is None:
            return None
        value = value.astimezone(UTC)
        if self._sqlite:
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return value
