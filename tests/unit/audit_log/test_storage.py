"""SqlLogStorage on SQLite and PostgreSQL: batches, tree state, proofs, search, atomicity."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.dialects import sqlite

import audit_log.bulk
import audit_log.sql
from audit_log.compact import CompactRange, MemoryNodeStore
from audit_log.events import Action, Outcome
from audit_log.hashes import leaf_hash
from audit_log.log import AuditLog
from audit_log.merkle import (
    consistency_proof,
    inclusion_proof,
    root_at,
    verify_consistency,
    verify_inclusion,
)
from audit_log.models import AuditEventRow, AuditNodeRow
from audit_log.sql import SqlLogStorage
from audit_log.storage import EncodedEvent, EventQuery, SearchColumns
from tests.unit.audit_log.conftest import ORGS, T0, make_event
from zhida.db import Database

N = 37


def _fill(storage: SqlLogStorage, n: int = N, batch: int = 10) -> list[EncodedEvent]:
    encoded = [EncodedEvent.of(make_event(i)) for i in range(n)]
    for at in range(0, n, batch):
        assert storage.append(encoded[at : at + batch]) == at
    return encoded


def test_batches_get_contiguous_indices_and_the_reference_tree(database: Database) -> None:
    storage = SqlLogStorage(database)
    encoded = _fill(storage)
    reference, tree = MemoryNodeStore(), CompactRange()
    for e in encoded:
        reference.put(tree.append(e.leaf_hash))
    head = storage.tree_head()
    assert (head.size, head.root_hash) == (N, tree.root())
    rows = storage.read_events(0, N)
    assert [r.index for r in rows] == list(range(N))
    assert [r.leaf for r in rows] == [e.leaf for e in encoded]
    assert rows[3].columns == SearchColumns.of(encoded[3].event)
    with database.session() as s:  # every perfect subtree, leaves included, nothing else
        assert s.scalar(select(func.count()).select_from(AuditNodeRow)) == len(reference)


def test_state_survives_a_restart_without_rehashing(database: Database) -> None:
    _fill(SqlLogStorage(database), 20)
    again = SqlLogStorage(database)  # a new process: reads the state row, appends on
    assert again.append([EncodedEvent.of(make_event(99))]) == 20
    assert again.tree_head().size == 21


def test_writers_sharing_a_database_interleave_into_one_tree(database: Database) -> None:
    # Each writer remembers the tree it last committed; the other's appends move the
    # row on, so its next batch must start from the stored tree, not its own.
    a, b = SqlLogStorage(database), SqlLogStorage(database)
    encoded = [EncodedEvent.of(make_event(i)) for i in range(9)]
    for at, writer in ((0, a), (2, b), (4, a), (5, a), (6, b), (8, a)):
        stop = {0: 2, 2: 4, 4: 5, 5: 6, 6: 8, 8: 9}[at]
        assert writer.append(encoded[at:stop]) == at
    tree = CompactRange()
    for e in encoded:
        tree.append(e.leaf_hash)
    for storage in (a, b):
        assert storage.tree_head() == type(storage.tree_head())(9, tree.root())
    root = tree.root()
    for index in range(9):
        proof = inclusion_proof(index, 9, a)
        verify_inclusion(encoded[index].leaf_hash, index, 9, proof, root)
    a.close()
    b.close()


def test_proofs_from_stored_nodes_verify(database: Database) -> None:
    storage = SqlLogStorage(database)
    encoded = _fill(storage)
    root = storage.tree_head().root_hash
    for index in (0, 1, 17, N - 1):
        proof = inclusion_proof(index, N, storage)
        verify_inclusion(encoded[index].leaf_hash, index, N, proof, root)
    for size1 in (1, 8, 20, N):
        proof = consistency_proof(size1, N, storage)
        verify_consistency(size1, N, proof, root_at(size1, storage), root)


def test_a_failing_batch_writes_nothing(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = SqlLogStorage(database)
    _fill(storage, 5)
    before = storage.tree_head()

    def boom(*args: Any) -> None:
        raise RuntimeError("disk on fire")

    # Fails after the event rows went in: the transaction must take them back out.
    monkeypatch.setattr(SqlLogStorage, "_copy", staticmethod(boom))
    monkeypatch.setattr(storage, "_event_row", lambda i, e: boom() if i == 7 else None)
    with pytest.raises(RuntimeError, match="disk on fire"):
        storage.append([EncodedEvent.of(make_event(i)) for i in range(5, 10)])
    monkeypatch.undo()
    assert storage.tree_head() == before
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEventRow)) == 5
    assert storage.append([EncodedEvent.of(make_event(5))]) == 5


def test_search_filters_in_log_order(database: Database) -> None:
    storage = SqlLogStorage(database)
    _fill(storage)
    by_org = storage.search(EventQuery(organisation=ORGS[1]))
    assert [r.index for r in by_org] == [i for i in range(N) if i % 3 == 1]
    denied = storage.search(EventQuery(outcome=Outcome.DENIED, actions=(Action.LICENCE_FETCH,)))
    assert [r.index for r in denied] == [i for i in range(N) if i % 10 == 9 and i % 3 == 0]
    recent = storage.search(EventQuery(since=T0.replace(second=30), until=T0.replace(second=33)))
    assert [r.index for r in recent] == [30, 31, 32]
    newest = storage.search(EventQuery(subject="clerk-2", newest_first=True, after=30, limit=2))
    assert [r.index for r in newest] == [27, 22]
    assert storage.search(EventQuery(holder_ref=f"{3:064x}", resource="R003"))[0].index == 3


def test_tree_head_of_an_empty_log(database: Database) -> None:
    head = SqlLogStorage(database).tree_head()
    assert head.size == 0
    assert head.root_hash == CompactRange().root()


def test_log_level_proof_arguments_are_checked(make_log: Callable[..., AuditLog]) -> None:
    from zhida.errors import FailedPrecondition, InvalidArgument

    log = make_log()
    with pytest.raises(FailedPrecondition, match="no signed checkpoint"):
        log.inclusion_proof(0)
    for i in range(5):
        log.append(make_event(i))
    log.publish_checkpoint()
    proof = log.inclusion_proof(4)
    assert proof.leaf_hash == leaf_hash(EncodedEvent.of(make_event(4)).leaf)
    calls: list[tuple[Callable[[], object], str]] = [
        (lambda: log.inclusion_proof(5), "index"),
        (lambda: log.inclusion_proof(0, 6), "tree_size"),
        (lambda: log.consistency_proof(0), "first_size"),
        (lambda: log.consistency_proof(6), "first_size"),
        (lambda: log.consistency_proof(2, 9), "second_size"),
    ]
    for call, field in calls:
        with pytest.raises(InvalidArgument) as info:
            call()
        assert [v.field for v in info.value.violations] == [field]
    assert log.consistency_proof(5) == []


def test_sqlite_rows_bind_time_like_the_column_type() -> None:
    """The raw insert path formats times exactly as UTCDateTime would on SQLite."""
    dialect = sqlite.dialect()
    bind = AuditEventRow.__table__.c.time.type.dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    fake = SimpleNamespace(_dialect="sqlite")
    for when in (T0, T0.replace(microsecond=123456)):
        row = SqlLogStorage._event_row(fake, 0, EncodedEvent.of(make_event(0, time=when)))  # type: ignore[arg-type]
        assert row[2] == bind(when)


def test_a_sqlite_batch_failing_after_its_event_rows_writes_nothing(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.dialect != "sqlite":
        pytest.skip("the driver-level append is SQLite's")
    storage = SqlLogStorage(database)
    _fill(storage, 5)
    before = storage.tree_head()
    real = audit_log.bulk.insert_driver_rows

    def nodes_fail(conn: Any, table: str, columns: Any, rows: Any) -> None:
        if table == "audit_node":
            raise RuntimeError("disk on fire")
        real(conn, table, columns, rows)

    monkeypatch.setattr(audit_log.sql, "insert_driver_rows", nodes_fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        storage.append([EncodedEvent.of(make_event(i)) for i in range(5, 10)])
    monkeypatch.undo()
    assert storage.tree_head() == before
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEventRow)) == 5
    assert storage.append([EncodedEvent.of(make_event(5))]) == 5


def _extra_table(database: Database) -> None:
    with database.engine.begin() as conn:
        conn.execute(text("CREATE TABLE extra_rows (k INTEGER PRIMARY KEY, v VARCHAR(20))"))


def _extra_keys(database: Database) -> list[int]:
    with database.engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT k FROM extra_rows ORDER BY k"))]


def test_extra_rows_are_written_in_the_batch_transaction(database: Database) -> None:
    _extra_table(database)
    storage = SqlLogStorage(database)
    rows = [("extra_rows", ("k", "v"), [(1, "a"), (2, "b")])]
    assert storage.append([EncodedEvent.of(make_event(i)) for i in range(3)], rows) == 0
    assert _extra_keys(database) == [1, 2]
    assert storage.tree_head().size == 3
    before = storage.tree_head()
    # A duplicate key among the extra rows: neither they nor the events are stored.
    bad = [("extra_rows", ("k", "v"), [(3, "c"), (1, "again")])]
    with pytest.raises(Exception):  # noqa: B017, PT011 (the dialect's integrity error)
        storage.append([EncodedEvent.of(make_event(i)) for i in range(3, 5)], bad)
    assert storage.tree_head() == before
    assert _extra_keys(database) == [1, 2]
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEventRow)) == 3
    more = [("extra_rows", ("k", "v"), [(3, "c")])]
    assert storage.append([EncodedEvent.of(make_event(3))], more) == 3
    assert _extra_keys(database) == [1, 2, 3]
    storage.close()
