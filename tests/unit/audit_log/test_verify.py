"""Tamper detection: edit the database directly, verify names the first bad entry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import text

from audit_log.compact import CompactRange
from audit_log.events import encode_event
from audit_log.hashes import NodeID, flat_id, leaf_hash
from audit_log.log import AuditLog
from audit_log.verify import verify_log
from tests.unit.audit_log.conftest import make_event
from zhida.db import Database
from zhida.errors import InvalidArgument

N = 100
CHUNK = 16


@pytest.fixture
def log(make_log: Callable[..., AuditLog]) -> AuditLog:
    audit = make_log()
    audit.sequencer.append_many([make_event(i) for i in range(N)], timeout=30)
    audit.publish_checkpoint()
    return audit


def _sql(database: Database, statement: str, **params: object) -> None:
    with database.engine.begin() as conn:
        conn.execute(text(statement), params)


def _first_problem(log: AuditLog, start: int = 0, end: int | None = None) -> tuple[int, str]:
    result = verify_log(log, start=start, end=end, chunk=CHUNK)
    assert result.problem is not None, "tampering went unnoticed"
    return result.problem.index, result.problem.kind


def test_an_untouched_log_verifies_with_progress(log: AuditLog) -> None:
    seen: list[tuple[int, int]] = []
    result = verify_log(log, chunk=CHUNK, progress=lambda done, total: seen.append((done, total)))
    assert result.ok
    assert result.checked == N
    assert result.checkpoint is not None
    assert seen[-1] == (N, N)
    assert len(seen) == -(-N // CHUNK)


def test_an_edited_event_is_named(log: AuditLog, database: Database) -> None:
    forged = encode_event(make_event(57, purpose="something else"))  # same search columns
    _sql(database, "UPDATE audit_event SET leaf = :leaf WHERE idx = 57", leaf=forged)
    assert _first_problem(log) == (57, "altered")


def test_garbage_bytes_are_named(log: AuditLog, database: Database) -> None:
    _sql(database, "UPDATE audit_event SET leaf = :leaf WHERE idx = 3", leaf=b'{"v":1}')
    assert _first_problem(log) == (3, "format")


def test_a_deleted_event_is_named(log: AuditLog, database: Database) -> None:
    _sql(database, "DELETE FROM audit_event WHERE idx = 23")
    assert _first_problem(log) == (23, "missing")


def test_deleting_the_tail_is_named(log: AuditLog, database: Database) -> None:
    _sql(database, "DELETE FROM audit_event WHERE idx >= 98")
    assert _first_problem(log) == (98, "missing")


def test_reordered_events_are_named(log: AuditLog, database: Database) -> None:
    _sql(database, "UPDATE audit_event SET idx = -1 WHERE idx = 30")
    _sql(database, "UPDATE audit_event SET idx = 30 WHERE idx = 34")
    _sql(database, "UPDATE audit_event SET idx = 34 WHERE idx = -1")
    assert _first_problem(log) == (30, "moved")


def test_an_altered_interior_node_is_named(log: AuditLog, database: Database) -> None:
    _sql(database, "UPDATE audit_node SET hash = :h WHERE id = :id",
         h=b"\x07" * 32, id=flat_id(NodeID(2, 11)))  # fmt: skip
    assert _first_problem(log) == (44, "node")


def test_an_altered_leaf_node_is_told_apart_from_an_edited_event(
    log: AuditLog, database: Database
) -> None:
    _sql(database, "UPDATE audit_node SET hash = :h WHERE id = :id", h=b"\x07" * 32, id=2 * 61)
    assert _first_problem(log) == (61, "node")


def test_edited_search_columns_are_named(log: AuditLog, database: Database) -> None:
    _sql(database, "UPDATE audit_event SET holder_ref = NULL WHERE idx = 8")  # hide from a holder
    assert _first_problem(log) == (8, "columns")


def test_the_first_of_several_problems_is_named(log: AuditLog, database: Database) -> None:
    _sql(database, "DELETE FROM audit_event WHERE idx = 90")
    _sql(database, "UPDATE audit_node SET hash = :h WHERE id = :id", h=b"\x01" * 32, id=2 * 70)
    _sql(database, "UPDATE audit_event SET subject = 'nobody' WHERE idx = 41")
    assert _first_problem(log) == (41, "columns")


def test_a_consistent_rewrite_is_caught_by_the_signature(log: AuditLog, database: Database) -> None:
    """Event and every node rewritten together: only the signed root disagrees."""
    leaves = [encode_event(make_event(i)) for i in range(N)]
    leaves[5] = encode_event(make_event(5, purpose="rewritten"))
    tree = CompactRange()
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET leaf = :l WHERE idx = 5"), {"l": leaves[5]})
        for leaf in leaves:
            for node in tree.append(leaf_hash(leaf)):
                conn.execute(
                    text("UPDATE audit_node SET hash = :h WHERE id = :id"),
                    {"h": node.hash, "id": flat_id(node)},
                )
        conn.execute(
            text("UPDATE audit_tree SET state = :s, root_hash = :r"),
            {"s": tree.to_bytes(), "r": tree.root()},
        )
    assert _first_problem(log)[1] == "root"


def test_a_broken_tree_state_is_named(log: AuditLog, database: Database) -> None:
    _sql(database, "UPDATE audit_tree SET root_hash = :r", r=b"\x09" * 32)
    assert _first_problem(log) == (N, "state")


def test_partial_ranges(log: AuditLog, database: Database) -> None:
    _sql(database, "UPDATE audit_event SET leaf = :leaf WHERE idx = 40",
         leaf=encode_event(make_event(40, purpose="changed")))  # fmt: skip
    assert verify_log(log, start=0, end=20, chunk=CHUNK).ok
    assert verify_log(log, start=45, end=N, chunk=CHUNK).ok
    assert _first_problem(log, start=33, end=57) == (40, "altered")
    assert _first_problem(log, start=40, end=41) == (40, "altered")
    with pytest.raises(InvalidArgument):
        verify_log(log, start=0, end=N + 1)
    with pytest.raises(InvalidArgument):
        verify_log(log, start=10, end=5)


def test_a_tampered_checkpoint_is_reported(log: AuditLog, database: Database) -> None:
    _sql(database, "UPDATE audit_checkpoint SET note = 'x'")
    assert _first_problem(log) == (0, "checkpoint")


def test_without_a_checkpoint_the_tree_head_is_checked(make_log: Callable[..., AuditLog]) -> None:
    audit = make_log()
    audit.sequencer.append_many([make_event(i) for i in range(5)], timeout=30)
    result = verify_log(audit)
    assert result.ok
    assert result.checkpoint is None
    assert result.checked == 5


def test_values_of_the_wrong_type_are_reported_not_crashed_on(
    make_log: Callable[..., AuditLog], database: Database
) -> None:
    """SQLite lets a hand edit store TEXT where we wrote BLOBs and timestamps."""
    audit = make_log()
    audit.sequencer.append_many([make_event(i) for i in range(N)], timeout=30)
    audit.publish_checkpoint()
    replace_ = (
        "replace(leaf, 'clerk', 'CLERK')"
        if database.dialect == "sqlite"
        else ("convert_to(replace(convert_from(leaf, 'UTF8'), 'clerk', 'CLERK'), 'UTF8')")
    )
    _sql(database, f"UPDATE audit_event SET leaf = {replace_} WHERE idx = 66")  # noqa: S608
    assert _first_problem(audit) == (66, "altered")
    if database.dialect == "sqlite":  # PostgreSQL's types refuse these edits outright
        _sql(database, "UPDATE audit_event SET time = 'yesterday' WHERE idx = 12")
        assert _first_problem(audit) == (12, "columns")
        _sql(database, "UPDATE audit_node SET hash = 'not a hash' WHERE id = 10")
        assert _first_problem(audit) == (5, "node")
