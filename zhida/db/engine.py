"""Database access: one :class:`Database` per process wraps an Engine and a session factory.

SQLite (the embedded default) and PostgreSQL are both supported with the same
models and migrations. A session is one transaction: it commits when the block
ends normally and rolls back on any exception, so either all of its writes land
or none do. Failures to reach the database surface as
:class:`zhida.errors.Unavailable` with reason ``DATABASE_UNAVAILABLE``;
serialization failures and deadlocks (PostgreSQL) as :class:`zhida.errors.Aborted`
with reason ``TRANSACTION_CONFLICT``; both are safe for the client to retry.

Example::

    from sqlalchemy import select

    from zhida.db import Database
    from zhida.db.models import NodeMeta

    db = Database("sqlite:///.zhida/zhida.db")
    print(db.check())  # current Alembic revision, e.g. "0001"
    with db.session() as s:
        s.add(NodeMeta(key="region_code", value="420102"))
    with db.session() as s:
        print(s.scalars(select(NodeMeta)).all())
    db.dispose()
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event, exc, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from zhida.config import DatabaseConfig
from zhida.errors import Aborted, Unavailable, ZhidaError

UNAVAILABLE_REASON = "DATABASE_UNAVAILABLE"
CONFLICT_REASON = "TRANSACTION_CONFLICT"

CONNECT_TIMEOUT_SECONDS = 3  # libpq's minimum useful value is 2
POOL_TIMEOUT_SECONDS = 10.0
SQLITE_BUSY_TIMEOUT_MS = 5000

_SQLITE_BUSY = 5
# SQLite result codes (primary, low byte) that mean a query was fine but the
# database could not serve it right now. SQLITE_ERROR (1, e.g. "no such table")
# is a bug or a missing migration and is deliberately not among them.
_SQLITE_UNAVAILABLE_CODES = frozenset(
    {
        _SQLITE_BUSY,
        6,  # SQLITE_LOCKED
        7,  # SQLITE_NOMEM
        8,  # SQLITE_READONLY
        10,  # SQLITE_IOERR
        13,  # SQLITE_FULL
        14,  # SQLITE_CANTOPEN
        15,  # SQLITE_PROTOCOL
    }
)


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; plain ``postgresql://`` (and ``postgres://``) select psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _describe(orig: BaseException | None) -> str:
    # libpq messages span lines ("...refused\n\tIs the server running..."); keep one line.
    return " ".join(str(orig).split()) or type(orig).__name__


def translate_error(error: BaseException) -> ZhidaError | None:
    """The zhida error a database exception stands for, or None to let it through."""
    if isinstance(error, exc.TimeoutError):  # no pooled connection freed up in time
        return Unavailable(f"database busy: {error}", reason=UNAVAILABLE_REASON)
    if not isinstance(error, exc.DBAPIError):
        return None
    if error.connection_invalidated or isinstance(error, exc.InterfaceError):
        return Unavailable(
            f"database connection lost: {_describe(error.orig)}", reason=UNAVAILABLE_REASON
        )
    if not isinstance(error, exc.OperationalError):
        return None
    orig = error.orig
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        if code is not None and code & 0xFF not in _SQLITE_UNAVAILABLE_CODES:
            return None
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if sqlstate.startswith("40"):  # serialization_failure, deadlock_detected
        return Aborted(f"transaction conflict, retry: {_describe(orig)}", reason=CONFLICT_REASON)
    return Unavailable(f"database unavailable: {_describe(orig)}", reason=UNAVAILABLE_REASON)


@contextmanager
def translated_errors() -> Iterator[None]:
    """Re-raise database exceptions as their zhida errors (see :func:`translate_error`)."""
    try:
        yield
    except Exception as error:
        zhida_error = translate_error(error)
        if zhida_error is None:
            raise
        raise zhida_error from error


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # The driver's own transaction handling is switched off so that SQLAlchemy's
    # BEGIN (below) delimits transactions exactly; PRAGMAs must run outside one.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    # WAL is persistent, so this only switches a new file; but connections that
    # race to switch it get SQLITE_BUSY at once (SQLite skips the busy handler
    # for this lock), so wait here as busy_timeout would.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            busy = (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


READ_ONLY_OPTION = "zhida_read_only"


def _sqlite_on_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front: a read-then-write transaction can
    # then never fail with SQLITE_BUSY half-way; it waits (busy_timeout) instead.
    # A read-only transaction (see Database.read) begins DEFERRED: under WAL it
    # reads one consistent snapshot and never waits for, nor blocks, a writer.
    if conn.get_execution_options().get(READ_ONLY_OPTION):
        conn.exec_driver_sql("BEGIN DEFERRED")
        return
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class DetachedConnection:
    """A driver connection out of the pool: :meth:`Database.detached_sqlite_connection`."""

    __slots__ = ("_proxy", "driver")

    def __init__(self, proxy: Any) -> None:
        self._proxy = proxy  # kept: dropping it would close the connection at garbage collection
        self.driver = cast(sqlite3.Connection, proxy.driver_connection)

    def close(self) -> None:
        with suppress(Exception):
            self._proxy.close()


class Database:
    """An Engine plus a session factory for one database URL; safe to share across threads."""

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int = 10,
        pooled: bool = True,
        echo: bool = False,
    ) -> None:
        self.url = normalize_url(url)
        kwargs: dict[str, Any] = {"echo": echo}
        if not pooled:  # short-lived engines (migrations, CLI): keep no connections
            kwargs["poolclass"] = NullPool
        if self.url.get_backend_name() == "sqlite":
            self._prepare_sqlite_path()
            kwargs["connect_args"] = {
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "check_same_thread": False,
            }
            if pooled and not self._sqlite_in_memory:
                kwargs.update(pool_size=pool_size, pool_timeout=POOL_TIMEOUT_SECONDS)
        elif self.url.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
            kwargs["pool_pre_ping"] = True
            if pooled:
                kwargs.update(pool_size=pool_size, pool_timeout=POOL_TIMEOUT_SECONDS)
        else:
            raise ValueError(f"unsupported database URL {self.url.render_as_string()!r}")
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_config(cls, cfg: DatabaseConfig) -> Database:
        return cls(cfg.url, pool_size=cfg.pool_size)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @property
    def _sqlite_in_memory(self) -> bool:
        return self.url.database in (None, "", ":memory:")

    def _prepare_sqlite_path(self) -> None:
        if not self._sqlite_in_memory and self.url.database is not None:
            Path(self.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any exception.

        Objects stay usable after the block (``expire_on_commit=False``).
        """
        with translated_errors(), self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                # If the connection is gone, the server discards the transaction anyway.
                with suppress(exc.SQLAlchemyError):
                    session.rollback()
                raise

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One read-only transaction (Core connection): a consistent snapshot, no writes.

        On SQLite it begins DEFERRED instead of IMMEDIATE, so it neither waits
        for the write lock nor holds it: concurrent readers and the writer
        proceed in parallel (WAL). Writing through it is a bug; on SQLite the
        write would have to take the lock half-way and may then fail with
        ``SQLITE_BUSY``. On PostgreSQL it is an ordinary transaction.
        """
        with (
            translated_errors(),
            self.engine.connect().execution_options(**{READ_ONLY_OPTION: True}) as conn,
            conn.begin(),
        ):
            yield conn

    def check(self) -> str | None:
        """Run a trivial query; return the Alembic revision (None before the first migration)."""
        with translated_errors(), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            return MigrationContext.configure(conn).get_current_revision()

    def detached_sqlite_connection(self) -> DetachedConnection | None:
        """A SQLite connection of its own, outside the pool (None when not SQLite on a
        file: an in-memory database lives on the pool's one connection).

        For a long-lived user (the audit log's writer, the licence fetch thread):
        per-connection settings such as ``synchronous`` stay set for its life and
        no pool checkout is paid per transaction. Opened like pooled ones (the
        engine's connect listeners run: autocommit, busy timeout, WAL, foreign
        keys); close it with ``.close()``.
        """
        if self.dialect != "sqlite" or self._sqlite_in_memory:
            return None
        try:
            proxy = self.engine.raw_connection()
        except exc.SQLAlchemyError as error:
            raise (translate_error(error) or error) from error
        detached = DetachedConnection(proxy)
        proxy.detach()  # frees its pool slot; closing it now really closes it
        return detached

    def dispose(self) -> None:
        """Close every pooled connection (call on shutdown, or after fork)."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"
