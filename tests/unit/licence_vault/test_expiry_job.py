"""The node's periodic expiry job on a real runtime: stored expired, audited, retried, elected."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from audit_log.events import Action, AuditEvent, Outcome
from audit_log.search import SearchRequest, search_events
from licence_vault import expiry_job
from licence_vault.expiry_job import ExpiryJob, start_licence_expiry
from licence_vault.lifecycle import ExpiryReport
from licence_vault.model import LicenceStatus
from licence_vault.service_base import shared_vault
from licence_vault.vault import Actor, Vault
from tests.unit.licence_vault.conftest import deployment_config
from tests.unit.licence_vault.support import JIANGAN_SAMR, RESTAURANT, food_permit
from zhida.config import LicenceConfig
from zhida.errors import Unavailable
from zhida.server.runtime import NodeRuntime, prepare_node

BOUND = 60.0  # seconds: only keeps a broken job from hanging the test, never a measurement


@pytest.fixture
def runtime(deployment_template: Path, tmp_path: Path) -> Iterator[NodeRuntime]:
    """A node runtime (SQLite, audit log) on a copy of the session's signing deployment,
    with a tiny expiry interval."""
    directory = tmp_path / "node"
    shutil.copytree(deployment_template, directory)
    config = dataclasses.replace(
        deployment_config(directory), licence=LicenceConfig(expire_interval_seconds=0.02)
    )
    prepare_node(config)
    node = NodeRuntime.open(config)
    yield node
    node.close()


def _lapsed(vault: Vault, request_id: str = "fp-lapsed") -> str:
    """A food permit whose validity ended yesterday (issued with past dates)."""
    today = vault.today()
    request = food_permit(
        request_id, issue_date=today - timedelta(days=90), valid_until=today - timedelta(days=1)
    )
    return vault.issue(Actor(JIANGAN_SAMR, "clerk-wang"), request).licence.licence_id


def _expire_events(runtime: NodeRuntime) -> list[AuditEvent]:
    """licence.expire events found by the holder's search."""
    request = SearchRequest(holder_id=RESTAURANT, actions=(Action.LICENCE_EXPIRE,))
    return [stored.event() for stored in search_events(runtime.audit, request).events]


async def _until(condition: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while not condition():
        assert loop.time() < deadline, "the job did not get there"
        await asyncio.sleep(0.01)


def test_the_job_stores_expired_and_audits_each_licence_once(runtime: NodeRuntime) -> None:
    vault = shared_vault(runtime)
    lapsed = _lapsed(vault)
    current = vault.issue(Actor(JIANGAN_SAMR, "clerk-wang"), food_permit("fp-now")).licence
    assert current.valid_until is not None
    assert vault.get(lapsed).status is LicenceStatus.VALID  # not stored yet

    async def main() -> ExpiryJob:
        job = start_licence_expiry(runtime)
        assert job is not None
        await _until(lambda: job.runs >= 2)  # the second run finds nothing more to do
        await job.stop()
        return job

    job = asyncio.run(main())
    assert job.failures == 0
    assert not job.leader  # stop released the lock
    assert vault.get(lapsed).status is LicenceStatus.EXPIRED
    assert [e.action for e in vault.history(lapsed)[1]] == ["issue", "expire"]
    assert vault.get(current.licence_id).status is LicenceStatus.VALID
    (event,) = _expire_events(runtime)  # one event, found by the holder's id
    assert event.licence_id == lapsed
    assert event.outcome is Outcome.OK
    assert (event.organisation, event.role) == (JIANGAN_SAMR, "node")
    assert event.subject == "zhida-licence-expire"
    assert event.details["valid_until"] == (vault.today() - timedelta(days=1)).isoformat()
    assert event.trace_id  # the run's own trace id
    assert event.node == runtime.config.node.name


def test_a_failed_run_is_logged_and_retried(
    runtime: NodeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    vault = shared_vault(runtime)
    lapsed = _lapsed(vault)
    calls: list[int] = []

    def flaky() -> Vault:
        calls.append(1)
        if len(calls) == 1:
            raise Unavailable("database down", reason="DATABASE_UNAVAILABLE")
        return vault

    async def main() -> ExpiryJob:
        job = start_licence_expiry(runtime, vault=flaky)
        assert job is not None
        await _until(lambda: job.last_report is not None)
        await job.stop()
        return job

    with caplog.at_level(logging.WARNING, logger="zhida.licence"):
        job = asyncio.run(main())
    assert job.failures == 1
    assert "licence expiry run failed" in caplog.text
    assert job.last_report is not None
    assert job.last_report.expired == 1
    assert vault.get(lapsed).status is LicenceStatus.EXPIRED
    assert [e.licence_id for e in _expire_events(runtime)] == [lapsed]


def test_the_vault_is_opened_only_once_a_licence_is_due(
    runtime: NodeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[NodeRuntime] = []

    def opening(node: NodeRuntime) -> Vault:
        opened.append(node)
        return shared_vault(node)

    monkeypatch.setattr(expiry_job, "shared_vault", opening)

    async def main() -> ExpiryJob:
        job = start_licence_expiry(runtime)
        assert job is not None
        await _until(lambda: job.runs >= 1)
        await job.stop()
        return job

    job = asyncio.run(main())
    assert job.last_report is not None
    assert job.last_report.due == 0
    assert opened == []  # no signing deployment opened (or made) for nothing
    lapsed = _lapsed(shared_vault(runtime))
    once = ExpiryJob(runtime, 3600, expiry_job.node_vault_when_due(runtime))  # not started
    report = asyncio.run(once.run_once())
    assert report is not None
    assert report.expired == 1
    assert opened == [runtime]
    assert [e.licence_id for e in _expire_events(runtime)] == [lapsed]


def test_a_halted_run_ends_after_the_page_in_hand_and_audits_it(runtime: NodeRuntime) -> None:
    vault = shared_vault(runtime)
    lapsed = [_lapsed(vault, f"fp-lapsed-{i}") for i in range(3)]

    class OnePerPage:
        """The vault, one licence per page."""

        def expire_due(self, *, on_progress: Callable[[ExpiryReport], None]) -> ExpiryReport:
            return vault.expire_due(batch_size=1, on_progress=on_progress)

    job = ExpiryJob(runtime, 3600, lambda: cast(Vault, OnePerPage()))
    job.halt()  # as if SIGTERM came while the first page was in hand
    assert asyncio.run(job.run_once()) is None  # halted after that page
    expired = [i for i in lapsed if vault.get(i).status is LicenceStatus.EXPIRED]
    assert len(expired) == 1
    assert [e.licence_id for e in _expire_events(runtime)] == expired  # stored and audited


def test_one_job_per_data_dir_runs(runtime: NodeRuntime) -> None:
    never: Callable[[], Vault] = lambda: pytest.fail("the second job must not run")  # noqa: E731

    async def main() -> ExpiryJob:
        first = start_licence_expiry(runtime)
        assert first is not None
        await _until(lambda: first.leader)
        second = start_licence_expiry(runtime, vault=never)
        assert second is not None
        for _ in range(5):  # let it try the lock (it then waits to try again)
            await asyncio.sleep(0)
        assert first.leader  # still
        await second.stop()
        await first.stop()
        return second

    second = asyncio.run(main())
    assert not second.leader
    assert second.runs == 0


def test_an_interval_of_zero_starts_no_job(tmp_path: Path) -> None:
    config = dataclasses.replace(
        deployment_config(tmp_path), licence=LicenceConfig(expire_interval_seconds=0)
    )
    runtime = cast(Any, SimpleNamespace(config=config))
    assert start_licence_expiry(runtime) is None  # no loop needed: nothing is scheduled
    assert not (tmp_path / "licence-expiry.lock").exists()
