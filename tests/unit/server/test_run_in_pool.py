"""run_in_pool honours the call's deadline even when nothing cancels the waiting task."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from zhida.errors import DeadlineExceeded
from zhida.server.context import DEADLINE, TRACE_ID
from zhida.server.runtime import run_in_pool


def test_expired_deadline_refuses_before_queueing() -> None:
    done: list[str] = []

    async def main() -> None:
        DEADLINE.set(time.monotonic() - 0.01)
        with ThreadPoolExecutor(1) as pool:
            await run_in_pool(pool, done.append, "x")

    with pytest.raises(DeadlineExceeded):
        asyncio.run(main())
    assert done == []


def test_deadline_passing_while_queued_refuses_in_the_thread() -> None:
    done: list[str] = []

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(time.sleep, 0.3)  # the only thread is busy for 0.3 s
            DEADLINE.set(time.monotonic() + 0.1)
            await run_in_pool(pool, done.append, "late")

    with pytest.raises(DeadlineExceeded):
        asyncio.run(main())
    assert done == []


def test_without_deadline_work_runs_with_the_callers_context() -> None:
    async def main() -> str:
        TRACE_ID.set("trace-7")
        with ThreadPoolExecutor(1) as pool:
            return await run_in_pool(pool, TRACE_ID.get)

    assert asyncio.run(main()) == "trace-7"
