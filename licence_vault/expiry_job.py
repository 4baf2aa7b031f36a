"""The node's periodic licence expiry: :meth:`Vault.expire_due` every few minutes or hours.

:func:`start_licence_expiry` is called by the runner once the server is up;
it does nothing when ``licence.expire_interval_seconds`` is 0 (then
``zhida licence expire`` from cron does the work). Otherwise an
:class:`ExpiryJob` runs in the node's event loop: once soon after start
(``FIRST_RUN_SECONDS``, or the interval if shorter), then every interval.
Each run is :meth:`Vault.expire_due` in one of the runtime's I/O threads —
the event loop never waits on it — on the vault the LicenceVaultService uses
(:func:`licence_vault.service_base.shared_vault`), opened only once a licence
is due: a node without licences neither makes a development PKI for the job
nor fails each run for want of a production one.

For every licence a run stores expired, one ``licence.expire`` audit event
is recorded through the node's audit log, page by page as the run goes
(:attr:`~licence_vault.lifecycle.ExpiryReport.page`): the licence, its
holder (``holder_id``, so the holder's own search finds it), the end date;
who: the issuer — whose key signed the ``expire`` history record — acting
through the node (role ``node``, subject ``zhida-licence-expire``). A run
that fails (database down, audit log full) is logged and the next interval
tries again; the licences it did not reach are still due then.

With ``zhida serve --workers N`` every worker starts the job; a non-blocking
``flock`` on ``<data_dir>/licence-expiry.lock`` (:func:`zhida.server.leader.try_lock`)
elects the one that runs it, and another takes over within
``LEADER_RETRY_SECONDS`` if it dies. :meth:`ExpiryJob.stop` lets a run in
flight finish the page in hand (so what is stored is also audited), then
releases the lock; :meth:`ExpiryJob.halt` asks for that without waiting.

Example::

    job = start_licence_expiry(runtime)      # in the runner, after node.start()
    ...
    job.halt()                               # on SIGTERM, while calls drain
    await job.stop()                         # before runtime.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable

from audit_log.events import Action, AuditEvent
from licence_vault.days import licence_today
from licence_vault.lifecycle import EXPIRY_SUBJECT, ExpiredLicence, ExpiryReport
from licence_vault.model import LicenceStatus
from licence_vault.service_base import shared_vault
from licence_vault.sql import SqlLicenceStore
from licence_vault.vault import Vault
from zhida.auth.principal import Principal, Role
from zhida.server.audit import AuditRecorder
from zhida.server.context import TRACE_ID
from zhida.server.interceptor import new_trace_id
from zhida.server.leader import try_lock
from zhida.server.runtime import NodeRuntime

__all__ = [
    "ExpiryJob",
    "VaultWhenDue",
    "expiry_event",
    "node_vault_when_due",
    "start_licence_expiry",
]

log = logging.getLogger("zhida.licence")

FIRST_RUN_SECONDS = 5.0  # after start: let the node settle (a dev node makes its PKI)
LEADER_RETRY_SECONDS = 5.0
STOP_WAIT_SECONDS = 10.0  # longest wait for a run in flight to finish its page
LOCK_FILE = "licence-expiry.lock"


VaultWhenDue = Callable[[], Vault | None]
"""The vault to run on, called in an I/O thread; None: nothing is due, no run needed."""


def start_licence_expiry(
    runtime: NodeRuntime, *, vault: VaultWhenDue | None = None
) -> ExpiryJob | None:
    """Start the expiry job (None when ``licence.expire_interval_seconds`` is 0).

    ``vault``: default :func:`node_vault_when_due`.
    """
    interval = runtime.config.licence.expire_interval_seconds
    if interval <= 0:
        return None
    job = ExpiryJob(runtime, interval, vault or node_vault_when_due(runtime))
    job.start()
    return job


def node_vault_when_due(runtime: NodeRuntime) -> VaultWhenDue:
    """The runtime's shared vault, once at least one licence is due to expire (by the
    date of its default clock); None before."""
    store = SqlLicenceStore(runtime.database)  # for one query; the vault has its own

    def when_due() -> Vault | None:
        if not store.due_to_expire(licence_today(), limit=1):
            return None
        return shared_vault(runtime)

    return when_due


class _Halted(Exception):
    """Raised between pages when the job is stopping."""


class ExpiryJob:
    """The periodic expiry of one node process; see the module docstring."""

    def __init__(self, runtime: NodeRuntime, interval: float, vault: VaultWhenDue) -> None:
        self.runtime = runtime
        self.interval = interval
        self._vault = vault
        self.leader = False  # this process holds the lock and runs the job
        self.runs = 0  # runs finished, failed ones included
        self.failures = 0  # runs that failed
        self.last_report: ExpiryReport | None = None
        self._stopping = asyncio.Event()
        self._halt = threading.Event()  # seen by the run's thread between pages
        self._task: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name="licence-expiry")

    def halt(self) -> None:
        """Ask the job to end without waiting: no new run; a run in flight ends after its page."""
        self._stopping.set()
        self._halt.set()

    async def stop(self) -> None:
        """Halt, wait up to ``STOP_WAIT_SECONDS`` for a run in flight to finish its page,
        release the lock. Idempotent."""
        self.halt()
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=STOP_WAIT_SECONDS)
            if not done:  # a page stuck in the database: stop waiting for it
                log.warning("licence expiry run still in flight at shutdown; not waiting")
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
            self.leader = False

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until stopped; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _main(self) -> None:
        path = self.runtime.config.node.data_dir / LOCK_FILE
        try:
            while (fd := try_lock(path)) is None:
                if await self._sleep(LEADER_RETRY_SECONDS):
                    return
        except OSError as exc:
            log.error("licence expiry job not started: cannot lock %s: %s", path, exc)
            return
        self._lock_fd, self.leader = fd, True
        log.info(
            "licence expiry job started",
            extra={"interval_seconds": self.interval, "pid": os.getpid()},
        )
        delay = min(FIRST_RUN_SECONDS, self.interval)
        while not await self._sleep(delay):
            await self.run_once()
            delay = self.interval

    async def run_once(self) -> ExpiryReport | None:
        """One run in an I/O thread; its report, or None if it failed (logged) or was halted."""
        TRACE_ID.set(new_trace_id())  # one trace id for the run's audit events and logs
        try:
            report = await self.runtime.run_blocking(self._run)
        except _Halted:
            return None
        except Exception as exc:  # the database or audit log down: the next interval retries
            self.failures += 1
            log.warning(
                "licence expiry run failed; retried in %.0f s: %s: %s",
                self.interval,
                type(exc).__name__,
                exc,
                extra={"failures": self.failures},
            )
            return None
        finally:
            self.runs += 1
        self.last_report = report
        self._log(report)
        return report

    # -- in the I/O thread -----------------------------------------------------------------

    def _run(self) -> ExpiryReport:
        vault = self._vault()
        if vault is None:
            return ExpiryReport(licence_today())  # nothing due
        return vault.expire_due(on_progress=self._audit_page)

    def _audit_page(self, report: ExpiryReport) -> None:
        if report.page:
            region = self.runtime.config.node.region_code
            events = [expiry_event(self.runtime.recorder, item, region) for item in report.page]
            try:
                self.runtime.audit.sequencer.append_many(events)
            except Exception:
                # stored expired but not audited: name them for the operator
                ids = [item.licence_id for item in report.page]
                log.error(
                    "%d licences were stored expired but their licence.expire events could "
                    "not be recorded: %s",
                    len(ids),
                    ", ".join(ids[:20]) + (" …" if len(ids) > 20 else ""),
                )
                raise
        if self._halt.is_set():
            raise _Halted  # stopping: leave the rest for the next start

    def _log(self, report: ExpiryReport) -> None:
        counts = {
            "today": report.today.isoformat(),
            "due": report.due,
            "expired": report.expired,
            "skipped": report.skipped,
            "failed": report.failed,
        }
        if report.failed:
            first = "; ".join(f"{i}: {reason}" for i, reason, _ in report.failures[:5])
            log.warning(
                "licence expiry: %d licences could not be signed as expired (%s)",
                report.failed,
                first,
                extra=counts,
            )
        elif report.due:
            log.info("licence expiry: %d licences stored expired", report.expired, extra=counts)
        else:
            log.debug("licence expiry: nothing due", extra=counts)


def expiry_event(recorder: AuditRecorder, item: ExpiredLicence, region_code: str) -> AuditEvent:
    """The ``licence.expire`` event of one licence the job (or ``zhida licence expire``) stored."""
    # the issuer's act (its key signed the history record), done by the expiry job
    principal = Principal(
        subject=EXPIRY_SUBJECT,
        role=Role.NODE,
        organisation=item.issuer_code,
        region_code=region_code,
        expires_at=0,
    )
    return recorder.event(
        Action.LICENCE_EXPIRE,
        principal=principal,
        licence_id=item.licence_id,
        holder_id=item.holder_code,
        details={
            "status": LicenceStatus.EXPIRED.value,
            "valid_until": item.valid_until.isoformat(),
        },
    )
