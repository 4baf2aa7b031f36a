"""Signed caller assertions and the chain of custody between federation nodes (issue 8).

A node never acts on an unsigned claim from another node. The node where a
call enters the federation (the *origin*) signs an **assertion** of the
original caller; every node that forwards the call appends a signed **hop
record**; the node that finally serves it verifies the whole chain.

Both are compact JWS (``alg`` ES256 or EdDSA, the node's key; ``x5c`` = the
node certificate chain, checked with :class:`signing.node_certs.NodeVerifier`
against this deployment's root) over RFC 8785 canonical JSON:

* assertion (``typ`` ``zhida-assertion+jws``): ``iss`` (origin region),
  ``aud`` (next hop region), ``jti``, ``iat_ms``, ``exp_ms``, the caller
  (``sub``, ``org``, ``role``, ``region``), ``trace``, ``idem`` (idempotency
  key), ``target_kind`` + ``target`` (resource code, licence matter or subscription id),
  ``target_region``, ``digest`` (SHA-256 hex of the canonical request bytes),
  ``deadline_ms``;
* hop record (``typ`` ``zhida-hop+jws``): ``node`` (the forwarding node),
  ``aud`` (its next hop), ``recv_ms``, ``digest`` (of what it forwards),
  ``prev`` (SHA-256 hex of the previous token's text), ``deadline_ms`` (the
  budget it passes on; never more than it got).

Verification (:class:`exchange.federation.custody.CustodyVerifier`) raises
the one opaque :class:`AssertionRejected` (UNAUTHENTICATED, reason
``ASSERTION_INVALID``) whose ``failure`` is the precise
:class:`AssertionFailure`, for logs.

Example::

    signer = NodeSigner(county_credentials)
    custody = signer.assert_caller(claims, audience="420100")   # claims: CallerClaims
    # at the city node (peer = region of the mTLS client certificate):
    verified = CustodyVerifier(nodes, "420100", replay).verify(custody, request, peer="420102")
    onward = NodeSigner(city_credentials).forward(verified, audience="420000")
    wire = onward.encode()          # bytes for a proto field or ``-bin`` metadata
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from signing.algorithms import algorithm_for_key
from signing.canonical import b64url_encode, canonical_json
from signing.node_certs import NodeCredentials, NodeIdentity
from zhida.auth.principal import Principal, Role
from zhida.errors import InvalidArgument, Unauthenticated
from zhida.regions import RegionCodeError, parse_region

__all__ = [
    "ASSERTION_TYP",
    "HOP_TYP",
    "TARGET_KINDS",
    "AssertionFailure",
    "AssertionRejected",
    "CallerClaims",
    "Custody",
    "HopRecord",
    "NodeSigner",
    "VerifiedCustody",
    "request_digest",
]

ASSERTION_TYP = "zhida-assertion+jws"
HOP_TYP = "zhida-hop+jws"
DEFAULT_LIFETIME_MS = 60_000
MAX_LIFETIME_MS = 300_000
MAX_HOPS = 8
MAX_CUSTODY_BYTES = 64 << 10
TARGET_KINDS = frozenset({"resource", "licence", "subscription"})


class AssertionFailure(enum.StrEnum):
    """Why an assertion or custody chain was refused (for logs; clients see ASSERTION_INVALID)."""

    MALFORMED = "MALFORMED"
    ALG_NOT_ALLOWED = "ALG_NOT_ALLOWED"
    CERT_UNTRUSTED = "CERT_UNTRUSTED"
    ISSUER_MISMATCH = "ISSUER_MISMATCH"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    NOT_YET_VALID = "NOT_YET_VALID"
    EXPIRED = "EXPIRED"
    LIFETIME_TOO_LONG = "LIFETIME_TOO_LONG"
    CUSTODY_BROKEN = "CUSTODY_BROKEN"
    TOO_MANY_HOPS = "TOO_MANY_HOPS"
    DIGEST_MISMATCH = "DIGEST_MISMATCH"
    WRONG_AUDIENCE = "WRONG_AUDIENCE"
    SENDER_MISMATCH = "SENDER_MISMATCH"
    REPLAYED = "REPLAYED"


class AssertionRejected(Unauthenticated):
    """A caller assertion or its custody chain did not verify; ``failure`` says which check."""

    default_reason = "ASSERTION_INVALID"

    def __init__(self, failure: AssertionFailure, message: str) -> None:
        super().__init__(message, metadata={"failure": failure.value})
        self.failure = failure


def _fail(failure: AssertionFailure, message: str) -> AssertionRejected:
    return AssertionRejected(failure, message)


def request_digest(data: bytes) -> str:
    """SHA-256 hex of the canonical request bytes (``SerializeToString(deterministic=True)``)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class CallerClaims:
    """What the origin node asserts about the original call."""

    subject: str
    organisation: str
    role: str
    region: str
    trace_id: str
    idempotency_key: str
    target_kind: str
    target: str
    target_region: str
    request_digest: str
    deadline_ms: int

    @classmethod
    def of(
        cls,
        principal: Principal,
        *,
        trace_id: str,
        idempotency_key: str,
        target_kind: str,
        target: str,
        target_region: str,
        request: bytes,
        deadline_ms: int,
    ) -> CallerClaims:
        """The claims for ``principal``'s call with the request bytes ``request``."""
        return cls(
            principal.subject,
            principal.organisation,
            principal.role.claim,
            principal.region_code,
            trace_id,
            idempotency_key,
            target_kind,
            target,
            target_region,
            request_digest(request),
            deadline_ms,
        )


@dataclass(frozen=True, slots=True)
class HopRecord:
    """One forwarding node's signed statement, as verified."""

    node: str
    audience: str
    received_ms: int
    digest: str
    prev: str
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class Custody:
    """The assertion and the hop records, in order: what travels between nodes."""

    assertion: str
    hops: tuple[str, ...] = ()

    @property
    def tokens(self) -> tuple[str, ...]:
        return (self.assertion, *self.hops)

    def encode(self) -> bytes:
        """The tokens, one per line (ASCII)."""
        return "\n".join(self.tokens).encode("ascii")

    @classmethod
    def decode(cls, data: bytes) -> Custody:
        """Parse :meth:`encode` output; AssertionRejected (MALFORMED) if it is not one."""
        if not data or len(data) > MAX_CUSTODY_BYTES:
            raise _fail(AssertionFailure.MALFORMED, "custody is empty or larger than 64 KiB")
        try:
            tokens = data.decode("ascii").split("\n")
        except UnicodeDecodeError:
            raise _fail(AssertionFailure.MALFORMED, "custody is not ASCII") from None
        return cls(tokens[0], tuple(tokens[1:]))


@dataclass(frozen=True, slots=True)
class VerifiedCustody:
    """A custody chain that verified at this node."""

    custody: Custody
    claims: CallerClaims
    origin: str
    jti: str
    issued_ms: int
    expires_ms: int
    hops: tuple[HopRecord, ...]
    signers: tuple[NodeIdentity, ...]
    """The verified certificate identity of each token's signer, origin first."""

    @property
    def path(self) -> tuple[str, ...]:
        """Regions of the nodes that signed: the origin, then each forwarding node."""
        return (self.origin, *(h.node for h in self.hops))

    @property
    def deadline_ms(self) -> int:
        """The deadline this node was given (the last link's)."""
        return self.hops[-1].deadline_ms if self.hops else self.claims.deadline_ms

    def principal(self) -> Principal:
        """The original caller, for the policy table and the audit log."""
        c = self.claims
        return Principal(
            subject=c.subject,
            role=Role.from_claim(c.role),
            organisation=c.organisation,
            region_code=c.region,
            expires_at=self.expires_ms // 1000,
            token_id=self.jti,
            issuer=f"zhida-node:{self.origin}",
        )


def _now_ms(now: float | None) -> int:
    return int((time.time() if now is None else now) * 1000)


class NodeSigner:
    """Signs assertions and hop records with one node's key and certificate chain."""

    def __init__(self, credentials: NodeCredentials, *, include_chain: bool = True) -> None:
        """``include_chain=False`` sends only the leaf in ``x5c`` (a county's assertion
        shrinks from ~4.7 to ~1.5 KB); verifiers then need the deployment's
        intermediate CAs (``NodeVerifier(roots, intermediates)``)."""
        self.credentials = credentials
        self.region = credentials.identity.region_code
        self._algorithm = algorithm_for_key(credentials.private_key)
        x5c = list(credentials.x5c() if include_chain else credentials.x5c()[:1])
        self._headers = {
            typ: b64url_encode(
                canonical_json({"alg": self._algorithm.name, "typ": typ, "x5c": x5c})
            )
            for typ in (ASSERTION_TYP, HOP_TYP)
        }

    def _sign(self, typ: str, payload: dict[str, Any]) -> str:
        signing_input = f"{self._headers[typ]}.{b64url_encode(canonical_json(payload))}"
        signature = self._algorithm.sign(self.credentials.private_key, signing_input.encode())
        return f"{signing_input}.{b64url_encode(signature)}"

    def assert_caller(
        self,
        claims: CallerClaims,
        *,
        audience: str,
        lifetime_ms: int = DEFAULT_LIFETIME_MS,
        now: float | None = None,
        jti: str | None = None,
    ) -> Custody:
        """A new custody chain: this node's assertion of ``claims``, addressed to ``audience``.

        InvalidArgument for an unknown ``target_kind`` or a bad region code.
        """
        if claims.target_kind not in TARGET_KINDS:
            raise InvalidArgument(
                f"target_kind must be one of {sorted(TARGET_KINDS)}", reason="INVALID_TARGET_KIND"
            )
        for code in (audience, claims.region, claims.target_region):
            try:
                parse_region(code)
            except RegionCodeError as exc:
                raise InvalidArgument(str(exc), reason="INVALID_REGION_CODE") from None
        iat = _now_ms(now)
        c = claims
        payload = {
            "iss": self.region,
            "aud": audience,
            "jti": jti or secrets.token_urlsafe(16),
            "iat_ms": iat,
            "exp_ms": iat + lifetime_ms,
            "sub": c.subject,
            "org": c.organisation,
            "role": c.role,
            "region": c.region,
            "trace": c.trace_id,
            "idem": c.idempotency_key,
            "target_kind": c.target_kind,
            "target": c.target,
            "target_region": c.target_region,
            "digest": c.request_digest,
            "deadline_ms": c.deadline_ms,
        }
        return Custody(self._sign(ASSERTION_TYP, payload))

    def forward(
        self,
        verified: VerifiedCustody,
        *,
        audience: str,
        deadline_ms: int | None = None,
        received_ms: int | None = None,
        now: float | None = None,
    ) -> Custody:
        """``verified`` (which this node checked) plus this node's hop record to ``audience``.

        ``deadline_ms`` is the budget given to the next hop (default: unchanged);
        it may not exceed the one this node was given.
        """
        previous = verified.custody.tokens[-1]
        payload = {
            "node": self.region,
            "aud": audience,
            "recv_ms": received_ms if received_ms is not None else _now_ms(now),
            "digest": verified.claims.request_digest,
            "prev": hashlib.sha256(previous.encode("ascii")).hexdigest(),
            "deadline_ms": min(deadline_ms or verified.deadline_ms, verified.deadline_ms),
        }
        custody = verified.custody
        return Custody(custody.assertion, (*custody.hops, self._sign(HOP_TYP, payload)))
