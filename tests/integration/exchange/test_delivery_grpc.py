"""Data delivery over gRPC: a real node, real example provider processes, the hosted provider.

The node (SQLite) knows three providers by name: ``samr-registry`` (the
example business registry of 武汉市市场监督管理局, which sends more fields than
any grant covers), ``bad-registry`` (answers garbage) and ``slow-registry``
(answers after 30 s). 江岸区市场监督管理局 (ja-samr) receives data under its
grants; 江岸区政务服务和大数据管理局 (ja-gov) under a rate-limited one; the
hosted resource's data is uploaded by 武汉市市场监督管理局 itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from catalog_registry import wire as catalog_wire
from catalog_registry.model import ShareType
from catalog_registry.sample_data import DEPARTMENTS, PIPL_28
from exchange.sample_registry import EXTRA_ITEMS, ITEMS, KEY_ITEM, companies, company, registry_spec
from tests.fixtures.node import NodeFactory, NodeHandle
from tests.integration.catalog_registry.support import failure, fields
from tests.integration.exchange.delivery_support import (
    ProviderProcess,
    csv_bytes,
    start_provider,
    stream_keys,
    upload,
)
from tests.integration.exchange.requests_support import People, application_fields
from zhida.audit.v1 import audit_service_pb2 as apb
from zhida.audit.v1 import audit_service_pb2_grpc as apb_grpc
from zhida.catalog.v1 import catalog_service_pb2 as cpb
from zhida.catalog.v1 import catalog_service_pb2_grpc as cpb_grpc
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from zhida.localnode import free_port

pytestmark = pytest.mark.integration

Code = grpc.StatusCode
REGISTRY = "1-02-001-0000-000008"  # samr-registry, conditional
REGISTRY2 = "1-02-001-0000-000108"  # samr-registry, conditional (negative list, revocation)
BAD = "1-02-001-0000-000109"  # bad-registry, unconditional
SLOW = "1-02-001-0000-000110"  # slow-registry, unconditional
HOSTED = "1-02-001-0000-000111"  # the node's hosted provider, unconditional
GRANTED = ("企业名称", "住所", "法定代表人", KEY_ITEM)  # approved of the five asked for
PROVIDER_RECORDS = 300
HOSTED_RECORDS = 1200


class World:
    def __init__(self, node: NodeHandle, providers: dict[str, ProviderProcess]) -> None:
        self.node = node
        self.providers = providers
        self.people = People(node)
        self.stub = pb_grpc.ExchangeServiceStub(node.channel())
        self.clerk = self.people.dept("ja-samr")
        self.gov = self.people.dept("ja-gov")
        self.samr = self.people.dept("wh-samr")
        self.samr_admin = self.people.admin_of("wh-samr")


def _apply(w: World, md: tuple[tuple[str, str], ...], code: str, items: tuple[str, ...]) -> str:
    request = pb.ApplyForDataRequest(**application_fields(code, items))  # type: ignore[arg-type]
    return str(w.stub.ApplyForData(request, metadata=md).request.id)


@pytest.fixture(scope="module")
def world(node_factory: NodeFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    addresses = {
        n: f"127.0.0.1:{free_port()}" for n in ("samr-registry", "bad-registry", "slow-registry")
    }
    providers_env = ",".join(f"{n}={a}" for n, a in addresses.items())
    # 武汉's node: the catalogue holds its own region's resources (武汉市市场监督管理局's)
    env = {"ZHIDA_EXCHANGE__PROVIDERS": providers_env, "ZHIDA_NODE__REGION_CODE": "420100"}
    node = node_factory.start(env=env, name="exchange")
    logs = tmp_path_factory.mktemp("providers")
    providers = {
        "samr-registry": start_provider(node.env, addresses["samr-registry"], logs,
                                        resources=(REGISTRY, REGISTRY2), records=PROVIDER_RECORDS),
        "bad-registry": start_provider(node.env, addresses["bad-registry"], logs,
                                       resources=(BAD,), fault="malformed"),
        "slow-registry": start_provider(node.env, addresses["slow-registry"], logs,
                                        resources=(SLOW,), fault="slow"),
    }  # fmt: skip
    w = World(node, providers)
    catalog = cpb_grpc.CatalogServiceStub(node.channel())
    specs = [
        registry_spec(REGISTRY),
        registry_spec(REGISTRY2, name="市场主体登记信息(含住所)"),
        registry_spec(BAD, delivery_service="bad-registry", share=ShareType.UNCONDITIONAL),
        registry_spec(SLOW, delivery_service="slow-registry", share=ShareType.UNCONDITIONAL),
        registry_spec(HOSTED, delivery_service="", share=ShareType.UNCONDITIONAL, name="托管登记"),
    ]
    for spec in specs:
        catalog.RegisterResource(
            cpb.RegisterResourceRequest(resource=catalog_wire.spec_to_pb(spec)), metadata=w.samr
        )
        catalog.PublishResource(cpb.PublishResourceRequest(code=spec.code.text), metadata=w.samr)
    asked = (*GRANTED, "注册资本")
    request_id = _apply(w, w.clerk, REGISTRY, asked)
    w.stub.ApproveShareRequest(
        pb.ApproveShareRequestRequest(request_id=request_id, items=GRANTED), metadata=w.samr_admin
    )
    second = _apply(w, w.clerk, REGISTRY2, (KEY_ITEM, "企业名称", "住所"))
    w.stub.ApproveShareRequest(
        pb.ApproveShareRequestRequest(request_id=second), metadata=w.samr_admin
    )
    limited = _apply(w, w.gov, REGISTRY, (KEY_ITEM, "企业名称"))
    w.stub.ApproveShareRequest(
        pb.ApproveShareRequestRequest(request_id=limited, rate_limit_per_minute=2),
        metadata=w.samr_admin,
    )
    for code in (BAD, SLOW, HOSTED):
        _apply(w, w.clerk, code, ITEMS)  # unconditional: granted at once
    try:
        yield w
    finally:
        for provider in providers.values():
            provider.stop()


def test_a_grantee_gets_only_its_granted_items(world: World) -> None:
    target = company(17)
    reply = world.stub.RequestData(
        pb.RequestDataRequest(resource_code=REGISTRY, key=target[KEY_ITEM]), metadata=world.clerk
    )
    (record,) = reply.records
    assert set(record.fields) == set(GRANTED)  # the provider sent all of ITEMS + EXTRA_ITEMS
    assert record.key == target[KEY_ITEM]
    assert dict(record.fields) == {k: target[k] for k in GRANTED}
    assert list(reply.items_delivered) == sorted(GRANTED)
    assert reply.grant_id

    person = target["法定代表人"]
    page = world.stub.RequestData(
        pb.RequestDataRequest(resource_code=REGISTRY, filters={"法定代表人": person}, page_size=3),
        metadata=world.clerk,
    )
    assert 0 < len(page.records) <= 3
    assert all(r.fields["法定代表人"] == person for r in page.records)
    assert not {n for r in page.records for n in r.fields} & {*EXTRA_ITEMS, "注册资本"}

    bad = failure(
        world.stub.RequestData,
        pb.RequestDataRequest(resource_code=REGISTRY, filters={"注册资本": "10.00"}),
        metadata=world.clerk,
    )
    assert (bad.code, bad.reason) == (Code.INVALID_ARGUMENT, "FILTER_NOT_GRANTED")
    assert fields(bad) == ["filters[注册资本]"]


def test_a_negative_listed_item_never_leaves_and_revocation_stops_delivery(world: World) -> None:
    key = company(3)[KEY_ITEM]
    request = pb.RequestDataRequest(resource_code=REGISTRY2, key=key)
    before = world.stub.RequestData(request, metadata=world.clerk)
    assert "住所" in before.records[0].fields

    catalog = cpb_grpc.CatalogServiceStub(world.node.channel())
    catalog.AddNegativeEntry(
        cpb.AddNegativeEntryRequest(
            resource_code=REGISTRY2, item_names=["住所"], legal_basis=PIPL_28
        ),
        metadata=world.people.admin,
    )
    after = world.stub.RequestData(request, metadata=world.clerk)
    assert set(after.records[0].fields) == {KEY_ITEM, "企业名称"}
    assert [(w.item, w.legal_basis) for w in after.items_withheld] == [("住所", PIPL_28)]
    _, _, names = stream_keys(world.stub, world.clerk, REGISTRY2, batch_size=100)
    assert "住所" not in names

    grant_id = after.grant_id
    world.stub.RevokeGrant(
        pb.RevokeGrantRequest(grant_id=grant_id, reason="目的已达成"), metadata=world.samr_admin
    )
    revoked = failure(world.stub.RequestData, request, metadata=world.clerk)
    assert (revoked.code, revoked.reason) == (Code.PERMISSION_DENIED, "GRANT_REVOKED")
    stream = failure(
        lambda: list(world.stub.StreamDataset(pb.StreamDatasetRequest(resource_code=REGISTRY2),
                                              metadata=world.clerk))
    )  # fmt: skip
    assert stream.reason == "GRANT_REVOKED"


def test_no_grant_is_refused(world: World) -> None:
    police = world.people.dept("wh-police")
    refused = failure(
        world.stub.RequestData, pb.RequestDataRequest(resource_code=REGISTRY), metadata=police
    )
    assert (refused.code, refused.reason) == (Code.PERMISSION_DENIED, "NO_GRANT")
    sub = failure(
        world.stub.CreateSubscription,
        pb.CreateSubscriptionRequest(resource_code=HOSTED),
        metadata=police,
    )
    assert sub.reason == "NO_GRANT"


def test_a_rate_limited_grant(world: World) -> None:
    request = pb.RequestDataRequest(resource_code=REGISTRY, key=company(1)[KEY_ITEM])
    for _ in range(2):
        assert len(world.stub.RequestData(request, metadata=world.gov).records) == 1
    limited = failure(world.stub.RequestData, request, metadata=world.gov)
    assert (limited.code, limited.reason) == (Code.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert int(limited.metadata["retry_after_ms"]) > 0


def test_upload_then_stream_and_resume_from_a_cursor(world: World) -> None:
    rows = companies(HOSTED_RECORDS)
    reply = upload(world.stub, world.samr, HOSTED, csv_bytes(rows, ITEMS), key_item=KEY_ITEM,
                   upload_id="first")  # fmt: skip
    assert (reply.records_upserted, reply.records_total, reply.replayed) == (
        HOSTED_RECORDS, HOSTED_RECORDS, False,
    )  # fmt: skip
    again = upload(world.stub, world.samr, HOSTED, csv_bytes(rows, ITEMS), key_item=KEY_ITEM,
                   upload_id="first")  # fmt: skip
    assert again.replayed
    assert again.version == reply.version

    everything = [r[KEY_ITEM] for r in rows]
    keys, last, names = stream_keys(world.stub, world.clerk, HOSTED, batch_size=100)
    assert keys == everything
    assert names == set(ITEMS)
    head, cursor, _ = stream_keys(world.stub, world.clerk, HOSTED, batch_size=100, batches=5)
    assert head == everything[:500]
    rest, end, _ = stream_keys(world.stub, world.clerk, HOSTED, cursor=cursor, batch_size=333)
    assert rest == everything[500:]  # no gap, no duplicate
    assert end == last
    assert stream_keys(world.stub, world.clerk, HOSTED, cursor=end)[0] == []

    remote, _, remote_names = stream_keys(world.stub, world.clerk, REGISTRY, batch_size=64)
    assert len(remote) == PROVIDER_RECORDS
    assert remote_names == set(GRANTED)


def test_a_bad_upload_writes_nothing(world: World) -> None:
    rows = companies(3)
    rows[1] = {**rows[1], "注册资本": "很多"}
    bad = failure(upload, world.stub, world.samr, HOSTED, csv_bytes(rows, ITEMS), key_item=KEY_ITEM)
    assert (bad.code, bad.reason) == (Code.INVALID_ARGUMENT, "INVALID_UPLOAD")
    assert fields(bad) == ["rows[2].注册资本"]
    keys, _, _ = stream_keys(world.stub, world.clerk, HOSTED, batch_size=5000)
    assert len(keys) == HOSTED_RECORDS  # the snapshot of three rows did not replace anything

    other = failure(upload, world.stub, world.clerk, HOSTED, b"x\n", key_item=KEY_ITEM)
    assert (other.code, other.reason) == (Code.PERMISSION_DENIED, "NOT_PROVIDER")
    remote = failure(upload, world.stub, world.samr, REGISTRY, csv_bytes(rows[:1], ITEMS),
                     key_item=KEY_ITEM)  # fmt: skip
    assert (remote.code, remote.reason) == (Code.FAILED_PRECONDITION, "NOT_HOSTED")


def test_a_subscription_follows_new_uploads(world: World) -> None:
    sub = world.stub.CreateSubscription(
        pb.CreateSubscriptionRequest(resource_code=HOSTED), metadata=world.clerk
    ).subscription
    assert sub.grant_id
    assert not sub.acknowledged_cursor
    received: list[pb.ReceiveChangesResponse] = []
    seen = threading.Event()
    new = {**company(HOSTED_RECORDS + 7), "内部审查意见": "不应出现"}
    call = world.stub.ReceiveChanges(
        pb.ReceiveChangesRequest(subscription_id=sub.id, follow=True), metadata=world.clerk
    )

    def consume() -> None:
        try:
            for msg in call:
                received.append(msg)
                if any(c.record.key == new[KEY_ITEM] for c in msg.changes):
                    seen.set()
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    deadline = time.monotonic() + 20
    while sum(len(m.changes) for m in received) < HOSTED_RECORDS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(len(m.changes) for m in received) == HOSTED_RECORDS  # the history first

    started = time.monotonic()
    upload(world.stub, world.samr, HOSTED, csv_bytes([new], ITEMS), key_item=KEY_ITEM, changes=True)
    assert seen.wait(10), "the change uploaded after following started did not arrive"
    assert time.monotonic() - started < 5
    call.cancel()  # type: ignore[no-untyped-call]
    reader.join(5)
    change = next(c for m in received for c in m.changes if c.record.key == new[KEY_ITEM])
    assert change.operation == 1  # UPSERT
    assert set(change.record.fields) == set(ITEMS)  # 内部审查意见 is not even an item

    cursor = received[-1].cursor
    acked = world.stub.AcknowledgeChanges(
        pb.AcknowledgeChangesRequest(subscription_id=sub.id, cursor=cursor), metadata=world.clerk
    ).subscription
    assert acked.acknowledged_cursor == cursor
    rest = list(world.stub.ReceiveChanges(
        pb.ReceiveChangesRequest(subscription_id=sub.id), metadata=world.clerk, timeout=10
    ))  # fmt: skip
    assert rest == []  # nothing after the acknowledged cursor
    behind = failure(
        world.stub.AcknowledgeChanges,
        pb.AcknowledgeChangesRequest(subscription_id=sub.id, cursor="1"),
        metadata=world.clerk,
    )
    assert behind.reason == "CURSOR_BEHIND"
    listed = world.stub.ListSubscriptions(pb.ListSubscriptionsRequest(), metadata=world.clerk)
    assert [s.id for s in listed.subscriptions] == [sub.id]
    others = failure(
        world.stub.CancelSubscription,
        pb.CancelSubscriptionRequest(subscription_id=sub.id),
        metadata=world.gov,
    )
    assert others.reason == "NOT_SUBSCRIBER"
    world.stub.CancelSubscription(
        pb.CancelSubscriptionRequest(subscription_id=sub.id), metadata=world.clerk
    )
    cancelled = failure(
        lambda: list(world.stub.ReceiveChanges(
            pb.ReceiveChangesRequest(subscription_id=sub.id), metadata=world.clerk, timeout=10
        ))
    )  # fmt: skip
    assert (cancelled.code, cancelled.reason) == (
        Code.FAILED_PRECONDITION,
        "SUBSCRIPTION_CANCELLED",
    )


def test_a_provider_sending_garbage_leaks_nothing(world: World) -> None:
    bad = failure(
        world.stub.RequestData,
        pb.RequestDataRequest(resource_code=BAD, key=company(1)[KEY_ITEM]),
        metadata=world.clerk,
    )
    assert (bad.code, bad.reason) == (Code.INTERNAL, "MALFORMED_RECORD")
    assert company(1)[KEY_ITEM] not in bad.message
    stream = failure(
        lambda: list(world.stub.StreamDataset(pb.StreamDatasetRequest(resource_code=BAD),
                                              metadata=world.clerk, timeout=10))
    )  # fmt: skip
    assert stream.reason == "MALFORMED_RECORD"


def test_a_slow_provider_is_bounded_by_the_deadline(world: World) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        world.stub.RequestData(
            pb.RequestDataRequest(resource_code=SLOW, key="x"), metadata=world.clerk, timeout=1.5
        )
    assert caught.value.code() is Code.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 10


def test_deliveries_are_recorded_and_audited(world: World) -> None:
    mine = world.stub.ListDeliveries(pb.ListDeliveriesRequest(page_size=1000), metadata=world.clerk)
    kinds = {d.kind for d in mine.deliveries}
    assert kinds == {pb.DELIVERY_KIND_QUERY, pb.DELIVERY_KIND_STREAM, pb.DELIVERY_KIND_SUBSCRIPTION}
    clerk_org = DEPARTMENTS["ja-samr"].uscc
    assert all(d.requester_org == clerk_org for d in mine.deliveries)
    full = [d for d in mine.deliveries if d.kind == pb.DELIVERY_KIND_STREAM
            and d.resource_code == HOSTED and d.record_count == HOSTED_RECORDS]  # fmt: skip
    assert full
    assert full[0].purpose
    assert list(full[0].items) == sorted(ITEMS)
    query = next(d for d in mine.deliveries if d.resource_code == REGISTRY and d.kind == 1)
    assert list(query.items) == sorted(GRANTED)

    page = world.stub.ListDeliveries(pb.ListDeliveriesRequest(page_size=2), metadata=world.clerk)
    more = world.stub.ListDeliveries(
        pb.ListDeliveriesRequest(page_size=2, page_token=page.next_page_token), metadata=world.clerk
    )
    assert [d.id for d in (*page.deliveries, *more.deliveries)] == [
        d.id for d in mine.deliveries[:4]
    ]

    provider_view = world.stub.ListDeliveries(
        pb.ListDeliveriesRequest(resource_code=REGISTRY), metadata=world.samr_admin
    )
    orgs = {d.requester_org for d in provider_view.deliveries}
    assert orgs == {clerk_org, DEPARTMENTS["ja-gov"].uscc}
    police = world.stub.ListDeliveries(
        pb.ListDeliveriesRequest(), metadata=world.people.dept("wh-police")
    )
    assert list(police.deliveries) == []
    audit = apb_grpc.AuditServiceStub(world.node.channel())
    events = audit.SearchEvents(
        apb.SearchEventsRequest(actions=["data.request", "data.release"], page_size=1000),
        metadata=world.people.auditor,
    ).events
    released = {e.details["delivery_id"] for e in events if e.action == "data.release"}
    assert {d.id for d in mine.deliveries} <= released  # once per call or stream
    requested = [e for e in events if e.action == "data.request"]
    assert any(e.outcome == apb.OUTCOME_DENIED and e.reason == "NO_GRANT" for e in requested)
    assert len(events) < 200  # never one per record


def test_uploads_and_subscriptions_are_audited(world: World) -> None:
    audit = apb_grpc.AuditServiceStub(world.node.channel())
    actions = ["data.upload", "subscription.create", "subscription.cancel"]
    events = audit.SearchEvents(
        apb.SearchEventsRequest(actions=actions, page_size=1000), metadata=world.people.auditor
    ).events
    ok = [e for e in events if e.outcome == apb.OUTCOME_OK]
    denied = {(e.action, e.reason) for e in events if e.outcome == apb.OUTCOME_DENIED}
    uploads = [e for e in ok if e.action == "data.upload" and e.resource == HOSTED]
    assert uploads, "the hosted uploads were not recorded"
    assert {"version", "records_total", "records_upserted", "bytes"} <= set(uploads[0].details)
    created = {e.details["subscription_id"] for e in ok if e.action == "subscription.create"}
    cancelled = {e.details["subscription_id"] for e in ok if e.action == "subscription.cancel"}
    assert cancelled
    assert cancelled <= created
    assert ("subscription.create", "NO_GRANT") in denied
    assert ("subscription.cancel", "NOT_SUBSCRIBER") in denied


def test_the_data_cli(world: World, tmp_path: Path) -> None:
    def zhida(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "zhida.cli.main", "data", *args,
             "--address", world.node.address, "--org", "ja-samr"],
            env=world.node.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    key = company(9)[KEY_ITEM]
    done = zhida("request", REGISTRY, "--key", key)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert json.loads(line) == {"key": key, "fields": {k: company(9)[k] for k in GRANTED}}
    out = tmp_path / "hosted.jsonl"
    done = zhida("stream", HOSTED, "--batch-size", "500", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == HOSTED_RECORDS + 1
    refused = zhida("request", BAD, "--key", key)
    assert refused.returncode == 2
    assert "MALFORMED_RECORD" in refused.stderr


def test_a_provider_that_is_down(world: World) -> None:
    world.providers["samr-registry"].stop()
    down = failure(
        world.stub.RequestData,
        pb.RequestDataRequest(resource_code=REGISTRY, key=company(2)[KEY_ITEM]),
        metadata=world.clerk,
        timeout=20,
    )
    assert (down.code, down.reason) == (Code.UNAVAILABLE, "PROVIDER_UNAVAILABLE")
