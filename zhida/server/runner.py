"""Run the node: one in-process server, or N worker processes sharing one port.

``workers = 1``: the aio server runs in this process, with the metrics
endpoint. ``workers = N > 1``: this process becomes a supervisor. It reserves
the port, spawns N workers (``multiprocessing`` *spawn*), each binding the same
port with ``SO_REUSEPORT`` so the kernel spreads connections over them, serves
one metrics endpoint for all of them (prometheus multiprocess mode), restarts a
worker that dies, and forwards SIGTERM/SIGINT.

Shutdown (SIGTERM or SIGINT): health goes NOT_SERVING, the listener closes,
calls in flight get ``node.grace_seconds`` to finish, then the process exits 0.
A second signal cuts the grace period short.

Example::

    from zhida.config import load_config
    from zhida.server.runner import run

    raise SystemExit(run(load_config(None)))   # what `zhida serve` does
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from exchange.federation.background import start_federation
from exchange.federation.licence_routing import push_licence_index
from licence_vault.expiry_job import ExpiryJob, start_licence_expiry
from zhida.config import Config
from zhida.errors import ConfigError, ZhidaError
from zhida.server.app import NodeServer, build_server
from zhida.server.logs import configure_logging, flush_logs
from zhida.server.metrics import MetricsEndpoint, RpcMetrics, serve_metrics
from zhida.server.runtime import NodeRuntime, prepare_node

log = logging.getLogger("zhida.server")

DUPLICATE_SIGNAL_SECONDS = 1.0


def run(config: Config) -> int:
    """Serve until SIGTERM/SIGINT; return the exit code (0 after a clean drain)."""
    configure_logging(config.log, config.node.name)
    prepare_node(config)
    if config.node.workers > 1:
        from zhida.server.supervisor import Supervisor

        return Supervisor(config).run()
    return asyncio.run(serve(config, signals=(signal.SIGTERM, signal.SIGINT)))


def start_metrics(listen: str, registry: CollectorRegistry) -> MetricsEndpoint | None:
    """Serve ``registry`` on ``listen`` (None when ``listen`` is empty).

    Raises ConfigError naming ``metrics.listen`` when the address cannot be bound.
    """
    if not listen:
        return None
    try:
        return serve_metrics(listen, registry)
    except OSError as exc:
        raise ConfigError("metrics.listen", f"cannot listen on {listen}: {exc.strerror}") from None


class _Signals:
    """First signal: drain. Another one at least a second later: stop now.

    Duplicates within a second are ignored: ``timeout`` and ``kill -TERM -<pgid>``
    deliver the same SIGTERM twice, and that must not skip the drain.
    """

    def __init__(self, signals: tuple[signal.Signals, ...]) -> None:
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()
        self._first = 0.0
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, self._received, sig)

    def _received(self, sig: signal.Signals) -> None:
        now = time.monotonic()
        if not self.stop.is_set():
            log.info("received %s: draining", sig.name, extra={"signal": sig.name})
            self._first = now
            self.stop.set()
        elif now - self._first >= DUPLICATE_SIGNAL_SECONDS and not self.hurry.is_set():
            log.warning("second %s: stopping without waiting for calls in flight", sig.name)
            self.hurry.set()


async def serve(
    config: Config,
    *,
    signals: tuple[signal.Signals, ...],
    listen: str | None = None,
    with_metrics_endpoint: bool = True,
    on_started: Callable[[NodeServer], None] | None = None,
) -> int:
    """Open the runtime, serve until a signal, drain, close. Returns 0."""
    sigs = _Signals(signals)
    runtime = NodeRuntime.open(config)
    endpoint: MetricsEndpoint | None = None
    expiry: ExpiryJob | None = None
    try:
        metrics = RpcMetrics()
        if with_metrics_endpoint:
            endpoint = start_metrics(config.metrics.listen, metrics.registry)
        node = await build_server(runtime, metrics=metrics, listen=listen)
        await node.start()
        # work with federation neighbours (None standalone); licence-index pages go up by RPC
        jobs = start_federation(runtime, uplink=push_licence_index)
        # stores 'expired' for lapsed licences every licence.expire_interval_seconds (None: 0)
        expiry = start_licence_expiry(runtime)
        # Everything loaded so far lives as long as the process: keep the cyclic
        # GC from re-scanning it (SQLAlchemy, Alembic, protobuf...) on every pass.
        gc.collect()
        gc.freeze()
        node_cfg = config.node
        log.info(
            "node started" if on_started is None else "worker started",
            extra={
                "listen": node.address,
                "federation_listen": node.federation_address,
                "pid": os.getpid(),
                "node": node_cfg.name,
                "region": node_cfg.region_code,
                "node_level": node_cfg.level.name,
                "metrics": endpoint.address if endpoint is not None else "",
                "services": list(node.service_names),
            },
        )
        if on_started is not None:
            on_started(node)
        await sigs.stop.wait()
        if jobs is not None:
            await jobs.stop()
        if expiry is not None:
            expiry.halt()  # a run in flight ends after its page while calls drain
        grace = node_cfg.grace_seconds
        stopping = asyncio.ensure_future(node.stop(grace))
        hurry = asyncio.ensure_future(sigs.hurry.wait())
        await asyncio.wait({stopping, hurry}, return_when=asyncio.FIRST_COMPLETED)
        hurry.cancel()
        if stopping.done():
            stopping.result()
        else:
            stopping.cancel()
            await node.server.stop(0)
    finally:
        if expiry is not None:  # waits for that page (bounded): it needs the runtime
            await expiry.stop()
        if endpoint is not None:
            endpoint.close()
        runtime.close()
    log.info("node stopped" if on_started is None else "worker stopped", extra={"pid": os.getpid()})
    flush_logs()
    return 0


def worker_main(config: Config, listen: str, index: int, ready: object) -> None:
    """Entry point of a worker process (spawned by the supervisor).

    Reports ``("ready", pid, address)`` or ``("failed", message)`` on ``ready``
    (a ``multiprocessing`` connection) and exits 0 after a drain.
    """
    from multiprocessing.connection import Connection

    assert isinstance(ready, Connection)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor forwards SIGTERM
    configure_logging(config.log, config.node.name)

    def started(node: NodeServer) -> None:
        with contextlib.suppress(OSError):
            ready.send(("ready", os.getpid(), node.address))

    try:
        code = asyncio.run(
            serve(
                config,
                signals=(signal.SIGTERM,),
                listen=listen,
                with_metrics_endpoint=False,
                on_started=started,
            )
        )
    except ZhidaError as exc:
        with contextlib.suppress(OSError):
            ready.send(("failed", exc.message))
        log.error("worker %d failed: %s", index, exc.message)
        flush_logs()
        sys.exit(2)
    sys.exit(code)


def reserve_port(listen: str) -> tuple[str, socket.socket | None]:
    """Resolve port 0 to a concrete free port, held with SO_REUSEPORT so workers can share it.

    Returns ``listen`` unchanged (and None) when it names a port already.
    """
    host, _, port = listen.rpartition(":")
    if port != "0":
        return listen, None
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((bare, 0))
    except OSError as exc:
        sock.close()
        raise ConfigError("node.listen", f"cannot listen on {listen}: {exc.strerror}") from None
    return f"{host}:{sock.getsockname()[1]}", sock
