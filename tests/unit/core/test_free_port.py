"""free_port: ports for child processes that outgoing connections cannot take first."""

from __future__ import annotations

import socket
from pathlib import Path

from zhida import localnode
from zhida.localnode import free_port


def _ephemeral_range() -> range:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return range(int(low), int(high) + 1)


def test_ports_are_distinct_and_outside_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert not set(ports) & set(_ephemeral_range())


def test_a_port_someone_listens_on_is_passed_over() -> None:
    nxt = localnode._next_port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", nxt))
        taken.listen()
        assert free_port() != nxt
