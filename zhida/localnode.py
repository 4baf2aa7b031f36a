"""Start real ``zhida serve`` processes on loopback: for the demo, benchmarks and tests.

A :class:`LocalNode` owns one child process with its own data directory,
listen port and metrics port, configured through ``ZHIDA_*`` environment
overrides. The federation launcher (:mod:`exchange.federation.local`) starts
several of them in parallel (:meth:`LocalNode.spawn`).

Example::

    from zhida.localnode import LocalNode

    with LocalNode.start(data_dir=tmp) as node:
        print(node.address)            # 127.0.0.1:PORT, health SERVING
        token = node.mint(Role.ADMIN)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from zhida.auth.principal import Role
from zhida.config import Config, load_config

# Ports are picked below Linux's ephemeral range (32768-60999 by default): a
# port the kernel hands out for bind(0) is also what it hands out as the source
# port of the next outgoing connection, so a port found free that way can be
# taken before the child process binds it (CI saw exactly that). Outside that
# range only an explicit bind can take it, and this process never hands the
# same port out twice.
_PORT_RANGE = range(20000, 32000)
_handed_out: set[int] = set()
_next_port = _PORT_RANGE.start + (os.getpid() * 7919) % len(_PORT_RANGE)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and not handed out before by this process."""
    global _next_port
    for _ in range(len(_PORT_RANGE)):
        port = _next_port
        _next_port = _PORT_RANGE.start + (port + 1 - _PORT_RANGE.start) % len(_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {_PORT_RANGE.start}-{_PORT_RANGE.stop - 1}")


class NodeStartError(RuntimeError):
    """The node process exited or never became healthy; carries its log tail."""


class LocalNode:
    def __init__(self, proc: subprocess.Popen[bytes], env: dict[str, str], log_path: Path) -> None:
        self.proc = proc
        self.env = env
        self.log_path = log_path
        self.config: Config = load_config(None, env=env)
        self.address = self.config.node.listen
        self.metrics_address = self.config.metrics.listen

    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        extra_env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        timeout: float = 60.0,
    ) -> LocalNode:
        """Start the node and wait until it is SERVING (NodeStartError otherwise)."""
        node = cls.spawn(data_dir, extra_env=extra_env, args=args)
        try:
            node.wait_serving(timeout)
        except NodeStartError:
            node.stop()
            raise
        return node

    @classmethod
    def spawn(
        cls,
        data_dir: Path,
        *,
        extra_env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        inherit_zhida_env: bool = True,
    ) -> LocalNode:
        """Start the node process without waiting: several start in parallel, then
        :meth:`wait_serving` on each (the federation launcher does). With
        ``inherit_zhida_env=False`` this process's ``ZHIDA_*`` settings are not
        passed on (a configuration file then decides everything)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        inherited = {
            k: v for k, v in os.environ.items() if inherit_zhida_env or not k.startswith("ZHIDA_")
        }
        env = {
            **inherited,
            "ZHIDA_NODE__DATA_DIR": str(data_dir),
            "ZHIDA_NODE__LISTEN": f"127.0.0.1:{free_port()}",
            "ZHIDA_METRICS__LISTEN": f"127.0.0.1:{free_port()}",
            **(extra_env or {}),
        }
        log_path = data_dir / "node.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "zhida.cli.main", "serve", *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return cls(proc, env, log_path)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise NodeStartError(
                        f"node exited with code {self.proc.returncode}:\n{self.log_tail()}"
                    )
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise NodeStartError(f"node not SERVING after {timeout:.0f}s:\n{self.log_tail()}")

    def mint(
        self,
        role: Role,
        *,
        organisation: str | None = None,
        region_code: str | None = None,
        subject: str | None = None,
        ttl_seconds: int = 3600,
    ) -> str:
        """A development token accepted by this node (signed with its dev keys)."""
        from zhida.auth.mint import DEMO_ORGS, mint_token

        return mint_token(
            self.config,
            role=role,
            organisation=organisation or next(iter(DEMO_ORGS.values())),
            region_code=region_code or self.config.node.region_code,
            subject=subject or role.claim,
            ttl_seconds=ttl_seconds,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the node and wait for it; returns its exit code (kills after timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> LocalNode:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
