"""Client-side helpers shared by the node integration tests."""

from __future__ import annotations

import queue
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from zhida.client import ErrorDetails, error_details

NODE_SERVICE = "zhida.node.v1.NodeService"
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"


def rpc_error(call: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    """Invoke ``call`` expecting it to fail; return the error."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as error:
        return error
    raise AssertionError(f"{call} succeeded; an error was expected")


def rich_details(error: grpc.RpcError) -> ErrorDetails:
    """The decoded google.rpc.Status of a failed call (must be present)."""
    details = error_details(error)
    assert details.domain == "zhida", f"no rich status on {error}"
    return details


def trailer(call: Any, key: str) -> str | None:
    """The value of trailing metadata ``key`` of a finished call or RpcError."""
    for k, v in call.trailing_metadata() or ():
        if k == key:
            return str(v)
    return None


def scrape(metrics_address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


class ReflectionStream:
    """A long-lived ServerReflectionInfo bidi stream driven one request at a time."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._requests: queue.Queue[reflection_pb2.ServerReflectionRequest | None] = queue.Queue()
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        self.call = stub.ServerReflectionInfo(self._iter())
        self._lock = threading.Lock()

    def _iter(self) -> Iterator[reflection_pb2.ServerReflectionRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def list_services(self) -> list[str]:
        """Send one list_services request and wait for its answer."""
        with self._lock:
            self._requests.put(reflection_pb2.ServerReflectionRequest(list_services=""))
            response = next(self.call)
        return [s.name for s in response.list_services_response.service]

    def finish(self) -> grpc.StatusCode:
        """Half-close and return the final status code."""
        self._requests.put(None)
        for _ in self.call:
            pass
        code: grpc.StatusCode = self.call.code()
        return code
