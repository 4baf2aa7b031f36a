"""The hosted provider's store on SQLite and PostgreSQL, and the hosted provider over it.

Snapshots diff against what is stored (unchanged records make no change),
changes upsert and delete, positions are stable cursors, the change log
counts per resource, a retried upload id is answered from the first attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from exchange.hosted import DELETE, UPSERT, UploadBatch, plan_upload
from exchange.hosted_sql import SqlHostedStore
from exchange.provider import HostedProvider, Query, frame_records, parse_cursor
from exchange.upload import encode_record
from zhida.db import Database
from zhida.errors import FailedPrecondition, InvalidArgument
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.provider.v1 import data_provider_service_pb2 as ppb

T = TypeVar("T")
CODE = "1-02-001-0000-000008"
OTHER = "1-02-001-0000-000009"
KEY = "统一社会信用代码"
AT = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


def _records(*keys: str, name: str = "甲") -> dict[str, bytes]:
    return {k: encode_record(k, {KEY: k, "企业名称": f"{name}{k}"}) for k in keys}


def _batch(
    upserts: dict[str, bytes],
    *,
    snapshot: bool = True,
    deletes: tuple[str, ...] = (),
    upload_id: str = "",
    content: str = "h",
    code: str = CODE,
) -> UploadBatch:
    return UploadBatch(
        resource_code=code, provider_org="114201000000301708", key_item=KEY,
        snapshot=snapshot, upserts=upserts, deletes=list(deletes), upload_id=upload_id,
        content_hash=content, uploaded_by="clerk", at=AT,
    )  # fmt: skip


def test_plan_leaves_unchanged_records_alone() -> None:
    old = {k: (i + 1, b) for i, (k, b) in enumerate(_records("a", "b").items())}
    plan = plan_upload(old, _records("a", "b"), [], snapshot=True, last_seq=2, key_item=KEY)
    assert plan.changes == []
    assert plan.total == 2
    assert plan.last_seq == 2
    renamed = _records("a", name="乙")
    plan = plan_upload(old, renamed, ["b", "zz"], snapshot=False, last_seq=2, key_item=KEY)
    assert [(c.seq, c.operation, c.key) for c in plan.changes] == [
        (3, UPSERT, "a"),
        (4, DELETE, "b"),
    ]
    assert plan.updates == [(1, 3, renamed["a"])]
    assert plan.removals == [2]


def test_snapshot_then_changes(database: Database) -> None:
    store = SqlHostedStore(database)
    assert store.dataset(CODE) is None
    assert store.last_seq(CODE) == 0
    first = store.apply(_batch(_records("k1", "k2", "k3")))
    assert (first.version, first.upserted, first.deleted, first.total) == (1, 3, 0, 3)
    assert [pos for pos, _ in store.scan(CODE, 0, 10)] == [1, 2, 3]

    # k2 changed, k3 gone, k4 new; k1 untouched
    snapshot = {**_records("k1", "k4"), **_records("k2", name="乙")}
    second = store.apply(_batch(snapshot))
    assert (second.version, second.upserted, second.deleted, second.total) == (2, 2, 1, 3)
    assert [(p, ppb.Record.FromString(b).key) for p, b in store.scan(CODE, 0, 10)] == [
        (1, "k1"),
        (2, "k2"),
        (4, "k4"),
    ]  # fmt: skip  (k2 keeps its position; k4 is positioned by its change)
    log = store.changes(CODE, 3, 10)
    assert [(c.seq, c.operation, c.key) for c in log] == [
        (4, UPSERT, "k4"), (5, UPSERT, "k2"), (6, DELETE, "k3"),
    ]  # fmt: skip
    assert dict(ppb.Record.FromString(log[2].body).fields) == {KEY: "k3"}
    assert log[0].changed_at == AT

    third = store.apply(_batch(_records("k9"), snapshot=False, deletes=("k1", "missing")))
    assert (third.upserted, third.deleted, third.total) == (1, 1, 3)
    assert store.get(CODE, "k9") == _records("k9")["k9"]
    assert store.get(CODE, "k1") is None
    info = store.dataset(CODE)
    assert info is not None
    assert (info.version, info.last_seq, info.record_count) == (3, 8, 3)
    assert store.last_seq(OTHER) == 0
    assert store.scan(OTHER, 0, 10) == []


def test_upload_ids_make_retries_idempotent(database: Database) -> None:
    store = SqlHostedStore(database)
    first = store.apply(_batch(_records("a"), upload_id="u-1"))
    again = store.apply(_batch(_records("a", "b"), upload_id="u-1"))
    assert again.replayed
    assert (again.version, again.total) == (first.version, first.total)
    assert store.dataset(CODE) is not None
    assert store.last_seq(CODE) == 1
    with pytest.raises(FailedPrecondition) as caught:
        store.apply(_batch(_records("a"), upload_id="u-1", content="other"))
    assert caught.value.reason == "UPLOAD_ID_REUSED"
    # the same id on another resource is another upload
    assert not store.apply(_batch(_records("a"), upload_id="u-1", code=OTHER)).replayed


def test_changes_must_keep_the_key_item(database: Database) -> None:
    store = SqlHostedStore(database)
    store.apply(_batch(_records("a")))
    rekeyed = dataclasses.replace(_batch(_records("b"), snapshot=False), key_item="企业名称")
    with pytest.raises(FailedPrecondition) as caught:
        store.apply(rekeyed)
    assert caught.value.reason == "KEY_ITEM_CHANGED"
    assert store.apply(dataclasses.replace(rekeyed, snapshot=True)).total == 1  # a snapshot may


def _direct() -> Callable[..., Any]:
    async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)

    return run


async def _collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


def test_hosted_provider_streams_queries_and_changes(database: Database) -> None:
    store = SqlHostedStore(database)
    store.apply(_batch(_records(*(f"k{i:02d}" for i in range(7)))))
    provider = HostedProvider(store, _direct(), poll_seconds=0.01)
    dctx = ppb.DeliveryContext()

    batches = asyncio.run(_collect(provider.stream(CODE, "", 3, dctx)))
    assert [len(b.records) for b in batches] == [3, 3, 1]
    assert [b.cursor for b in batches] == ["3", "6", "7"]
    rest = asyncio.run(_collect(provider.stream(CODE, "3", 3, dctx)))
    assert [r.key for b in rest for r in b.records] == [f"k{i:02d}" for i in range(3, 7)]
    assert asyncio.run(_collect(provider.stream(CODE, "7", 3, dctx))) == []

    one = asyncio.run(provider.query(Query(CODE, "k04", {}, 10, "")))
    assert [r.key for r in one.records] == ["k04"]
    assert one.records[0].fields["企业名称"] == "甲k04"
    none = asyncio.run(provider.query(Query(CODE, "nope", {}, 10, "")))
    assert list(none.records) == []
    page = asyncio.run(provider.query(Query(CODE, "", {"企业名称": "甲k05"}, 10, "")))
    assert [r.key for r in page.records] == ["k05"]
    assert page.next_page_token == ""
    paged = asyncio.run(provider.query(Query(CODE, "", {}, 4, "")))
    assert len(paged.records) == 4
    assert paged.next_page_token == "4"

    changes = asyncio.run(_collect(provider.changes(CODE, "5", False, dctx)))
    assert [c.cursor for m in changes for c in m.changes] == ["6", "7"]
    assert changes[-1].cursor == "7"
    assert changes[0].changes[0].operation == ppb.CHANGE_OPERATION_UPSERT


def test_a_follower_sees_a_later_upload(database: Database) -> None:
    store = SqlHostedStore(database)
    store.apply(_batch(_records("a")))
    provider = HostedProvider(store, _direct(), poll_seconds=0.01)

    async def scenario() -> list[str]:
        seen: list[str] = []

        async def follow() -> None:
            async for msg in provider.changes(CODE, "", True, ppb.DeliveryContext()):
                seen.extend(c.record.key for c in msg.changes)
                if len(seen) == 2:
                    return

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.05)
        store.apply(_batch(_records("b"), snapshot=False))
        provider.signal.notify(CODE)
        await asyncio.wait_for(task, 5)
        return seen

    assert asyncio.run(scenario()) == ["a", "b"]


def test_cursors_and_framing() -> None:
    assert parse_cursor("") == 0
    assert parse_cursor("42") == 42
    for bad in ("-1", "x", "１２", "9" * 25):
        with pytest.raises(InvalidArgument) as caught:
            parse_cursor(bad)
        assert caught.value.reason == "INVALID_CURSOR"
    big = encode_record("k", {"x": "y" * 5000})
    bodies = [encode_record("a", {"n": "1"}), big]
    reply = pb.StreamDatasetResponse.FromString(frame_records(bodies))
    assert [r.key for r in reply.records] == ["a", "k"]
    assert len(reply.records[1].fields["x"]) == 5000
