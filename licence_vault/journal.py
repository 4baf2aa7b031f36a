"""Group commit for use records, optionally riding a companion's durable commit.

Every fetch leaves use records (加注件) that must be durable before the
fetch is answered. Concurrent fetches share one transaction: a caller queues
its records; if no write is under way it takes every queued record and
writes them, else it waits for the writer, which either wrote its records
too or left it to write the next batch.

A *companion* is a second, durable commit on the same database that each
fetch needs anyway — on a node, the audit events of the fetches. When one is
attached, the leader writes the batch's use records without waiting for the
disk (SQLite ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``)
and then hands the batch's companion records to the companion, which commits
them durably. Both databases write one log in commit order (SQLite's WAL
file, PostgreSQL's WAL), so the companion's flush also makes the use records,
committed before it began, durable: one flush per batch instead of two, and
the two commits never compete for SQLite's write lock because the leader
does them one after the other. Callers return only when both are durable;
if either fails, every caller of the batch gets the error (use records
written but never answered for are harmless: nothing was handed out).

Example::

    journal = UseJournal(write_uses, companion=audit_log.sequencer.append_many)
    journal.write(uses, companions=[audit_event])   # both durable on return
    journal.write(more_uses)                        # durable on return (flushed itself)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["UseJournal"]

T = TypeVar("T")

Companion = Callable[[Sequence[Any]], object]


class _Pending(Generic[T]):
    __slots__ = ("companions", "done", "error", "items")

    def __init__(self, items: Sequence[T], companions: Sequence[Any]) -> None:
        self.items = items
        self.companions = companions
        self.done = False
        self.error: BaseException | None = None


class UseJournal(Generic[T]):
    """Group commit of records through ``write``; see the module docstring.

    ``write(items, durable)`` stores a batch in one transaction, waiting for
    the disk iff ``durable``; ``companion(records)`` (optional) stores the
    batch's companion records durably, after ``write``. A batch without
    companion records is written durably by ``write`` itself.
    """

    def __init__(
        self, write: Callable[[Sequence[T], bool], None], companion: Companion | None = None
    ) -> None:
        self._write = write
        self.companion = companion
        self._cond = threading.Condition()
        self._queue: list[_Pending[T]] = []
        self._busy = False

    def write(self, items: Sequence[T], companions: Sequence[Any] = ()) -> None:
        """Store ``items`` (and ``companions``); return once durable, or raise the batch's error."""
        if companions and self.companion is None:
            raise ValueError("companion records given, but the journal has no companion")
        mine: _Pending[T] = _Pending(items, companions)
        with self._cond:
            self._queue.append(mine)
            while self._busy and not mine.done:
                self._cond.wait()
            if not mine.done:
                self._busy = True
                batch, self._queue = self._queue, []
        if not mine.done:
            error: BaseException | None = None
            try:
                records = [record for p in batch for record in p.companions]
                companion = self.companion if records else None
                self._write([item for p in batch for item in p.items], companion is None)
                if companion is not None:
                    companion(records)
            except BaseException as exc:
                error = exc
            with self._cond:
                for p in batch:
                    p.done, p.error = True, error
                self._busy = False
                self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
