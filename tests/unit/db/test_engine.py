"""Database: sessions, SQLite settings, error translation. Dialect-specific cases run on both."""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import exc, select, text

from zhida.config import DatabaseConfig
from zhida.db import Database
from zhida.db.engine import normalize_url, translate_error
from zhida.db.migrate import upgrade
from zhida.db.models import NodeMeta
from zhida.errors import Unavailable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens once the socket is closed


def test_normalize_url() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_from_config_and_sqlite_settings(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "zhida.db"
    db = Database.from_config(DatabaseConfig(f"sqlite:///{path}", True, 3))
    try:
        assert db.dialect == "sqlite"
        assert db.check() is None
        assert path.exists()  # parent directories were created
        with db.engine.connect() as conn:
            pragmas = {
                p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                for p in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
        assert pragmas == {
            "journal_mode": "wal",
            "foreign_keys": 1,
            "busy_timeout": 5000,
            "synchronous": 1,
        }
    finally:
        db.dispose()


def test_unsupported_url() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Database("mysql://u@h/db")


def _query(db: Database) -> None:
    with db.session() as s:
        s.execute(text("SELECT 1"))


@pytest.mark.parametrize("op", ["session", "check", "upgrade"])
def test_unreachable_postgres_fails_fast(op: str) -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres"
    db = Database(url)
    attempt: dict[str, Callable[[], object]] = {
        "session": lambda: _query(db),
        "check": db.check,
        "upgrade": lambda: upgrade(url),
    }
    start = time.monotonic()
    with pytest.raises(Unavailable) as info:
        attempt[op]()
    assert time.monotonic() - start < 3
    assert info.value.reason == "DATABASE_UNAVAILABLE"
    db.dispose()


def test_unopenable_sqlite_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()  # a directory cannot be opened as a database
    db = Database(f"sqlite:///{tmp_path / 'dir.db'}")
    with pytest.raises(Unavailable) as info:
        db.check()
    assert info.value.reason == "DATABASE_UNAVAILABLE"


def test_sqlite_lock_is_unavailable_but_sql_errors_pass_through(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as busy:
            waiter.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.OperationalError) as missing:
            waiter.execute("SELECT * FROM no_such_table")
    finally:
        waiter.close()
        holder.close()
    locked = translate_error(exc.OperationalError("INSERT", {}, busy.value))
    assert isinstance(locked, Unavailable)
    assert locked.reason == "DATABASE_UNAVAILABLE"
    assert translate_error(exc.OperationalError("SELECT", {}, missing.value)) is None
    assert translate_error(ValueError("x")) is None


def _write_then_raise(db: Database) -> None:
    with db.session() as s:
        s.add(NodeMeta(key="lost", value="2"))
        s.flush()  # written inside the transaction...
        raise RuntimeError("boom")  # ...and undone


def _write_then_conflict(db: Database) -> None:
    with db.session() as s:
        s.add(NodeMeta(key="also-lost", value="3"))
        s.flush()
        s.add(NodeMeta(key="kept", value="duplicate"))  # fails at commit


def test_session_commits_and_rolls_back(database: Database) -> None:
    with database.session() as s:
        s.add(NodeMeta(key="kept", value="1"))
    with pytest.raises(RuntimeError, match="boom"):
        _write_then_raise(database)
    # A failing statement aborts the whole transaction, earlier writes included.
    with pytest.raises(exc.IntegrityError):
        _write_then_conflict(database)
    with database.session() as s:
        rows = {m.key: m.value for m in s.scalars(select(NodeMeta))}
    assert rows == {"kept": "1"}


def test_aware_datetimes_round_trip(database: Database) -> None:
    beijing = timezone(timedelta(hours=8))
    stamps = {
        "a": datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=beijing),  # 01:30:15Z
        "b": datetime(2024, 3, 1, 1, 0, tzinfo=UTC),
        "c": datetime(2024, 2, 29, 20, 0, tzinfo=timezone(timedelta(hours=-7))),  # 03:00Z
    }
    with database.session() as s:
        s.add_all(NodeMeta(key=k, value=k, updated_at=v) for k, v in stamps.items())
    with database.session() as s:
        loaded = list(s.scalars(select(NodeMeta).order_by(NodeMeta.updated_at)))
        later = s.scalars(
            select(NodeMeta.key).where(
                NodeMeta.updated_at > datetime(2024, 3, 1, 9, tzinfo=beijing)
            )
        ).all()
    assert [m.key for m in loaded] == ["b", "a", "c"]  # chronological, not by local clock
    for m in loaded:
        assert m.updated_at == stamps[m.key]
        assert m.updated_at.utcoffset() == timedelta(0)
    assert sorted(later) == ["a", "c"]


def test_default_timestamp_and_naive_rejected(database: Database) -> None:
    with database.session() as s:
        s.add(NodeMeta(key="k", value="v"))
    with database.session() as s:
        meta = s.get(NodeMeta, "k")
        assert meta is not None
        assert abs(meta.updated_at - datetime.now(UTC)) < timedelta(minutes=1)
    with pytest.raises(exc.StatementError, match="naive datetime"):
        _add(database, NodeMeta(key="n", value="v", updated_at=datetime(2024, 1, 1)))


def _add(db: Database, row: NodeMeta) -> None:
    with db.session() as s:
        s.add(row)


def test_read_transaction_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/read.db"
    upgrade(url)
    db = Database(url, pool_size=2)
    try:
        with db.session() as s:
            s.add(NodeMeta(key="k", value="before"))
        with db.session() as writer:  # holds the write lock (BEGIN IMMEDIATE)
            writer.get(NodeMeta, "k").value = "during"  # type: ignore[union-attr]
            writer.flush()
            start = time.monotonic()
            with db.read() as conn:  # a snapshot: neither waits nor sees uncommitted rows
                value = conn.execute(text("SELECT value FROM node_meta WHERE key = 'k'"))
                assert value.scalar_one() == "before"
            assert time.monotonic() - start < 1.0
        with db.read() as conn:
            assert conn.execute(text("SELECT value FROM node_meta")).scalar_one() == "during"
    finally:
        db.dispose()
