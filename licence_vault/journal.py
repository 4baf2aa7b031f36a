"""Group commit for use records, optionally riding a companion's durable commit.

Every fetch leaves use records (加注件) that must be durable before the
fetch is answered. Concurrent fetches share one transaction: a caller queues
its records; if no write is under way it takes every queued record and
writes them, else it waits for the writer, which either wrote its records
too or left it to write the next batch.

A *companion* is a second, durable commit on the same database that each
fetch needs anyway — on a node, the audit events of the fetches. When one is
attached and takes ``rows`` (the node's ``Sequencer.append_many``), the
leader hands it the batch's companion records and its use records as
``rows(items)`` (table rows bound for the database): the companion writes
both in ONE durable transaction of its own, in the leader's thread — one
commit and one flush per batch, nothing half-written. A companion without
``rows`` is served the older way: the leader writes the use records without
waiting for the disk (SQLite ``synchronous=NORMAL``, PostgreSQL
``synchronous_commit=off``), then the companion commits durably; both
databases write one log in commit order, so that flush makes the use records
durable too. Callers return only when both are durable; if either fails,
every caller of the batch gets the error (use records written but never
answered for are harmless: nothing was handed out).

Example::

    journal = UseJournal(write_uses, audit_log.sequencer.append_many, rows=use_rows)
    journal.write(uses, companions=[audit_event])   # one transaction, durable on return
    journal.write(more_uses)                        # durable on return (flushed itself)
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["UseJournal"]

T = TypeVar("T")

Companion = Callable[..., object]  # (records) or (records, *, rows)
Rows = Callable[[Sequence[T]], Sequence[Any]]


def _takes(companion: Companion, *names: str) -> bool:
    try:
        parameters = inspect.signature(companion).parameters
    except (TypeError, ValueError):  # no signature to read: the plain protocol
        return False
    return all(name in parameters for name in names)


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
    batch's companion records durably, after ``write``; if the companion
    takes ``rows`` and ``rows`` is given, ``companion(records, rows=rows(items))``
    stores both in its one transaction instead. A batch without companion
    records is written durably by ``write`` itself.
    """

    def __init__(
        self,
        write: Callable[[Sequence[T], bool], None],
        companion: Companion | None = None,
        *,
        rows: Rows[T] | None = None,
    ) -> None:
        self._write = write
        self.companion = companion
        self._rows = rows if companion is not None and _takes(companion, "rows") else None
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
                items = [item for p in batch for item in p.items]
                companion = self.companion if records else None
                if companion is None:
                    self._write(items, True)
                elif self._rows is not None:  # one transaction for both
                    companion(records, rows=self._rows(items) if items else ())
                else:
                    self._write(items, False)
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
