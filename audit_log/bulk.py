"""Driver-level fast paths of :mod:`audit_log.sql`: bulk inserts and proof reads.

SQLAlchemy's per-row and per-statement work is negligible for most queries
but not for these: the sequencer writes thousands of rows per batch and a
proof must come back in well under a millisecond. So batches go in as
multi-row INSERTs (SQLite) or binary COPY (PostgreSQL) on the transaction's
own connection, and node hashes are read with one raw driver query.

Example::

    reader = NodeReader(database)
    hashes = reader.fetch([0, 1, 2])        # flat id -> hash, missing ids absent
    reader.close()
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, create_engine

from zhida.db import Database
from zhida.db.engine import CONNECT_TIMEOUT_SECONDS, POOL_TIMEOUT_SECONDS, translated_errors

# Bound parameters per statement: SQLite before 3.32 allowed 999, later 32766.
_SQLITE_MAX_VARS = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_SQLITE_ROWS_PER_INSERT = 500


def _insert_statements(
    table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Multi-row INSERTs of ``rows``: (SQL, parameters), a few hundred rows each."""
    per = max(1, min(_SQLITE_ROWS_PER_INSERT, _SQLITE_MAX_VARS // len(columns)))
    row_marks = "(" + ",".join("?" * len(columns)) + ")"
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608 (our constants)
    for at in range(0, len(rows), per):
        chunk = rows[at : at + per]
        yield head + ",".join([row_marks] * len(chunk)), tuple(v for row in chunk for v in row)


def insert_rows(
    conn: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Multi-row INSERTs: one statement (one GIL release) per few hundred rows.

    executemany steps once per row, and sqlite3 releases the GIL around every
    step; with an event loop busy in another thread each re-acquisition can
    wait a whole switch interval, which made row-at-a-time inserts ten times
    slower under load.
    """
    for sql, params in _insert_statements(table, columns, rows):
        conn.exec_driver_sql(sql, params)


def insert_driver_rows(
    conn: sqlite3.Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """:func:`insert_rows` on a bare sqlite3 connection (no SQLAlchemy per statement)."""
    for sql, params in _insert_statements(table, columns, rows):
        conn.execute(sql, params)


def as_bytes(value: object) -> bytes:
    """A stored binary value as bytes, whatever someone wrote there.

    SQLite is dynamically typed: a hand-edited row can hold TEXT or a number
    where we wrote a BLOB. Such a value must surface as a mismatch that
    verification reports, never as a crash.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return repr(value).encode()


def pg_copy(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Binary COPY of ``rows`` into ``table`` within ``conn``'s transaction (psycopg 3)."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


class NodeReader:
    """Node hashes straight through the driver: the proof hot path.

    SQLAlchemy's per-statement work (and, on PostgreSQL, the pool's pre-ping
    and reset round trips) would cost more than the query itself. SQLite
    connections of :class:`zhida.db.Database` run without an implicit
    transaction, so a bare SELECT reads a consistent snapshot without taking
    the write lock. PostgreSQL gets a small pool of its own in autocommit mode
    without pre-ping: one round trip per proof; a broken connection is
    discarded and the call fails as UNAVAILABLE (retryable).
    """

    _SQLITE_CHUNK = 900  # below SQLITE_MAX_VARIABLE_NUMBER of old builds (999)

    def __init__(self, database: Database) -> None:
        self._sqlite = database.dialect == "sqlite"
        if self._sqlite:
            self._engine = database.engine
        else:
            self._engine = create_engine(
                database.url,
                pool_size=4,
                max_overflow=8,
                pool_timeout=POOL_TIMEOUT_SECONDS,
                pool_reset_on_return=None,
                connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "autocommit": True},
            )

    def fetch(self, flat: Sequence[int]) -> dict[int, bytes]:
        if not flat:
            return {}
        found: dict[int, bytes] = {}
        with translated_errors():
            raw = self._engine.raw_connection()
            try:
                cursor = raw.cursor()
                if self._sqlite:
                    for at in range(0, len(flat), self._SQLITE_CHUNK):
                        chunk = list(flat[at : at + self._SQLITE_CHUNK])
                        marks = ",".join("?" * len(chunk))
                        cursor.execute(
                            f"SELECT id, hash FROM audit_node WHERE id IN ({marks})",  # noqa: S608 (placeholders only)
                            chunk,
                        )
                        found.update((i, as_bytes(h)) for i, h in cursor.fetchall())
                else:
                    cursor.execute(
                        "SELECT id, hash FROM audit_node WHERE id = ANY(%s)", [list(flat)]
                    )
                    found.update((i, as_bytes(h)) for i, h in cursor.fetchall())
                cursor.close()
            except Exception:
                if not self._sqlite:
                    raw.invalidate()
                raise
            finally:
                raw.close()
        return found

    def close(self) -> None:
        if not self._sqlite:
            self._engine.dispose()
