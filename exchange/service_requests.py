"""Share-request and grant RPCs of ``zhida.exchange.v1.ExchangeService``: RequestHandlers.

Each handler takes the caller from :func:`zhida.server.context.current_principal`
(the interceptor authenticated it and checked its role against
``zhida/auth/policy.py``), converts the request with :mod:`exchange.wire`
(bad fields → INVALID_ARGUMENT naming each), runs the domain
(:class:`~exchange.requests.ShareRequests`, :class:`~exchange.grants.GrantIndex`)
in the runtime's I/O threads and converts the answer back. Domain errors are
:class:`zhida.errors.ZhidaError` and reach the client as rich statuses:
unknown ids NOT_FOUND, another organisation's request PERMISSION_DENIED,
deciding twice FAILED_PRECONDITION ``ALREADY_DECIDED``.

Audit (written before the call returns): ``share.request`` on apply,
``share.decide`` on approve / reject / withdraw, ``grant.create`` for each
grant created (also an unconditional apply), ``grant.revoke`` for each grant
revoked (also one superseded by a new approval). Each carries the resource,
the purpose and the request's legal basis where there is one; a refusal for
ownership is recorded with outcome ``denied`` and its reason.

Example::

    class ExchangeService(RequestHandlers, DeliveryHandlers, pb_grpc.ExchangeServiceServicer):
        def __init__(self, runtime: NodeRuntime) -> None:
            self.ctx = ExchangeContext.open(runtime)
            RequestHandlers.__init__(self, self.ctx)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, Unpack

from audit_log.events import DETAIL_KEY, MAX_FIELD_CHARS, Action, Outcome
from exchange import wire
from exchange.context import ExchangeContext
from exchange.model import Grant, GrantState, ShareRequest
from exchange.requests import ApplicationSpec
from zhida.auth.principal import Principal, Role
from zhida.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.server.audit import EventFields
from zhida.server.context import current_principal

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Decided:
    """A request after a use case, with the grant it created and the grants that superseded."""

    request: ShareRequest
    created: Grant | None = None
    superseded: tuple[Grant, ...] = ()


async def _run(ctx: ExchangeContext, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await ctx.runtime.run_blocking(fn, *args, **kwargs)


async def _attempt(
    ctx: ExchangeContext, action: Action, work: Awaitable[T], **fields: Unpack[EventFields]
) -> T:
    """Await ``work``; a refusal is recorded (outcome denied) and re-raised.

    Refusals are ownership (PERMISSION_DENIED) and the rules of the domain
    (FAILED_PRECONDITION: a negative-listed item, a request already decided):
    both are decisions an auditor must be able to find, with their metadata
    (the item and its legal basis, say) in the event's details.
    """
    try:
        return await work
    except (PermissionDenied, FailedPrecondition) as refused:
        denied = fields.copy()
        denied["outcome"], denied["reason"] = Outcome.DENIED, refused.reason
        denied["details"] = {**(fields.get("details") or {}), **_auditable(refused.metadata)}
        if refused.metadata.get("legal_basis"):
            denied["legal_basis"] = refused.metadata["legal_basis"][:MAX_FIELD_CHARS]
        await ctx.runtime.recorder.record(action, **denied)
        raise


def _auditable(metadata: Mapping[str, str]) -> dict[str, str]:
    """The error metadata an audit event can hold (its key and length rules)."""
    return {
        key: value[:MAX_FIELD_CHARS]
        for key, value in metadata.items()
        if key != "legal_basis" and DETAIL_KEY.fullmatch(key) and value
    }


def _request_fields(r: ShareRequest, details: Mapping[str, str]) -> EventFields:
    """Resource, purpose and legal basis of ``r``, and ``details``."""
    return {
        "resource": r.resource_code, "purpose": r.purpose, "legal_basis": r.legal_basis,
        "details": details,
    }  # fmt: skip


def _require_party(principal: Principal, request: ShareRequest) -> None:
    """The requester organisation, the provider organisation, or an auditor."""
    if principal.role is Role.AUDITOR:
        return
    if principal.organisation in (request.requester_org, request.provider_org):
        return
    raise PermissionDenied(
        f"request {request.id} is between {request.requester_org} and {request.provider_org}",
        reason="NOT_A_PARTY",
        metadata={"request_id": request.id},
    )


# -- blocking work (runs in the runtime's threads) -------------------------------------------
def _decided(ctx: ExchangeContext, request: ShareRequest) -> Decided:
    """The grant ``request``'s approval created and the grants it superseded."""
    decision = request.decision
    if decision is None or decision.grant_id is None:
        return Decided(request)
    created = ctx.repo.get_grant(decision.grant_id)
    marker = f"superseded by grant {decision.grant_id}"
    superseded = tuple(
        g
        for g in ctx.repo.grants_of(request.requester_org)
        if g.state is GrantState.REVOKED and g.revoked_reason == marker
    )
    return Decided(request, created, superseded)


def _apply(ctx: ExchangeContext, principal: Principal, spec: ApplicationSpec) -> Decided:
    return _decided(ctx, ctx.book.apply(principal, spec))


def _approve(ctx: ExchangeContext, principal: Principal, approval: wire.Approval) -> Decided:
    try:
        request = ctx.book.approve(
            principal,
            approval.request_id,
            items=approval.items,
            until=approval.until,
            rate_limit_per_minute=approval.rate_limit_per_minute,
        )
    except InvalidArgument as error:
        raise wire.renamed(error) from None
    return _decided(ctx, request)


def _get(ctx: ExchangeContext, principal: Principal, request_id: str) -> ShareRequest:
    request = ctx.book.get(request_id)
    _require_party(principal, request)
    return request


def _grants_of(
    ctx: ExchangeContext, org: str, include_inactive: bool
) -> tuple[list[Grant], list[Grant]]:
    now = ctx.clock()

    def keep(g: Grant) -> bool:
        return include_inactive or g.state_at(now) is GrantState.ACTIVE

    held = [g for g in ctx.repo.grants_of(org) if keep(g)]
    given = [g for g in ctx.repo.grants_of(org, as_provider=True) if keep(g)]
    return held, given


# -- audit ------------------------------------------------------------------------------------
async def _record_grants(ctx: ExchangeContext, decided: Decided) -> None:
    """``grant.revoke`` for each superseded grant, then ``grant.create`` for the new one."""
    recorder = ctx.runtime.recorder
    request = decided.request
    for old in decided.superseded:
        await recorder.record(
            Action.GRANT_REVOKE, resource=old.resource_code, purpose=old.purpose,
            details={"grant_id": old.id, "requester_org": old.requester_org,
                     "reason": old.revoked_reason},
        )  # fmt: skip
    grant = decided.created
    if grant is not None:
        info = {
            "grant_id": grant.id,
            "request_id": request.id,
            "requester_org": grant.requester_org,
            "items": "、".join(sorted(grant.items)),
            "valid_until": grant.valid_until.isoformat(),
        }
        await recorder.record(Action.GRANT_CREATE, **_request_fields(request, info))


def _grant_reply(ctx: ExchangeContext, decided: Decided) -> pb.Grant | None:
    return None if decided.created is None else wire.grant_to_pb(decided.created, ctx.clock())


def _decision_details(request: ShareRequest) -> dict[str, str]:
    d = request.decision
    if d is None:
        return {}
    return {
        "requester_org": request.requester_org,
        "items_granted": "、".join(sorted(d.items_granted)),
        "valid_until": "" if d.until_granted is None else d.until_granted.isoformat(),
        "grant_id": d.grant_id or "",
    }


class RequestHandlers:
    """Apply, decide, withdraw, list; grants and their revocation (see the module docstring)."""

    def __init__(self, ctx: ExchangeContext) -> None:
        self.ctx = ctx

    # -- requests --------------------------------------------------------------------------
    async def ApplyForData(
        self, request: pb.ApplyForDataRequest, context: Any
    ) -> pb.ApplyForDataResponse:
        ctx = self.ctx
        principal = current_principal()
        spec = wire.application_from_pb(request, ctx.clock())
        fields: EventFields = {
            "resource": spec.resource_code, "purpose": spec.purpose,
            "legal_basis": spec.legal_basis,
        }  # fmt: skip
        work = _run(ctx, _apply, ctx, principal, spec)
        outcome = await _attempt(ctx, Action.SHARE_REQUEST, work, **fields)
        filed = outcome.request
        info = {
            "request_id": filed.id,
            "provider_org": filed.provider_org,
            "items": "、".join(filed.items),
            "state": filed.state.value,
        }
        await ctx.runtime.recorder.record(Action.SHARE_REQUEST, **_request_fields(filed, info))
        await _record_grants(ctx, outcome)
        return pb.ApplyForDataResponse(
            request=wire.request_to_pb(filed), grant=_grant_reply(ctx, outcome)
        )

    async def GetShareRequest(
        self, request: pb.GetShareRequestRequest, context: Any
    ) -> pb.GetShareRequestResponse:
        request_id = wire.require_id(request.request_id, "request_id")
        found = await _run(self.ctx, _get, self.ctx, current_principal(), request_id)
        return pb.GetShareRequestResponse(request=wire.request_to_pb(found))

    async def ListShareRequests(
        self, request: pb.ListShareRequestsRequest, context: Any
    ) -> pb.ListShareRequestsResponse:
        org = current_principal().organisation
        mine = await _run(self.ctx, self.ctx.repo.requests_of, org)
        return pb.ListShareRequestsResponse(requests=[wire.request_to_pb(r) for r in mine])

    async def ListPendingShareRequests(
        self, request: pb.ListPendingShareRequestsRequest, context: Any
    ) -> pb.ListPendingShareRequestsResponse:
        limit = wire.pending_limit(request.limit)
        pending = await _run(self.ctx, self.ctx.book.pending, current_principal(), limit)
        return pb.ListPendingShareRequestsResponse(
            requests=[wire.request_to_pb(r) for r in pending]
        )

    # -- decisions -------------------------------------------------------------------------
    async def ApproveShareRequest(
        self, request: pb.ApproveShareRequestRequest, context: Any
    ) -> pb.ApproveShareRequestResponse:
        ctx = self.ctx
        approval = wire.approval_from_pb(request)
        work = _run(ctx, _approve, ctx, current_principal(), approval)
        details = {"request_id": approval.request_id, "decision": "approve"}
        outcome = await _attempt(ctx, Action.SHARE_DECIDE, work, details=details)
        decided = outcome.request
        info = {**details, **_decision_details(decided)}
        await ctx.runtime.recorder.record(Action.SHARE_DECIDE, **_request_fields(decided, info))
        await _record_grants(ctx, outcome)
        return pb.ApproveShareRequestResponse(
            request=wire.request_to_pb(decided), grant=_grant_reply(ctx, outcome)
        )

    async def RejectShareRequest(
        self, request: pb.RejectShareRequestRequest, context: Any
    ) -> pb.RejectShareRequestResponse:
        ctx = self.ctx
        request_id = wire.require_id(request.request_id, "request_id", "INVALID_DECISION")
        work = _run(ctx, ctx.book.reject, current_principal(), request_id, request.reason)
        details = {"request_id": request_id, "decision": "reject"}
        rejected = await _attempt(ctx, Action.SHARE_DECIDE, work, details=details)
        reason = rejected.decision.reason if rejected.decision else ""
        info = {**details, "requester_org": rejected.requester_org, "reason": reason}
        await ctx.runtime.recorder.record(Action.SHARE_DECIDE, **_request_fields(rejected, info))
        return pb.RejectShareRequestResponse(request=wire.request_to_pb(rejected))

    async def WithdrawShareRequest(
        self, request: pb.WithdrawShareRequestRequest, context: Any
    ) -> pb.WithdrawShareRequestResponse:
        ctx = self.ctx
        request_id = wire.require_id(request.request_id, "request_id")
        work = _run(ctx, ctx.book.withdraw, current_principal(), request_id)
        details = {"request_id": request_id, "decision": "withdraw"}
        withdrawn = await _attempt(ctx, Action.SHARE_DECIDE, work, details=details)
        info = {**details, "provider_org": withdrawn.provider_org}
        await ctx.runtime.recorder.record(Action.SHARE_DECIDE, **_request_fields(withdrawn, info))
        return pb.WithdrawShareRequestResponse(request=wire.request_to_pb(withdrawn))

    # -- grants ----------------------------------------------------------------------------
    async def ListGrants(
        self, request: pb.ListGrantsRequest, context: Any
    ) -> pb.ListGrantsResponse:
        org = current_principal().organisation
        held, given = await _run(self.ctx, _grants_of, self.ctx, org, request.include_inactive)
        now = self.ctx.clock()
        return pb.ListGrantsResponse(
            held=[wire.grant_to_pb(g, now) for g in held],
            given=[wire.grant_to_pb(g, now) for g in given],
        )

    async def RevokeGrant(
        self, request: pb.RevokeGrantRequest, context: Any
    ) -> pb.RevokeGrantResponse:
        ctx = self.ctx
        grant_id = wire.require_id(request.grant_id, "grant_id", "INVALID_REVOCATION")
        work = _run(ctx, ctx.grants.revoke, current_principal(), grant_id, request.reason)
        details = {"grant_id": grant_id}
        revoked = await _attempt(ctx, Action.GRANT_REVOKE, work, details=details)
        await ctx.runtime.recorder.record(
            Action.GRANT_REVOKE, resource=revoked.resource_code, purpose=revoked.purpose,
            details={**details, "requester_org": revoked.requester_org,
                     "request_id": revoked.request_id, "reason": revoked.revoked_reason},
        )  # fmt: skip
        return pb.RevokeGrantResponse(grant=wire.grant_to_pb(revoked, ctx.clock()))
