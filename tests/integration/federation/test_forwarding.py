"""Forwarding through a real county → city → province chain (issue 8, items 1, 2).

A county clerk's ApplyForData for a province resource is served by the
province: the share request exists there (and nowhere else), the answer comes
back through the city, every node writes its audit event with the shared
trace id, and a retry with the same idempotency key is answered from the
province's store without a second request. Errors of the serving node come
back with the same code and details.
"""

from __future__ import annotations

import grpc
import pytest

from tests.integration.catalog_registry.support import failure, fields
from tests.integration.federation.support import (
    CITY,
    COUNTY,
    NATIONAL_ID,
    PROVINCE,
    REQUESTER,
    Chain,
    apply_request,
    events,
    trailers,
    wait_for,
)
from zhida.auth.principal import Role
from zhida.exchange.v1 import exchange_service_pb2 as xpb
from zhida.licence.v1 import licence_vault_service_pb2 as lpb
from zhida.licence.v1 import licence_vault_service_pb2_grpc as lpb_grpc

pytestmark = pytest.mark.integration

PURPOSE = "开办餐饮店一件事：核验经营者社保（经县级节点转发）"


def test_a_county_application_is_served_by_the_province(chain: Chain) -> None:
    md = (
        *chain.clerk(chain.county),
        ("x-idempotency-key", "apply-1"),
        ("x-trace-id", "trace-fed-1"),
    )
    request = apply_request(PURPOSE)
    reply, call = chain.exchange(chain.county).ApplyForData.with_call(
        request, metadata=md, timeout=20
    )
    assert reply.request.state == xpb.SHARE_REQUEST_STATE_APPROVED
    assert reply.grant.resource_code == "2-03-001-0000-000005"
    meta = trailers(call)
    assert meta["x-zhida-path"] == f"{COUNTY},{CITY},{PROVINCE}"
    assert meta["x-zhida-replayed"] == "0"
    assert meta["x-trace-id"] == "trace-fed-1"
    assert [r.id for r in chain.requests_at(chain.province, PURPOSE)] == [reply.request.id]
    assert chain.requests_at(chain.county, PURPOSE) == []

    def hop_events() -> dict[str, dict[str, str]]:
        found = {}
        for region, node in chain.nodes.items():
            for event in events(node):
                if event.trace_id == "trace-fed-1":
                    found[region] = dict(event.details)
        return found if len(found) == 3 else {}

    hops = wait_for(hop_events, what="a data.request event on every node")
    assert hops[COUNTY]["federation"] == "origin"
    assert hops[CITY]["federation"] == "forward"
    assert hops[PROVINCE]["federation"] == "serve"
    # the serving node's own share.request event carries the same trace id and the clerk
    share = [e for e in events(chain.province, "share.request") if e.trace_id == "trace-fed-1"]
    assert [e.subject for e in share] == ["clerk@ja-samr"]

    # the same key again: the stored answer, not a second request
    again, call = chain.exchange(chain.county).ApplyForData.with_call(
        request, metadata=md, timeout=20
    )
    assert again.request.id == reply.request.id
    assert trailers(call)["x-zhida-replayed"] == "1"
    assert len(chain.requests_at(chain.province, PURPOSE)) == 1
    # the same key for another request is refused (a key names one request)
    other = failure(
        chain.exchange(chain.county).ApplyForData,
        apply_request("另一事项"),
        metadata=md,
        timeout=20,
    )
    assert (other.code, other.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "IDEMPOTENCY_KEY_REUSED",
    )
    assert len(chain.requests_at(chain.province, PURPOSE)) == 1


def test_errors_of_the_serving_node_come_back_unchanged(chain: Chain) -> None:
    request = apply_request()
    request.items[:] = ["姓名", "不存在的数据项"]
    details = failure(
        chain.exchange(chain.county).ApplyForData,
        request,
        metadata=chain.clerk(chain.county),
        timeout=20,
    )
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.reason == "INVALID_SHARE_REQUEST"
    assert any("items" in f for f in fields(details))
    # where it was decided: the serving node, at the end of the path trailer
    assert _error_path(chain, request) == f"{COUNTY},{CITY},{PROVINCE}"


def _error_path(chain: Chain, request: xpb.ApplyForDataRequest) -> str:
    """The ``x-zhida-path`` trailer of a county call that fails."""
    with pytest.raises(grpc.RpcError) as failed:
        chain.exchange(chain.county).ApplyForData(
            request, metadata=chain.clerk(chain.county), timeout=20
        )
    error: grpc.Call = failed.value  # type: ignore[assignment]
    return trailers(error).get("x-zhida-path", "")


def test_a_region_no_node_serves_is_refused(chain: Chain) -> None:
    request = apply_request()
    request.resource_code = NATIONAL_ID
    request.items[:] = ["姓名"]
    details = failure(
        chain.exchange(chain.county).ApplyForData,
        request,
        metadata=chain.clerk(chain.county),
        timeout=20,
    )
    assert details.code is grpc.StatusCode.NOT_FOUND
    assert details.reason == "REGION_UNKNOWN"
    assert details.metadata["region"] == "100000"
    # refused at the province (no parent above it): the path says so
    assert _error_path(chain, request) == f"{COUNTY},{CITY},{PROVINCE}"


def test_a_licence_fetch_goes_to_the_region_the_caller_names(chain: Chain) -> None:
    """FetchLicences carries no region: ``x-zhida-target-region`` routes it (until the index)."""
    stub = lpb_grpc.LicenceVaultServiceStub(chain.county.channel())
    md = (
        *chain.county.auth(role=Role.APPLICATION, org=REQUESTER.uscc, region=COUNTY),
        ("x-zhida-target-region", PROVINCE),
        ("x-trace-id", "trace-fed-licence"),
    )
    request = lpb.FetchLicencesRequest(
        holder_code="420102199001011237", type_codes=["11100000000013127D001"], matter_code="m1"
    )
    # the province's vault checks the holder id (bad check digit) and says so, field and all
    details = failure(stub.FetchLicences, request, metadata=md, timeout=20)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_HOLDER_ID")
    assert fields(details) == ["holder_code"]
    served = wait_for(
        lambda: [e for e in events(chain.province) if e.trace_id == "trace-fed-licence"],
        what="the province's serve event",
    )
    assert served[0].details["federation"] == "serve"
    assert served[0].details["method"].endswith("/FetchLicences")
