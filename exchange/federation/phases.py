"""Per-phase timestamps of a forwarded call at one node, for measuring (issue 8).

Off unless the node runs with ``ZHIDA_FEDERATION_PHASES=<file>``: then every
``Forward`` served (and every call originated) appends one JSON line to
``<file>.<pid>`` — the node's role (``origin`` / ``forward`` / ``serve``), the
trace id and, for each phase reached, the milliseconds since the call arrived,
e.g. ``{"role": "forward", "trace": "…", "verified": 0.61, "replay": 0.83,
"sent": 0.97, "reply": 9.12, "audited": 9.13, "answered": 9.15}``. Marks made
in a worker thread (:meth:`Federation.handle` verifies in the I/O pool, which
copies the context) land on the same record. When off, :func:`mark` is one
context-variable lookup.

Example::

    record = start("forward")        # None when off
    mark("verified")
    finish(record, trace_id)
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextvars import ContextVar

__all__ = ["ENV", "finish", "mark", "start"]

ENV = "ZHIDA_FEDERATION_PHASES"

_PATH = os.environ.get(ENV, "")
_CURRENT: ContextVar[_Record | None] = ContextVar("zhida_federation_phases", default=None)
_LOCK = threading.Lock()


class _Record:
    __slots__ = ("marks", "role", "t0")

    def __init__(self, role: str) -> None:
        self.role = role
        self.t0 = time.perf_counter()
        self.marks: list[tuple[str, float]] = []


def start(role: str) -> _Record | None:
    """A new record for this call (in the current context), or None when off."""
    if not _PATH:
        return None
    record = _Record(role)
    _CURRENT.set(record)
    return record


def mark(name: str) -> None:
    """Note that the current call reached phase ``name`` (no-op when off)."""
    record = _CURRENT.get()
    if record is not None:
        record.marks.append((name, time.perf_counter()))


def finish(record: _Record | None, trace_id: str) -> None:
    """Append ``record``'s line to the phases file (no-op when off)."""
    if record is None:
        return
    line: dict[str, object] = {"role": record.role, "trace": trace_id}
    for name, when in record.marks:
        line[name] = round((when - record.t0) * 1000, 3)
    with _LOCK, open(f"{_PATH}.{os.getpid()}", "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
