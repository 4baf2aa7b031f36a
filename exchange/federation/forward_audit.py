"""The audit events of a forwarded call (issue 8): one ``data.request`` per node.

Every node writes one ``data.request`` event for its part in a forwarded call,
with the shared trace id: ``details.federation`` is ``origin``, ``forward`` or
``serve``, with the method, target region, next hop, path and outcome. A
refusal is recorded with outcome ``denied`` (an authentication, policy,
precondition or not-found refusal) or ``error`` (anything else) and its reason.

:func:`audit_soon` starts a node's event as a task, so its encoding and group
commit run while the call travels on; the caller awaits it before it answers.
:func:`audit` records one at once (a refusal, or an error that came back from
further along). A failure to record is logged, never raised: the answer stands.

Example::

    recorded = audit_soon(runtime, spec, claims.target, details)   # the call is on its way
    reply = await answer
    await recorded
    ...
    await audit(runtime, spec, claims.target, details, error=error)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from audit_log.events import Action, Outcome
from exchange.federation.assertion import VerifiedCustody
from exchange.federation.targets import Forwardable
from zhida.errors import ZhidaError

__all__ = ["audit", "audit_soon", "outcome"]

log = logging.getLogger("zhida.federation")

_DENIED = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED", "FAILED_PRECONDITION", "NOT_FOUND"})


def outcome(error: ZhidaError) -> Outcome:
    """The event outcome of a failed call: a refusal is ``denied``, anything else ``error``."""
    return Outcome.DENIED if error.code.name in _DENIED else Outcome.ERROR


def audit_soon(
    runtime: Any,
    spec: Forwardable | None,
    target: str | None,
    details: dict[str, str],
    verified: VerifiedCustody | None = None,
) -> asyncio.Future[None]:
    """Start this node's ``data.request`` event now (a copy of ``details``): its group
    commit runs while the call travels on; the caller awaits it before answering."""
    return asyncio.ensure_future(audit(runtime, spec, target, dict(details), verified=verified))


async def audit(
    runtime: Any,
    spec: Forwardable | None,
    target: str | None,
    details: dict[str, str],
    *,
    error: ZhidaError | None = None,
    verified: VerifiedCustody | None = None,
) -> None:
    """One ``data.request`` event for this node's part in a forwarded call."""
    principal = verified.principal() if verified is not None else None
    resource = target if spec is not None and spec.target_kind == "resource" else None
    try:
        if error is None:
            await runtime.recorder.record(
                Action.DATA_REQUEST, principal=principal, resource=resource, details=details
            )
        else:
            await runtime.recorder.record(
                Action.DATA_REQUEST,
                outcome=outcome(error),
                reason=error.reason,
                principal=principal,
                resource=resource,
                details=details,
            )
    except Exception:
        # the answer stands even if it cannot be recorded; the operator must know
        log.exception("could not record a forwarded call in the audit log")
