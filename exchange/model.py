"""Domain types of the exchange: share requests, their decisions, grants; the two state machines.

All types are frozen dataclasses; use cases build new values with
:func:`dataclasses.replace` instead of mutating. Nothing here knows about gRPC
or SQL.

State machines (enforced by :func:`check_request_transition` and
:func:`check_grant_transition`; every other move is refused)::

    ShareRequest: SUBMITTED ──▶ APPROVED | REJECTED | WITHDRAWN   (all three final)
    Grant:        ACTIVE    ──▶ EXPIRED  | REVOKED                (both final)

Example::

    >>> from exchange.model import RequestState, GrantState
    >>> RequestState.SUBMITTED.can_become(RequestState.APPROVED)
    True
    >>> RequestState.APPROVED.can_become(RequestState.REJECTED)
    False
    >>> GrantState.REVOKED.final
    True
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from zhida.errors import FailedPrecondition

SYSTEM_DECIDER = "system:unconditional"
"""``decided_by`` of requests granted at once because every item is 无条件共享."""


class RequestState(enum.Enum):
    """Where a share request stands."""

    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"

    @property
    def final(self) -> bool:
        return self is not RequestState.SUBMITTED

    def can_become(self, target: RequestState) -> bool:
        return target in _REQUEST_MOVES[self]


_REQUEST_MOVES: dict[RequestState, frozenset[RequestState]] = {
    RequestState.SUBMITTED: frozenset(
        {RequestState.APPROVED, RequestState.REJECTED, RequestState.WITHDRAWN}
    ),
    RequestState.APPROVED: frozenset(),
    RequestState.REJECTED: frozenset(),
    RequestState.WITHDRAWN: frozenset(),
}


class GrantState(enum.Enum):
    """Where a grant stands; EXPIRED is also derived (see :meth:`Grant.state_at`)."""

    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"

    @property
    def final(self) -> bool:
        return self is not GrantState.ACTIVE

    def can_become(self, target: GrantState) -> bool:
        return self is GrantState.ACTIVE and target is not GrantState.ACTIVE


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open validity period ``[start, end)``; both timezone-aware."""

    start: datetime
    end: datetime

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True, slots=True)
class RequestDecision:
    """The provider admin's decision: who, when, why, and what was granted (approvals)."""

    decided_by: str  # principal subject, or SYSTEM_DECIDER
    decided_at: datetime
    approved: bool
    reason: str = ""
    items_granted: frozenset[str] = frozenset()
    until_granted: datetime | None = None
    grant_id: str | None = None


@dataclass(frozen=True, slots=True)
class ShareRequest:
    """申请: a department asks a provider for some items of one resource.

    ``requested_by`` is the applying principal's subject; ``requester_org`` its
    USCC and ``requester_region`` its GB/T 2260 region. ``expected_volume`` is
    the expected number of records per day (0: unknown).
    """

    id: str
    requester_org: str
    requester_region: str
    requested_by: str
    resource_code: str  # canonical code text
    provider_org: str  # USCC of the provider department
    items: tuple[str, ...]
    purpose: str
    legal_basis: str
    period: Period
    expected_volume: int
    state: RequestState
    submitted_at: datetime
    updated_at: datetime
    decision: RequestDecision | None = None
    withdrawn_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """授权: the requester organisation may receive ``items`` of ``resource_code`` in ``period``.

    ``rate_limit_per_minute`` None means unlimited. ``revoked_reason`` is set
    exactly when ``state`` is REVOKED.
    """

    id: str
    request_id: str
    requester_org: str
    provider_org: str
    resource_code: str
    items: frozenset[str]
    valid_from: datetime
    valid_until: datetime
    purpose: str
    created_at: datetime
    rate_limit_per_minute: int | None = None
    state: GrantState = GrantState.ACTIVE
    revoked_at: datetime | None = None
    revoked_by: str = ""
    revoked_reason: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """The index key: (requester organisation, resource code)."""
        return (self.requester_org, self.resource_code)

    def state_at(self, now: datetime) -> GrantState:
        """The effective state at ``now``: an ACTIVE grant past ``valid_until`` is EXPIRED."""
        if self.state is GrantState.ACTIVE and now >= self.valid_until:
            return GrantState.EXPIRED
        return self.state


def check_request_transition(request: ShareRequest, target: RequestState) -> None:
    """Refuse an illegal request move with ``FailedPrecondition``.

    Reasons: ``ALREADY_DECIDED`` (approved or rejected), ``REQUEST_WITHDRAWN``.
    """
    if request.state.can_become(target):
        return
    reason = "REQUEST_WITHDRAWN" if request.state is RequestState.WITHDRAWN else "ALREADY_DECIDED"
    raise FailedPrecondition(
        f"request {request.id} is {request.state.value}; it cannot become {target.value}",
        reason=reason,
        metadata={"request_id": request.id, "state": request.state.value},
    )


def check_grant_transition(grant: Grant, target: GrantState, now: datetime) -> None:
    """Refuse an illegal grant move (reasons ``GRANT_REVOKED``, ``GRANT_EXPIRED``)."""
    current = grant.state_at(now)
    if current.can_become(target):
        return
    reason = "GRANT_REVOKED" if current is GrantState.REVOKED else "GRANT_EXPIRED"
    raise FailedPrecondition(
        f"grant {grant.id} is {current.value}; it cannot become {target.value}",
        reason=reason,
        metadata={"grant_id": grant.id, "state": current.value},
    )
