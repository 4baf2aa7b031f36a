"""The node's background work with its federation neighbours (issue 8, items 3, 4, 6).

:func:`start_federation` is called by the runner once the server is up; it
does nothing on a standalone node (no ``[federation] parent``, ``children``
or ``listen``). Otherwise a :class:`FederationTasks` runs, in the node's
event loop, one loop per job:

=====================  ===============================================  =========================
job                    what                                             every
=====================  ===============================================  =========================
``catalog-push``       own region's catalogue changes → parent          ``sync_interval_seconds``
``catalog-pull``       parent's upper-level resources → here            ``sync_interval_seconds``
``licence-index``      the vault's new licences → own licence index     ``sync_interval_seconds``
``licence-index-push`` own index (own + children's entries) → parent    ``sync_interval_seconds``
``witness``            audit checkpoint → parent's cosignature          ``witness_interval_seconds``
=====================  ===============================================  =========================

The jobs that talk to the parent run only when a parent is configured; the
index push only when an uplink is given (the runner passes
:func:`exchange.federation.licence_routing.push_licence_index`, the parent's
``LicenceIndexService/PushLicenceIndex``). A step that finds a full
page runs again at once; one that fails is retried with exponential backoff
and jitter (at most ``MAX_BACKOFF_SECONDS``), logged on the first failure
and then every ``LOG_EVERY`` failures, so a parent that is down costs a few
log lines and resumes within a backoff once it is back. Cursors are durable
(:class:`~exchange.federation.state.SyncState`): a restart resumes.

With ``zhida serve --workers N`` every worker calls :func:`start_federation`;
a non-blocking ``flock`` on ``<data_dir>/federation.lock`` elects the one
that runs the jobs, and another takes over within ``LEADER_RETRY_SECONDS``
if it dies. Channels to the parent come from ``channels`` (default:
:func:`exchange.federation.transport.open_neighbour_channel`), opened in
the running loop.

Example::

    tasks = start_federation(runtime)        # in the runner, after node.start()
    ...
    if tasks is not None:
        await tasks.stop()                   # before runtime.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Awaitable, Callable, Sequence

import grpc

from catalog_registry.federation import Federation
from catalog_registry.sql import SqlCatalogRepository
from exchange.federation.catalog_sync import CatalogSync
from exchange.federation.licence_index import (
    MAX_PUSH,
    GapCursor,
    IndexEntry,
    LicenceIndex,
    LicenceIndexStore,
)
from exchange.federation.state import SyncState
from exchange.federation.witnessing import WitnessClient
from zhida.config import Config
from zhida.server.leader import try_lock
from zhida.server.runtime import NodeRuntime

__all__ = ["ChannelFactory", "FederationTasks", "LicenceIndexUplink", "start_federation"]

log = logging.getLogger("zhida.federation")

ChannelFactory = Callable[[str], grpc.aio.Channel]
LicenceIndexUplink = Callable[[grpc.aio.Channel, Sequence[IndexEntry]], Awaitable[None]]
"""Sends index entries to the parent (e.g. a ``PushLicenceIndex`` RPC on the channel)."""

MAX_BACKOFF_SECONDS = 30.0
LOG_EVERY = 20
LEADER_RETRY_SECONDS = 5.0
INDEX_OWN = "licence_index.own"
INDEX_PUSHED = "licence_index.pushed"


def _default_channels(config: Config) -> ChannelFactory:
    from exchange.federation.transport import open_neighbour_channel

    def open_channel(address: str) -> grpc.aio.Channel:
        return open_neighbour_channel(config, address)

    return open_channel


def start_federation(
    runtime: NodeRuntime,
    *,
    channels: ChannelFactory | None = None,
    uplink: LicenceIndexUplink | None = None,
) -> FederationTasks | None:
    """Start the federation jobs of this node (None on a standalone node)."""
    fed = runtime.config.federation
    if not (fed.parent or fed.children or fed.listen):
        return None
    tasks = FederationTasks(runtime, channels or _default_channels(runtime.config), uplink=uplink)
    tasks.start()
    return tasks


class FederationTasks:
    """The background jobs of one node; see the module docstring."""

    def __init__(
        self,
        runtime: NodeRuntime,
        channels: ChannelFactory,
        *,
        uplink: LicenceIndexUplink | None = None,
    ) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.channels = channels
        self.uplink = uplink
        self.state = SyncState(runtime.database)
        region = self.config.node.region_code
        self.federation = Federation(SqlCatalogRepository(runtime.database), region)
        self.index = LicenceIndex(
            LicenceIndexStore(runtime.database), region, runtime.audit.holder_ref
        )
        self.catalog: CatalogSync | None = None
        self.witness: WitnessClient | None = None
        self._parent: grpc.aio.Channel | None = None
        self._own_cursor: GapCursor | None = None
        self._push_cursor: GapCursor | None = None
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock_fd: int | None = None
        self.failures: dict[str, int] = {}

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._lead(), name="federation-leader"))

    async def stop(self) -> None:
        """Stop every job (a step in flight is cancelled) and close the parent channel."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._parent is not None:
            await self._parent.close(None)
            self._parent = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _try_lock(self) -> bool:
        self._lock_fd = try_lock(self.config.node.data_dir / "federation.lock")
        return self._lock_fd is not None

    async def _lead(self) -> None:
        while not self._try_lock():
            if await self._sleep(LEADER_RETRY_SECONDS):
                return
        fed = self.config.federation
        sync, witness = fed.sync_interval_seconds, fed.witness_interval_seconds
        jobs: list[tuple[str, Callable[[], Awaitable[bool]], float]] = [
            ("licence-index", self._index_own, sync)
        ]
        if fed.parent:
            self._parent = self.channels(fed.parent)
            run = self.runtime.run_blocking
            self.catalog = CatalogSync(self.federation, self.state, self._parent, run)
            self.witness = WitnessClient(self.runtime.audit, self.state, self._parent, run)
            jobs += [
                ("catalog-push", self.catalog.push_once, sync),
                ("catalog-pull", self.catalog.pull_once, sync),
                ("witness", self._witness_once, witness),
            ]
            if self.uplink is not None:
                jobs.append(("licence-index-push", self._push_index, sync))
        log.info(
            "federation jobs started",
            extra={"jobs": [name for name, _, _ in jobs], "parent": fed.parent},
        )
        self._tasks += [
            asyncio.create_task(self._loop(name, step, every), name=f"federation-{name}")
            for name, step, every in jobs
        ]

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until stopped; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _loop(self, name: str, step: Callable[[], Awaitable[bool]], every: float) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                more = await step()
                failures = 0
            except Exception as exc:  # a neighbour down, a refusal: log, back off, retry
                failures += 1
                self.failures[name] = self.failures.get(name, 0) + 1
                more = False
                if failures == 1 or failures % LOG_EVERY == 0:
                    log.warning(
                        "federation job %s failed (%d in a row): %s",
                        name,
                        failures,
                        _describe(exc),
                        extra={"job": name, "failures": failures},
                    )
            if more:
                await asyncio.sleep(0)
                continue
            delay = every
            if failures:
                delay = min(every * 2 ** min(failures, 10), MAX_BACKOFF_SECONDS)
                delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
            if await self._sleep(delay):
                return

    # -- steps ------------------------------------------------------------------------

    async def _index_own(self) -> bool:
        if self._own_cursor is None:
            position = await self.runtime.run_blocking(self.state.get_int, INDEX_OWN)
            self._own_cursor = GapCursor(position)
        cursor = self._own_cursor
        before = cursor.position
        await self.runtime.run_blocking(self.index.index_own, cursor)
        if cursor.position != before:
            await self.runtime.run_blocking(self.state.put, INDEX_OWN, str(cursor.position))
        return cursor.position - before >= self.index.batch

    async def _push_index(self) -> bool:
        assert self.uplink is not None and self._parent is not None  # noqa: PT018
        if self._push_cursor is None:
            position = await self.runtime.run_blocking(self.state.get_int, INDEX_PUSHED)
            self._push_cursor = GapCursor(position)
        cursor = self._push_cursor
        before = cursor.position
        entries = await self.runtime.run_blocking(self.index.pending, cursor, MAX_PUSH)
        if entries:
            try:
                await self.uplink(self._parent, entries)
            except BaseException:
                cursor.position = before  # not accepted: send them again
                raise
        if cursor.position != before:
            await self.runtime.run_blocking(self.state.put, INDEX_PUSHED, str(cursor.position))
        return len(entries) >= MAX_PUSH

    async def _witness_once(self) -> bool:
        assert self.witness is not None
        await self.witness.submit_once()
        return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"
