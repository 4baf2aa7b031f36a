"""Prometheus metrics of the gRPC server: calls, latency, calls in flight.

* ``zhida_rpc_calls_total{method, code}`` counts finished calls by status code;
* ``zhida_rpc_duration_seconds{method}`` is a latency histogram;
* ``zhida_rpc_in_flight{method}`` counts calls being served.

The endpoint is plain HTTP on ``metrics.listen`` (loopback by default; ``""``
turns it off). With ``zhida serve --workers N`` every worker writes its values
to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess
mode) and the supervising parent serves one endpoint that adds them up.

Example::

    from zhida.server.metrics import RpcMetrics, serve_metrics

    metrics = RpcMetrics()
    echo = metrics.for_method("/zhida.node.v1.NodeService/Echo")
    echo.started(); echo.finished("OK", 0.0004)
    endpoint = serve_metrics("127.0.0.1:0", metrics.registry)
    print(f"curl http://127.0.0.1:{endpoint.port}/metrics")
    endpoint.close()
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    multiprocess,
    start_http_server,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

log = logging.getLogger("zhida.server.metrics")


def multiprocess_enabled() -> bool:
    """True when this process writes its metric values to PROMETHEUS_MULTIPROC_DIR."""
    return bool(os.environ.get(MULTIPROC_ENV))


class MethodMetrics:
    """The metric children of one method, bound once so a call costs no label lookups."""

    __slots__ = ("_by_code", "_calls", "_in_flight", "_latency", "method")

    def __init__(self, rpc: RpcMetrics, method: str) -> None:
        self.method = method
        self._calls = rpc.calls
        self._latency = rpc.latency.labels(method)
        self._in_flight = rpc.in_flight.labels(method)
        self._by_code: dict[str, Any] = {}

    def started(self) -> None:
        self._in_flight.inc()

    def finished(self, code: str, seconds: float) -> None:
        """Record one call that ended with ``code`` (e.g. ``"OK"``) after ``seconds``."""
        self._in_flight.dec()
        self._latency.observe(seconds)
        counter = self._by_code.get(code)
        if counter is None:
            counter = self._by_code[code] = self._calls.labels(self.method, code)
        counter.inc()


class RpcMetrics:
    """The server's metric families, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.calls = Counter(
            "zhida_rpc_calls",
            "gRPC calls finished, by method and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "zhida_rpc_duration_seconds",
            "gRPC call latency as seen by the server.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "zhida_rpc_in_flight",
            "gRPC calls being served.",
            ["method"],
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        if not multiprocess_enabled():
            ProcessCollector(registry=self.registry)
        self._methods: dict[str, MethodMetrics] = {}
        self._lock = threading.Lock()

    def for_method(self, method: str) -> MethodMetrics:
        """The (cached) metric children of ``method``."""
        found = self._methods.get(method)
        if found is None:
            with self._lock:
                found = self._methods.setdefault(method, MethodMetrics(self, method))
        return found


def multiprocess_registry(path: str) -> CollectorRegistry:
    """A registry that adds up the values every worker wrote under ``path``."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def mark_worker_dead(pid: int, path: str) -> None:
    """Forget a finished worker's live gauges (its counters stay in the totals)."""
    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` HTTP server."""

    host: str
    port: int
    _server: Any

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(listen: str, registry: CollectorRegistry) -> MetricsEndpoint:
    """Serve ``registry`` at ``http://<listen>/metrics`` from a daemon thread.

    ``listen`` is ``host:port``; port 0 picks a free port (see ``.port``).
    """
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    server, _thread = start_http_server(int(port), addr=host, registry=registry)
    return MetricsEndpoint(host, int(server.server_port), server)
