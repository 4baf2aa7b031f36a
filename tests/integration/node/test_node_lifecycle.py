"""Graceful shutdown on SIGTERM, and ``--workers N`` sharing one port."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.fixtures.node import NodeFactory
from tests.integration.node.helpers import REFLECTION_SERVICE, ReflectionStream, scrape
from zhida.node.v1 import node_service_pb2 as pb
from zhida.node.v1 import node_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

GRACE_SECONDS = 20


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status")
        try:
            if "State:\tZ" in status.read_text():
                return True  # exited, waiting for its (already gone) parent's reaper
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_drains_calls_in_flight_then_exits_zero(node_factory: NodeFactory) -> None:
    node = node_factory.start({"ZHIDA_NODE__GRACE_SECONDS": str(GRACE_SECONDS)}, name="drain")
    # Streams that are open (each has had an answer) when SIGTERM arrives.
    streams = [ReflectionStream(node.channel()) for _ in range(8)]
    for stream in streams:
        assert REFLECTION_SERVICE in stream.list_services()
    watch = health_pb2_grpc.HealthStub(node.channel()).Watch(health_pb2.HealthCheckRequest())
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    # A burst of unary calls on several connections, in flight as the signal lands.
    stubs = [pb_grpc.NodeServiceStub(node.channel(fresh_connection=True)) for _ in range(4)]
    metadata = node.auth()
    burst = [
        stubs[i % len(stubs)].Echo.future(
            pb.EchoRequest(payload=b"%d" % i * 1000), metadata=metadata, timeout=GRACE_SECONDS
        )
        for i in range(200)
    ]

    sent = time.monotonic()
    node.process.send_signal(signal.SIGTERM)
    codes = Counter(future.code() for future in burst)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    assert codes[grpc.StatusCode.OK] > 0
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    watch.cancel()

    # New calls are refused while the open streams are still being served. (One
    # that reaches gRPC in the instant its listener shuts may instead be
    # CANCELLED: gRPC core drops calls it has not handed to the server yet.)
    deadline = time.monotonic() + 10
    while True:
        with grpc.insecure_channel(node.address) as channel:
            stub = pb_grpc.NodeServiceStub(channel)
            try:
                stub.Echo(pb.EchoRequest(), metadata=metadata, timeout=2)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()
        if code is grpc.StatusCode.UNAVAILABLE:
            break
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED), code
        assert time.monotonic() < deadline, "new calls were never refused"
        time.sleep(0.05)
    # ... which carry on and end OK.
    for stream in streams:
        assert REFLECTION_SERVICE in stream.list_services()
    for stream in streams:
        assert stream.finish() is grpc.StatusCode.OK

    assert node.process.wait(GRACE_SECONDS) == 0
    assert time.monotonic() - sent < GRACE_SECONDS
    records = node.log_records()
    messages = [r["msg"] for r in records]
    assert "received SIGTERM: draining" in messages
    assert messages[-1] == "node stopped"
    assert not any(r["level"] == "error" for r in records)
    reflection_calls = [r for r in records if r.get("method", "").endswith("ServerReflectionInfo")]
    assert [r["code"] for r in reflection_calls] == ["OK"] * len(streams)


def test_workers_share_one_port_and_stop_together(node_factory: NodeFactory) -> None:
    node = node_factory.start(args=["--workers", "2"], name="workers")
    workers = set(node.started["workers"])
    assert len(workers) == 2
    assert node.pid not in workers

    calls = 24
    for i in range(calls):  # one connection each: the kernel spreads connections
        channel = node.channel(fresh_connection=True)
        stub = pb_grpc.NodeServiceStub(channel)
        metadata = (*node.auth(), ("x-trace-id", f"workers-{i}"))
        assert stub.WhoAmI(pb.WhoAmIRequest(), metadata=metadata, timeout=10).trace_id
        channel.close()

    def served(records: list[dict[str, Any]]) -> dict[str, int]:
        return {
            r["trace_id"]: r["pid"]
            for r in records
            if r["logger"] == "zhida.access" and str(r.get("trace_id", "")).startswith("workers-")
        }

    served_by = served(node.wait_for_records(lambda records: len(served(records)) == calls))
    assert len(served_by) == calls
    assert set(served_by.values()) == workers, "every worker should have served some calls"

    # One metrics endpoint (the supervisor's) adds up every worker.
    samples = scrape(node.metrics_address)
    key = (
        "zhida_rpc_calls_total",
        (("code", "OK"), ("method", "/zhida.node.v1.NodeService/WhoAmI")),
    )
    assert samples[key] == calls

    # A worker that dies is replaced, and the node keeps serving meanwhile.
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)

    def replacement(records: list[dict[str, Any]]) -> set[int]:
        return {
            int(r["worker_pid"])
            for r in records
            if str(r["msg"]).endswith(" serving") and r.get("worker_pid") not in workers
        }

    (new_pid,) = replacement(node.wait_for_records(lambda rs: bool(replacement(rs)), timeout=60))
    assert any(r["level"] == "error" and "exited" in r["msg"] for r in node.log_records())
    workers = (workers - {victim}) | {new_pid}
    with grpc.insecure_channel(node.address) as channel:
        reply = pb_grpc.NodeServiceStub(channel).WhoAmI(
            pb.WhoAmIRequest(), metadata=node.auth(), timeout=10
        )
        assert reply.subject

    assert node.stop(signal.SIGTERM) == 0
    assert all(_gone(pid) for pid in workers)
    stopped = [r["pid"] for r in node.log_records() if r["msg"] == "worker stopped"]
    assert sorted(stopped) == sorted(workers)
