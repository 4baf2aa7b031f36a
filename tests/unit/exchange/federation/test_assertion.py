"""Signed caller assertions and custody chains: the happy path and every refusal."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable

import pytest

from exchange.federation.assertion import (
    AssertionFailure,
    AssertionRejected,
    CallerClaims,
    Custody,
    NodeSigner,
    VerifiedCustody,
    request_digest,
)
from exchange.federation.custody import CustodyVerifier
from exchange.federation.replay import InMemoryReplayCache
from signing.canonical import b64url_decode, b64url_encode, canonical_json
from tests.unit.exchange.federation.support import (
    CITY,
    COUNTY,
    NATIONAL,
    PROVINCE,
    FederationPki,
)
from zhida.auth.principal import Principal, Role
from zhida.errors import InvalidArgument

REQUEST = b"\x0a\x141-01-001-0000-000101\x12\x06420102"
NOW = time.time()
NOW_MS = int(NOW * 1000)
CALLER = Principal("clerk-7", Role.DEPARTMENT, "11420102MB1A23456R", COUNTY, int(NOW) + 600)


def claims(request: bytes = REQUEST, **changes: object) -> CallerClaims:
    base = CallerClaims.of(
        CALLER,
        trace_id="trace-0001",
        idempotency_key="req-1",
        target_kind="resource",
        target="1-01-001-0000-000101",
        target_region=NATIONAL,
        request=request,
        deadline_ms=NOW_MS + 5_000,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


Verify = Callable[..., VerifiedCustody]


@pytest.fixture
def verify(pki: FederationPki) -> Verify:
    """Verify at a node with a fresh replay cache per node (one per test)."""
    caches: dict[str, InMemoryReplayCache] = {}

    def run(
        custody: Custody,
        me: str,
        request: bytes = REQUEST,
        *,
        peer: str | None = None,
        now: float = NOW,
    ) -> VerifiedCustody:
        # The cache's clock is the test's: NOW is taken at import, and in a long
        # suite real time has moved on past the assertions' expiry.
        cache = caches.setdefault(me, InMemoryReplayCache(clock=lambda: NOW))
        return CustodyVerifier(pki.verifier(), me, cache).verify(
            custody, request, peer=peer, now=now
        )

    return run


def signer(pki: FederationPki, region: str) -> NodeSigner:
    return NodeSigner(pki.node(region))


def up_the_chain(pki: FederationPki, verify: Verify) -> tuple[Custody, VerifiedCustody]:
    """County asks; city and province forward; national verifies. Returns the last custody."""
    custody = signer(pki, COUNTY).assert_caller(claims(), audience=CITY, now=NOW)
    at_city = verify(custody, CITY, peer=COUNTY)
    custody = signer(pki, CITY).forward(
        at_city, audience=PROVINCE, deadline_ms=NOW_MS + 4_980, now=NOW
    )
    at_province = verify(custody, PROVINCE, peer=CITY)
    custody = signer(pki, PROVINCE).forward(
        at_province, audience=NATIONAL, deadline_ms=NOW_MS + 4_960, now=NOW
    )
    return custody, verify(custody, NATIONAL, peer=PROVINCE)


def rejected(run: Callable[[], object], failure: AssertionFailure) -> AssertionRejected:
    with pytest.raises(AssertionRejected) as info:
        run()
    error = info.value
    assert error.failure is failure, error.message
    assert (error.code.name, error.reason) == ("UNAUTHENTICATED", "ASSERTION_INVALID")
    assert error.metadata == {"failure": failure.value}
    return error


def test_chain_of_custody_up_four_levels(pki: FederationPki, verify: Verify) -> None:
    custody, verified = up_the_chain(pki, verify)
    assert verified.path == (COUNTY, CITY, PROVINCE)
    assert [s.region_code for s in verified.signers] == [COUNTY, CITY, PROVINCE]
    assert verified.claims == claims()
    assert verified.claims.request_digest == request_digest(REQUEST)
    assert verified.deadline_ms == NOW_MS + 4_960
    assert [h.audience for h in verified.hops] == [PROVINCE, NATIONAL]
    principal = verified.principal()
    assert (principal.subject, principal.role, principal.region_code) == (
        "clerk-7",
        Role.DEPARTMENT,
        COUNTY,
    )
    assert principal.token_id == verified.jti
    assert principal.issuer == f"zhida-node:{COUNTY}"
    # the wire form round-trips; with x5c chains it outgrows gRPC's 8 KiB metadata
    # default after a hop or two, so it travels in a message field
    wire = custody.encode()
    assert Custody.decode(wire) == custody
    assert 8 << 10 < len(wire) < 16 << 10


def test_leaf_only_x5c_with_known_intermediates(pki: FederationPki) -> None:
    county = NodeSigner(pki.node(COUNTY), include_chain=False)
    custody = county.assert_caller(claims(), audience=CITY, now=NOW)
    assert len(custody.assertion) < 2_000
    cache = InMemoryReplayCache()
    blind = CustodyVerifier(pki.verifier(), CITY, cache)
    rejected(lambda: blind.verify(custody, REQUEST, now=NOW), AssertionFailure.CERT_UNTRUSTED)
    cas = [ca.certificate for ca in pki.cas.values()]
    informed = CustodyVerifier(pki.verifier(intermediates=cas), CITY, cache)
    assert informed.verify(custody, REQUEST, now=NOW).origin == COUNTY


def test_a_node_cannot_extend_the_deadline(pki: FederationPki, verify: Verify) -> None:
    custody = signer(pki, COUNTY).assert_caller(claims(), audience=CITY, now=NOW)
    at_city = verify(custody, CITY)
    onward = signer(pki, CITY).forward(
        at_city, audience=PROVINCE, deadline_ms=NOW_MS + 99_999, now=NOW
    )
    assert verify(onward, PROVINCE).deadline_ms == NOW_MS + 5_000  # clamped by the signer
    # a hop record that extends it anyway (signed by hand) is refused
    hand = signer(pki, CITY)
    forged_payload = {
        "node": CITY,
        "aud": PROVINCE,
        "recv_ms": NOW_MS,
        "digest": request_digest(REQUEST),
        "prev": hashlib.sha256(custody.assertion.encode()).hexdigest(),
        "deadline_ms": NOW_MS + 99_999,
    }
    forged = Custody(custody.assertion, (hand._sign("zhida-hop+jws", forged_payload),))
    error = rejected(lambda: verify(forged, PROVINCE), AssertionFailure.CUSTODY_BROKEN)
    assert "extended the deadline" in error.message


def test_forged_signatures(pki: FederationPki, verify: Verify) -> None:
    custody = signer(pki, COUNTY).assert_caller(claims(), audience=CITY, now=NOW)
    h64, p64, s64 = custody.assertion.split(".")
    signature = bytearray(b64url_decode(s64))
    signature[5] ^= 1
    bad_sig = Custody(f"{h64}.{p64}.{b64url_encode(bytes(signature))}")
    rejected(lambda: verify(bad_sig, CITY), AssertionFailure.BAD_SIGNATURE)
    # a caller promoted to admin, signature kept
    payload = json.loads(b64url_decode(p64))
    payload["role"] = "admin"
    promoted = Custody(f"{h64}.{b64url_encode(canonical_json(payload))}.{s64}")
    rejected(lambda: verify(promoted, CITY), AssertionFailure.BAD_SIGNATURE)
    # alg none / unknown alg
    header = canonical_json({"alg": "none", "typ": "zhida-assertion+jws", "x5c": ["AA=="]})
    none = Custody(f"{b64url_encode(header)}.{p64}.")
    rejected(lambda: verify(none, CITY), AssertionFailure.ALG_NOT_ALLOWED)


def test_origin_must_sign_as_itself(pki: FederationPki, verify: Verify) -> None:
    impostor = signer(pki, CITY)
    impostor.region = COUNTY  # the city node claims the call entered at the county
    custody = impostor.assert_caller(claims(), audience=PROVINCE, now=NOW)
    rejected(lambda: verify(custody, PROVINCE), AssertionFailure.ISSUER_MISMATCH)


def test_foreign_deployment_is_refused(
    pki: FederationPki, foreign: FederationPki, verify: Verify
) -> None:
    custody = signer(foreign, COUNTY).assert_caller(claims(), audience=CITY, now=NOW)
    error = rejected(lambda: verify(custody, CITY), AssertionFailure.CERT_UNTRUSTED)
    assert "root" in error.message
    # a foreign node slipping a hop into a genuine chain
    genuine = signer(pki, COUNTY).assert_caller(claims(), audience=CITY, now=NOW)
    at_city = verify(genuine, CITY)
    onward = signer(foreign, CITY).forward(at_city, audience=PROVINCE, now=NOW)
    rejected(lambda: verify(onward, PROVINCE), AssertionFailure.CERT_UNTRUSTED)


def test_altered_request(pki: FederationPki, verify: Verify) -> None:
    custody = signer(pki, COUNTY).assert_caller(claims(), audience=CITY, now=NOW)
    rejected(lambda: verify(custody, CITY, REQUEST + b"x"), AssertionFailure.DIGEST_MISMATCH)
    # the city alters the request and signs a hop with the new digest: blamed by name
    at_city = verify(custody, CITY)
    altered = dataclasses.replace(
        at_city, claims=dataclasses.replace(at_city.claims, request_digest="00" * 32)
    )
    onward = signer(pki, CITY).forward(altered, audience=PROVINCE, now=NOW)
    error = rejected(lambda: verify(onward, PROVINCE), AssertionFailure.DIGEST_MISMATCH)
    assert error.message == f"hop 1 ({CITY}) altered the request"


def test_replayed_assertion(pki: FederationPki, verify: Verify) -> None:
    custody = signer(pki, COUNTY).assert_caller(claims(), audience=CITY, now=NOW)
    h64, p64, s64 = custody.assertion.split(".")
    broken = Custody(f"{h64}.{p64}.{s64[:-4]}AAAA")
    rejected(lambda: verify(broken, CITY), AssertionFailure.BAD_SIGNATURE)
    verify(custody, CITY)  # a forgery with the same jti did not poison the cache
    rejected(lambda: verify(custody, CITY), AssertionFailure.REPLAYED)
    # a retry is a new assertion (new jti) with the same idempotency key: accepted
    retry = signer(pki, COUNTY).assert_caller(claims(), audience=CITY, now=NOW)
    assert verify(retry, CITY).claims.idempotency_key == "req-1"


def test_times(pki: FederationPki, verify: Verify) -> None:
    county = signer(pki, COUNTY)
    custody = county.assert_caller(claims(), audience=CITY, now=NOW, lifetime_ms=60_000)
    rejected(lambda: verify(custody, CITY, now=NOW + 66), AssertionFailure.EXPIRED)
    rejected(lambda: verify(custody, CITY, now=NOW - 60), AssertionFailure.NOT_YET_VALID)
    long_lived = county.assert_caller(claims(), audience=CITY, now=NOW, lifetime_ms=3_600_000)
    rejected(lambda: verify(long_lived, CITY), AssertionFailure.LIFETIME_TOO_LONG)
    assert verify(custody, CITY, now=NOW + 64).jti  # within the 5 s skew


def test_audience_and_sender(pki: FederationPki, verify: Verify) -> None:
    custody = signer(pki, COUNTY).assert_caller(claims(), audience=CITY, now=NOW)
    error = rejected(lambda: verify(custody, PROVINCE), AssertionFailure.WRONG_AUDIENCE)
    assert error.message == f"custody is addressed to {CITY}, not {PROVINCE}"
    error = rejected(lambda: verify(custody, CITY, peer=PROVINCE), AssertionFailure.SENDER_MISMATCH)
    assert verify(custody, CITY, peer=COUNTY).origin == COUNTY


def test_tampered_hop_chain(pki: FederationPki, verify: Verify) -> None:
    full, _ = up_the_chain(pki, verify)
    assertion, (city_hop, province_hop) = full.assertion, full.hops
    # the middle hop removed: the province hop no longer follows its link
    rejected(
        lambda: verify(Custody(assertion, (province_hop,)), NATIONAL),
        AssertionFailure.CUSTODY_BROKEN,
    )
    # the hops swapped
    rejected(
        lambda: verify(Custody(assertion, (province_hop, city_hop)), NATIONAL),
        AssertionFailure.CUSTODY_BROKEN,
    )
    # the last hop dropped: the chain now ends at the province
    rejected(
        lambda: verify(Custody(assertion, (city_hop,)), NATIONAL),
        AssertionFailure.WRONG_AUDIENCE,
    )
    # a node the previous link was not addressed to signs the next hop
    start = signer(pki, COUNTY).assert_caller(claims(), audience=CITY, now=NOW)
    at_city = verify(start, CITY)
    hijack = signer(pki, PROVINCE).forward(at_city, audience=NATIONAL, now=NOW)
    error = rejected(lambda: verify(hijack, NATIONAL), AssertionFailure.CUSTODY_BROKEN)
    assert "addressed to 420100" in error.message
    # a hop with its payload edited
    h64, _p64, s64 = city_hop.split(".")
    edited = canonical_json({"aud": NATIONAL, "node": CITY})
    rejected(
        lambda: verify(Custody(assertion, (f"{h64}.{b64url_encode(edited)}.{s64}",)), NATIONAL),
        AssertionFailure.BAD_SIGNATURE,
    )


def test_too_many_hops_and_malformed(pki: FederationPki, verify: Verify) -> None:
    custody = signer(pki, COUNTY).assert_caller(claims(), audience=CITY, now=NOW)
    rejected(
        lambda: verify(Custody(custody.assertion, ("x",) * 9), CITY),
        AssertionFailure.TOO_MANY_HOPS,
    )
    rejected(lambda: verify(Custody("not.a-token"), CITY), AssertionFailure.MALFORMED)
    rejected(lambda: verify(Custody("a.b.c"), CITY), AssertionFailure.MALFORMED)
    rejected(lambda: Custody.decode(b""), AssertionFailure.MALFORMED)
    rejected(lambda: Custody.decode("证".encode()), AssertionFailure.MALFORMED)
    rejected(lambda: Custody.decode(b"x" * (65 << 10)), AssertionFailure.MALFORMED)
    # a hop token where the assertion belongs
    at_city = verify(custody, CITY)
    hop = signer(pki, CITY).forward(at_city, audience=PROVINCE, now=NOW).hops[0]
    rejected(lambda: verify(Custody(hop), PROVINCE), AssertionFailure.MALFORMED)


def test_signing_refuses_bad_claims(pki: FederationPki) -> None:
    county = signer(pki, COUNTY)
    with pytest.raises(InvalidArgument) as info:
        county.assert_caller(claims(target_kind="dataset"), audience=CITY)
    assert info.value.reason == "INVALID_TARGET_KIND"
    with pytest.raises(InvalidArgument) as info:
        county.assert_caller(claims(), audience="4201")
    assert info.value.reason == "INVALID_REGION_CODE"
