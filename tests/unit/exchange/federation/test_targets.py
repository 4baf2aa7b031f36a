"""Forwardable methods, their target regions, the headers, the region cache."""

from __future__ import annotations

import doctest

import pytest

from exchange.federation import targets
from exchange.federation.assertion import TARGET_KINDS
from exchange.federation.targets import (
    FORWARDABLE,
    RegionCache,
    digest_input,
    idempotency_header,
    subscription_region,
    target_region_header,
)
from zhida.auth.policy import RPC_POLICY
from zhida.errors import InvalidArgument
from zhida.exchange.v1 import exchange_service_pb2 as xpb
from zhida.licence.v1 import licence_vault_service_pb2 as lpb


def test_module_examples() -> None:
    result = doctest.testmod(targets, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_every_forwardable_method_is_a_declared_rpc_of_its_kind() -> None:
    exchange = "/zhida.exchange.v1.ExchangeService/"
    assert set(FORWARDABLE) == {
        exchange + "RequestData",
        exchange + "ApplyForData",
        exchange + "StreamDataset",
        exchange + "CreateSubscription",
        exchange + "ListSubscriptions",
        exchange + "CancelSubscription",
        exchange + "ReceiveChanges",
        exchange + "AcknowledgeChanges",
        "/zhida.licence.v1.LicenceVaultService/FetchLicences",
    }
    streams = {m for m, spec in FORWARDABLE.items() if spec.streaming}
    assert streams == {exchange + "StreamDataset", exchange + "ReceiveChanges"}
    service = xpb.DESCRIPTOR.services_by_name["ExchangeService"]
    for method, spec in FORWARDABLE.items():
        assert method in RPC_POLICY
        assert spec.method == method
        assert spec.target_kind in TARGET_KINDS
        name = method.rsplit("/", 1)[1]
        assert spec.request_type.DESCRIPTOR.name == f"{name}Request"
        assert spec.response_type.DESCRIPTOR.name == f"{name}Response"
        if method.startswith(exchange):
            rpc = service.methods_by_name[name]
            assert (rpc.server_streaming, rpc.client_streaming) == (spec.streaming, False)


def test_a_subscription_names_the_node_holding_it() -> None:
    hexid = "0123456789abcdef" * 2
    assert subscription_region(f"100000-{hexid}") == "100000"
    assert subscription_region(f"420102-{hexid}") == "420102"
    assert subscription_region(hexid) is None  # made before ids carried a region: local
    assert subscription_region(f"100000-{hexid}x") is None
    assert subscription_region(f"999999-{hexid}") is None  # not a region code
    assert subscription_region("") is None
    receive = FORWARDABLE["/zhida.exchange.v1.ExchangeService/ReceiveChanges"]
    request = xpb.ReceiveChangesRequest(subscription_id=f"420000-{hexid}")
    assert receive.region_of is not None
    assert (receive.region_of(request), receive.target(request)) == (
        "420000",
        request.subscription_id,
    )
    listing = FORWARDABLE["/zhida.exchange.v1.ExchangeService/ListSubscriptions"]
    assert listing.region_of is not None
    assert listing.region_of(xpb.ListSubscriptionsRequest()) is None  # header only
    assert listing.target(xpb.ListSubscriptionsRequest()) == "subscriptions"
    stream = FORWARDABLE["/zhida.exchange.v1.ExchangeService/StreamDataset"]
    assert (stream.by_catalogue, stream.region_of) == (True, None)
    assert stream.target(xpb.StreamDatasetRequest(resource_code="1-02-001-0000-000901")) == (
        "1-02-001-0000-000901"
    )


def test_targets_of_requests() -> None:
    fetch = FORWARDABLE["/zhida.licence.v1.LicenceVaultService/FetchLicences"]
    assert (fetch.target_kind, fetch.by_catalogue) == ("licence", False)
    assert fetch.target(lpb.FetchLicencesRequest(matter_code="M-1")) == "M-1"
    assert fetch.target(fetch.request_type()) == "licences"  # never empty: the assertion needs one
    data = FORWARDABLE["/zhida.exchange.v1.ExchangeService/RequestData"]
    wanted = xpb.RequestDataRequest(resource_code="1-01-001-0000-000002")
    assert data.target(wanted).startswith("1-01")


def test_the_digest_binds_the_method() -> None:
    a = digest_input("/s.S/A", b"same")
    assert a != digest_input("/s.S/B", b"same")
    assert a != digest_input("/s.S/A", b"other")


def test_headers() -> None:
    assert target_region_header(None) is None
    assert target_region_header([("x-zhida-target-region", " 430000 ")]) == "430000"
    with pytest.raises(InvalidArgument) as bad:
        target_region_header([("x-zhida-target-region", "43")])
    assert bad.value.reason == "INVALID_TARGET_REGION"
    assert idempotency_header([("x-idempotency-key", "k-1"), ("other", "x")]) == "k-1"
    assert idempotency_header([]) is None
    for value in ("", "x" * 129, "键", "a\nb"):
        with pytest.raises(InvalidArgument) as bad:
            idempotency_header([("x-idempotency-key", value)])
        assert bad.value.reason == "INVALID_IDEMPOTENCY_KEY"


def test_region_cache_remembers_hits_and_briefly_misses() -> None:
    now = [100.0]
    calls: list[str] = []
    known = {"1-01-001-0000-000001": "420000"}

    def lookup(code: str) -> str | None:
        calls.append(code)
        return known.get(code)

    cache = RegionCache(lookup, ttl_seconds=10, miss_ttl_seconds=1, clock=lambda: now[0])
    assert cache.cached("1-01-001-0000-000001") == (False, None)
    assert cache.region_of("1-01-001-0000-000001") == "420000"
    assert cache.region_of("1-01-001-0000-000001") == "420000"
    assert cache.cached("1-01-001-0000-000001") == (True, "420000")
    assert cache.region_of("9-99-999-0000-000009") is None
    assert calls == ["1-01-001-0000-000001", "9-99-999-0000-000009"]
    known["9-99-999-0000-000009"] = "420100"  # registered later: found once the miss expires
    now[0] += 1.5
    assert cache.region_of("9-99-999-0000-000009") == "420100"
    now[0] += 10
    assert cache.region_of("1-01-001-0000-000001") == "420000"
    assert len(calls) == 4


def test_region_cache_is_bounded() -> None:
    cache = RegionCache(lambda code: "420000", max_entries=2)
    for code in ("a", "b", "c"):
        cache.region_of(code)
    assert cache.cached("a") == (False, None)
    assert cache.cached("c") == (True, "420000")
