"""A grant index that stays fresh when other processes write grants (``zhida serve --workers N``).

Every worker process has its own :class:`~exchange.grants.GrantIndex`; a grant
approved or revoked through one worker is written to the shared database,
whose grant version (:meth:`~exchange.repository.ExchangeRepository.grant_version`)
moves in the same transaction. :class:`SyncedGrantIndex` compares that version
with the one it has applied before answering :meth:`check` / :meth:`admit`,
at most once per ``interval`` (default 100 ms), and when it moved loads only
the grants written since
(:meth:`~exchange.repository.ExchangeRepository.grants_changed_since`).

Freshness bound: a grant write committed at time *c* is honoured by every
worker's :meth:`check` that starts at or after *c* + ``interval`` (plus the
time of one version read): a check either finds a refresh that began after
*c*, or starts one. Within one process a write is visible at once (the
writer puts it into the index after committing). :meth:`current`, which the
approval uses to find the grant to supersede, always refreshes first.

Writes by this process and refreshes are ordered by one lock: a refresh
reads and applies under it and a local :meth:`put` (always after its
commit) waits for it, so an older state read by a refresh never overwrites
a newer local one.

Example::

    index = SyncedGrantIndex(SqlExchangeRepository(database), utcnow)
    grant = index.admit(requester_org, "1-01-001-0000-000002", utcnow())  # fresh to ~100 ms
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from exchange.grants import GrantIndex
from exchange.model import Grant
from exchange.ratelimit import RateLimiter
from exchange.repository import ExchangeRepository

DEFAULT_INTERVAL = 0.1  # seconds between two looks at the grant version


class SyncedGrantIndex(GrantIndex):
    """:class:`GrantIndex` that catches up with grant writes of other processes."""

    def __init__(
        self,
        repo: ExchangeRepository,
        clock: Callable[[], datetime],
        limiter: RateLimiter | None = None,
        *,
        interval: float = DEFAULT_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._monotonic = monotonic
        self._sync_lock = threading.RLock()
        self._version = 0
        self._looked_at = float("-inf")  # monotonic time of the last version read
        self.refreshes = 0  # how many times grants were loaded (tests, metrics)
        super().__init__(repo, clock, limiter)  # calls reload()

    # -- freshness ------------------------------------------------------------------------
    def reload(self) -> None:
        """Rebuild the whole index from the repository."""
        with self._sync_lock:
            started = self._monotonic()
            version = self._repo.grant_version()  # before reading: later writes get replayed
            super().reload()
            self._version, self._looked_at = version, started

    def refresh(self, *, force: bool = False) -> None:
        """Apply the grants other processes wrote, if ``interval`` passed since the last look."""
        if not force and self._monotonic() - self._looked_at < self.interval:
            return
        with self._sync_lock:
            started = self._monotonic()
            if not force and started - self._looked_at < self.interval:
                return  # another thread looked while this one waited
            if self._repo.grant_version() != self._version:
                changed, version = self._repo.grants_changed_since(self._version)
                for grant in changed:
                    super().put(grant)
                self._version = version
                self.refreshes += 1
            self._looked_at = started

    @property
    def version(self) -> int:
        """The grant version this index has applied."""
        return self._version

    # -- GrantIndex -----------------------------------------------------------------------
    def put(self, grant: Grant) -> None:
        with self._sync_lock:
            super().put(grant)

    def current(self, requester_org: str, resource_code: str) -> Grant | None:
        self.refresh(force=True)
        return super().current(requester_org, resource_code)

    def check(self, requester_org: str, resource_code: str, now: datetime) -> Grant:
        self.refresh()
        return super().check(requester_org, resource_code, now)
