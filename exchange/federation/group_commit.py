"""Group commit for the federation's small writes: concurrent callers share one transaction.

The ``jti`` replay rows (:mod:`~exchange.federation.sql_replay`) and the
idempotency claims (:mod:`~exchange.federation.sql_idempotency`) are one short
write each, made by every forwarded call at every hop. Made one transaction
each, concurrent calls queue for the database's write lock (on SQLite: BEGIN
IMMEDIATE, waiting in the busy handler while the audit log's group commit
holds it) — under load that waiting, not the work, is the cost.

:meth:`GroupWriter.run` queues an operation (a function of a
:class:`~sqlalchemy.orm.Session`); if no write is under way the caller takes
every queued operation and runs them in order in one transaction, else it
waits for the writer, which either ran its operation too or leaves it to the
next batch. Each operation sees the writes of those before it (so two claims
of one key in a batch are decided as if one after the other). An operation
that raises a :class:`~zhida.errors.ZhidaError` before it writes (a refusal:
``IDEMPOTENCY_KEY_REUSED``) gets its error and the batch goes on; any other
failure fails the whole batch and every caller gets it — nothing is answered
that was not committed. Alone, a call costs what a transaction of its own did.

One writer per :class:`~zhida.db.Database` (:meth:`GroupWriter.of`), so the
replay rows and the idempotency claims of one node share batches too.

Example::

    writer = GroupWriter.of(database)
    inserted = writer.run(lambda s: s.execute(stmt).first() is not None)
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from sqlalchemy.orm import Session

from zhida.db import Database
from zhida.errors import ZhidaError

__all__ = ["MAX_BATCH", "GroupWriter"]

T = TypeVar("T")
MAX_BATCH = 256

_WRITERS: weakref.WeakKeyDictionary[Database, GroupWriter] = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


class _Op(Generic[T]):
    __slots__ = ("done", "error", "op", "result")

    def __init__(self, op: Callable[[Session], T]) -> None:
        self.op = op
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = False


class GroupWriter:
    """Runs concurrent callers' write operations in shared transactions. Thread-safe."""

    def __init__(self, database: Database, *, max_batch: int = MAX_BATCH) -> None:
        self.database = database
        self._max_batch = max(1, max_batch)
        self._cond = threading.Condition()
        self._queue: list[_Op[Any]] = []
        self._writing = False
        self.batches = 0  # counters for tests and benchmarks
        self.operations = 0

    @classmethod
    def of(cls, database: Database) -> GroupWriter:
        """The writer shared by everything of this process that writes to ``database``."""
        with _WRITERS_LOCK:
            writer = _WRITERS.get(database)
            if writer is None:
                writer = _WRITERS[database] = cls(database)
            return writer

    def run(self, op: Callable[[Session], T]) -> T:
        """Run ``op`` in a (shared) transaction; its result once committed."""
        entry: _Op[T] = _Op(op)
        batch: list[_Op[Any]] = []
        with self._cond:
            self._queue.append(entry)
            while self._writing and not entry.done:
                self._cond.wait()
            if not entry.done:  # no write under way: this caller writes the queue
                self._writing = True
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
        if batch:
            self._write(batch)
        if entry.error is not None:
            raise entry.error
        return cast(T, entry.result)

    def _write(self, batch: list[_Op[Any]]) -> None:
        failure: BaseException | None = None
        try:
            with self.database.session() as s:
                for entry in batch:
                    try:
                        entry.result = entry.op(s)
                    except ZhidaError as refused:  # raised before it wrote: its own answer
                        entry.error = refused
        except BaseException as exc:  # the transaction failed: every caller learns why
            failure = exc
        with self._cond:
            for entry in batch:
                if failure is not None:
                    entry.error, entry.result = failure, None
                entry.done = True
            self.batches += 1
            self.operations += len(batch)
            self._writing = False
            self._cond.notify_all()
