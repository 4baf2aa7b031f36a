"""``ForwardStream`` between real nodes: the custody checks of ``Forward``, per stream.

The test plays the county node (:class:`NodeCaller`) and opens ``ForwardStream``
calls on the city's mutual-TLS port for a ``StreamDataset`` of the province's
社会保障卡信息. A forged assertion, a replayed one, an altered request, a unary
method on the stream RPC (and a stream method on the unary one) and a bearer
token claiming role ``node`` are refused before anything is relayed, each with
its status, ErrorInfo reason and (custody) the refusing node's audit event. A
genuine stream reaches the province: its answer (whatever the grant says) comes
back through the city with the province's rich status, and the province
announces the path in the initial metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from exchange.federation.assertion import Custody
from tests.integration.catalog_registry.support import failure
from tests.integration.federation.support import (
    APPLY,
    CITY,
    COUNTY,
    PROVINCE,
    REQUESTER,
    SOCIAL_CARD,
    Chain,
    NodeCaller,
    apply_request,
    events,
    wait_for,
)
from tests.unit.exchange.federation.support import FederationPki
from zhida.auth.principal import Role
from zhida.client import ErrorDetails
from zhida.exchange.v1 import exchange_service_pb2 as xpb
from zhida.federation.v1 import federation_service_pb2 as fpb
from zhida.federation.v1 import federation_service_pb2_grpc as fpb_grpc

pytestmark = pytest.mark.integration

Code = grpc.StatusCode
STREAM = "/zhida.exchange.v1.ExchangeService/StreamDataset"


@pytest.fixture(scope="module")
def county(deployment: FederationPki) -> Iterator[NodeCaller]:
    caller = NodeCaller(deployment, COUNTY)
    yield caller
    caller.close()


def _request() -> bytes:
    return xpb.StreamDatasetRequest(resource_code=SOCIAL_CARD).SerializeToString(deterministic=True)


def _envelope(custody: Custody, request: bytes, method: str = STREAM) -> fpb.ForwardStreamRequest:
    return fpb.ForwardStreamRequest(
        method=method, request=request, custody=custody.encode(), target_region=PROVINCE
    )


def _claims(county: NodeCaller, request: bytes, key: str, method: str = STREAM) -> Any:
    return county.claims(request, method=method, key=key, trace_id=f"stream-{key}")


def _drain(call: Any) -> grpc.StatusCode:
    """Read ``call`` to its end; its status code."""
    try:
        list(call)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return Code.OK


def _refused(stub: fpb_grpc.FederationServiceStub, envelope: Any) -> ErrorDetails:
    return failure(lambda: list(stub.ForwardStream(envelope, timeout=20)))


def _event(chain: Chain, region: str, failure_name: str) -> Any:
    def find() -> list[Any]:
        return [
            e
            for e in events(chain.nodes[region])
            if e.details.get("failure") == failure_name and e.details.get("stream") == "true"
        ]

    return wait_for(find, what=f"a {failure_name} stream event at {region}")[-1]


def test_a_genuine_stream_is_answered_by_the_province(chain: Chain, county: NodeCaller) -> None:
    request = _request()
    custody = county.assertion(_claims(county, request, "genuine-1"), CITY)
    call = county.stub(chain.fed[CITY]).ForwardStream(_envelope(custody, request), timeout=20)
    # no grant for the clerk, or no provider: whatever the province says, custody held
    assert _drain(call) is not Code.UNAUTHENTICATED
    assert dict(call.initial_metadata())["x-zhida-path"] == f"{COUNTY},{CITY},{PROVINCE}"

    def hops() -> dict[str, str] | None:
        found = {
            region: e.details["federation"]
            for region in (CITY, PROVINCE)
            for e in events(chain.nodes[region])
            if e.trace_id == "stream-genuine-1" and e.details.get("stream") == "true"
        }
        return found if len(found) == 2 else None

    assert wait_for(hops, what="the stream's events") == {CITY: "forward", PROVINCE: "serve"}


def test_a_forged_stream_assertion_is_refused(
    chain: Chain, county: NodeCaller, foreign: FederationPki
) -> None:
    request = _request()
    stranger = NodeCaller(foreign, COUNTY)  # another deployment's key, delivered by the county
    custody = stranger.assertion(_claims(county, request, "forged-s1"), CITY)
    details = _refused(county.stub(chain.fed[CITY]), _envelope(custody, request))
    assert (details.code, details.reason) == (Code.UNAUTHENTICATED, "ASSERTION_INVALID")
    assert _event(chain, CITY, "CERT_UNTRUSTED").reason == "ASSERTION_INVALID"


def test_a_replayed_or_altered_stream_is_refused(chain: Chain, county: NodeCaller) -> None:
    request = _request()
    custody = county.assertion(_claims(county, request, "replay-s1"), CITY)
    stub = county.stub(chain.fed[CITY])
    # the province's answer, whatever it is; the jti is spent either way
    assert _drain(stub.ForwardStream(_envelope(custody, request), timeout=20)) is not (
        Code.UNAUTHENTICATED
    )
    details = _refused(stub, _envelope(custody, request))
    assert (details.code, details.reason) == (Code.UNAUTHENTICATED, "ASSERTION_INVALID")
    assert _event(chain, CITY, "REPLAYED").outcome
    # another resource under a genuine assertion of the first request
    fresh = county.assertion(_claims(county, request, "altered-s1"), CITY)
    other = xpb.StreamDatasetRequest(resource_code="1-01-002-0000-000003", batch_size=7)
    details = _refused(stub, _envelope(fresh, other.SerializeToString(deterministic=True)))
    assert details.reason == "ASSERTION_INVALID"
    assert _event(chain, CITY, "DIGEST_MISMATCH").outcome


def test_unary_and_stream_methods_keep_to_their_rpc(chain: Chain, county: NodeCaller) -> None:
    apply = apply_request("流式转发的一元方法").SerializeToString(deterministic=True)
    custody = county.assertion(_claims(county, apply, "wrong-rpc-1", method=APPLY), CITY)
    stub = county.stub(chain.fed[CITY])
    details = _refused(stub, _envelope(custody, apply, method=APPLY))
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "METHOD_NOT_FORWARDABLE")
    request = _request()
    custody = county.assertion(_claims(county, request, "wrong-rpc-2"), CITY)
    details = failure(
        stub.Forward,
        county.envelope(custody, request, method=STREAM, key="wrong-rpc-2"),
        timeout=20,
    )
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "METHOD_NOT_FORWARDABLE")


def test_a_bearer_token_cannot_open_a_stream(chain: Chain) -> None:
    stub = fpb_grpc.FederationServiceStub(chain.city.channel())
    md = chain.city.auth(role=Role.NODE, org=REQUESTER.uscc, region=COUNTY)
    details = failure(
        lambda: list(stub.ForwardStream(fpb.ForwardStreamRequest(method=STREAM), metadata=md))
    )
    assert (details.code, details.reason) == (Code.UNAUTHENTICATED, "NODE_CERT_REQUIRED")
