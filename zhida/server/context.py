"""Per-call context: the caller's Principal, the call's trace id and its deadline.

The server interceptor (:mod:`zhida.server.interceptor`) sets both before a
handler runs and resets them afterwards; every RPC runs in its own asyncio task,
so the values never leak between calls. Code that runs in a worker thread sees
them too when it is started through :meth:`zhida.server.runtime.NodeRuntime.run_blocking`
(which copies the context).

Example::

    from zhida.server.context import current_principal, current_trace_id

    async def WhoAmI(self, request, context):
        principal = current_principal()  # raises Unauthenticated on a public method
        log.info("whoami for %s (trace %s)", principal.subject, current_trace_id())
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from zhida.auth.principal import Principal
from zhida.errors import DeadlineExceeded, Unauthenticated

TRACE_ID: ContextVar[str] = ContextVar("zhida_trace_id", default="")
PRINCIPAL: ContextVar[Principal | None] = ContextVar("zhida_principal", default=None)
# time.monotonic() value at which the client's deadline passes; None: no deadline.
DEADLINE: ContextVar[float | None] = ContextVar("zhida_deadline", default=None)


def current_trace_id() -> str:
    """The trace id of the call being served, or ``""`` outside a call."""
    return TRACE_ID.get()


def current_principal() -> Principal:
    """The verified caller of the call being served.

    Raises :class:`zhida.errors.Unauthenticated` (reason ``NO_PRINCIPAL``) when
    there is none: outside a call, or in a public method that skipped auth.
    """
    principal = PRINCIPAL.get()
    if principal is None:
        raise Unauthenticated("this call carries no verified caller", reason="NO_PRINCIPAL")
    return principal


def optional_principal() -> Principal | None:
    """The verified caller, or None (public methods, outside a call)."""
    return PRINCIPAL.get()


def time_remaining() -> float | None:
    """Seconds left before the call's deadline (may be negative), or None without one."""
    deadline = DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def check_deadline() -> None:
    """Raise :class:`zhida.errors.DeadlineExceeded` if the call's deadline has passed.

    Call it before starting work with side effects, so that work queued behind a
    busy pool is not done for a client that has already given up.
    """
    remaining = time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded("the call's deadline passed before the work started")
