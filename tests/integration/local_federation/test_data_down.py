"""数据直达基层 on the local federation: a national dataset streamed and subscribed from a county.

One four-level federation for the module (national 100000 → 湖北 420000 → 武汉
420100 → 江岸区 420102). 国家市场监督管理总局 hosts a national resource at the
national node (1000 records) and 江岸区市场监督管理局 holds a grant for five of its
items (``bench.federation.setup_national_resource``). The county department then
works at its own node only:

* ``StreamDataset`` of the national resource is carried by ``ForwardStream``
  county → city → province → national and relayed back message by message:
  every record, only the granted items, the path in the initial metadata, one
  audit event per node with the shared trace id;
* ``CreateSubscription`` is forwarded to national (where the grant is; the id
  names 100000), ``ReceiveChanges(follow)`` at the county receives a change
  uploaded at national afterwards, ``AcknowledgeChanges`` and
  ``ListSubscriptions`` (with ``x-zhida-target-region``) reach the same
  subscription;
* a county client that cancels its stream ends it at national (the national
  node's ``data.release`` event of that trace id is written on cancel);
* a department without a grant, and a region no node serves, are refused with
  the serving (or refusing) node's rich status.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import pytest

from bench.federation import (
    COUNTY,
    GRANTED,
    HOSTED_RECORDS,
    NATIONAL,
    REGIONS,
    RESOURCE,
    county_md,
    setup_national_resource,
    upload_change,
)
from exchange.federation.local import LOCAL_DEPARTMENTS, LocalFederation
from tests.integration.catalog_registry.support import failure
from zhida.audit.v1 import audit_service_pb2 as apb
from zhida.audit.v1 import audit_service_pb2_grpc as apb_grpc
from zhida.auth.principal import Role
from zhida.client import bearer
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

T = TypeVar("T")
PATH = f"{COUNTY},420100,420000,{NATIONAL}"
STRANGER = LOCAL_DEPARTMENTS["武汉市市场监督管理局"]  # no grant for the resource


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    fed = LocalFederation.start(tmp_path_factory.mktemp("data-down"), REGIONS)
    try:
        setup_national_resource(fed)
        yield fed
    finally:
        codes = fed.stop()
        assert codes == dict.fromkeys(fed.plans, 0), codes


def eventually(probe: Callable[[], T | None], *, within: float = 20.0, what: str = "") -> T:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f}s: {what}")
        time.sleep(0.2)


def exchange(fed: LocalFederation, region: str = COUNTY) -> pb_grpc.ExchangeServiceStub:
    return pb_grpc.ExchangeServiceStub(grpc.insecure_channel(fed.nodes[region].address))


def events(fed: LocalFederation, region: str, action: str, trace_id: str) -> list[Any]:
    stub = apb_grpc.AuditServiceStub(grpc.insecure_channel(fed.nodes[region].address))
    md = bearer(fed.token_for(region, Role.AUDITOR))
    reply = stub.SearchEvents(
        apb.SearchEventsRequest(actions=[action], page_size=1000), metadata=md, timeout=10
    )
    return [e for e in reply.events if e.trace_id == trace_id]


def test_a_county_stream_of_a_national_dataset_carries_only_granted_items(
    federation: LocalFederation,
) -> None:
    trace = f"down-stream-{uuid.uuid4().hex[:8]}"
    md = (*county_md(federation), ("x-trace-id", trace))
    call = exchange(federation).StreamDataset(
        pb.StreamDatasetRequest(resource_code=RESOURCE, batch_size=100), metadata=md, timeout=60
    )
    batches = list(call)
    assert dict(call.initial_metadata())["x-zhida-path"] == PATH
    records = [r for b in batches for r in b.records]
    assert len(batches) == HOSTED_RECORDS // 100
    assert len({r.key for r in records}) == HOSTED_RECORDS
    assert {name for r in records for name in r.fields} == set(GRANTED)
    assert all("住所" not in r.fields for r in records)  # not granted: never leaves national

    def hops() -> dict[str, dict[str, str]] | None:
        found = {}
        for region in REGIONS:
            for event in events(federation, region, "data.request", trace):
                if event.details.get("federation"):
                    found[region] = dict(event.details)
        return found if len(found) == len(REGIONS) else None

    seen = eventually(hops, what="a data.request event of the stream at every node")
    assert seen[COUNTY]["federation"] == "origin"
    assert seen["420100"]["federation"] == seen["420000"]["federation"] == "forward"
    assert seen[NATIONAL]["federation"] == "serve"
    assert all(d["stream"] == "true" for d in seen.values())
    # the national node's own delivery events name the county clerk's organisation
    released = eventually(
        lambda: events(federation, NATIONAL, "data.release", trace) or None,
        what="the national data.release event",
    )
    assert released[0].organisation == LOCAL_DEPARTMENTS["武汉市江岸区市场监督管理局"]


def test_a_national_change_reaches_the_county_subscriber(federation: LocalFederation) -> None:
    md = county_md(federation)
    stub = exchange(federation)
    sub = stub.CreateSubscription(
        pb.CreateSubscriptionRequest(resource_code=RESOURCE), metadata=md, timeout=30
    ).subscription
    assert sub.id.startswith(f"{NATIONAL}-")  # held by the national node, where the grant is
    stream = stub.ReceiveChanges(
        pb.ReceiveChangesRequest(subscription_id=sub.id, cursor=str(HOSTED_RECORDS), follow=True),
        metadata=md,
    )
    arrived: queue.Queue[pb.ReceiveChangesResponse] = queue.Queue()

    def read() -> None:
        try:
            for message in stream:
                arrived.put(message)
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()
    marker = 7_000_000 + int(uuid.uuid4().int % 1000)
    upload_change(federation, marker)
    wanted = f"{1000 + marker}.00"
    deadline = time.monotonic() + 30
    change = None
    while change is None:
        message = arrived.get(timeout=max(0.1, deadline - time.monotonic()))
        for c in message.changes:
            if c.record.fields.get("注册资本") == wanted:
                change = (c, message.cursor)
    stream.cancel()  # type: ignore[no-untyped-call]
    assert set(change[0].record.fields) <= set(GRANTED)
    acked = stub.AcknowledgeChanges(
        pb.AcknowledgeChangesRequest(subscription_id=sub.id, cursor=change[1]),
        metadata=md,
        timeout=30,
    ).subscription
    assert acked.acknowledged_cursor == change[1]
    listed = stub.ListSubscriptions(
        pb.ListSubscriptionsRequest(),
        metadata=(*md, ("x-zhida-target-region", NATIONAL)),
        timeout=30,
    ).subscriptions
    assert [s.acknowledged_cursor for s in listed if s.id == sub.id] == [change[1]]


def test_a_county_cancel_ends_the_stream_at_national(federation: LocalFederation) -> None:
    trace = f"down-cancel-{uuid.uuid4().hex[:8]}"
    md = county_md(federation)
    stub = exchange(federation)
    sub = stub.CreateSubscription(
        pb.CreateSubscriptionRequest(resource_code=RESOURCE), metadata=md, timeout=30
    ).subscription
    stream = stub.ReceiveChanges(
        # "0": the whole history (the empty cursor would start from the acknowledged one)
        pb.ReceiveChangesRequest(subscription_id=sub.id, cursor="0", follow=True),
        metadata=(*md, ("x-trace-id", trace)),
    )
    first = next(iter(stream))
    assert first.changes
    assert events(federation, NATIONAL, "data.release", trace) == []  # still open
    stream.cancel()  # type: ignore[no-untyped-call]
    # the national node's stream ended: its delivery is recorded (written when it closes)
    ended = eventually(
        lambda: events(federation, NATIONAL, "data.release", trace) or None,
        what="the national stream to end after the county client cancelled",
    )
    assert len(ended) == 1


def test_a_department_without_a_grant_is_refused_by_national(
    federation: LocalFederation,
) -> None:
    token = federation.token_for(COUNTY, Role.DEPARTMENT, organisation=STRANGER)
    stub = exchange(federation)
    details = failure(
        lambda: list(
            stub.StreamDataset(
                pb.StreamDatasetRequest(resource_code=RESOURCE), metadata=bearer(token), timeout=30
            )
        )
    )
    assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NO_GRANT")
    details = failure(
        stub.CreateSubscription,
        pb.CreateSubscriptionRequest(resource_code=RESOURCE),
        metadata=bearer(token),
        timeout=30,
    )
    assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NO_GRANT")


def test_a_region_no_node_serves_is_refused(federation: LocalFederation) -> None:
    md = (*county_md(federation), ("x-zhida-target-region", "430000"))
    details = failure(
        lambda: list(
            exchange(federation).StreamDataset(
                pb.StreamDatasetRequest(resource_code=RESOURCE), metadata=md, timeout=30
            )
        )
    )
    assert (details.code, details.reason) == (grpc.StatusCode.NOT_FOUND, "REGION_UNKNOWN")
