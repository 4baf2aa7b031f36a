"""Protobuf ⇄ domain for the request side of ``zhida.exchange.v1`` (requests, grants, decisions).

Outgoing: :func:`request_to_pb`, :func:`grant_to_pb` (with the grant's
*effective* state at a given time: an ACTIVE grant past ``valid_until`` is
EXPIRED), :func:`decision_to_pb`. Incoming: :func:`application_from_pb` and
:func:`approval_from_pb` check every field that needs no stored data and
raise one ``InvalidArgument`` naming all bad fields by their proto names
(``resource_code``, ``items[1]``, ``purpose``, ``legal_basis``,
``period_end``, ``valid_until``, ``rate_limit_per_minute``); the domain then
checks the rest against the catalogue. ``*_from_pb`` of stored shapes exist
for clients and round-trip tests. Timestamps are UTC ``Timestamp``\\ s; an
unset one is ``None``.

Example::

    >>> from datetime import UTC, datetime
    >>> from exchange import wire
    >>> from zhida.exchange.v1 import exchange_service_pb2 as pb
    >>> now = datetime(2025, 6, 1, tzinfo=UTC)
    >>> try:
    ...     wire.application_from_pb(pb.ApplyForDataRequest(resource_code="1-01"), now)
    ... except Exception as e:
    ...     print(e.reason, sorted({v.field for v in e.violations}))
    INVALID_SHARE_REQUEST ['items', 'legal_basis', 'period_end', 'purpose', 'resource_code']
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from catalog_registry.model import ResourceCode
from catalog_registry.wire import time_of as time_of  # one conversion for every wire module
from exchange.model import (
    Grant,
    GrantState,
    Period,
    RequestDecision,
    RequestState,
    ShareRequest,
)
from exchange.requests import ApplicationSpec
from exchange.validation import MAX_TEXT
from zhida.errors import FieldViolation, InvalidArgument
from zhida.exchange.v1 import exchange_service_pb2 as pb

REQUEST_STATE: dict[RequestState, pb.ShareRequestState.ValueType] = {
    RequestState.SUBMITTED: pb.SHARE_REQUEST_STATE_SUBMITTED,
    RequestState.APPROVED: pb.SHARE_REQUEST_STATE_APPROVED,
    RequestState.REJECTED: pb.SHARE_REQUEST_STATE_REJECTED,
    RequestState.WITHDRAWN: pb.SHARE_REQUEST_STATE_WITHDRAWN,
}
GRANT_STATE: dict[GrantState, pb.GrantState.ValueType] = {
    GrantState.ACTIVE: pb.GRANT_STATE_ACTIVE,
    GrantState.EXPIRED: pb.GRANT_STATE_EXPIRED,
    GrantState.REVOKED: pb.GRANT_STATE_REVOKED,
}
_REQUEST_STATE_BACK = {v: k for k, v in REQUEST_STATE.items()}
_GRANT_STATE_BACK = {v: k for k, v in GRANT_STATE.items()}
DEFAULT_PENDING = 100
MAX_PENDING = 1000
MAX_ITEMS = 500


# -- time ------------------------------------------------------------------------------------
def timestamp(value: datetime | None) -> Timestamp | None:
    """``value`` (aware) as a Timestamp; None stays None (the field is left unset)."""
    if value is None:
        return None
    out = Timestamp()
    out.FromDatetime(value.astimezone(UTC))
    return out


def _required_time(message: Any, field: str) -> datetime:
    value = time_of(message, field)
    if value is None:
        raise ValueError(f"{field} is unset")
    return value


# -- outgoing --------------------------------------------------------------------------------
def decision_to_pb(d: RequestDecision) -> pb.Decision:
    return pb.Decision(
        decided_by=d.decided_by,
        decided_at=timestamp(d.decided_at),
        approved=d.approved,
        reason=d.reason,
        items_granted=sorted(d.items_granted),
        valid_until=timestamp(d.until_granted),
        grant_id=d.grant_id or "",
    )


def request_to_pb(r: ShareRequest) -> pb.ShareRequest:
    return pb.ShareRequest(
        id=r.id,
        requester_org=r.requester_org,
        requester_region=r.requester_region,
        requested_by=r.requested_by,
        resource_code=r.resource_code,
        provider_org=r.provider_org,
        items=list(r.items),
        purpose=r.purpose,
        legal_basis=r.legal_basis,
        period_start=timestamp(r.period.start),
        period_end=timestamp(r.period.end),
        expected_volume=r.expected_volume,
        state=REQUEST_STATE[r.state],
        submitted_at=timestamp(r.submitted_at),
        updated_at=timestamp(r.updated_at),
        decision=None if r.decision is None else decision_to_pb(r.decision),
        withdrawn_at=timestamp(r.withdrawn_at),
    )


def grant_to_pb(g: Grant, now: datetime) -> pb.Grant:
    """The grant with its effective state at ``now``."""
    return pb.Grant(
        id=g.id,
        request_id=g.request_id,
        requester_org=g.requester_org,
        provider_org=g.provider_org,
        resource_code=g.resource_code,
        items=sorted(g.items),
        valid_from=timestamp(g.valid_from),
        valid_until=timestamp(g.valid_until),
        purpose=g.purpose,
        created_at=timestamp(g.created_at),
        rate_limit_per_minute=g.rate_limit_per_minute or 0,
        state=GRANT_STATE[g.state_at(now)],
        revoked_at=timestamp(g.revoked_at),
        revoked_by=g.revoked_by,
        revoked_reason=g.revoked_reason,
    )


# -- stored shapes back (clients, tests) -----------------------------------------------------
def decision_from_pb(m: pb.Decision) -> RequestDecision:
    return RequestDecision(
        decided_by=m.decided_by,
        decided_at=_required_time(m, "decided_at"),
        approved=m.approved,
        reason=m.reason,
        items_granted=frozenset(m.items_granted),
        until_granted=time_of(m, "valid_until"),
        grant_id=m.grant_id or None,
    )


def request_from_pb(m: pb.ShareRequest) -> ShareRequest:
    return ShareRequest(
        id=m.id,
        requester_org=m.requester_org,
        requester_region=m.requester_region,
        requested_by=m.requested_by,
        resource_code=m.resource_code,
        provider_org=m.provider_org,
        items=tuple(m.items),
        purpose=m.purpose,
        legal_basis=m.legal_basis,
        period=Period(_required_time(m, "period_start"), _required_time(m, "period_end")),
        expected_volume=m.expected_volume,
        state=_REQUEST_STATE_BACK[m.state],
        submitted_at=_required_time(m, "submitted_at"),
        updated_at=_required_time(m, "updated_at"),
        decision=decision_from_pb(m.decision) if m.HasField("decision") else None,
        withdrawn_at=time_of(m, "withdrawn_at"),
    )


def grant_from_pb(m: pb.Grant) -> Grant:
    """The grant as sent; its state is the effective state the sender computed."""
    return Grant(
        id=m.id,
        request_id=m.request_id,
        requester_org=m.requester_org,
        provider_org=m.provider_org,
        resource_code=m.resource_code,
        items=frozenset(m.items),
        valid_from=_required_time(m, "valid_from"),
        valid_until=_required_time(m, "valid_until"),
        purpose=m.purpose,
        created_at=_required_time(m, "created_at"),
        rate_limit_per_minute=m.rate_limit_per_minute or None,
        state=_GRANT_STATE_BACK[m.state],
        revoked_at=time_of(m, "revoked_at"),
        revoked_by=m.revoked_by,
        revoked_reason=m.revoked_reason,
    )


# -- incoming --------------------------------------------------------------------------------
def _text(value: str, field: str, what: str) -> list[FieldViolation]:
    if not value.strip():
        return [FieldViolation(field, f"{what} is required")]
    if len(value) > MAX_TEXT:
        return [FieldViolation(field, f"{what} is longer than {MAX_TEXT} characters")]
    return []


def _items(items: list[str], field: str, *, required: bool) -> list[FieldViolation]:
    if not items:
        return [FieldViolation(field, "at least one data item is required")] if required else []
    if len(items) > MAX_ITEMS:
        return [FieldViolation(field, f"at most {MAX_ITEMS} data items")]
    out: list[FieldViolation] = []
    seen: set[str] = set()
    for i, name in enumerate(items):
        if not name.strip():
            out.append(FieldViolation(f"{field}[{i}]", "must not be empty"))
        elif name in seen:
            out.append(FieldViolation(f"{field}[{i}]", f"{name!r} is repeated"))
        seen.add(name)
    return out


def require_id(value: str, field: str, reason: str = "INVALID_ARGUMENT") -> str:
    """``value`` stripped, or InvalidArgument naming ``field``."""
    if not value.strip():
        raise InvalidArgument(
            f"{field} is required", reason=reason, violations=[FieldViolation(field, "is required")]
        )
    return value.strip()


def application_from_pb(m: pb.ApplyForDataRequest, now: datetime) -> ApplicationSpec:
    """The application; the period starts ``now`` unless given and must end in the future."""
    out: list[FieldViolation] = []
    if not m.resource_code.strip():
        out.append(FieldViolation("resource_code", "is required"))
    else:
        out += ResourceCode.check(m.resource_code.strip(), "resource_code")[1]
    items = list(m.items)
    out += _items(items, "items", required=True)
    out += _text(m.purpose, "purpose", "the purpose")
    out += _text(m.legal_basis, "legal_basis", "the legal basis")
    start = time_of(m, "period_start") or now
    end = time_of(m, "period_end")
    if end is None:
        out.append(FieldViolation("period_end", "is required: a grant must expire"))
    elif end <= start:
        out.append(FieldViolation("period_end", "must be after period_start"))
    elif end <= now:
        out.append(FieldViolation("period_end", "is in the past"))
    if m.expected_volume < 0:
        out.append(FieldViolation("expected_volume", "must not be negative"))
    if out or end is None:  # a missing end is among the violations
        raise InvalidArgument(
            "invalid share request", reason="INVALID_SHARE_REQUEST", violations=out
        )
    return ApplicationSpec(
        resource_code=m.resource_code.strip(),
        items=tuple(items),
        purpose=m.purpose,
        legal_basis=m.legal_basis,
        period=Period(start, end),
        expected_volume=m.expected_volume,
    )


@dataclass(frozen=True, slots=True)
class Approval:
    """An approval as asked: None means "as requested" (items, end) or "no limit" (rate)."""

    request_id: str
    items: tuple[str, ...] | None
    until: datetime | None
    rate_limit_per_minute: int | None


def approval_from_pb(m: pb.ApproveShareRequestRequest) -> Approval:
    out: list[FieldViolation] = []
    if not m.request_id.strip():
        out.append(FieldViolation("request_id", "is required"))
    out += _items(list(m.items), "items", required=False)
    if m.rate_limit_per_minute < 0:
        out.append(FieldViolation("rate_limit_per_minute", "must not be negative (0: no limit)"))
    if out:
        raise InvalidArgument("invalid approval", reason="INVALID_DECISION", violations=out)
    return Approval(
        request_id=m.request_id.strip(),
        items=tuple(m.items) or None,
        until=time_of(m, "valid_until"),
        rate_limit_per_minute=m.rate_limit_per_minute or None,
    )


def pending_limit(limit: int) -> int:
    """``limit`` of ListPendingShareRequests: 0 is the default (100); 1..1000 else refused."""
    if not 0 <= limit <= MAX_PENDING:
        raise InvalidArgument(
            f"limit must be 0..{MAX_PENDING}",
            reason="INVALID_ARGUMENT",
            violations=[FieldViolation("limit", f"must be 0..{MAX_PENDING}, got {limit}")],
        )
    return limit or DEFAULT_PENDING


# Domain violations of an approval name the domain's fields; the wire names them as the proto.
_APPROVAL_FIELDS = {"until": "valid_until"}


def renamed(error: InvalidArgument, names: dict[str, str] = _APPROVAL_FIELDS) -> InvalidArgument:
    """``error`` with its violations' fields renamed by ``names`` (the rest kept)."""
    violations = [
        FieldViolation(names.get(v.field, v.field), v.description) for v in error.violations
    ]
    return InvalidArgument(
        error.message, reason=error.reason, violations=violations, metadata=error.metadata
    )
