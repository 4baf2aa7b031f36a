"""The floor for a licence fetch: the least a Python grpc.aio server must do per fetch.

What issue 5 counts as a fetch, done as cheaply as this design allows, with
nothing else: the bearer token compared with the one known token (what a
verified-token cache hit costs at least), one SQLite statement reading the
consent and the licence's JWS, the consent checked (organisation, matter, not
expired), one use record per fetch inserted and fsynced (``synchronous=FULL``)
before the answer, and a response of the node's own size (its bytes, with the
annotation id and time filled in). No policy, no audit log, no metrics, no
logging, no validation of codes.

The database work runs the way zhida's does: one thread takes every queued
fetch and writes the batch's use records in one transaction. (Doing it on the
event loop instead, per loop iteration, measured less than half as fast: the
loop waits for every fsync.)

Usage: ``python -m bench.bare_fetch_server 127.0.0.1:PORT SETUP.json``.
``SETUP.json`` holds the token, the consent, the licence (holder, type, JWS)
and the hex of a FetchLicencesResponse to answer with.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from zhida.licence.v1 import licence_vault_service_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]
_READ = (
    "SELECT 'c', organisation, matter_code, valid_until FROM consent WHERE consent_id = ?"
    " UNION ALL SELECT 'l', licence_id, jws, status FROM licence"
    " WHERE holder_code = ? AND type_code = ?"
)
_Item = tuple[pb.FetchLicencesRequest, "asyncio.Future[pb.FetchLicencesResponse]"]


class FloorStore:
    """The SQLite file: one consent, one licence, the use records."""

    def __init__(self, path: Path, setup: dict[str, Any]) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(
            "CREATE TABLE consent (consent_id TEXT PRIMARY KEY, organisation TEXT,"
            " matter_code TEXT, valid_until REAL);"
            "CREATE TABLE licence (licence_id TEXT PRIMARY KEY, holder_code TEXT,"
            " type_code TEXT, jws TEXT, status TEXT);"
            "CREATE INDEX licence_holder ON licence (holder_code, type_code);"
            "CREATE TABLE use_record (annotation_id TEXT PRIMARY KEY, licence_id TEXT,"
            " organisation TEXT, matter_code TEXT, used_at REAL);"
        )
        self.db.execute(
            "INSERT INTO consent VALUES (?, ?, ?, ?)",
            (setup["consent_id"], setup["organisation"], setup["matter_code"], time.time() + 86400),
        )
        self.db.execute(
            "INSERT INTO licence VALUES (?, ?, ?, ?, 'valid')",
            (setup["licence_id"], setup["holder_code"], setup["type_code"], setup["jws"]),
        )
        self.organisation = setup["organisation"]
        self.template = pb.FetchLicencesResponse.FromString(bytes.fromhex(setup["response"]))

    def run(self, batch: list[_Item]) -> list[pb.FetchLicencesResponse | Exception]:
        """Read, check and record a batch; each fetch's response or refusal."""
        now = time.time()
        out: list[pb.FetchLicencesResponse | Exception] = []
        uses: list[tuple[str, str, str, str, float]] = []
        for request, _future in batch:
            rows = self.db.execute(
                _READ, (request.consent_id, request.holder_code, request.type_codes[0])
            ).fetchall()
            consent = next((r for r in rows if r[0] == "c"), None)
            licences = [r for r in rows if r[0] == "l" and r[3] == "valid"]
            if (
                consent is None
                or consent[1] != self.organisation
                or consent[2] != request.matter_code
                or consent[3] < now
                or not licences
            ):
                out.append(PermissionError("no consent"))
                continue
            response = pb.FetchLicencesResponse()
            response.CopyFrom(self.template)
            item = response.licences[0]
            item.jws = licences[0][2]
            item.annotation.annotation_id = uuid.uuid4().hex
            item.annotation.made_at.CopyFrom(Timestamp(seconds=int(now)))
            uses.append(
                (item.annotation.annotation_id, licences[0][1], consent[1], consent[2], now)
            )
            out.append(response)
        if uses:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT INTO use_record VALUES (?, ?, ?, ?, ?)", uses)
            self.db.execute("COMMIT")  # fsynced: the use records are durable before the answer
        return out


class Floor:
    def __init__(self, store: FloorStore, token: str) -> None:
        self.store, self.token = store, token
        self.queue: deque[_Item] = deque()
        self.cond = threading.Condition()
        threading.Thread(target=self._thread, daemon=True).start()

    async def fetch(self, request: pb.FetchLicencesRequest, context: Context) -> Any:
        auth = dict(context.invocation_metadata() or ()).get("authorization")
        if auth != self.token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "token")
        future: asyncio.Future[pb.FetchLicencesResponse] = (
            asyncio.get_running_loop().create_future()
        )
        with self.cond:
            if not self.queue:
                self.cond.notify()
            self.queue.append((request, future))
        try:
            return await future
        except PermissionError:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no consent")

    def _thread(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                batch = list(self.queue)
                self.queue.clear()
            results = self.store.run(batch)
            loop = batch[0][1].get_loop()
            loop.call_soon_threadsafe(_settle, batch, results)


def _settle(batch: list[_Item], results: list[pb.FetchLicencesResponse | Exception]) -> None:
    for (_request, future), result in zip(batch, results, strict=True):
        if future.done():
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)


async def serve(address: str, setup_path: str) -> None:
    setup = json.loads(Path(setup_path).read_text())
    with tempfile.TemporaryDirectory(prefix="zhida-floor-") as directory:
        floor = Floor(FloorStore(Path(directory) / "floor.db", setup), setup["token"])
        handler = grpc.method_handlers_generic_handler(
            "zhida.licence.v1.LicenceVaultService",
            {
                "FetchLicences": grpc.unary_unary_rpc_method_handler(
                    floor.fetch,
                    request_deserializer=pb.FetchLicencesRequest.FromString,
                    response_serializer=pb.FetchLicencesResponse.SerializeToString,
                )
            },
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(address)
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
