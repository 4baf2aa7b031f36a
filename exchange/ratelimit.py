"""Per-grant token buckets: a grant's ``rate_limit_per_minute`` on deliveries.

Each grant with a limit owns a bucket of capacity ``rate`` (a one-minute
burst) refilled continuously at ``rate / 60`` tokens per second. Taking more
than the bucket holds raises ``ResourceExhausted`` (reason ``RATE_LIMITED``)
with ``retry_after_ms`` in the metadata; nothing is taken then.

Example::

    >>> from datetime import UTC, datetime
    >>> from exchange.ratelimit import TokenBucket
    >>> t0 = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    >>> b = TokenBucket(rate_per_minute=2, now=t0)
    >>> b.try_take(1, t0), b.try_take(1, t0), b.try_take(1, t0)
    (0.0, 0.0, 30.0)
"""

from __future__ import annotations

import math
import threading
from datetime import datetime

from exchange.model import Grant
from zhida.errors import InvalidArgument, ResourceExhausted


class TokenBucket:
    """One bucket; times are seconds (any monotonic origin)."""

    __slots__ = ("capacity", "last", "per_second", "tokens")

    def __init__(self, rate_per_minute: int, now: float) -> None:
        if rate_per_minute <= 0:
            raise InvalidArgument("rate limit must be positive", reason="INVALID_RATE_LIMIT")
        self.capacity = float(rate_per_minute)
        self.per_second = rate_per_minute / 60.0
        self.tokens = self.capacity
        self.last = now

    def try_take(self, cost: int, now: float) -> float:
        """Take ``cost`` tokens and return 0.0, or return the seconds to wait (nothing taken)."""
        if now > self.last:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.per_second)
            self.last = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.per_second


class RateLimiter:
    """Buckets by grant id, created on first use; ``forget`` drops one (revocation)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, grant: Grant, now: datetime, cost: int = 1) -> None:
        """Admit a delivery of ``cost`` units on ``grant`` or raise ``RATE_LIMITED``."""
        rate = grant.rate_limit_per_minute
        if rate is None:
            return
        t = now.timestamp()
        with self._lock:
            bucket = self._buckets.get(grant.id)
            if bucket is None or bucket.capacity != rate:
                bucket = self._buckets[grant.id] = TokenBucket(rate, t)
            wait = bucket.try_take(cost, t)
        if wait > 0.0:
            retry_ms = math.ceil(wait * 1000)
            raise ResourceExhausted(
                f"grant {grant.id} allows {rate} deliveries per minute; retry in {retry_ms} ms",
                reason="RATE_LIMITED",
                metadata={"grant_id": grant.id, "retry_after_ms": str(retry_ms)},
            )

    def forget(self, grant_id: str) -> None:
        with self._lock:
            self._buckets.pop(grant_id, None)
