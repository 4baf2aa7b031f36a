"""Replay protection for signed caller assertions: each ``jti`` is accepted once.

:class:`ReplayCache` is the interface the assertion verifier
(:mod:`exchange.federation.assertion`) uses; it remembers a ``jti`` until the
assertion it came from expires (the TTL is the assertion's lifetime), after
which the expiry check refuses the assertion anyway.
:class:`InMemoryReplayCache` is a dict plus a heap of expiry times, bounded,
thread-safe. It protects one process; a node run with ``--workers N`` (or
several replicas, or restarted) uses the shared
:class:`exchange.federation.sql_replay.SqlReplayCache` behind the same
protocol, or a replay reaching another process would go unnoticed.

Example::

    >>> cache = InMemoryReplayCache(clock=lambda: 1000.0)
    >>> cache.remember("jti-1", expires_at=1060.0)
    True
    >>> cache.remember("jti-1", expires_at=1060.0)
    False
    >>> len(cache)
    1
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from typing import Protocol

from zhida.errors import ResourceExhausted

__all__ = ["InMemoryReplayCache", "ReplayCache"]


class ReplayCache(Protocol):
    """Remembers assertion ids until they expire."""

    def remember(self, jti: str, expires_at: float) -> bool:
        """Record ``jti`` until ``expires_at`` (Unix seconds).

        True the first time; False when ``jti`` is already recorded and not
        yet expired: a replay. An implementation that cannot record raises a
        ZhidaError (never answers True without recording).
        """
        ...


class InMemoryReplayCache:
    """A bounded, thread-safe :class:`ReplayCache` for one process.

    When ``max_entries`` unexpired ids are held, new ones are refused with
    RESOURCE_EXHAUSTED (REPLAY_CACHE_FULL) rather than evicting an unexpired
    id, which would reopen a replay window.
    """

    def __init__(
        self, *, max_entries: int = 1_000_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def remember(self, jti: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            self._purge(now)
            known = self._expiry.get(jti)
            if known is not None and known > now:
                return False
            if len(self._expiry) >= self._max:
                raise ResourceExhausted(
                    f"the replay cache holds {self._max} unexpired assertion ids",
                    reason="REPLAY_CACHE_FULL",
                )
            self._expiry[jti] = expires_at
            heapq.heappush(self._heap, (expires_at, jti))
            return True

    def _purge(self, now: float) -> None:
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] <= now:
            when, jti = heapq.heappop(heap)
            if expiry.get(jti) == when:
                del expiry[jti]

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._expiry)
