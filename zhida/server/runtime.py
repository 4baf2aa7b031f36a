"""What a running node holds: its configuration, database, blob store and token verifier.

Start-up has two steps. :func:`prepare_node` runs once per host (in the
supervising parent when there are several workers): it creates the data
directory, the development keys (``auth.dev_keys``) and upgrades the schema
(``database.auto_migrate``). :meth:`NodeRuntime.open` then runs in every
serving process and opens the connections.

Database and blob-store calls block; async handlers run them through
:meth:`NodeRuntime.run_blocking`, which uses a bounded thread pool and carries
the call's context (trace id, principal) into the thread.

Example::

    from zhida.config import load_config
    from zhida.server.runtime import NodeRuntime, prepare_node

    cfg = load_config(None)
    prepare_node(cfg)
    runtime = NodeRuntime.open(cfg)
    revision = await runtime.run_blocking(runtime.database.check)
    runtime.close()
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from audit_log.log import AuditLog
from zhida.auth.keys import ensure_dev_keys
from zhida.auth.verifier import TokenVerifier
from zhida.blobstore import BlobStore, open_blobstore
from zhida.config import Config
from zhida.db.engine import Database
from zhida.db.migrate import upgrade
from zhida.server.audit import AuditRecorder
from zhida.server.context import check_deadline

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("zhida.server.runtime")


def prepare_node(config: Config) -> str | None:
    """Data dir, development keys, migrations; return the schema revision migrated to.

    Returns None when ``database.auto_migrate`` is off (``zhida db upgrade`` is then
    the operator's job).
    """
    config.node.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_dev_keys(config)
    if not config.database.auto_migrate:
        return None
    revision = upgrade(config.database.url)
    log.info("database schema at revision %s", revision, extra={"revision": revision})
    return revision


class NodeRuntime:
    """Shared, process-wide resources of a serving node."""

    def __init__(
        self,
        config: Config,
        database: Database,
        blobstore: BlobStore,
        verifier: TokenVerifier,
        audit: AuditLog,
        *,
        max_threads: int | None = None,
    ) -> None:
        self.config = config
        self.database = database
        self.blobstore = blobstore
        self.verifier = verifier
        # One audit log per process: every service records through ``recorder``.
        self.audit = audit
        self.recorder = AuditRecorder(audit, config.node.name)
        # More threads than pooled connections would only queue inside the pool.
        threads = max_threads or min(64, config.database.pool_size + 4)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zhida-io")

    @classmethod
    def open(cls, config: Config) -> NodeRuntime:
        """Open database, blob store and verifier (after :func:`prepare_node`)."""
        verifier = TokenVerifier(config.auth)
        database = Database.from_config(config.database)
        try:
            blobstore = open_blobstore(config.blobstore)
            audit = AuditLog.open(config, database)
        except BaseException:
            database.dispose()
            raise
        return cls(config, database, blobstore, verifier, audit)

    async def run_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in the I/O thread pool with the caller's context; await its result.

        The call's deadline is honoured: ``fn`` is not started, in the loop or
        once it reaches a pool thread, if the deadline has already passed
        (DEADLINE_EXCEEDED, nothing done); the aio server cancels the waiting
        handler itself when the deadline passes later.
        """
        return await run_in_pool(self.executor, fn, *args, **kwargs)

    def close(self) -> None:
        """Stop the thread pool and close connections (idempotent)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.audit.close()  # flushes pending appends before the database goes
        self.database.dispose()
        self.blobstore.close()


async def run_in_pool(
    executor: Executor, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run ``fn`` in ``executor`` with the caller's context, honouring the call's deadline."""
    check_deadline()

    def job() -> T:
        check_deadline()  # the pool may have been busy: the client may have given up
        return fn(*args, **kwargs)

    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, contextvars.copy_context().run, job)
