"""The grant index: every delivery is checked against it in O(1), revocation is immediate.

:class:`GrantIndex` keeps one entry per ``(requester organisation, resource
code)`` — the newest ACTIVE grant, else the newest grant (so a refusal can say
*revoked* or *expired* rather than *no grant*). The index is a cache over the
repository: writes go to the repository first, then replace the entry, so a
revoked grant is refused by the very next :meth:`GrantIndex.check`.
``reload()`` rebuilds it when another process changed grants.

At most one grant per key is ACTIVE: a new approval for the same requester
and resource supersedes (revokes) the previous one, in the same transaction
(see :mod:`exchange.requests`).

Example::

    index = GrantIndex(repo, clock)
    grant = index.admit(requester_org, "1-01-001-0000-000101", clock())  # or PermissionDenied
    index.revoke(provider_admin, grant.id, "purpose fulfilled")
    index.check(requester_org, "1-01-001-0000-000101", clock())  # PermissionDenied GRANT_REVOKED
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import datetime

from exchange.access import require_provider_admin
from exchange.model import Grant, GrantState, check_grant_transition
from exchange.ratelimit import RateLimiter
from exchange.repository import ExchangeRepository
from zhida.auth.principal import Principal
from zhida.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied


class GrantIndex:
    """O(1) grant checks keyed by (requester org, resource code), plus rate limits."""

    def __init__(
        self,
        repo: ExchangeRepository,
        clock: Callable[[], datetime],
        limiter: RateLimiter | None = None,
    ) -> None:
        self._repo = repo
        self._clock = clock
        self._limiter = limiter or RateLimiter()
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], Grant] = {}
        self.reload()

    @property
    def limiter(self) -> RateLimiter:
        """The grants' rate-limit buckets (a revoked or superseded grant's is dropped)."""
        return self._limiter

    def reload(self) -> None:
        """Rebuild the index from the repository."""
        by_key: dict[tuple[str, str], Grant] = {}
        for grant in self._repo.iter_grants():
            _offer(by_key, grant)
        with self._lock:
            self._by_key = by_key

    def put(self, grant: Grant) -> None:
        """Make a stored grant (new, superseded or revoked) visible to :meth:`check`."""
        with self._lock:
            _offer(self._by_key, grant)
        if grant.state is not GrantState.ACTIVE:
            self._limiter.forget(grant.id)

    def current(self, requester_org: str, resource_code: str) -> Grant | None:
        """The indexed grant for the key (any state), or None."""
        return self._by_key.get((requester_org, resource_code))

    def check(self, requester_org: str, resource_code: str, now: datetime) -> Grant:
        """The grant that allows a delivery now, or PermissionDenied.

        Reasons: ``NO_GRANT``, ``GRANT_REVOKED``, ``GRANT_EXPIRED``,
        ``GRANT_NOT_YET_VALID``.
        """
        grant = self._by_key.get((requester_org, resource_code))
        if grant is None:
            raise PermissionDenied(
                f"{requester_org} holds no grant for {resource_code}",
                reason="NO_GRANT",
                metadata={"requester_org": requester_org, "resource_code": resource_code},
            )
        state = grant.state_at(now)
        if state is GrantState.ACTIVE:
            if now < grant.valid_from:
                raise _refused(grant, "GRANT_NOT_YET_VALID", f"is valid from {grant.valid_from}")
            return grant
        if state is GrantState.REVOKED:
            raise _refused(grant, "GRANT_REVOKED", f"was revoked: {grant.revoked_reason}")
        raise _refused(grant, "GRANT_EXPIRED", f"expired at {grant.valid_until.isoformat()}")

    def admit(self, requester_org: str, resource_code: str, now: datetime, cost: int = 1) -> Grant:
        """:meth:`check` plus the grant's rate limit (``ResourceExhausted`` ``RATE_LIMITED``)."""
        grant = self.check(requester_org, resource_code, now)
        self._limiter.take(grant, now, cost)
        return grant

    def revoke(self, principal: Principal, grant_id: str, reason: str) -> Grant:
        """Revoke an ACTIVE grant; only an admin of the provider; ``reason`` mandatory."""
        grant = self._repo.get_grant(grant_id)
        if grant is None:
            raise NotFound(
                f"grant {grant_id} not found",
                reason="GRANT_NOT_FOUND",
                metadata={"grant_id": grant_id},
            )
        require_provider_admin(principal, grant.provider_org, f"revoke grant {grant_id}")
        if not reason.strip():
            raise InvalidArgument(
                "a revocation needs a reason",
                reason="INVALID_REVOCATION",
                violations=[FieldViolation("reason", "is required")],
            )
        now = self._clock()
        check_grant_transition(grant, GrantState.REVOKED, now)
        revoked = dataclasses.replace(
            grant,
            state=GrantState.REVOKED,
            revoked_at=now,
            revoked_by=principal.subject,
            revoked_reason=reason.strip(),
        )
        self._repo.save_grant(revoked, expected_state=GrantState.ACTIVE)
        self.put(revoked)
        return revoked


def _offer(by_key: dict[tuple[str, str], Grant], grant: Grant) -> None:
    """Index ``grant`` unless the entry is a different, ACTIVE grant and this one is not."""
    held = by_key.get(grant.key)
    if (
        held is not None
        and held.id != grant.id
        and held.state is GrantState.ACTIVE
        and grant.state is not GrantState.ACTIVE
    ):
        return
    by_key[grant.key] = grant


def _refused(grant: Grant, reason: str, what: str) -> PermissionDenied:
    return PermissionDenied(
        f"grant {grant.id} for {grant.resource_code} {what}",
        reason=reason,
        metadata={
            "grant_id": grant.id,
            "requester_org": grant.requester_org,
            "resource_code": grant.resource_code,
        },
    )
