"""Helpers of the delivery gRPC tests: example provider processes, uploads, streams.

:func:`start_provider` runs ``zhida provider example`` with a node's
environment (so it checks tokens against that node's JWKS) on a port chosen
before the node started (the node is configured with it) and waits for its
``provider started`` line.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

Metadata = tuple[tuple[str, str], ...]
START_TIMEOUT = 30.0


@dataclass
class ProviderProcess:
    process: subprocess.Popen[bytes]
    address: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_provider(
    env: Mapping[str, str],
    address: str,
    log_dir: Path,
    *,
    resources: tuple[str, ...],
    fault: str = "none",
    records: int = 300,
) -> ProviderProcess:
    """``zhida provider example`` on ``address`` serving ``resources``; waits until it listens."""
    log = log_dir / f"provider-{address.rpartition(':')[2]}.log"
    args = [sys.executable, "-m", "zhida.cli.main", "provider", "example", "--listen", address,
            "--records", str(records), "--fault", fault]  # fmt: skip
    for code in resources:
        args += ["--resource", code]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            args, env=dict(env), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                if json.loads(line).get("msg") == "provider started":
                    return ProviderProcess(process, address, log)
        if process.poll() is not None:
            pytest.fail(f"provider exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"provider did not start in {START_TIMEOUT:g} s:\n{log.read_text()}")


def csv_bytes(rows: list[dict[str, str]], columns: tuple[str, ...]) -> bytes:
    lines = [",".join(columns)]
    lines += [",".join(row.get(c, "") for c in columns) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def upload(
    stub: pb_grpc.ExchangeServiceStub,
    md: Metadata,
    code: str,
    data: bytes,
    *,
    key_item: str,
    changes: bool = False,
    upload_id: str = "",
    chunk: int = 64 * 1024,
) -> pb.UploadDatasetResponse:
    header = pb.UploadHeader(
        resource_code=code, key_item=key_item, upload_id=upload_id,
        mode=pb.UPLOAD_MODE_CHANGES if changes else pb.UPLOAD_MODE_SNAPSHOT,
        format=pb.DATASET_FORMAT_CSV,
    )  # fmt: skip

    def parts() -> Iterator[pb.UploadDatasetRequest]:
        yield pb.UploadDatasetRequest(header=header)
        for i in range(0, len(data), chunk):
            yield pb.UploadDatasetRequest(chunk=data[i : i + chunk])

    reply: pb.UploadDatasetResponse = stub.UploadDataset(parts(), metadata=md, timeout=60)
    return reply


def stream_keys(
    stub: pb_grpc.ExchangeServiceStub,
    md: Metadata,
    code: str,
    *,
    cursor: str = "",
    batch_size: int = 100,
    batches: int | None = None,
) -> tuple[list[str], str, set[str]]:
    """Keys streamed, the last cursor, every field name seen (stops after ``batches``)."""
    keys: list[str] = []
    names: set[str] = set()
    last = cursor
    call = stub.StreamDataset(
        pb.StreamDatasetRequest(resource_code=code, cursor=cursor, batch_size=batch_size),
        metadata=md,
        timeout=60,
    )
    for n, batch in enumerate(call, start=1):
        keys += [r.key for r in batch.records]
        names.update(name for r in batch.records for name in r.fields)
        last = batch.cursor
        if batches is not None and n == batches:
            call.cancel()  # type: ignore[no-untyped-call]
            break
    return keys, last, names
