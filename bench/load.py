"""A closed-loop gRPC load generator: C callers, each issuing calls back to back.

Used for every "X versus baseline" benchmark so both sides see the same client.

Example::

    stats = asyncio.run(run_load(make_call, concurrency=16, seconds=3.0))
    print(stats.throughput, stats.p50_ms, stats.p99_ms)
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

CallFactory = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class LoadStats:
    calls: int
    errors: int
    seconds: float
    throughput: float  # successful calls per second
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


async def run_load(
    call: CallFactory, *, concurrency: int, seconds: float, warmup: float = 0.5
) -> LoadStats:
    """Run ``call`` from ``concurrency`` loops for ``seconds`` after a warm-up."""
    latencies: list[float] = []
    errors = 0
    recording = False
    stop_at = 0.0

    async def caller() -> None:
        nonlocal errors
        while True:
            now = time.perf_counter()
            if recording and now >= stop_at:
                return
            try:
                await call()
            except Exception:
                if recording:
                    errors += 1
                continue
            if recording:
                latencies.append(time.perf_counter() - now)

    async def warm() -> None:
        end = time.perf_counter() + warmup
        while time.perf_counter() < end:
            await call()

    await asyncio.gather(*(warm() for _ in range(concurrency)))
    recording = True
    start = time.perf_counter()
    stop_at = start + seconds
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return LoadStats(
        calls=len(latencies),
        errors=errors,
        seconds=round(elapsed, 3),
        throughput=round(len(latencies) / elapsed, 1),
        p50_ms=round(percentile(latencies, 0.50) * 1000, 3),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 3),
    )


def median_stats(runs: list[LoadStats]) -> dict[str, float]:
    return {
        "throughput": round(statistics.median(r.throughput for r in runs), 1),
        "p50_ms": round(statistics.median(r.p50_ms for r in runs), 3),
        "p99_ms": round(statistics.median(r.p99_ms for r in runs), 3),
    }
