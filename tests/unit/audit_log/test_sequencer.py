"""Group commit: concurrent appends get unique contiguous indices, durable on return."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from audit_log.sequencer import Sequencer
from audit_log.sql import SqlLogStorage
from audit_log.storage import EncodedEvent
from tests.unit.audit_log.conftest import make_event
from zhida.db import Database
from zhida.errors import ResourceExhausted, Unavailable

THREADS = 12
PER_THREAD = 40


def test_many_threads_unique_contiguous_and_durable_on_return(database: Database) -> None:
    storage = SqlLogStorage(database)
    sequencer = Sequencer(storage, max_batch=64, max_delay=0.001)
    # A separate reader (another connection pool) checks each index right after return.
    reader = SqlLogStorage(Database(database.url, pool_size=2))
    indices: list[int] = []
    problems: list[str] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        for k in range(PER_THREAD):
            event = make_event(t * 1000 + k)
            index = sequencer.append(event, timeout=30)
            rows = reader.read_events(index, index + 1)
            if not rows or rows[0].leaf != EncodedEvent.of(event).leaf:
                problems.append(f"index {index} not durable when append returned")
            with lock:
                indices.append(index)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    sequencer.close()
    reader.database.dispose()
    assert problems == []
    assert sorted(indices) == list(range(THREADS * PER_THREAD))
    assert storage.tree_head().size == THREADS * PER_THREAD
    assert sequencer.stats.batches < THREADS * PER_THREAD  # some batching happened
    assert sequencer.stats.largest_batch > 1


def test_two_sequencers_on_one_database_share_one_log(database: Database) -> None:
    """Like two worker processes: each re-reads the tree state under the lock."""
    a, b = Sequencer(SqlLogStorage(database)), Sequencer(SqlLogStorage(database))
    got: list[int] = []

    def run(seq: Sequencer, base: int) -> None:
        got.extend(seq.append_many([make_event(base + i) for i in range(30)], timeout=30))

    threads = [threading.Thread(target=run, args=(s, n)) for s, n in ((a, 0), (b, 100))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    a.close()
    b.close()
    assert sorted(got) == list(range(60))


def test_async_appends_from_many_tasks(database: Database) -> None:
    sequencer = Sequencer(SqlLogStorage(database), max_batch=100, max_delay=0.002)

    async def main() -> list[int]:
        return list(
            await asyncio.gather(*(sequencer.append_async(make_event(i)) for i in range(300)))
        )

    indices = asyncio.run(main())
    sequencer.close()
    assert sorted(indices) == list(range(300))
    assert sequencer.stats.batches <= 10


def test_append_many_async_queues_together_and_returns_indices_in_order(
    database: Database,
) -> None:
    sequencer = Sequencer(SqlLogStorage(database), max_batch=100, max_delay=0.002)

    async def main() -> list[list[int]]:
        pairs = [[make_event(2 * i), make_event(2 * i + 1)] for i in range(20)]
        return list(await asyncio.gather(*(sequencer.append_many_async(p) for p in pairs)))

    results = asyncio.run(main())
    sequencer.close()
    assert all(b == a + 1 for a, b in results)  # one queue entry: adjacent leaves
    assert sorted(i for pair in results for i in pair) == list(range(40))


def test_blocking_append_many_does_not_wait_for_company(database: Database) -> None:
    # A caller that already batched and blocks cannot add more: no max_delay for it.
    sequencer = Sequencer(SqlLogStorage(database), max_batch=100, max_delay=5.0)
    started = time.monotonic()
    assert sequencer.append_many([make_event(i) for i in range(3)], timeout=10) == [0, 1, 2]
    assert time.monotonic() - started < 2.5
    sequencer.close()


class _FlakyStorage:
    """Fails every batch containing a poisoned event; records what it stored."""

    def __init__(self) -> None:
        self.stored: list[bytes] = []
        self.gate = threading.Event()

    def append(self, events: Sequence[EncodedEvent], /) -> int:
        self.gate.wait(10)
        if any(e.event.subject == "poison" for e in events):
            raise Unavailable("database went away", reason="DATABASE_UNAVAILABLE")
        first = len(self.stored)
        self.stored.extend(e.leaf for e in events)
        return first


def test_a_failed_batch_fails_every_caller_of_that_batch() -> None:
    storage = _FlakyStorage()
    sequencer = Sequencer(storage, max_batch=10, max_delay=0.05)  # type: ignore[arg-type]
    futures = [sequencer.submit(make_event(i)) for i in range(4)]
    futures.append(sequencer.submit(make_event(4, subject="poison")))
    storage.gate.set()
    for future in futures:  # all five were one batch: all fail
        with pytest.raises(Unavailable):
            future.result(10)
    assert storage.stored == []
    assert sequencer.append(make_event(5), timeout=10) == 0  # the next batch is fine
    assert sequencer.stats.failed_batches == 1
    sequencer.close()


def test_closed_and_full_sequencers_refuse() -> None:
    storage = _FlakyStorage()  # blocks until the gate opens: nothing drains meanwhile
    sequencer = Sequencer(storage, max_batch=2, max_queued=3)  # type: ignore[arg-type]
    # At most one batch (2) is in the writer's hands, plus 3 queued: the 6th is refused.
    accepted = 0
    refused: list[ResourceExhausted] = []
    for i in range(6):
        try:
            sequencer.submit(make_event(i))
        except ResourceExhausted as exc:
            refused.append(exc)
            break
        accepted += 1
    assert refused
    assert 3 <= accepted <= 5
    storage.gate.set()
    sequencer.close()
    assert len(storage.stored) == accepted  # close() flushes what was queued
    with pytest.raises(Unavailable):
        sequencer.append(make_event(9))
    with pytest.raises(ValueError, match="max_batch"):
        Sequencer(storage, max_batch=0)  # type: ignore[arg-type]


class _CountingStorage:
    """Stores nothing; counts the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def append(self, events: Sequence[EncodedEvent], /) -> int:
        first = sum(self.batches)
        self.batches.append(len(events))
        return first


def test_a_lone_append_is_written_without_waiting_for_company() -> None:
    # max_delay is long so that "written at once" and "waited for company" stay far
    # apart even on a loaded machine: at once is milliseconds, waiting would be 1 s.
    sequencer = Sequencer(_CountingStorage(), max_delay=1.0)  # type: ignore[arg-type]
    for i in range(2):
        time.sleep(1.05)  # a pause longer than max_delay before each: nobody else calls
        started = time.monotonic()
        assert sequencer.append(make_event(i), timeout=10) == i
        assert time.monotonic() - started < 0.5
    sequencer.close()


def test_appends_under_load_are_grouped() -> None:
    storage = _CountingStorage()
    sequencer = Sequencer(storage, max_delay=0.05, target_batch=8)  # type: ignore[arg-type]
    futures = []
    for i in range(64):  # a steady stream, much denser than max_delay
        futures.append(sequencer.submit(make_event(i)))
        time.sleep(0.001)
    assert sorted(f.result(10) for f in futures) == list(range(64))
    sequencer.close()
    assert len(storage.batches) <= 32  # batches of several events, not one each


class _RowsStorage:
    """Records each append with its extra rows and the thread that wrote it."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[int, list[Any], str]] = []
        self.fail = fail
        self.size = 0

    def append(self, events: Sequence[EncodedEvent], rows: Sequence[Any] = (), /) -> int:
        if self.fail:
            raise Unavailable("database went away", reason="DATABASE_UNAVAILABLE")
        self.calls.append((len(events), list(rows), threading.current_thread().name))
        first, self.size = self.size, self.size + len(events)
        return first


def test_append_many_with_rows_writes_them_with_the_events_in_the_callers_thread() -> None:
    storage = _RowsStorage()
    sequencer = Sequencer(storage)  # type: ignore[arg-type]
    rows = [("t", ("a",), [(1,)])]
    assert sequencer.append_many([make_event(0)]) == [0]  # through the writer thread
    assert sequencer.append_many([make_event(1), make_event(2)], rows=rows) == [1, 2]
    assert storage.calls[-1] == (2, rows, threading.current_thread().name)
    assert storage.calls[0][2] == "zhida-audit-sequencer"
    assert sequencer.stats.events == 3
    sequencer.close()
    with pytest.raises(Unavailable):
        sequencer.append_many([make_event(3)], rows=rows)


def test_a_failed_append_with_rows_raises_to_its_caller() -> None:
    sequencer = Sequencer(_RowsStorage(fail=True))  # type: ignore[arg-type]
    with pytest.raises(Unavailable):
        sequencer.append_many([make_event(0)], rows=[("t", ("a",), [(1,)])])
    assert sequencer.stats.failed_batches == 1
    sequencer.close()


class _GatedStorage(_RowsStorage):
    """An append with rows that blocks until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def append(self, events: Sequence[EncodedEvent], rows: Sequence[Any] = (), /) -> int:
        if rows:
            self.entered.set()
            self.gate.wait()
        return super().append(events, rows)


def test_close_waits_for_an_append_with_rows_under_way() -> None:
    storage = _GatedStorage()
    sequencer = Sequencer(storage)  # type: ignore[arg-type]
    appended: list[list[int]] = []
    writer = threading.Thread(
        target=lambda: appended.append(
            sequencer.append_many([make_event(0)], rows=[("t", ("a",), [(1,)])])
        )
    )
    writer.start()
    assert storage.entered.wait(10)
    closer = threading.Thread(target=sequencer.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()  # still waiting for the append in the caller's thread
    storage.gate.set()
    writer.join(10)
    closer.join(10)
    assert not closer.is_alive()
    assert appended == [[0]]
