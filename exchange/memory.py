"""In-memory :class:`~exchange.repository.ExchangeRepository` (tests, demo, one process).

A lock makes every method atomic, which is what the contract asks of a
transaction. Each grant write bumps a version counter and stamps the grants
it wrote with it, as the SQL store's ``exchange_feed`` row does.

Example::

    >>> from exchange.memory import InMemoryExchangeRepository
    >>> repo = InMemoryExchangeRepository()
    >>> repo.pending_requests("11420100MB0000000X")
    []
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from exchange.model import Grant, GrantState, RequestState, ShareRequest
from exchange.repository import second_active_grant
from zhida.errors import Aborted, AlreadyExists, NotFound


class InMemoryExchangeRepository:
    """Dicts behind a lock; insertion order is creation order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, ShareRequest] = {}
        self._grants: dict[str, Grant] = {}
        self._version = 0
        self._written: dict[str, int] = {}  # grant id -> version of its last write

    def insert_request(self, request: ShareRequest, grants: Sequence[Grant] = ()) -> None:
        with self._lock:
            if request.id in self._requests:
                raise AlreadyExists(
                    f"request {request.id} exists",
                    reason="REQUEST_EXISTS",
                    metadata={"request_id": request.id},
                )
            self._put_grants(grants)  # first: it refuses before anything is written
            self._requests[request.id] = request

    def _put_grants(self, grants: Sequence[Grant]) -> None:
        """Store ``grants`` as one write (lock held)."""
        if not grants:
            return
        self._refuse_second_active(grants)
        self._version += 1
        for grant in grants:
            self._grants[grant.id] = grant
            self._written[grant.id] = self._version

    def _refuse_second_active(self, grants: Sequence[Grant]) -> None:
        """The one-live-active-grant rule of the contract (lock held; writes nothing)."""
        ours = {g.id for g in grants}
        for grant in grants:
            if grant.state is not GrantState.ACTIVE:
                continue
            for other in self._grants.values():
                if (
                    other.id not in ours
                    and other.state is GrantState.ACTIVE
                    and (other.requester_org, other.resource_code)
                    == (grant.requester_org, grant.resource_code)
                    and other.valid_until > grant.created_at
                ):
                    raise second_active_grant(grant, other.id)

    def get_request(self, request_id: str) -> ShareRequest | None:
        return self._requests.get(request_id)

    def save_request(
        self,
        request: ShareRequest,
        *,
        expected_state: RequestState,
        grants: Sequence[Grant] = (),
    ) -> None:
        with self._lock:
            stored = self._requests.get(request.id)
            if stored is None:
                raise NotFound(
                    f"request {request.id} not found",
                    reason="REQUEST_NOT_FOUND",
                    metadata={"request_id": request.id},
                )
            if stored.state is not expected_state:
                raise Aborted(
                    f"request {request.id} changed concurrently (now {stored.state.value})",
                    reason="REQUEST_CHANGED",
                    metadata={"request_id": request.id},
                )
            self._put_grants(grants)  # first: it refuses before anything is written
            self._requests[request.id] = request

    def pending_requests(self, provider_org: str, limit: int = 100) -> list[ShareRequest]:
        with self._lock:
            pending = [
                r
                for r in self._requests.values()
                if r.provider_org == provider_org and r.state is RequestState.SUBMITTED
            ]
        pending.sort(key=lambda r: (r.submitted_at, r.id))
        return pending[:limit]

    def requests_of(self, requester_org: str) -> list[ShareRequest]:
        with self._lock:
            mine = [r for r in self._requests.values() if r.requester_org == requester_org]
        mine.sort(key=lambda r: (r.submitted_at, r.id))
        return mine

    def insert_grant(self, grant: Grant) -> None:
        with self._lock:
            if grant.id in self._grants:
                raise AlreadyExists(
                    f"grant {grant.id} exists",
                    reason="GRANT_EXISTS",
                    metadata={"grant_id": grant.id},
                )
            self._put_grants([grant])

    def get_grant(self, grant_id: str) -> Grant | None:
        return self._grants.get(grant_id)

    def save_grant(self, grant: Grant, *, expected_state: GrantState) -> None:
        with self._lock:
            stored = self._grants.get(grant.id)
            if stored is None:
                raise NotFound(
                    f"grant {grant.id} not found",
                    reason="GRANT_NOT_FOUND",
                    metadata={"grant_id": grant.id},
                )
            if stored.state is not expected_state:
                raise Aborted(
                    f"grant {grant.id} changed concurrently (now {stored.state.value})",
                    reason="GRANT_CHANGED",
                    metadata={"grant_id": grant.id},
                )
            self._put_grants([grant])

    def iter_grants(self, state: GrantState | None = None) -> Iterator[Grant]:
        with self._lock:
            grants = list(self._grants.values())
        return iter([g for g in grants if state is None or g.state is state])

    def grants_of(self, org: str, *, as_provider: bool = False) -> list[Grant]:
        with self._lock:
            grants = list(self._grants.values())
        if as_provider:
            return [g for g in grants if g.provider_org == org]
        return [g for g in grants if g.requester_org == org]

    def grant_version(self) -> int:
        return self._version

    def grants_changed_since(self, version: int) -> tuple[list[Grant], int]:
        with self._lock:
            order = {gid: n for n, gid in enumerate(self._grants)}
            changed = [(v, order[gid], gid) for gid, v in self._written.items() if v > version]
            changed.sort()
            return [self._grants[gid] for _, _, gid in changed], max(version, self._version)
