"""Small helpers the federation chapters share: waiting with a deadline, trailers, hop paths."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from exchange.federation.local import REGION_NAMES
from zhida.auth.principal import Role
from zhida.client import ErrorDetails, bearer, error_details
from zhida.demo import DemoContext, DemoError, channel, federation

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]
PATH_TRAILER = "x-zhida-path"


def label(region: str) -> str:
    """``江岸区 420102``."""
    return f"{REGION_NAMES.get(region, '')} {region}".strip()


def eventually(probe: Callable[[], T | None], *, within: float, what: str) -> tuple[T, float]:
    """Poll ``probe`` every 0.1 s until it returns a value; (value, seconds waited).

    DemoError naming ``what`` if nothing came within ``within`` seconds.
    """
    started = time.monotonic()
    deadline = started + within
    while True:
        value = probe()
        if value is not None:
            return value, time.monotonic() - started
        if time.monotonic() > deadline:
            raise DemoError(f"not within {within:.0f} s: {what}")
        time.sleep(0.1)


def trailer(call: Any, key: str) -> str:
    """The value of trailing metadata ``key`` of a finished call ('' if absent)."""
    return next((str(v) for k, v in call.trailing_metadata() or () if k == key), "")


def hop_path(call: Any) -> list[str]:
    """The regions a forwarded call passed, origin first (``x-zhida-path``)."""
    return [r for r in trailer(call, PATH_TRAILER).split(",") if r]


def check_path(what: str, path: Sequence[str], want: Sequence[str]) -> str:
    """``江岸区 420102 → 武汉市 420100 → …``; DemoError unless ``path`` is ``want``."""
    if list(path) != list(want):
        raise DemoError(f"{what} took the path {list(path)}, expected {list(want)}")
    return " → ".join(label(r) for r in path)


def new_trace() -> str:
    """A trace id of the demo's own (sent as ``x-trace-id``, kept by every node on the way)."""
    return f"demo-{secrets.token_hex(6)}"


def refused(call: Callable[..., object], request: object, md: Metadata) -> ErrorDetails:
    """The decoded refusal of a call that must fail."""
    try:
        call(request, metadata=md, timeout=30)
    except grpc.RpcError as err:
        return error_details(err)
    raise DemoError(f"{request.__class__.__name__} was accepted but must be refused")


def traced(ctx: DemoContext, region: str, trace: str, *, within: float = 10.0) -> list[Any]:
    """The audit events of ``trace`` in ``region``'s log (auditor's search), once there are any.

    A forwarding node's event is committed while the answer travels back:
    wait for it (DemoError after ``within`` seconds).
    """
    from zhida.audit.v1 import audit_service_pb2 as apb
    from zhida.audit.v1 import audit_service_pb2_grpc as apb_grpc

    stub = apb_grpc.AuditServiceStub(channel(ctx, region))
    auditor = bearer(federation(ctx).token_for(region, Role.AUDITOR, subject="auditor-zhao"))
    request = apb.SearchEventsRequest(page_size=200, newest_first=True)

    def search() -> list[Any] | None:
        events = stub.SearchEvents(request, metadata=auditor, timeout=30).events
        found = [e for e in events if e.trace_id == trace]
        return sorted(found, key=lambda e: e.index) or None

    events, _ = eventually(search, within=within, what=f"trace {trace} in {label(region)}'s log")
    return events
