"""Bad input between nodes, against real node processes: refused, logged, nothing executed.

The test plays a neighbour node (its certificate, its assertions, its hop
records: :class:`NodeCaller`) and sends ``Forward`` envelopes straight to the
city's or the province's mutual-TLS port: a certificate from another
deployment or none at all (the handshake fails, no handler runs), a bearer
token claiming role ``node``, a forged assertion, a replayed one, an altered
request or method or envelope, an expired deadline, a loop, a region no node
serves. Each refusal is checked for its status and ErrorInfo reason, for its
audit event at the refusing node, and — where it would have executed — that
the province holds no share request for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from exchange.federation.assertion import Custody
from exchange.federation.custody import CustodyVerifier
from exchange.federation.replay import InMemoryReplayCache
from exchange.federation.targets import digest_input
from signing.canonical import b64url_decode, b64url_encode
from tests.integration.catalog_registry.support import failure
from tests.integration.federation.support import (
    APPLY,
    CITY,
    COUNTY,
    PROVINCE,
    REQUESTER,
    Chain,
    NodeCaller,
    apply_request,
    events,
    wait_for,
)
from tests.unit.exchange.federation.support import FederationPki
from zhida.auth.principal import Role
from zhida.client import ErrorDetails
from zhida.federation.v1 import federation_service_pb2 as fpb
from zhida.federation.v1 import federation_service_pb2_grpc as fpb_grpc

pytestmark = pytest.mark.integration

Code = grpc.StatusCode
FORWARD = "/zhida.federation.v1.FederationService/Forward"


@pytest.fixture(scope="module")
def county(deployment: FederationPki) -> Iterator[NodeCaller]:
    caller = NodeCaller(deployment, COUNTY)
    yield caller
    caller.close()


def _request(purpose: str) -> bytes:
    return apply_request(purpose).SerializeToString(deterministic=True)


def _refused(call: Callable[..., Any], *args: Any, **kwargs: Any) -> ErrorDetails:
    return failure(call, *args, timeout=20, **kwargs)


def _denied_event(chain: Chain, region: str, failure_name: str) -> Any:
    """The refusing node's data.request event whose details name ``failure_name``."""

    def find() -> list[Any]:
        return [
            e
            for e in events(chain.nodes[region])
            if e.details.get("failure") == failure_name or e.reason == failure_name
        ]

    return wait_for(find, what=f"a {failure_name} event at {region}")[-1]


def test_only_this_deployments_nodes_get_through_the_handshake(
    chain: Chain, county: NodeCaller, deployment: FederationPki, foreign: FederationPki
) -> None:
    envelope = fpb.ForwardRequest(method=APPLY, request=b"", custody=b"x")
    root = deployment.root.certificate
    stranger = foreign.node(COUNTY)
    root_pem = county.credentials.root_pem()
    assert root.subject != foreign.root.certificate.subject
    attempts = {
        "foreign cert": grpc.ssl_channel_credentials(
            root_certificates=root_pem,
            private_key=stranger.key_pem(),
            certificate_chain=stranger.chain_pem(),
        ),
        "no client cert": grpc.ssl_channel_credentials(root_certificates=root_pem),
    }
    time.sleep(0.5)  # access lines are written in batches: let earlier tests' lines land
    before = [r for r in chain.city.log_records() if r.get("method") == FORWARD]
    for what, creds in attempts.items():
        with pytest.raises(grpc.RpcError) as refused:
            county.stub(chain.fed[CITY], credentials=creds).Forward(envelope, timeout=5)
        assert refused.value.code() is Code.UNAVAILABLE, what
    with grpc.insecure_channel(chain.fed[CITY]) as plaintext:
        with pytest.raises(grpc.RpcError) as refused:
            fpb_grpc.FederationServiceStub(plaintext).Forward(envelope, timeout=5)
        assert refused.value.code() is Code.UNAVAILABLE
    time.sleep(0.5)  # access lines are written in batches
    after = [r for r in chain.city.log_records() if r.get("method") == FORWARD]
    assert after == before  # no handler ran: the handshake failed first


def test_a_bearer_token_is_not_a_node(chain: Chain) -> None:
    stub = fpb_grpc.FederationServiceStub(chain.city.channel())
    md = chain.city.auth(role=Role.NODE, org=REQUESTER.uscc, region=COUNTY)
    details = _refused(stub.Forward, fpb.ForwardRequest(method=APPLY), metadata=md)
    assert (details.code, details.reason) == (Code.UNAUTHENTICATED, "NODE_CERT_REQUIRED")


def test_a_forged_assertion_is_refused(
    chain: Chain, county: NodeCaller, foreign: FederationPki
) -> None:
    purpose = "伪造的节点断言"
    request = _request(purpose)
    stub = county.stub(chain.fed[CITY])
    # signed by a node of another deployment, delivered by the real county
    stranger = NodeCaller(foreign, COUNTY)
    custody = stranger.assertion(county.claims(request, key="forged-1"), CITY)
    details = _refused(stub.Forward, county.envelope(custody, request, key="forged-1"))
    assert (details.code, details.reason) == (Code.UNAUTHENTICATED, "ASSERTION_INVALID")
    assert _denied_event(chain, CITY, "CERT_UNTRUSTED").outcome
    # the county's own assertion with one signature bit flipped
    genuine = county.assertion(county.claims(request, key="forged-2"), CITY)
    h64, p64, s64 = genuine.assertion.split(".")
    signature = bytearray(b64url_decode(s64))
    signature[7] ^= 1
    tampered = Custody(f"{h64}.{p64}.{b64url_encode(bytes(signature))}")
    details = _refused(stub.Forward, county.envelope(tampered, request, key="forged-2"))
    assert details.reason == "ASSERTION_INVALID"
    assert _denied_event(chain, CITY, "BAD_SIGNATURE").reason == "ASSERTION_INVALID"
    assert chain.requests_at(chain.province, purpose) == []


def test_a_replayed_forward_is_refused(chain: Chain, county: NodeCaller) -> None:
    purpose = "重放的转发请求"
    request = _request(purpose)
    custody = county.assertion(county.claims(request, key="replay-1"), CITY)
    envelope = county.envelope(custody, request, key="replay-1")
    stub = county.stub(chain.fed[CITY])
    reply = stub.Forward(envelope, timeout=20)
    assert list(reply.path) == [COUNTY, CITY, PROVINCE]
    details = _refused(stub.Forward, envelope)
    assert (details.code, details.reason) == (Code.UNAUTHENTICATED, "ASSERTION_INVALID")
    assert _denied_event(chain, CITY, "REPLAYED").outcome
    assert len(chain.requests_at(chain.province, purpose)) == 1  # executed once


def test_an_altered_request_is_refused(chain: Chain, county: NodeCaller) -> None:
    purpose = "被篡改的请求"
    asserted, altered = _request("原始请求"), _request(purpose)
    stub = county.stub(chain.fed[CITY])
    custody = county.assertion(county.claims(asserted, key="alter-1"), CITY)
    details = _refused(stub.Forward, county.envelope(custody, altered, key="alter-1"))
    assert details.reason == "ASSERTION_INVALID"
    assert _denied_event(chain, CITY, "DIGEST_MISMATCH")
    # the same bytes under another method: the digest covers the method too
    custody = county.assertion(county.claims(altered, key="alter-2"), CITY)
    other = "/zhida.exchange.v1.ExchangeService/RequestData"
    details = _refused(stub.Forward, county.envelope(custody, altered, method=other, key="alter-2"))
    assert details.reason == "ASSERTION_INVALID"
    # an envelope that disagrees with its assertion (another target region)
    custody = county.assertion(county.claims(altered, key="alter-3"), CITY)
    details = _refused(
        stub.Forward, county.envelope(custody, altered, target_region=CITY, key="alter-3")
    )
    assert details.reason == "ASSERTION_INVALID"
    assert chain.requests_at(chain.province, purpose) == []


def test_an_expired_deadline_is_refused(chain: Chain, county: NodeCaller) -> None:
    purpose = "已过期的截止时间"
    request = _request(purpose)
    past = int(time.time() * 1000) - 1_000
    custody = county.assertion(county.claims(request, key="late-1", deadline_ms=past), CITY)
    details = _refused(
        county.stub(chain.fed[CITY]).Forward, county.envelope(custody, request, key="late-1")
    )
    assert (details.code, details.reason) == (Code.DEADLINE_EXCEEDED, "DEADLINE_BUDGET_EXHAUSTED")
    assert _denied_event(chain, CITY, "DEADLINE_BUDGET_EXHAUSTED")
    assert chain.requests_at(chain.province, purpose) == []


def test_a_loop_is_refused(chain: Chain, deployment: FederationPki) -> None:
    """The city asserts to the province, which hands it back to the city: a loop."""
    purpose = "环路"
    request = _request(purpose)
    city, province = NodeCaller(deployment, CITY), NodeCaller(deployment, PROVINCE)
    custody = city.assertion(city.claims(request, key="loop-1"), PROVINCE)
    at_province = CustodyVerifier(deployment.verifier(), PROVINCE, InMemoryReplayCache()).verify(
        custody, digest_input(APPLY, request), peer=CITY
    )
    back = province.signer.forward(at_province, audience=CITY)
    try:
        details = _refused(
            province.stub(chain.fed[CITY]).Forward,
            province.envelope(back, request, key="loop-1"),
        )
    finally:
        city.close()
        province.close()
    assert (details.code, details.reason) == (Code.FAILED_PRECONDITION, "ROUTING_LOOP")
    assert _denied_event(chain, CITY, "ROUTING_LOOP")
    assert chain.requests_at(chain.province, purpose) == []


def test_a_region_no_node_serves_is_refused(chain: Chain, county: NodeCaller) -> None:
    """湖南 (430000): the city sends it up; the province has no parent and no such child."""
    request = _request("无人服务的地区")
    claims = county.claims(request, key="unknown-1", target_region="430000")
    custody = county.assertion(claims, CITY)
    envelope = county.envelope(custody, request, target_region="430000", key="unknown-1")
    details = _refused(county.stub(chain.fed[CITY]).Forward, envelope)
    assert (details.code, details.reason) == (Code.NOT_FOUND, "REGION_UNKNOWN")
    assert details.metadata["region"] == "430000"
    assert _denied_event(chain, PROVINCE, "REGION_UNKNOWN")
