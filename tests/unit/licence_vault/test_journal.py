"""UseJournal: group commit of use records, alone or riding a companion's durable commit."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from licence_vault.journal import UseJournal


class Recorder:
    """A write function and a companion that log what they were given, in order."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.log: list[tuple[str, Any, Any]] = []
        self.gate = gate
        self.fail_write = False
        self.fail_companion = False

    def write(self, items: Sequence[str], durable: bool) -> None:
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail_write or "bad" in items:
            raise RuntimeError("write failed")
        self.log.append(("write", list(items), durable))

    def companion(self, records: Sequence[str]) -> None:
        if self.fail_companion:
            raise RuntimeError("companion failed")
        self.log.append(("companion", list(records), None))


def _run_concurrently(
    journal: UseJournal[str], calls: list[tuple[list[str], list[str]]]
) -> list[BaseException]:
    errors: list[BaseException] = []

    def call(items: list[str], companions: list[str]) -> None:
        try:
            journal.write(items, companions)
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=c) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return errors


def test_every_callers_records_are_written_and_errors_are_shared() -> None:
    gate = threading.Event()
    rec = Recorder(gate)
    journal: UseJournal[str] = UseJournal(rec.write)
    calls: list[tuple[list[str], list[str]]] = [([f"u{i}"], []) for i in range(8)]
    timer = threading.Timer(0.1, gate.set)
    timer.start()
    errors = _run_concurrently(journal, calls)
    timer.join()
    assert not errors
    written = [item for kind, items, _d in rec.log if kind == "write" for item in items]
    assert sorted(written) == sorted(f"u{i}" for i in range(8))
    assert all(durable for kind, _i, durable in rec.log if kind == "write")  # no companion
    with pytest.raises(RuntimeError):
        journal.write(["bad"])


def test_with_a_companion_the_records_ride_its_commit() -> None:
    rec = Recorder()
    journal: UseJournal[str] = UseJournal(rec.write, rec.companion)
    journal.write(["u1", "u2"], ["e1", "e2"])
    # uses first, without waiting for the disk; then the companion's durable commit
    assert rec.log == [("write", ["u1", "u2"], False), ("companion", ["e1", "e2"], None)]


def test_a_batch_without_companion_records_is_made_durable_by_itself() -> None:
    rec = Recorder()
    journal: UseJournal[str] = UseJournal(rec.write, rec.companion)
    journal.write(["u1"])
    assert rec.log == [("write", ["u1"], True)]


def test_a_failed_companion_fails_every_caller_of_its_batch() -> None:
    gate = threading.Event()
    rec = Recorder(gate)
    rec.fail_companion = True
    journal: UseJournal[str] = UseJournal(rec.write, rec.companion)
    gate.set()
    errors = _run_concurrently(journal, [([f"u{i}"], [f"e{i}"]) for i in range(6)])
    assert len(errors) == 6  # nobody may answer OK: their records are not known durable


def test_companion_records_need_a_companion() -> None:
    rec = Recorder()
    journal: UseJournal[str] = UseJournal(rec.write)
    with pytest.raises(ValueError, match="companion"):
        journal.write(["u1"], ["e1"])
    assert rec.log == []


def test_concurrent_callers_share_batches() -> None:
    gate = threading.Event()
    rec = Recorder(gate)
    journal: UseJournal[str] = UseJournal(rec.write, rec.companion)
    timer = threading.Timer(0.2, gate.set)
    timer.start()
    errors = _run_concurrently(journal, [([f"u{i}"], [f"e{i}"]) for i in range(10)])
    timer.join()
    assert not errors
    writes = [items for kind, items, _d in rec.log if kind == "write"]
    companions = [items for kind, items, _d in rec.log if kind == "companion"]
    assert sum(map(len, writes)) == 10
    assert sum(map(len, companions)) == 10
    assert len(writes) < 10  # the callers that queued behind the first write share one
    # each batch's uses are written before its companion records are committed
    kinds = [kind for kind, _i, _d in rec.log]
    assert kinds == ["write", "companion"] * len(writes)


class RowsCompanion:
    """A companion that takes the use records' rows into its own transaction."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[Any]]] = []
        self.fail = False

    def __call__(self, records: Sequence[str], *, rows: Sequence[Any] = ()) -> None:
        if self.fail:
            raise RuntimeError("companion failed")
        self.calls.append((list(records), list(rows)))


def test_a_companion_taking_rows_writes_the_uses_in_its_one_transaction() -> None:
    rec, companion = Recorder(), RowsCompanion()
    journal: UseJournal[str] = UseJournal(
        rec.write, companion, rows=lambda items: [("use", ("id",), [(i,) for i in items])]
    )
    journal.write(["u1", "u2"], ["e1"])
    assert rec.log == []  # no transaction of their own
    assert companion.calls == [(["e1"], [("use", ("id",), [("u1",), ("u2",)])])]
    journal.write(["u3"])  # nothing to ride on: made durable by itself
    assert rec.log == [("write", ["u3"], True)]
    companion.fail = True
    with pytest.raises(RuntimeError):
        journal.write(["u4"], ["e4"])


def test_rows_are_not_given_to_a_companion_that_does_not_take_them() -> None:
    rec = Recorder()
    journal: UseJournal[str] = UseJournal(rec.write, rec.companion, rows=lambda items: [])
    journal.write(["u1"], ["e1"])
    assert rec.log == [("write", ["u1"], False), ("companion", ["e1"], None)]
