"""The parent of ``zhida serve --workers N``: spawn, watch, restart and stop worker processes.

Each worker is a fresh interpreter (``multiprocessing`` *spawn*: no state
inherited from a fork) running :func:`zhida.server.runner.worker_main`, bound
to the same port with ``SO_REUSEPORT``. The supervisor

* resolves ``node.listen`` port 0 to one port held open for the workers;
* points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh temporary directory before
  spawning, and serves ``metrics.listen`` from it, so one endpoint sums all
  workers;
* logs ``node started`` (listen, pid, worker pids) once every worker serves,
  and fails start-up (exit 2, one line) if any worker cannot start;
* restarts a worker that dies (at most :data:`MAX_RESTARTS` in
  :data:`RESTART_WINDOW` seconds, then gives up and exits 1);
* on SIGTERM/SIGINT forwards SIGTERM to every worker, waits for them to drain
  (``node.grace_seconds`` + a margin, then SIGKILL) and exits 0.

Example::

    from zhida.server.supervisor import Supervisor

    exit_code = Supervisor(config).run()   # config.node.workers > 1
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from zhida.config import Config
from zhida.errors import Unavailable
from zhida.server.logs import flush_logs
from zhida.server.metrics import MULTIPROC_ENV, mark_worker_dead, multiprocess_registry
from zhida.server.runner import (
    DUPLICATE_SIGNAL_SECONDS,
    reserve_port,
    start_metrics,
    worker_main,
)

log = logging.getLogger("zhida.server")

START_TIMEOUT = 120.0  # seconds for every worker to report it serves
STOP_MARGIN = 5.0  # seconds past grace before a worker is killed
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    pid: int = 0
    ready: bool = False


class Supervisor:
    """Runs ``config.node.workers`` worker processes on one port."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: dict[int, _Worker] = {}
        self._stopping = False
        self._signals = 0  # distinct signals (duplicates within a second count once)
        self._first_signal = 0.0
        self._restarts: collections.deque[float] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._listen = config.node.listen
        self._metrics_dir = ""
        self._worker_config = replace(config, node=replace(config.node, workers=1))

    # --- lifecycle ------------------------------------------------------------------

    def run(self) -> int:
        """Serve until a signal; return the exit code."""
        own_dir = not os.environ.get(MULTIPROC_ENV)
        if own_dir:
            os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="zhida-metrics-")
        self._metrics_dir = os.environ[MULTIPROC_ENV]
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        reservation: socket.socket | None = None
        endpoint = None
        try:
            self._listen, reservation = reserve_port(self.config.node.listen)
            for index in range(self.config.node.workers):
                self._spawn(index)
            failure = self._await_ready()
            if failure is not None:
                self._stop_all()
                raise Unavailable(failure, reason="WORKER_FAILED")
            if self._stopping:
                return self._stop_all()
            endpoint = start_metrics(
                self.config.metrics.listen, multiprocess_registry(self._metrics_dir)
            )
            log.info(
                "node started",
                extra={
                    "listen": self._listen,
                    "pid": os.getpid(),
                    "node": self.config.node.name,
                    "region": self.config.node.region_code,
                    "node_level": self.config.node.level.name,
                    "metrics": endpoint.address if endpoint is not None else "",
                    "workers": sorted(w.pid for w in self._workers.values()),
                },
            )
            code = self._supervise()
            stopped = self._stop_all()
            log.info("node stopped", extra={"pid": os.getpid()})
            flush_logs()
            return code or stopped
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if endpoint is not None:
                endpoint.close()
            if reservation is not None:
                reservation.close()
            for worker in self._workers.values():
                if worker.process.is_alive():
                    worker.process.kill()
            os.close(self._wake_r)
            os.close(self._wake_w)
            if own_dir:
                shutil.rmtree(self._metrics_dir, ignore_errors=True)
                os.environ.pop(MULTIPROC_ENV, None)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        now = time.monotonic()
        if self._signals == 0 or now - self._first_signal >= DUPLICATE_SIGNAL_SECONDS:
            self._signals += 1
            self._first_signal = self._first_signal or now
        self._stopping = True
        with contextlib.suppress(OSError):  # a full pipe: the loop is awake anyway
            os.write(self._wake_w, b"\0")

    def _spawn(self, index: int) -> None:
        reader, writer = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=worker_main,
            args=(self._worker_config, self._listen, index, writer),
            name=f"zhida-worker-{index}",
        )
        process.start()
        writer.close()
        self._workers[index] = _Worker(index, process, reader, pid=process.pid or 0)

    def _wait(self, timeout: float | None) -> list[object]:
        objects: list[object] = [self._wake_r]
        for worker in self._workers.values():
            objects.append(worker.process.sentinel)
            if not worker.ready and not worker.conn.closed:
                objects.append(worker.conn)
        ready = wait(objects, timeout)  # type: ignore[arg-type]
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)
        return list(ready)

    def _read_report(self, worker: _Worker) -> str | None:
        """Read a worker's start report; return its failure message, if any."""
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            worker.conn.close()
            return None  # it died before reporting: its sentinel says so
        if message[0] == "ready":
            worker.ready, worker.pid = True, int(message[1])
            log.info(
                "worker %d serving",
                worker.index,
                extra={"worker_pid": worker.pid, "listen": message[2]},
            )
            return None
        return str(message[1])

    def _await_ready(self) -> str | None:
        """Wait until every worker serves; the first failure's message, or None."""
        deadline = time.monotonic() + START_TIMEOUT
        while not all(w.ready for w in self._workers.values()):
            if self._stopping:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"workers did not start within {START_TIMEOUT:g} s"
            ready = self._wait(remaining)
            for worker in list(self._workers.values()):
                if worker.conn in ready:
                    failure = self._read_report(worker)
                    if failure is not None:
                        return failure
                if worker.process.sentinel in ready and not worker.ready:
                    worker.process.join()
                    return f"worker {worker.index} exited with code {worker.process.exitcode}"
        return None

    def _supervise(self) -> int:
        """Watch the workers until a signal; restart the dead. Returns 0, or 1 on giving up."""
        while not self._stopping:
            ready = self._wait(None)
            for worker in list(self._workers.values()):
                if worker.conn in ready:
                    failure = self._read_report(worker)
                    if failure is not None:
                        log.error("worker %d failed to restart: %s", worker.index, failure)
                dead = worker.process.sentinel in ready and not self._stopping
                if dead and not self._replace(worker):
                    return 1
        return 0

    def _replace(self, worker: _Worker) -> bool:
        worker.process.join()
        mark_worker_dead(worker.pid, self._metrics_dir)
        log.error(
            "worker %d (pid %d) exited with code %s",
            worker.index,
            worker.pid,
            worker.process.exitcode,
            extra={"worker_pid": worker.pid, "exit_code": worker.process.exitcode},
        )
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW:
            self._restarts.popleft()
        if len(self._restarts) >= MAX_RESTARTS:
            log.error(
                "workers keep dying (%d restarts in %g s): giving up", MAX_RESTARTS, RESTART_WINDOW
            )
            self._stopping = True
            return False
        self._restarts.append(now)
        self._spawn(worker.index)
        return True

    def _stop_all(self) -> int:
        """SIGTERM every worker, wait for the drain, kill stragglers; 0 if all exited 0."""
        log.info("stopping %d workers", len(self._workers))
        for worker in self._workers.values():
            if worker.process.is_alive():
                with_signal(worker.process, signal.SIGTERM)
        deadline = time.monotonic() + self.config.node.grace_seconds + STOP_MARGIN
        hurried = self._signals > 1
        code = 0
        for worker in self._workers.values():
            while worker.process.is_alive():
                if not hurried and self._signals > 1:  # a second signal: cut the grace short
                    hurried = True
                    for other in self._workers.values():
                        with_signal(other.process, signal.SIGTERM)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.error("worker %d did not stop in time: killing it", worker.index)
                    worker.process.kill()
                    worker.process.join()
                    break
                wait([worker.process.sentinel, self._wake_r], min(remaining, 1.0))
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 512)
            worker.process.join()
            if worker.pid:
                mark_worker_dead(worker.pid, self._metrics_dir)
            if worker.process.exitcode != 0:
                code = 1
        return code


def with_signal(process: BaseProcess, sig: signal.Signals) -> None:
    """Send ``sig`` to a worker process if it still runs."""
    if process.pid is not None and process.is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
