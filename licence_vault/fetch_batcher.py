"""Run the fetches of concurrent calls in one thread, many at a time.

A fetch is a few milliseconds of Python and two short transactions; run in a
thread per call, sixteen concurrent fetches spend most of their time waiting
for the GIL and for each other's transactions. :class:`FetchBatcher` queues
the calls' requests and one thread takes whatever is queued and runs it as
one :meth:`~licence_vault.access.ConsentAndFetch.fetch_many`: one read
snapshot, one use-record transaction and one durable flush for the batch
(see :mod:`licence_vault.journal`). While a batch runs the next one queues,
so batches grow with the load, like the audit log's group commit.

Each request runs in its call's context: the deadline is checked first (a
request whose client has given up is not run) and the request's ``record``
(the audit events) sees the call's caller and trace id. Callers are woken
with one ``call_soon_threadsafe`` per event loop per batch.

Example::

    batcher = FetchBatcher(vault.fetch_many)
    result = await batcher.fetch(FetchRequest(actor, holder, types, matter, consent_id))
    batcher.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from licence_vault.results import FetchRequest, FetchResult
from zhida.errors import Unavailable
from zhida.server.context import check_deadline

__all__ = ["FetchBatcher"]

DEFAULT_MAX_BATCH = 256

RunBatch = Callable[[Sequence[FetchRequest]], list[FetchResult | Exception]]
_Item = tuple[FetchRequest, contextvars.Context, "asyncio.Future[FetchResult]"]
_Outcome = tuple["asyncio.Future[FetchResult]", FetchResult | BaseException]


class FetchBatcher:
    """See the module docstring. Thread-safe; one per vault."""

    def __init__(self, run: RunBatch, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self._run_batch = run
        self.max_batch = max_batch
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0  # for tests and benchmarks
        self.fetches = 0

    async def fetch(self, request: FetchRequest) -> FetchResult:
        """Run ``request`` in the batch thread; its result, or raise its error."""
        future: asyncio.Future[FetchResult] = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._closed:
                raise Unavailable("the licence vault is shutting down", reason="VAULT_CLOSED")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="zhida-licence-fetch", daemon=True
                )
                self._thread.start()
            if not self._queue:  # else the thread is busy and finds it when done
                self._cond.notify()
            self._queue.append((request, contextvars.copy_context(), future))
        return await future

    def close(self, timeout: float | None = 30.0) -> None:
        """Refuse new fetches, finish the queued ones, stop the thread (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _next(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            count = min(len(self._queue), self.max_batch)
            return [self._queue.popleft() for _ in range(count)]

    def _loop(self) -> None:
        while (batch := self._next()) is not None:
            outcomes: list[_Outcome] = []
            runnable: list[tuple[FetchRequest, asyncio.Future[FetchResult]]] = []
            for request, context, future in batch:
                try:
                    context.run(check_deadline)
                except Exception as exc:  # the client gave up: do nothing for it
                    outcomes.append((future, exc))
                    continue
                if request.record is not None:
                    request = replace(request, record=_in_context(context, request.record))
                runnable.append((request, future))
            if runnable:
                try:
                    results: Sequence[FetchResult | BaseException] = self._run_batch(
                        [request for request, _f in runnable]
                    )
                except BaseException as exc:  # every caller of the batch learns why
                    results = [exc] * len(runnable)
                outcomes.extend(zip((f for _r, f in runnable), results, strict=True))
            self.batches += 1
            self.fetches += len(batch)
            _settle(outcomes)


def _in_context(
    context: contextvars.Context, record: Callable[[FetchResult], Sequence[Any]]
) -> Callable[[FetchResult], Sequence[Any]]:
    """``record`` run in the call's context (its caller, trace id)."""

    def run(result: FetchResult) -> Sequence[Any]:
        return context.run(record, result)

    return run


def _settle(outcomes: list[_Outcome]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for future, outcome in outcomes:
        by_loop.setdefault(future.get_loop(), []).append((future, outcome))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left waiting
            loop.call_soon_threadsafe(_settle_on_loop, items)


def _settle_on_loop(items: list[_Outcome]) -> None:
    for future, outcome in items:
        if future.done():  # the awaiting call was cancelled
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
