"""When the origin retries a forwarded unary call (issue 8): backoff within the budget.

A failure the origin may retry (:func:`~exchange.federation.remote.retryable`:
the neighbour, or one further down, unreachable; an earlier attempt still
running at the serving node) is tried again — with a fresh assertion and the
same idempotency key — up to ``MAX_ATTEMPTS`` times in all. The pause before
attempt *n + 1* is drawn uniformly from ``[0, min(BACKOFF_CAP_SECONDS,
BACKOFF_BASE_SECONDS · 2ⁿ)]`` (exponential backoff, full jitter: retries of
many origins do not arrive together), and there is no retry at all when the
time left after the pause would not cover the router's ``hop_reserve_ms`` and
``min_budget_ms`` — a retry that cannot be answered in time only adds load.

Example::

    pause = backoff(attempt, deadline_ms, router)
    if not retryable(error) or pause is None:
        raise
    await asyncio.sleep(pause)
"""

from __future__ import annotations

import random

from exchange.federation.forward_base import now_ms
from exchange.federation.routing import Router

__all__ = ["BACKOFF_BASE_SECONDS", "BACKOFF_CAP_SECONDS", "MAX_ATTEMPTS", "backoff"]

MAX_ATTEMPTS = 3
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 0.5


def backoff(attempt: int, deadline_ms: int, router: Router) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``; None when no retry fits."""
    if attempt >= MAX_ATTEMPTS:
        return None
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
    pause = random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret
    left_ms = deadline_ms - now_ms() - pause * 1000
    if left_ms < router.hop_reserve_ms + router.min_budget_ms:
        return None
    return pause
