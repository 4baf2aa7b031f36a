"""GroupWriter: concurrent callers' writes share transactions; refusals stay their own."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from exchange.federation.group_commit import GroupWriter, SqliteWriter
from exchange.federation.idempotency import ClaimState
from exchange.federation.sql_idempotency import SqlIdempotencyStore
from exchange.federation.sql_replay import SqlReplayCache
from exchange.federation.store.models import IdempotencyRow, ReplayRow
from zhida.db import Database
from zhida.errors import FailedPrecondition, InvalidArgument, ZhidaError

_R = cast(Table, ReplayRow.__table__)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'replay.db'}")
    _R.create(db.engine)
    try:
        yield db
    finally:
        db.dispose()


def _count(s: Session) -> int:
    return len(s.execute(select(_R.c.jti)).all())


def test_one_writer_per_database(database: Database) -> None:
    assert GroupWriter.of(database) is GroupWriter.of(database)


def test_a_refusal_is_its_callers_and_the_batch_commits(database: Database) -> None:
    writer = GroupWriter(database)

    def refuse(s: Session) -> None:
        raise InvalidArgument("no", reason="REFUSED")

    with pytest.raises(InvalidArgument):
        writer.run(refuse)
    cache = SqlReplayCache(database)
    assert cache.remember("a", expires_at=4_000_000_000)
    assert GroupWriter.of(database).run(_count) == 1


def test_a_failed_transaction_fails_every_caller(database: Database) -> None:
    writer = GroupWriter(database)

    def broken(s: Session) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        writer.run(broken)
    assert writer.run(_count) == 0


def test_concurrent_replays_have_one_winner(database: Database) -> None:
    cache = SqlReplayCache(database)
    results: list[bool] = []
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def remember(n: int) -> None:
        start.wait()
        try:
            results.append(cache.remember(f"jti-{n % 4}", expires_at=4_000_000_000))
        except ZhidaError as exc:  # pragma: no cover - would fail the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=remember, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [False] * 12 + [True] * 4
    writer = cache.raw  # a SQLite file: the raw writer of this process
    assert writer is not None
    assert writer is SqliteWriter.of(database)
    assert writer.operations >= 16
    assert writer.batches <= writer.operations


def test_the_sql_and_the_raw_path_store_alike(database: Database) -> None:
    """Rows written by plain SQL (SQLite file) and through SQLAlchemy are one table: the
    SQLAlchemy path (PostgreSQL's) sees, refuses and purges what the raw path wrote."""
    raw = SqlReplayCache(database, clock=lambda: 1_000.0)
    assert raw.raw is not None
    orm = SqlReplayCache(database, clock=lambda: 1_000.0)
    orm.raw = None  # the SQLAlchemy statements, as on PostgreSQL
    assert raw.remember("a", expires_at=1_060.5)
    assert not orm.remember("a", expires_at=1_060.5)
    assert orm.remember("b", expires_at=1_060.5)
    assert not raw.remember("b", expires_at=1_060.5)
    assert raw.count() == 2
    later = SqlReplayCache(database, clock=lambda: 1_061.0)
    assert later.count() == 0
    assert later.remember("a", expires_at=1_121.0)  # expired: taken over
    assert later.purge() == 1  # "b" only


def test_a_refused_raw_operation_is_its_callers(database: Database) -> None:
    writer = SqliteWriter.of(database)
    assert writer is not None

    def refuse(conn: sqlite3.Connection) -> None:
        raise InvalidArgument("no", reason="REFUSED")

    with pytest.raises(InvalidArgument):
        writer.run(refuse)
    with pytest.raises(sqlite3.OperationalError):
        writer.run(lambda c: c.execute("INSERT INTO no_such_table VALUES (1)"))
    assert writer.run(lambda c: c.execute("SELECT count(*) FROM federation_replay").fetchone())
    writer.close()
    assert SqliteWriter.of(Database("sqlite://")) is None


def test_idempotency_rows_read_alike_on_both_paths(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'idem.db'}")
    cast(Table, IdempotencyRow.__table__).create(db.engine)
    try:
        raw = SqlIdempotencyStore(db, clock=lambda: 100.0)
        orm = SqlIdempotencyStore(db, clock=lambda: 100.0)
        assert raw.raw is not None
        orm.raw = None  # the SQLAlchemy statements, as on PostgreSQL
        begin = {"ttl_seconds": 3600.0, "lease_seconds": 5.0}
        assert raw.begin("k", "d", **begin).state is ClaimState.NEW
        assert orm.begin("k", "d", **begin).state is ClaimState.IN_PROGRESS
        with pytest.raises(InvalidArgument):
            orm.begin("k", "other", **begin)
        orm.complete("k", b"answer")
        assert raw.begin("k", "d", **begin) == orm.begin("k", "d", **begin)
        assert raw.begin("k", "d", **begin).response == b"answer"
        assert orm.begin("j", "d", **begin).state is ClaimState.NEW
        lapsed = SqlIdempotencyStore(db, clock=lambda: 106.0)  # j's lease has passed
        assert lapsed.raw is not None
        assert lapsed.begin("j", "d", **begin).state is ClaimState.NEW
        lapsed.abandon("j")
        assert orm.count() == 1
        gone = SqlIdempotencyStore(db, clock=lambda: 3_701.0)
        assert gone.begin("k", "d", **begin).state is ClaimState.NEW  # expired: taken over
        with pytest.raises(FailedPrecondition):
            gone.complete("nobody", b"")
    finally:
        db.dispose()


def test_a_batch_locks_rows_in_key_order(database: Database) -> None:
    """Two processes' batches take shared rows in one order (no deadlock on PostgreSQL)."""
    from exchange.federation.group_commit import _Op

    ran: list[str] = []

    def op(name: str) -> Callable[[Any], None]:
        return lambda _handle: ran.append(name)

    writers: tuple[Any, ...] = (GroupWriter(database), SqliteWriter(database))
    for writer in writers:
        ran.clear()
        batch: list[_Op[Any, None]] = [
            _Op(op(name), key) for name, key in
            (("b1", "replay:b"), ("a", "idempotency:a"), ("b2", "replay:b"), ("c", "replay:c"))
        ]  # fmt: skip
        writer._write(batch)  # one batch, as concurrent callers would make it
        assert ran == ["a", "b1", "b2", "c"]  # key order; callers of one key keep theirs
        assert all(entry.done and entry.error is None for entry in batch)
