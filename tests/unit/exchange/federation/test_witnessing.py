"""A child's checkpoints cosigned by its parent's witness: growth, a lost record, a changed key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from audit_log.events import Action, AuditEvent
from audit_log.keys import load_audit_keys
from audit_log.log import AuditLog
from audit_log.sql import SqlLogStorage
from audit_log.witness import Witness, check_child
from exchange.federation.state import SyncState
from exchange.federation.witnessing import WitnessClient, last_cosigned
from zhida.audit.v1 import audit_service_pb2 as pb
from zhida.config import load_config
from zhida.db import Database
from zhida.db.migrate import upgrade
from zhida.errors import FailedPrecondition, ZhidaError
from zhida.server.status import status_for

T = TypeVar("T")


def database(path: Path) -> Database:
    url = f"sqlite:///{path}"
    upgrade(url)
    return Database(url)


class ParentStub:
    """The parent's AuditService.CosignCheckpoint, in process, errors as rich statuses."""

    def __init__(self, witness: Witness, region: str = "420100") -> None:
        self.witness = witness
        self.region = region
        self.calls: list[int] = []  # old_size of every request

    async def CosignCheckpoint(
        self, request: pb.CosignCheckpointRequest, timeout: float
    ) -> pb.CosignCheckpointResponse:
        self.calls.append(request.old_size)
        try:
            check_child(request.checkpoint.split("\n", 1)[0], "420102", self.region)
            result = self.witness.cosign(
                request.checkpoint,
                old_size=request.old_size,
                proof=list(request.consistency_proof),
                log_key=request.log_verifier_key or None,
            )
        except ZhidaError as exc:
            status = status_for(exc)
            raise grpc.aio.AioRpcError(
                status.code,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(*status.trailing_metadata),
                status.details,
                None,
            ) from None
        return pb.CosignCheckpointResponse(
            cosigned_checkpoint=result.cosigned_note,
            cosignature=result.cosignature,
            witness_verifier_key=self.witness.verifier_key,
        )


class NoChannel:
    """Enough of a channel for the generated stub's constructor (its stub is replaced)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@dataclass
class Setup:
    log: AuditLog
    state: SyncState
    client: WitnessClient
    parent: ParentStub
    parent_dir: Path

    def grow(self, n: int) -> None:
        for i in range(n):
            self.log.append(
                AuditEvent(action=Action.CATALOG_CHANGE, time=datetime.now(UTC), resource=f"r{i}")
            )


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)


def make_witness(directory: Path) -> Witness:
    keys = load_audit_keys(directory / "keys", "zhida.420100/zhida-420100", create=True)
    return Witness(SqlLogStorage(database(directory / "parent.db")), keys.cosigner)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    config = load_config(
        None,
        env={
            "ZHIDA_NODE__DATA_DIR": str(tmp_path / "county"),
            "ZHIDA_NODE__REGION_CODE": "420102",
            "ZHIDA_NODE__NAME": "zhida-420102",
        },
    )
    db = database(tmp_path / "county.db")
    log = AuditLog.open(config, db, create_keys=True)
    parent = ParentStub(make_witness(tmp_path / "parent"))
    state = SyncState(db)
    client = WitnessClient(log, state, NoChannel(), _blocking)  # type: ignore[arg-type]
    client.stub = parent  # type: ignore[assignment]
    yield Setup(log, state, client, parent, tmp_path / "parent")
    log.close()
    db.dispose()


def test_each_new_checkpoint_is_cosigned_once(setup: Setup) -> None:
    setup.grow(3)
    first = run(setup.client.submit_once())
    assert first is not None
    assert first.size == 3
    assert run(setup.client.submit_once()) is None  # nothing new
    setup.grow(2)
    second = run(setup.client.submit_once())
    assert second is not None
    assert second.size == 5
    assert second.witness_key == first.witness_key
    assert setup.parent.calls == [0, 3]  # the second one with a consistency proof from 3
    assert last_cosigned(setup.state) == second


def test_a_parent_that_lost_its_record_is_caught_up(setup: Setup) -> None:
    setup.grow(2)
    run(setup.client.submit_once())
    # the parent's database is gone (a new witness record, same key): it names size 0
    setup.parent.witness = Witness(
        SqlLogStorage(database(setup.parent_dir / "parent2.db")),
        load_audit_keys(
            setup.parent_dir / "keys", "zhida.420100/zhida-420100", create=False
        ).cosigner,
    )
    setup.grow(1)
    again = run(setup.client.submit_once())
    assert again is not None
    assert again.size == 3
    assert setup.parent.calls == [0, 2, 0]


def test_a_parent_with_another_witness_key_is_not_believed(setup: Setup, tmp_path: Path) -> None:
    setup.grow(1)
    run(setup.client.submit_once())
    setup.parent.witness = make_witness(tmp_path / "impostor")
    setup.grow(1)
    with pytest.raises(FailedPrecondition) as info:
        run(setup.client.submit_once())
    assert info.value.reason == "WITNESS_KEY_CHANGED"
    stored = last_cosigned(setup.state)
    assert stored is not None
    assert stored.size == 1  # the earlier cosignature is kept


def test_a_parent_refusal_is_raised(setup: Setup) -> None:
    setup.parent.region = "430000"  # not the county's parent
    setup.grow(1)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        run(setup.client.submit_once())
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert last_cosigned(setup.state) is None
