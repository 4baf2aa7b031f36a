"""Group commit: many concurrent appends, one durable transaction per batch.

Callers (threads, or asyncio tasks through :meth:`Sequencer.append_async`)
encode their event themselves, queue it and wait. One writer thread takes up
to ``max_batch`` queued events, or whatever arrived while it waited for
company (see below), and hands them to :meth:`LogStorage.append`: one
transaction for the events, their node hashes and the new tree state. When it
commits, every caller of the batch gets its leaf index; when it fails, every
caller gets the error and nothing of the batch is stored. So an action is only
reported done once its audit event is durable, and throughput is one commit
(one fsync) per batch rather than per event.

While a batch commits, the next one queues up, so batches grow with the load
on their own. Waiting for company is adaptive: a commit costs far more than
an event (an fsync, a WAL page per index), so under load the writer waits,
at most ``max_delay`` after the oldest queued event, until about
``target_batch`` events could have arrived at the recent arrival rate; when
events come further apart than ``max_delay`` (a lone call) it writes at
once. Async callers are woken with one ``call_soon_threadsafe`` per event
loop per batch, not one per event. ``append_many(events, rows=...)`` is the
exception: the caller's thread writes its events with another table's rows
(the licence vault's use records) in one storage transaction, no hand-off.

Example::

    sequencer = Sequencer(storage, max_batch=1024, max_delay=0.005)
    index = sequencer.append(event)                 # blocks until durable
    index = await sequencer.append_async(event)     # same, from a handler
    sequencer.close()                               # flushes what is queued
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from audit_log.events import AuditEvent
from audit_log.storage import EncodedEvent, ExtraRows, LogStorage
from zhida.errors import ResourceExhausted, Unavailable

DEFAULT_MAX_BATCH = 1024
DEFAULT_MAX_DELAY = 0.005
DEFAULT_TARGET_BATCH = 16
_RATE_WEIGHT = 0.2  # of the newest interval in the moving average of arrival gaps
DEFAULT_MAX_QUEUED = 100_000

_Waiter = Future[int] | asyncio.Future[int]


@dataclass
class SequencerStats:
    """Counters for benchmarks and metrics (read without locking; approximate)."""

    batches: int = 0
    events: int = 0
    failed_batches: int = 0
    largest_batch: int = 0
    batch_sizes: list[int] = field(default_factory=list, repr=False)


def _encoded(event: AuditEvent | EncodedEvent) -> EncodedEvent:
    return event if isinstance(event, EncodedEvent) else EncodedEvent.of(event)


class Sequencer:
    """Batches appends to a :class:`LogStorage`; see the module docstring."""

    def __init__(
        self,
        storage: LogStorage,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_delay: float = DEFAULT_MAX_DELAY,
        max_queued: int = DEFAULT_MAX_QUEUED,
        target_batch: int = DEFAULT_TARGET_BATCH,
    ) -> None:
        if max_batch < 1 or max_delay < 0 or max_queued < max_batch:
            raise ValueError("need max_batch >= 1, max_delay >= 0, max_queued >= max_batch")
        self.storage = storage
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.target_batch = max(1, min(target_batch, max_batch))
        # Moving average of the seconds between queued events, and whether the
        # latest one came after a pause of max_delay or more (then it is written
        # at once: a lone call must not wait for company that is not coming).
        self._gap = max_delay / self.target_batch  # until arrivals say otherwise
        self._lone = True
        self._last_arrival = time.monotonic()
        self.max_queued = max_queued
        self.stats = SequencerStats()
        self._queue: deque[tuple[EncodedEvent, _Waiter, float]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._urgent = False  # something queued must not wait for company
        self._direct = 0  # appends with rows under way in their callers' threads
        self._thread: threading.Thread | None = None

    # --- submitting ----------------------------------------------------------

    def _enqueue(
        self, items: Sequence[tuple[EncodedEvent, _Waiter]], *, urgent: bool = False
    ) -> None:
        now = time.monotonic()
        with self._cond:
            if self._closed:
                raise Unavailable("the audit log is closed", reason="AUDIT_LOG_CLOSED")
            if len(self._queue) + len(items) > self.max_queued:
                raise ResourceExhausted(
                    f"more than {self.max_queued} audit events are waiting to be stored",
                    reason="AUDIT_QUEUE_FULL",
                )
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="zhida-audit-sequencer", daemon=True
                )
                self._thread.start()
            was_empty = not self._queue
            self._queue.extend((encoded, waiter, now) for encoded, waiter in items)
            if items:  # long idle spells count as 10 x max_delay: a burst is seen soon
                pause = now - self._last_arrival
                self._lone = pause >= self.max_delay
                interval = min(pause, 10 * self.max_delay) / len(items)
                self._gap += (interval - self._gap) * _RATE_WEIGHT
                self._last_arrival = now
            # Wake the writer only when it has something new to decide on.
            if urgent:
                self._urgent = True
                self._cond.notify()
            elif was_empty or len(self._queue) >= self.target_batch:
                self._cond.notify()

    def submit(self, event: AuditEvent | EncodedEvent) -> Future[int]:
        """Queue ``event``; the future resolves to its index once durable."""
        future: Future[int] = Future()
        self._enqueue([(_encoded(event), future)])
        return future

    def append(self, event: AuditEvent | EncodedEvent, timeout: float | None = None) -> int:
        """Append ``event`` and block until it is durable; return its leaf index."""
        return self.submit(event).result(timeout)

    def append_many(
        self,
        events: Iterable[AuditEvent | EncodedEvent],
        timeout: float | None = None,
        *,
        rows: Sequence[ExtraRows] = (),
    ) -> list[int]:
        """Append several events (queued at once); their indices, in order.

        Written without waiting ``max_delay`` for company: the caller already
        batched them and blocks (e.g. the licence vault's use-record journal, one
        call per batch of fetches), so nothing more can come from it meanwhile.
        With ``rows`` (other tables' rows, see :data:`~audit_log.storage.ExtraRows`)
        the caller's thread writes them and the events in one transaction of
        the storage, durable on return, all or nothing: no hand-off to the
        writer thread and back (the storage serialises it with the writer's).
        """
        if rows:
            return self._append_now([_encoded(e) for e in events], rows)
        items: list[tuple[EncodedEvent, Future[int]]] = [(_encoded(e), Future()) for e in events]
        self._enqueue(items, urgent=True)
        return [waiter.result(timeout) for _, waiter in items]

    def _append_now(self, events: list[EncodedEvent], rows: Sequence[ExtraRows]) -> list[int]:
        with self._cond:
            if self._closed:
                raise Unavailable("the audit log is closed", reason="AUDIT_LOG_CLOSED")
            self._direct += 1
        try:
            try:
                first = self.storage.append(events, rows)
            except BaseException:
                self.stats.failed_batches += 1
                raise
            self._count(len(events))
            return list(range(first, first + len(events)))
        finally:
            with self._cond:
                self._direct -= 1
                # Only close() waits for this (it sets _closed first, under the lock);
                # waking the writer after every batch would cost a GIL hand-off.
                if not self._direct and self._closed:
                    self._cond.notify_all()

    async def append_async(self, event: AuditEvent | EncodedEvent) -> int:
        """Append ``event`` from asyncio code; resumes once it is durable."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._enqueue([(_encoded(event), future)])
        return await future

    async def append_many_async(self, events: Sequence[AuditEvent | EncodedEvent]) -> list[int]:
        """Append several events (queued at once) from asyncio code; their indices, in order.

        One queue entry lock and one wakeup for all of them (a call recording two
        events pays for one append, not two tasks).
        """
        loop = asyncio.get_running_loop()
        items = [(_encoded(e), loop.create_future()) for e in events]
        self._enqueue(items)
        try:
            return [await waiter for _, waiter in items]
        finally:
            for _, waiter in items:  # cancelled: nobody will read the others' outcome
                waiter.cancel()

    # --- the writer ----------------------------------------------------------

    def _next_batch(self) -> list[tuple[EncodedEvent, _Waiter, float]] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            while len(self._queue) < self.max_batch and not self._closed and not self._urgent:
                remaining = self._queue[0][2] + self._patience() - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            count = min(len(self._queue), self.max_batch)
            batch = [self._queue.popleft() for _ in range(count)]
            self._urgent = self._urgent and bool(self._queue)
            return batch

    def _patience(self) -> float:
        """How long after the oldest queued event company is worth waiting for."""
        gap = self._gap
        if self._lone or gap >= self.max_delay:  # nobody is likely to come in time
            return 0.0
        return min(self.max_delay, (self.target_batch - len(self._queue)) * gap)

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                first = self.storage.append([encoded for encoded, _, _ in batch])
            except BaseException as exc:  # every caller of the batch learns why
                self.stats.failed_batches += 1
                _settle([waiter for _, waiter, _ in batch], error=exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            self._count(len(batch))
            _settle([waiter for _, waiter, _ in batch], first=first)

    def _count(self, size: int) -> None:
        self.stats.batches += 1
        self.stats.events += size
        self.stats.largest_batch = max(self.stats.largest_batch, size)
        if len(self.stats.batch_sizes) < 100_000:
            self.stats.batch_sizes.append(size)

    def close(self, timeout: float | None = 30.0) -> None:
        """Refuse new appends, store what is queued, stop the writer (idempotent).

        Also waits (up to ``timeout``) for appends under way in callers' threads.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            self._cond.wait_for(lambda: not self._direct, timeout)

    @property
    def queued(self) -> int:
        return len(self._queue)


def _settle(waiters: list[_Waiter], *, first: int = 0, error: BaseException | None = None) -> None:
    """Resolve sync futures here and async ones on their loops, one wakeup per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int]]] = {}
    for offset, waiter in enumerate(waiters):
        if isinstance(waiter, asyncio.Future):
            by_loop.setdefault(waiter.get_loop(), []).append((waiter, first + offset))
        elif error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(first + offset)
    for loop, futures in by_loop.items():
        # A closed loop raises RuntimeError: nobody is left waiting there.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle_on_loop, futures, error)


def _settle_on_loop(
    futures: list[tuple[asyncio.Future[int], int]], error: BaseException | None
) -> None:
    for future, index in futures:
        if future.done():  # the awaiting task was cancelled
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(index)
