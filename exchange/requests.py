"""Share-request use cases: apply, decide (approve / approve less / reject), withdraw, list pending.

:class:`ShareRequests` validates and authorises, runs the request state
machine (:mod:`exchange.model`), writes through an
:class:`~exchange.repository.ExchangeRepository` and publishes new grants to the
:class:`~exchange.grants.GrantIndex`. Every transition is time-stamped by the
injected clock.

Decisions made here:

* Only PUBLISHED resources can be requested: unknown and draft codes are
  ``NotFound`` (``RESOURCE_NOT_FOUND``; drafts are not visible to others),
  retired ones ``FailedPrecondition`` (``RESOURCE_RETIRED``).
* Negative-listed items are refused at application (and again at approval)
  with ``FailedPrecondition`` ``NEGATIVE_LISTED``; the entry's legal basis is in
  the message and in ``metadata["legal_basis"]``.
* 不予共享 resources and items are refused (``NOT_SHARED``) **even with a
  legal basis**: the exchange only carries what the catalogue offers; an
  exception is a catalogue change by the provider, not a request.
* A request whose every item is effectively 无条件共享 is approved at once
  (``decided_by`` = :data:`~exchange.model.SYSTEM_DECIDER`); otherwise it waits
  as SUBMITTED for an admin of the provider organisation.
* An approval may narrow the items or shorten the period, never widen them.
* A new grant for the same (requester, resource) supersedes (revokes) the
  previous active one in the same transaction.

Example::

    book = ShareRequests(repo, catalogue.get_resource, negative.may_release, index, clock)
    req = book.apply(clerk, ApplicationSpec("1-01-001-0000-000101", ("姓名",),
                     "核验新生儿父母身份", "《国务院关于…》", Period(start, end)))
    book.approve(provider_admin, req.id, items=("姓名",))
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from catalog_registry.model import Resource, ResourceCode, ResourceStatus, ShareType
from catalog_registry.negative_list import Decision
from exchange.access import require_applicant, require_provider_admin, require_requester
from exchange.grants import GrantIndex
from exchange.model import (
    SYSTEM_DECIDER,
    Grant,
    GrantState,
    Period,
    RequestDecision,
    RequestState,
    ShareRequest,
    check_request_transition,
)
from exchange.repository import ExchangeRepository
from exchange.validation import check_application, check_narrowing
from zhida.auth.principal import Principal
from zhida.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)


class ReleaseCheck(Protocol):
    """``NegativeList.may_release``: may this item of this resource ever leave?"""

    def __call__(self, resource_code: str, item_name: str, /) -> Decision: ...


ResourceLookup = Callable[[str], Resource | None]


@dataclass(frozen=True, slots=True)
class ApplicationSpec:
    """What a department asks for."""

    resource_code: str
    items: tuple[str, ...]
    purpose: str
    legal_basis: str
    period: Period
    expected_volume: int = 0  # records per day; 0 unknown


class ShareRequests:
    """The request use cases over a repository, the catalogue and the negative list."""

    def __init__(
        self,
        repo: ExchangeRepository,
        resources: ResourceLookup,
        may_release: ReleaseCheck,
        grants: GrantIndex,
        clock: Callable[[], datetime],
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        default_rate_limit: int | None = None,
    ) -> None:
        self._repo = repo
        self._resources = resources
        self._may_release = may_release
        self._grants = grants
        self._clock = clock
        self._new_id = new_id
        self._default_rate_limit = default_rate_limit

    # -- apply ----------------------------------------------------------------------------
    def apply(self, principal: Principal, spec: ApplicationSpec) -> ShareRequest:
        """File a request; approved at once when every item is unconditional."""
        require_applicant(principal)
        resource = self._published(spec.resource_code)
        now = self._clock()
        violations = check_application(spec, resource, now)
        if violations:
            raise InvalidArgument(
                "invalid share request", reason="INVALID_SHARE_REQUEST", violations=violations
            )
        self._refuse_unreleasable(resource, spec.items)
        request = ShareRequest(
            id=self._new_id(),
            requester_org=principal.organisation,
            requester_region=principal.region_code,
            requested_by=principal.subject,
            resource_code=resource.key,
            provider_org=resource.provider_code,
            items=tuple(spec.items),
            purpose=spec.purpose.strip(),
            legal_basis=spec.legal_basis.strip(),
            period=spec.period,
            expected_volume=spec.expected_volume,
            state=RequestState.SUBMITTED,
            submitted_at=now,
            updated_at=now,
        )
        by_item = {item.name: item for item in resource.items}
        unconditional = all(
            resource.item_share_type(by_item[name]) is ShareType.UNCONDITIONAL
            for name in spec.items
        )
        if not unconditional:
            self._repo.insert_request(request)
            return request
        return self._write_approval(
            lambda grants: self._repo.insert_request(grants[0], grants[1]),
            request,
            SYSTEM_DECIDER,
            frozenset(spec.items),
            spec.period.end,
            self._default_rate_limit,
            "unconditional resource",
            now,
        )

    # -- decide ---------------------------------------------------------------------------
    def approve(
        self,
        principal: Principal,
        request_id: str,
        *,
        items: Sequence[str] | None = None,
        until: datetime | None = None,
        rate_limit_per_minute: int | None = None,
        reason: str = "",
    ) -> ShareRequest:
        """Approve all requested items and the whole period, or fewer items / an earlier end."""
        request = self._decidable(principal, request_id, RequestState.APPROVED)
        now = self._clock()
        granted = request.items if items is None else tuple(items)
        end = request.period.end if until is None else until
        violations = check_narrowing(request, granted, end, rate_limit_per_minute, now)
        if violations:
            raise InvalidArgument(
                "invalid approval", reason="INVALID_DECISION", violations=violations
            )
        resource = self._published(request.resource_code)
        self._refuse_unreleasable(resource, granted)
        rate = self._default_rate_limit if rate_limit_per_minute is None else rate_limit_per_minute
        return self._write_approval(
            lambda decided: self._repo.save_request(
                decided[0], expected_state=RequestState.SUBMITTED, grants=decided[1]
            ),
            request,
            principal.subject,
            frozenset(granted),
            end,
            rate,
            reason.strip(),
            now,
        )

    def reject(self, principal: Principal, request_id: str, reason: str) -> ShareRequest:
        """Reject with a mandatory reason."""
        request = self._decidable(principal, request_id, RequestState.REJECTED)
        if not reason.strip():
            raise InvalidArgument(
                "a rejection needs a reason",
                reason="INVALID_DECISION",
                violations=[FieldViolation("reason", "is required when rejecting")],
            )
        now = self._clock()
        decision = RequestDecision(principal.subject, now, approved=False, reason=reason.strip())
        rejected = dataclasses.replace(
            request, state=RequestState.REJECTED, updated_at=now, decision=decision
        )
        self._repo.save_request(rejected, expected_state=RequestState.SUBMITTED)
        return rejected

    # -- withdraw, queries ----------------------------------------------------------------
    def withdraw(self, principal: Principal, request_id: str) -> ShareRequest:
        """The requester organisation takes back its request while it is SUBMITTED."""
        request = self.get(request_id)
        require_requester(principal, request.requester_org, request_id)
        check_request_transition(request, RequestState.WITHDRAWN)
        now = self._clock()
        withdrawn = dataclasses.replace(
            request, state=RequestState.WITHDRAWN, updated_at=now, withdrawn_at=now
        )
        self._repo.save_request(withdrawn, expected_state=RequestState.SUBMITTED)
        return withdrawn

    def pending(self, principal: Principal, limit: int = 100) -> list[ShareRequest]:
        """SUBMITTED requests addressed to the admin's organisation, oldest first."""
        require_provider_admin(principal, principal.organisation, "list pending requests")
        return self._repo.pending_requests(principal.organisation, limit)

    def get(self, request_id: str) -> ShareRequest:
        request = self._repo.get_request(request_id)
        if request is None:
            raise NotFound(
                f"request {request_id} not found",
                reason="REQUEST_NOT_FOUND",
                metadata={"request_id": request_id},
            )
        return request

    # -- internals ------------------------------------------------------------------------
    def _decidable(
        self, principal: Principal, request_id: str, target: RequestState
    ) -> ShareRequest:
        request = self.get(request_id)
        require_provider_admin(principal, request.provider_org, f"decide request {request_id}")
        check_request_transition(request, target)
        return request

    def _published(self, code_text: str) -> Resource:
        code = ResourceCode.parse(code_text, "resource_code").text
        resource = self._resources(code)
        if resource is None or resource.status is ResourceStatus.DRAFT:
            raise NotFound(
                f"resource {code} not found", reason="RESOURCE_NOT_FOUND", metadata={"code": code}
            )
        if resource.status is ResourceStatus.RETIRED:
            raise FailedPrecondition(
                f"resource {code} is retired", reason="RESOURCE_RETIRED", metadata={"code": code}
            )
        return resource

    def _refuse_unreleasable(self, resource: Resource, items: Sequence[str]) -> None:
        for name in items:
            decision = self._may_release(resource.key, name)
            if not decision.allowed:
                raise FailedPrecondition(
                    f"{name} of {resource.key} is on the negative list: {decision.legal_basis}",
                    reason="NEGATIVE_LISTED",
                    metadata={
                        "code": resource.key,
                        "item": name,
                        "legal_basis": decision.legal_basis,
                    },
                )
        by_item = {item.name: item for item in resource.items}
        for name in items:
            item = by_item.get(name)
            if item is None:  # the resource changed since the application
                raise FailedPrecondition(
                    f"{name} is no longer an item of {resource.key}",
                    reason="ITEM_NOT_IN_RESOURCE",
                    metadata={"code": resource.key, "item": name},
                )
            if resource.item_share_type(item) is ShareType.NOT_SHARED:
                raise FailedPrecondition(
                    f"{name} of {resource.key} is not shared (不予共享)",
                    reason="NOT_SHARED",
                    metadata={"code": resource.key, "item": name},
                )

    def _write_approval(
        self,
        write: Callable[[tuple[ShareRequest, list[Grant]]], None],
        request: ShareRequest,
        decided_by: str,
        items: frozenset[str],
        until: datetime,
        rate: int | None,
        reason: str,
        now: datetime,
    ) -> ShareRequest:
        """Decide and ``write`` the approval; once more if the grant index was stale.

        The index of another worker process can lag a grant written there by
        ~100 ms; the store then refuses to leave two grants active
        (``GRANT_SUPERSEDE_STALE``) and the decision is taken again on the
        store's own view of the current grant.
        """
        previous = self._grants.current(request.requester_org, request.resource_code)
        for attempt in (1, 2):
            approved, grants = self._approval(
                request, decided_by, items, until, rate, reason, now, previous=previous
            )
            try:
                write((approved, grants))
            except Aborted as stale:
                if stale.reason != "GRANT_SUPERSEDE_STALE" or attempt == 2:
                    raise
                previous = self._stored_current(request.requester_org, request.resource_code)
                continue
            self._publish(grants)
            return approved
        raise AssertionError("unreachable")

    def _stored_current(self, requester_org: str, resource_code: str) -> Grant | None:
        """The newest stored ACTIVE grant of the pair, read from the store itself."""
        active = [
            g
            for g in self._repo.grants_of(requester_org)
            if g.resource_code == resource_code and g.state is GrantState.ACTIVE
        ]
        return max(active, key=lambda g: g.created_at, default=None)

    def _approval(
        self,
        request: ShareRequest,
        decided_by: str,
        items: frozenset[str],
        until: datetime,
        rate: int | None,
        reason: str,
        now: datetime,
        *,
        previous: Grant | None,
    ) -> tuple[ShareRequest, list[Grant]]:
        grant = Grant(
            id=self._new_id(),
            request_id=request.id,
            requester_org=request.requester_org,
            provider_org=request.provider_org,
            resource_code=request.resource_code,
            items=items,
            valid_from=request.period.start,
            valid_until=until,
            purpose=request.purpose,
            created_at=now,
            rate_limit_per_minute=rate,
        )
        grants = [grant]
        if previous is not None and previous.state_at(now) is GrantState.ACTIVE:
            grants.insert(
                0,
                dataclasses.replace(
                    previous,
                    state=GrantState.REVOKED,
                    revoked_at=now,
                    revoked_by=decided_by,
                    revoked_reason=f"superseded by grant {grant.id}",
                ),
            )
        decision = RequestDecision(
            decided_by,
            now,
            approved=True,
            reason=reason,
            items_granted=items,
            until_granted=until,
            grant_id=grant.id,
        )
        approved = dataclasses.replace(
            request, state=RequestState.APPROVED, updated_at=now, decision=decision
        )
        return approved, grants

    def _publish(self, grants: Sequence[Grant]) -> None:
        for grant in grants:
            self._grants.put(grant)
