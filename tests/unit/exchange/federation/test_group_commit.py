"""GroupWriter: concurrent callers' writes share transactions; refusals stay their own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from exchange.federation.group_commit import GroupWriter
from exchange.federation.sql_replay import SqlReplayCache
from exchange.federation.store.models import ReplayRow
from zhida.db import Database
from zhida.errors import InvalidArgument, ZhidaError

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
    writer = GroupWriter.of(database)
    assert writer.operations >= 16
    assert writer.batches <= writer.operations
