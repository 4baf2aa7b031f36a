"""Fixtures for the audit log tests: a log on each dialect with keys in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from audit_log.events import Action, AuditEvent, Outcome
from audit_log.keys import load_audit_keys
from audit_log.log import AuditLog
from audit_log.sql import SqlLogStorage
from zhida.db import Database

ORIGIN = "zhida.420102/test-node"
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
ORGS = ("114201000000301708", "11420102000040176F", "1142000000002001X9")


def make_event(i: int, **overrides: Any) -> AuditEvent:
    """A varied, deterministic event number ``i``."""
    fields: dict[str, Any] = {
        "action": (Action.LICENCE_FETCH, Action.DATA_REQUEST, Action.CONSENT_GIVE)[i % 3],
        "time": T0 + timedelta(seconds=i),
        "organisation": ORGS[i % 3],
        "role": "application",
        "subject": f"clerk-{i % 5}",
        "resource": f"R{i % 7:03d}",
        "licence_id": f"1.2.156.3005.2.test.{i}",
        "holder_ref": f"{i % 4:064x}",
        "purpose": "开办餐馆",
        "node": ORIGIN,
        "trace_id": f"{i:032x}",
    }
    if i % 10 == 9:
        fields.update(outcome=Outcome.DENIED, reason="NO_CONSENT")
    fields.update(overrides)
    return AuditEvent(**fields)


@pytest.fixture
def make_log(database: Database, tmp_path: Path) -> Iterator[Callable[..., AuditLog]]:
    """Build AuditLogs on the test database (several share it, like worker processes)."""
    logs: list[AuditLog] = []

    def build(**kwargs: Any) -> AuditLog:
        keys = load_audit_keys(tmp_path / "keys", ORIGIN, create=True)
        log = AuditLog(SqlLogStorage(database), keys, **kwargs)
        logs.append(log)
        return log

    yield build
    for log in logs:
        log.close()


@pytest.fixture
def audit(make_log: Callable[..., AuditLog]) -> AuditLog:
    """An empty audit log on each dialect."""
    return make_log()
