"""A retried request is executed once: idempotency keys with stored responses (issue 8).

The origin node puts the caller's idempotency key in the signed assertion
(:mod:`exchange.federation.assertion`); a retry is a *new* assertion (new
``jti``, so the replay cache does not refuse it) with the *same* key. The
node that executes the request asks an :class:`IdempotencyStore` first:

* :meth:`~IdempotencyStore.begin` returns a :class:`Claim`: ``NEW`` — you
  hold a lease, execute, then :meth:`~IdempotencyStore.complete` with the
  response bytes (or :meth:`~IdempotencyStore.abandon` on failure, so a retry
  may execute); ``DONE`` — answer with the stored ``response``, do not
  execute; ``IN_PROGRESS`` — another attempt holds the lease: answer ABORTED
  (``IDEMPOTENT_REQUEST_IN_PROGRESS``, retryable) and do not execute;
* the same key with a different request digest is refused (INVALID_ARGUMENT
  ``IDEMPOTENCY_KEY_REUSED``): a key names one request, not a slot.

A lease expires (``lease_seconds``, normally the request's remaining
deadline) so a crashed attempt does not block retries forever; a stored
response lives ``ttl_seconds``. Keys should be scoped by caller with
:func:`scoped_key`, so two callers' keys never collide. Only successful
responses are stored; a refused request changed nothing and may be retried.

:class:`InMemoryIdempotencyStore` serves one process and the tests. A SQL
implementation for multi-process nodes and restarts (a table keyed by the
scoped key: digest, state, lease expiry, response, expiry) is
:class:`exchange.federation.sql_idempotency.SqlIdempotencyStore`.

Example::

    >>> store = InMemoryIdempotencyStore(clock=lambda: 100.0)
    >>> key = scoped_key("420102", "11420102MB1A23456R", "clerk-7", "req-1")
    >>> store.begin(key, "d1", ttl_seconds=3600, lease_seconds=5).state
    <ClaimState.NEW: 'new'>
    >>> store.begin(key, "d1", ttl_seconds=3600, lease_seconds=5).state
    <ClaimState.IN_PROGRESS: 'in_progress'>
    >>> store.complete(key, b"answer")
    >>> store.begin(key, "d1", ttl_seconds=3600, lease_seconds=5).response
    b'answer'
"""

from __future__ import annotations

import enum
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from zhida.errors import Aborted, FailedPrecondition, InvalidArgument, ResourceExhausted

__all__ = [
    "Claim",
    "ClaimState",
    "IdempotencyStore",
    "InMemoryIdempotencyStore",
    "run_once",
    "scoped_key",
]


class ClaimState(enum.Enum):
    NEW = "new"
    IN_PROGRESS = "in_progress"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    response: bytes | None = None
    """The stored response when ``DONE``."""


def scoped_key(origin: str, organisation: str, subject: str, key: str) -> str:
    """A store key for ``key`` as sent by one caller: SHA-256 hex over the four parts."""
    if not key:
        raise InvalidArgument("the idempotency key is empty", reason="IDEMPOTENCY_KEY_MISSING")
    parts = (origin, organisation, subject, key)
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


class IdempotencyStore(Protocol):
    """Key → state (and, once done, the response bytes), with expiry."""

    def begin(
        self, key: str, request_digest: str, *, ttl_seconds: float, lease_seconds: float
    ) -> Claim:
        """Claim ``key`` for the request with ``request_digest`` (see the module docstring)."""
        ...

    def complete(self, key: str, response: bytes) -> None:
        """Store the response of the attempt holding the lease; FailedPrecondition if none."""
        ...

    def abandon(self, key: str) -> None:
        """Release the lease after a failed attempt, so a retry may execute."""
        ...


@dataclass(slots=True)
class _Entry:
    digest: str
    state: ClaimState
    lease_until: float
    expires_at: float
    response: bytes | None = None


class InMemoryIdempotencyStore:
    """A thread-safe :class:`IdempotencyStore` for one process, bounded by ``max_entries``."""

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._entries: dict[str, _Entry] = {}
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def begin(
        self, key: str, request_digest: str, *, ttl_seconds: float, lease_seconds: float
    ) -> Claim:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at <= now:
                del self._entries[key]
                entry = None
            if entry is not None and entry.digest != request_digest:
                raise InvalidArgument(
                    "this idempotency key was used for a different request",
                    reason="IDEMPOTENCY_KEY_REUSED",
                )
            if entry is not None and entry.state is ClaimState.DONE:
                return Claim(ClaimState.DONE, entry.response)
            if entry is not None and entry.lease_until > now:
                return Claim(ClaimState.IN_PROGRESS)
            if entry is None and len(self._entries) >= self._max:
                self._evict(now)
            self._entries[key] = _Entry(
                request_digest,
                ClaimState.IN_PROGRESS,
                now + lease_seconds,
                now + max(ttl_seconds, lease_seconds),
            )
            return Claim(ClaimState.NEW)

    def complete(self, key: str, response: bytes) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.state is not ClaimState.IN_PROGRESS:
                raise FailedPrecondition(
                    "no attempt holds this idempotency key", reason="IDEMPOTENCY_NOT_CLAIMED"
                )
            entry.state, entry.response = ClaimState.DONE, response

    def abandon(self, key: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.state is ClaimState.IN_PROGRESS:
                del self._entries[key]

    def _evict(self, now: float) -> None:
        expired = [k for k, e in self._entries.items() if e.expires_at <= now]
        for k in expired:
            del self._entries[k]
        if len(self._entries) >= self._max:
            raise ResourceExhausted(
                f"the idempotency store holds {self._max} live keys",
                reason="IDEMPOTENCY_STORE_FULL",
            )

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def run_once(
    store: IdempotencyStore,
    key: str,
    request_digest: str,
    execute: Callable[[], bytes],
    *,
    ttl_seconds: float = 24 * 3600,
    lease_seconds: float = 30.0,
) -> bytes:
    """Execute ``execute`` unless ``key`` already has a response; return the response.

    ABORTED (IDEMPOTENT_REQUEST_IN_PROGRESS) while another attempt holds the
    key. An exception from ``execute`` abandons the lease and propagates.
    """
    claim = store.begin(key, request_digest, ttl_seconds=ttl_seconds, lease_seconds=lease_seconds)
    if claim.state is ClaimState.DONE:
        assert claim.response is not None
        return claim.response
    if claim.state is ClaimState.IN_PROGRESS:
        raise Aborted(
            "an earlier attempt of this request is still running; retry later",
            reason="IDEMPOTENT_REQUEST_IN_PROGRESS",
        )
    try:
        response = execute()
    except BaseException:
        store.abandon(key)
        raise
    store.complete(key, response)
    return response
