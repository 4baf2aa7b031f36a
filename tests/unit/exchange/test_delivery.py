"""Minimised delivery: whatever a provider sends, only granted, releasable fields leave.

The :class:`~exchange.delivery.Deliverer` runs over the in-memory world of
``conftest.py`` (catalogue, negative list, grant index) with a fake provider
that sends more than any grant covers, a recorder that keeps the audit
events and a delivery book writing to a list.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from audit_log.events import Action, Outcome
from catalog_registry.model import Resource
from catalog_registry.negative_list import NegativeList
from catalog_registry.sample_data import PIPL_28
from exchange.catalogue_cache import MISSING, Missing
from exchange.delivery import Deliverer, DeliveryBook
from exchange.delivery_sql import Delivery
from exchange.minimise import MalformedRecord
from exchange.projection import project_changes, project_records
from exchange.provider import Query
from exchange.provider_client import GARBAGE, _lenient
from tests.unit.exchange.conftest import CONDITIONAL, UNCONDITIONAL, World, role_principal
from zhida.auth.principal import Role
from zhida.config import load_config
from zhida.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.provider.v1 import data_provider_service_pb2 as ppb

T = TypeVar("T")


def _rec(key: str, **fields: str) -> ppb.Record:
    return ppb.Record(key=key, fields=fields)


class FakeProvider:
    name = "fake"

    def __init__(self, records: list[ppb.Record]) -> None:
        self.records = records
        self.queries: list[Query] = []

    async def query(self, q: Query) -> pb.RequestDataResponse:
        self.queries.append(q)
        # a provider trying to speak for the node: fields 3-5 are the node's
        reply = pb.RequestDataResponse(records=self.records, grant_id="forged")
        reply.items_delivered.append("指纹")
        return reply

    async def stream(
        self, code: str, cursor: str, size: int, context: ppb.DeliveryContext
    ) -> AsyncIterator[pb.StreamDatasetResponse]:
        start = int(cursor or 0)
        for i in range(start, len(self.records), size):
            yield pb.StreamDatasetResponse(records=self.records[i : i + size], cursor=str(i + size))

    async def changes(
        self, code: str, cursor: str, follow: bool, context: ppb.DeliveryContext
    ) -> AsyncIterator[pb.ReceiveChangesResponse]:
        yield pb.ReceiveChangesResponse(
            changes=[
                ppb.Change(
                    operation=ppb.CHANGE_OPERATION_UPSERT, record=self.records[0], cursor="1"
                ),
                ppb.Change(
                    operation=ppb.CHANGE_OPERATION_DELETE, record=self.records[1], cursor="2"
                ),
            ],
            cursor="2",
        )


class Directory:
    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider

    def for_resource(self, resource: Resource) -> FakeProvider:
        return self.provider


@dataclass
class Recorder:
    events: list[tuple[Action, dict[str, Any]]] = field(default_factory=list)

    async def record(self, action: Action, **fields: Any) -> int:
        self.events.append((action, fields))
        return len(self.events)

    async def record_many(self, *records: tuple[Action, Any]) -> list[int]:
        return [await self.record(action, **fields) for action, fields in records]


class ListStore:
    def __init__(self) -> None:
        self.rows: list[Delivery] = []
        self.counts: dict[str, int] = {}

    def insert_many(self, deliveries: list[Delivery]) -> None:
        self.rows.extend(deliveries)

    def set_counts(self, counts: dict[str, int]) -> None:
        self.counts.update(counts)


class Runtime:
    def __init__(self) -> None:
        self.recorder = Recorder()
        self.executor = ThreadPoolExecutor(2)
        self.config = load_config(None, env={})

    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)


class Catalogue:
    def __init__(self, world: World) -> None:
        self.world = world
        self.refreshes = 0

    def refresh(self) -> None:
        self.refreshes += 1

    @property
    def negative(self) -> NegativeList:
        return self.world.negative

    @property
    def negative_version(self) -> int:
        return len(self.world.negative.list(None))

    def cached(self, code: str) -> Resource | Missing | None:
        return MISSING

    def load(self, code: str) -> Resource | None:
        return self.world.catalog.get_resource(code)


@dataclass
class Ctx:
    runtime: Runtime
    catalogue: None
    grants: Any
    clock: Any


@pytest.fixture
def setup(world: World) -> tuple[Deliverer, FakeProvider, Runtime, ListStore]:
    provider = FakeProvider(
        [
            _rec(
                "张三", 姓名="张三", 住址="武汉市江岸区", 户籍类别="城镇", 内部备注="x", 指纹="AAAA"
            ),
            _rec("110101199003074514", 姓名="李四", 住址="武昌", 公民身份号码="110101199003074514"),
            _rec("王五", 姓名="王五"),
        ]
    )
    runtime = Runtime()
    store = ListStore()
    ctx = Ctx(runtime, None, world.index, world.clock)
    book = DeliveryBook(store, runtime.executor)  # type: ignore[arg-type]
    deliverer = Deliverer(ctx, Directory(provider), book, Catalogue(world))  # type: ignore[arg-type]
    return deliverer, provider, runtime, store


async def _flushed(deliverer: Deliverer, work: Awaitable[T]) -> T:
    result = await work
    await deliverer.book.flush()
    return result


def _grant(world: World, code: str, items: tuple[str, ...], rate: int | None = None) -> None:
    request = world.book.apply(world.requester, world.spec(code, items))
    if request.state.value == "submitted":
        world.book.approve(world.provider_admin, request.id, rate_limit_per_minute=rate)


def test_only_granted_releasable_items_leave(
    world: World, setup: tuple[Deliverer, FakeProvider, Runtime, ListStore]
) -> None:
    deliverer, provider, runtime, store = setup
    _grant(world, UNCONDITIONAL, ("姓名", "住址"))
    # negative-listed after the grant: must not leave although the grant lists it
    world.negative.add(role_principal("hb-data", Role.ADMIN), UNCONDITIONAL, ("住址",), PIPL_28)
    request = pb.RequestDataRequest(resource_code=UNCONDITIONAL)
    reply = asyncio.run(_flushed(deliverer, deliverer.request_data(world.requester, request)))
    assert [dict(r.fields) for r in reply.records] == [
        {"姓名": "张三"},
        {"姓名": "李四"},
        {"姓名": "王五"},
    ]
    # a key leaves only when it leaves as a granted field anyway
    assert [r.key for r in reply.records] == ["张三", "", "王五"]
    assert list(reply.items_delivered) == ["姓名"]
    assert reply.grant_id != "forged"
    assert [(w.item, w.legal_basis) for w in reply.items_withheld] == [("住址", PIPL_28)]
    ctx_sent = provider.queries[0].context
    assert list(ctx_sent.granted_items) == ["姓名"]
    assert ctx_sent.requester_org == world.requester.organisation
    # one delivery record, two audit events, for the whole call
    (delivery,) = store.rows
    assert (delivery.kind, delivery.record_count, delivery.items) == ("query", 3, ("姓名",))
    actions = [a for a, _ in runtime.recorder.events]
    assert actions == [Action.DATA_REQUEST, Action.DATA_RELEASE]
    assert runtime.recorder.events[1][1]["details"]["records"] == "3"


def test_filters_must_name_released_items(
    world: World, setup: tuple[Deliverer, FakeProvider, Runtime, ListStore]
) -> None:
    deliverer, *_ = setup
    _grant(world, UNCONDITIONAL, ("姓名",))
    request = pb.RequestDataRequest(resource_code=UNCONDITIONAL, filters={"住址": "武昌"})
    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(deliverer.request_data(world.requester, request))
    assert caught.value.reason == "FILTER_NOT_GRANTED"
    assert caught.value.violations[0].field == "filters[住址]"


def test_no_grant_is_refused_and_audited(
    world: World, setup: tuple[Deliverer, FakeProvider, Runtime, ListStore]
) -> None:
    deliverer, provider, runtime, store = setup
    with pytest.raises(PermissionDenied) as caught:
        asyncio.run(
            deliverer.request_data(
                world.requester, pb.RequestDataRequest(resource_code=CONDITIONAL)
            )
        )
    assert caught.value.reason == "NO_GRANT"
    assert provider.queries == []
    assert store.rows == []
    ((action, fields),) = runtime.recorder.events
    assert action is Action.DATA_REQUEST
    assert fields["outcome"] is Outcome.DENIED


def test_rate_limit_counts_records(
    world: World, setup: tuple[Deliverer, FakeProvider, Runtime, ListStore]
) -> None:
    deliverer, *_ = setup
    _grant(world, CONDITIONAL, ("姓名", "公民身份号码"), rate=4)
    request = pb.RequestDataRequest(resource_code=CONDITIONAL)
    asyncio.run(deliverer.request_data(world.requester, request))  # 3 records: 1 + 2 taken
    with pytest.raises(ResourceExhausted) as caught:
        asyncio.run(deliverer.request_data(world.requester, request))
    assert caught.value.reason == "RATE_LIMITED"


def test_streams_are_minimised_counted_and_recorded_once(
    world: World, setup: tuple[Deliverer, FakeProvider, Runtime, ListStore]
) -> None:
    deliverer, _, runtime, store = setup
    _grant(world, UNCONDITIONAL, ("姓名", "户籍类别"))  # 户籍类别 conditional: approved

    async def run() -> list[pb.StreamDatasetResponse]:
        request = pb.StreamDatasetRequest(resource_code=UNCONDITIONAL, batch_size=2)
        return [b async for b in deliverer.stream_dataset(world.requester, request)]

    batches = asyncio.run(_flushed(deliverer, run()))
    assert [len(b.records) for b in batches] == [2, 1]
    assert {name for b in batches for r in b.records for name in r.fields} == {"姓名", "户籍类别"}
    (delivery,) = store.rows
    assert delivery.record_count == 3  # the count caught up before the row was written
    assert delivery.kind == "stream"
    assert [a for a, _ in runtime.recorder.events] == [Action.DATA_REQUEST, Action.DATA_RELEASE]


def test_changes_are_minimised_and_deletes_keep_only_the_key() -> None:
    changes = pb.ReceiveChangesResponse(
        changes=[
            ppb.Change(
                operation=ppb.CHANGE_OPERATION_DELETE, cursor="9",
                record=_rec("K", 统一社会信用代码="K", 企业名称="甲"),
            ),
        ]
    )  # fmt: skip
    project_changes(changes.changes, frozenset({"统一社会信用代码", "企业名称"}))
    assert changes.changes[0].record.key == "K"
    assert dict(changes.changes[0].record.fields) == {}
    with pytest.raises(MalformedRecord):
        project_changes([ppb.Change(record=_rec("K"), cursor="1")], frozenset())


def test_records_without_a_key_are_malformed() -> None:
    records = [_rec("a", x="1"), _rec("", x="2")]
    with pytest.raises(MalformedRecord) as caught:
        project_records(records, frozenset({"x"}))
    assert caught.value.reason == "MALFORMED_RECORD"
    assert "2" not in caught.value.message


def test_garbage_from_a_provider_is_not_a_message() -> None:
    parse = _lenient(pb.RequestDataResponse)
    assert parse(b"\xff\xff\xff\xff") is GARBAGE
    extra = pb.RequestDataResponse(records=[_rec("a", x="1")]).SerializeToString()
    extra += b"\xa2\x06\x05hello"  # an unknown field 100
    parsed = parse(extra)
    assert isinstance(parsed, pb.RequestDataResponse)
    assert (
        parsed.SerializeToString()
        == pb.RequestDataResponse(records=[_rec("a", x="1")]).SerializeToString()
    )
