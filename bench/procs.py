"""Start and stop the server processes a benchmark measures (loopback only)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from zhida.localnode import LocalNode, free_port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def bare_echo_server() -> Iterator[str]:
    """A bare grpc.aio echo server in its own process; yields its address."""
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "bench.bare_echo_server", address])
    try:
        wait_serving_bare(address, proc)
        yield address
    finally:
        stop(proc)


def wait_serving_bare(address: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    # The bare server has no health service: wait until the port accepts a channel.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bare echo server exited with {proc.returncode}")
        with grpc.insecure_channel(address) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                return
            except grpc.FutureTimeoutError:
                continue
    raise RuntimeError("bare echo server did not start")


@contextlib.contextmanager
def zhida_node(extra_env: dict[str, str] | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `zhida serve` process on the embedded default; yields (address, env)."""
    with (
        tempfile.TemporaryDirectory(prefix="zhida-bench-") as data_dir,
        LocalNode.start(Path(data_dir), extra_env=extra_env) as node,
    ):
        yield node.address, node.env
