"""Start and stop the server processes a benchmark measures (loopback only)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import make_url

from zhida.localnode import LocalNode, free_port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Server:
    """A server process under measurement."""

    address: str
    pid: int
    env: dict[str, str]

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def bare_echo_server(tls: tuple[Path, Path, Path] | None = None) -> Iterator[Server]:
    """A bare grpc.aio echo server in its own process; ``tls``: (cert, key, CA) for mTLS."""
    with _bare_process("bench.bare_echo_server", *(str(p) for p in tls or ())) as server:
        yield server


@contextlib.contextmanager
def bare_fetch_server(setup: Path) -> Iterator[Server]:
    """The floor of a licence fetch (bench/bare_fetch_server.py), answering as ``setup`` says."""
    with _bare_process("bench.bare_fetch_server", str(setup)) as server:
        yield server


@contextlib.contextmanager
def bare_relay(provider: str) -> Iterator[Server]:
    """A bare grpc.aio relay to the DataProviderService at ``provider`` (bench/bare_relay.py)."""
    with _bare_process("bench.bare_relay", provider) as server:
        yield server


@contextlib.contextmanager
def _bare_process(module: str, *args: str) -> Iterator[Server]:
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", module, address, *args])
    try:
        wait_serving_bare(address, proc)
        yield Server(address, proc.pid, {})
    finally:
        stop(proc)


def wait_serving_bare(address: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    # The bare server has no health service: wait until the port accepts connections
    # (a TCP connect, so a TLS-only server counts as started too).
    deadline = time.monotonic() + timeout
    host, _, port = address.rpartition(":")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bare server exited with {proc.returncode}")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("bare server did not start")


@contextlib.contextmanager
def zhida_node(extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """A real `zhida serve` process on the embedded default."""
    with (
        tempfile.TemporaryDirectory(prefix="zhida-bench-") as data_dir,
        LocalNode.start(Path(data_dir), extra_env=extra_env) as node,
    ):
        yield Server(node.address, node.proc.pid, node.env)


PG_SERVER_URL = (
    os.environ.get("ZHIDA_BENCH_PG_URL")
    or os.environ.get("ZHIDA_TEST_PG_URL")
    or "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh database on the benchmark's PostgreSQL server, dropped afterwards.

    The server is ``$ZHIDA_BENCH_PG_URL``, else ``$ZHIDA_TEST_PG_URL``, else the
    local one; an unreachable server is an error naming it, never a skipped figure.
    """
    server = make_url(PG_SERVER_URL)
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"zhida_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise RuntimeError(f"benchmark PostgreSQL at {PG_SERVER_URL} unusable: {exc}") from None
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
