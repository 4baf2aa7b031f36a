"""The SeaweedFS fixture itself: loopback-only sockets, enforced credentials.

Listening sockets are read from /proc (what ``ss -ltnp`` shows), matched to
weed's file descriptors, so the check needs no extra tools.

Example::

    .venv/bin/pytest tests/integration/blobstore/test_seaweedfs_fixture.py -q
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest
from minio.error import S3Error

from tests.fixtures.seaweedfs import S3Server

pytestmark = pytest.mark.integration

_TCP_LISTEN = "0A"


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _decode(addr: str, family: int) -> tuple[str, int]:
    host_hex, port_hex = addr.split(":")
    raw = bytes.fromhex(host_hex)
    # /proc/net prints the address as native-endian 32-bit words.
    words = struct.unpack(f"<{len(raw) // 4}I", raw)
    host = socket.inet_ntop(family, struct.pack(f">{len(words)}I", *words))
    return host, int(port_hex, 16)


def _listening(pid: int) -> set[tuple[str, int]]:
    mine = _socket_inodes(pid)
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == _TCP_LISTEN and cols[9] in mine:
                found.add(_decode(cols[1], family))
    return found


def test_weed_listens_on_loopback_only(s3_server: S3Server) -> None:
    sockets = _listening(s3_server.process.pid)
    ports = {port for _, port in sockets}
    assert int(s3_server.endpoint.rsplit(":", 1)[1]) in ports
    assert ports <= set(s3_server.ports.values()), "weed opened a port we did not choose"
    assert {host for host, _ in sockets} == {"127.0.0.1"}, sockets


def test_wrong_secret_is_refused(s3_server: S3Server) -> None:
    with pytest.raises(S3Error) as info:
        s3_server.client(secret_key="not-the-secret").list_buckets()
    assert info.value.code in ("AccessDenied", "SignatureDoesNotMatch")


def test_right_secret_is_accepted(s3_server: S3Server) -> None:
    s3_server.client().list_buckets()
