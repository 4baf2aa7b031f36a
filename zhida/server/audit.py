"""Recording audit events from a serving node: who, from the call's context; what, from the caller.

Every service records its security-relevant actions through the runtime's
:class:`AuditRecorder`; the caller's organisation, role and subject, the trace
id and the node name come from the call context, and a holder's id is replaced
by its keyed hash before anything is written. ``record`` returns only once the
event is durable, so an action is reported successful only after its event is.

Example::

    from audit_log.events import Action

    await runtime.recorder.record(
        Action.CATALOG_CHANGE, resource="1-01-001-0001-000001", details={"change": "publish"}
    )
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TypedDict, Unpack

from audit_log.events import Action, AuditEvent, Outcome
from audit_log.log import AuditLog
from zhida.auth.principal import Principal
from zhida.server.context import current_trace_id, optional_principal


class EventFields(TypedDict, total=False):
    """What a caller may say about an event; the rest comes from the call context."""

    outcome: Outcome
    reason: str | None
    principal: Principal | None
    resource: str | None
    licence_id: str | None
    holder_id: str | None  # hashed before it is stored
    purpose: str | None
    matter: str | None
    legal_basis: str | None
    details: Mapping[str, str] | None


class AuditRecorder:
    """Builds events from the call context and appends them to the node's log."""

    def __init__(self, log: AuditLog, node_name: str) -> None:
        self.log = log
        self.node_name = node_name

    def event(self, action: Action, **fields: Unpack[EventFields]) -> AuditEvent:
        """The event for ``action`` by the current caller (or ``principal``)."""
        who = fields.get("principal") or optional_principal()
        holder_id = fields.get("holder_id")
        return AuditEvent(
            action=action,
            time=datetime.now(UTC),
            outcome=fields.get("outcome", Outcome.OK),
            reason=fields.get("reason"),
            organisation=who.organisation if who else None,
            role=who.role.claim if who else None,
            subject=who.subject if who else None,
            resource=fields.get("resource"),
            licence_id=fields.get("licence_id"),
            holder_ref=self.log.holder_ref(holder_id) if holder_id else None,
            purpose=fields.get("purpose"),
            matter=fields.get("matter"),
            legal_basis=fields.get("legal_basis"),
            node=self.node_name,
            trace_id=current_trace_id() or None,
            details=dict(fields.get("details") or {}),
        )

    async def record(self, action: Action, **fields: Unpack[EventFields]) -> int:
        """Append an event (see :meth:`event`) and wait until it is durable; its index."""
        return await self.log.append_async(self.event(action, **fields))

    async def record_many(self, *records: tuple[Action, EventFields]) -> list[int]:
        """Append several events at once (one queue entry); wait until all are durable."""
        return await self.log.append_many_async([self.event(a, **f) for a, f in records])

    async def denied(self, method: str, reason: str) -> None:
        """Record a call refused for its credential or its role (``auth.failure``)."""
        await self.record(
            Action.AUTH_FAILURE, outcome=Outcome.DENIED, reason=reason, details={"method": method}
        )
