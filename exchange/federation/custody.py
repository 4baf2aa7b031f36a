"""Verifying a chain of custody at the node it is addressed to (issue 8).

:meth:`CustodyVerifier.verify` checks a :class:`~exchange.federation.assertion.Custody`
(the origin's signed assertion and each forwarding node's hop record, see
:mod:`exchange.federation.assertion`), stopping at the first failure, and
raises the one opaque :class:`~exchange.federation.assertion.AssertionRejected`
(UNAUTHENTICATED, reason ``ASSERTION_INVALID``) whose ``failure`` says which
check failed:

* syntax, ``typ``, ``alg`` (MALFORMED, ALG_NOT_ALLOWED);
* each signer's certificate chain, with :class:`signing.node_certs.NodeVerifier`
  against this deployment's root (CERT_UNTRUSTED: another deployment,
  expired, revoked), and that it names the region that signs (ISSUER_MISMATCH);
* each signature (BAD_SIGNATURE);
* the assertion's times (NOT_YET_VALID, EXPIRED, LIFETIME_TOO_LONG);
* the hop links: ``prev`` digests, each hop signed by the node the previous
  link was addressed to, deadlines never extended, plausible ``recv_ms``
  (CUSTODY_BROKEN, TOO_MANY_HOPS);
* every hop forwarded the asserted request (DIGEST_MISMATCH, naming the hop
  that altered it);
* the last link is addressed to this node (WRONG_AUDIENCE) and, when the
  mTLS peer is given, signed by it (SENDER_MISMATCH);
* the request bytes match the asserted digest (DIGEST_MISMATCH);
* last, once everything else holds (so forged tokens cannot fill it), the
  ``jti`` is new at this node (REPLAYED; :mod:`exchange.federation.replay`).

Deadlines and loops are judged from the result by
:mod:`exchange.federation.routing` (``VerifiedCustody.deadline_ms``,
``VerifiedCustody.path``).

Example::

    verifier = CustodyVerifier(NodeVerifier([root_cert]), "420100", InMemoryReplayCache())
    verified = verifier.verify(Custody.decode(wire), request_bytes, peer="420102")
    verified.principal(), verified.claims.trace_id, verified.path   # ('420102',)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from exchange.federation import phases
from exchange.federation.assertion import (
    ASSERTION_TYP,
    HOP_TYP,
    MAX_HOPS,
    MAX_LIFETIME_MS,
    TARGET_KINDS,
    AssertionFailure,
    AssertionRejected,
    CallerClaims,
    Custody,
    HopRecord,
    VerifiedCustody,
    request_digest,
)
from exchange.federation.replay import ReplayCache
from signing.algorithms import Algorithm, get_algorithm
from signing.canonical import b64url_decode, loads_canonical
from signing.node_certs import NodeAuthError, NodeIdentity, NodeVerifier
from zhida.auth.principal import Role
from zhida.regions import RegionCodeError, parse_region

__all__ = ["CustodyVerifier"]

_ALGORITHMS = ("ES256", "EdDSA")


def _fail(failure: AssertionFailure, message: str) -> AssertionRejected:
    return AssertionRejected(failure, message)


def _now_ms(now: float | None) -> int:
    return int((time.time() if now is None else now) * 1000)


# -- verification ------------------------------------------------------------------

_ASSERTION_FIELDS: dict[str, type] = {
    "iss": str, "aud": str, "jti": str, "iat_ms": int, "exp_ms": int, "sub": str, "org": str,
    "role": str, "region": str, "trace": str, "idem": str, "target_kind": str, "target": str,
    "target_region": str, "digest": str, "deadline_ms": int,
}  # fmt: skip
_HOP_FIELDS: dict[str, type] = {
    "node": str, "aud": str, "recv_ms": int, "digest": str, "prev": str, "deadline_ms": int,
}  # fmt: skip
_REGION_FIELDS = ("iss", "aud", "region", "target_region", "node")


@dataclass(frozen=True, slots=True)
class _Header:
    typ: str
    algorithm: Algorithm
    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    ders: tuple[bytes, ...]  # x5c decoded: the node verifier's cache key as it is


def _header(h64: str) -> _Header:
    try:
        header = loads_canonical(b64url_decode(h64))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(AssertionFailure.MALFORMED, f"header does not parse: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"alg", "typ", "x5c"}:
        raise _fail(AssertionFailure.MALFORMED, "header must hold exactly alg, typ and x5c")
    alg, typ, x5c = header["alg"], header["typ"], header["x5c"]
    if alg not in _ALGORITHMS:
        raise _fail(AssertionFailure.ALG_NOT_ALLOWED, f"alg {alg!r} is not allowed")
    if not (isinstance(x5c, list) and 0 < len(x5c) <= 5 and all(isinstance(c, str) for c in x5c)):
        raise _fail(AssertionFailure.MALFORMED, "x5c must be 1 to 5 strings")
    try:
        ders = tuple(base64.b64decode(c, validate=True) for c in x5c)
        certs = [x509.load_der_x509_certificate(der) for der in ders]
        key: PublicKeyTypes = certs[0].public_key()
    except (ValueError, binascii.Error) as exc:
        raise _fail(AssertionFailure.MALFORMED, f"x5c is unreadable: {exc}") from None
    algorithm = get_algorithm(alg)
    if not algorithm.accepts(key):
        raise _fail(AssertionFailure.ALG_NOT_ALLOWED, f"alg {alg} does not match the x5c key")
    return _Header(str(typ), algorithm, certs[0], tuple(certs[1:]), ders)


def _fields(payload: Any, spec: dict[str, type], what: str) -> dict[str, Any]:
    if not isinstance(payload, dict) or set(payload) != set(spec):
        raise _fail(AssertionFailure.MALFORMED, f"{what} must hold exactly {sorted(spec)}")
    for name, kind in spec.items():
        value = payload[name]
        if type(value) is not kind or (kind is str and not value):
            raise _fail(AssertionFailure.MALFORMED, f"{what} field {name} is not a {kind.__name__}")
        if name in _REGION_FIELDS:
            try:
                parse_region(str(value))
            except RegionCodeError as exc:
                raise _fail(AssertionFailure.MALFORMED, f"{what} {name}: {exc}") from None
    return payload


class CustodyVerifier:
    """Verifies custody chains addressed to the node ``me``. Thread-safe."""

    def __init__(
        self,
        nodes: NodeVerifier,
        me: str,
        replay: ReplayCache,
        *,
        skew_ms: int = 5_000,
        max_lifetime_ms: int = MAX_LIFETIME_MS,
        max_hops: int = MAX_HOPS,
    ) -> None:
        self.nodes = nodes
        self.me = parse_region(me).code
        self.replay = replay
        self._skew = skew_ms
        self._max_lifetime = max_lifetime_ms
        self._max_hops = max_hops
        self._headers: OrderedDict[str, _Header] = OrderedDict()
        self._lock = threading.Lock()

    def _open(
        self, token: str, typ: str, spec: dict[str, type], at: datetime
    ) -> tuple[dict[str, Any], NodeIdentity]:
        """Check one token's shape, signer chain and signature; return payload and signer."""
        parts = token.split(".")
        if len(parts) != 3:
            raise _fail(AssertionFailure.MALFORMED, f"a {typ} token has three segments")
        header = self._headers.get(parts[0])
        if header is None:
            header = _header(parts[0])
            with self._lock:
                self._headers[parts[0]] = header
                while len(self._headers) > 256:
                    self._headers.popitem(last=False)
        if header.typ != typ:
            raise _fail(AssertionFailure.MALFORMED, f"typ is {header.typ!r}, expected {typ!r}")
        try:
            signer, key = self.nodes.verify_key(
                header.leaf, header.intermediates, at=at, ders=header.ders
            )
        except NodeAuthError as exc:
            raise _fail(AssertionFailure.CERT_UNTRUSTED, f"{typ} signer: {exc.message}") from None
        except ValueError as exc:  # cryptography parses lazily: a malformed field shows up here
            raise _fail(AssertionFailure.MALFORMED, f"{typ} x5c: {exc}") from None
        try:
            payload_bytes, signature = b64url_decode(parts[1]), b64url_decode(parts[2])
        except ValueError as exc:
            raise _fail(AssertionFailure.MALFORMED, f"{typ} does not parse: {exc}") from None
        if not header.algorithm.verify(key, signature, f"{parts[0]}.{parts[1]}".encode("ascii")):
            raise _fail(
                AssertionFailure.BAD_SIGNATURE,
                f"{typ} signature by {signer.region_code} is invalid",
            )
        try:
            payload = loads_canonical(payload_bytes)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _fail(AssertionFailure.MALFORMED, f"{typ} payload: {exc}") from None
        return _fields(payload, spec, typ), signer

    def verify(
        self,
        custody: Custody,
        request: bytes,
        *,
        peer: str | None = None,
        now: float | None = None,
    ) -> VerifiedCustody:
        """Verify ``custody`` for the request bytes ``request`` (see the module docstring).

        ``peer`` is the region of the mTLS peer that delivered it.
        """
        now_ms = _now_ms(now)
        at = datetime.fromtimestamp(now_ms / 1000, UTC)
        if len(custody.hops) > self._max_hops:
            raise _fail(AssertionFailure.TOO_MANY_HOPS, f"{len(custody.hops)} hops")
        a, origin = self._open(custody.assertion, ASSERTION_TYP, _ASSERTION_FIELDS, at)
        if origin.region_code != a["iss"]:
            raise _fail(
                AssertionFailure.ISSUER_MISMATCH,
                f"assertion names origin {a['iss']} but is signed by {origin.region_code}",
            )
        if a["target_kind"] not in TARGET_KINDS or a["role"] not in {r.claim for r in Role}:
            raise _fail(AssertionFailure.MALFORMED, "unknown target_kind or role")
        if a["iat_ms"] > now_ms + self._skew:
            raise _fail(AssertionFailure.NOT_YET_VALID, f"iat_ms {a['iat_ms']} is in the future")
        if a["exp_ms"] - a["iat_ms"] > self._max_lifetime:
            raise _fail(AssertionFailure.LIFETIME_TOO_LONG, "assertion lifetime exceeds the limit")
        if now_ms >= a["exp_ms"] + self._skew:
            raise _fail(AssertionFailure.EXPIRED, f"assertion expired at {a['exp_ms']}")
        claims = CallerClaims(
            a["sub"], a["org"], a["role"], a["region"], a["trace"], a["idem"],
            a["target_kind"], a["target"], a["target_region"], a["digest"], a["deadline_ms"],
        )  # fmt: skip
        hops, signers = self._hops(custody, claims, a, now_ms, at)
        audience = hops[-1].audience if hops else a["aud"]
        if audience != self.me:
            raise _fail(
                AssertionFailure.WRONG_AUDIENCE,
                f"custody is addressed to {audience}, not {self.me}",
            )
        sender = hops[-1].node if hops else a["iss"]
        if peer is not None and peer != sender:
            raise _fail(
                AssertionFailure.SENDER_MISMATCH,
                f"the last link was signed by {sender} but delivered by {peer}",
            )
        if request_digest(request) != claims.request_digest:
            raise _fail(
                AssertionFailure.DIGEST_MISMATCH, "the request differs from the asserted one"
            )
        phases.mark("signatures")
        if not self.replay.remember(a["jti"], (a["exp_ms"] + self._skew) / 1000):
            raise _fail(AssertionFailure.REPLAYED, f"assertion {a['jti']} was already used here")
        phases.mark("replay")
        return VerifiedCustody(
            custody, claims, a["iss"], a["jti"], a["iat_ms"], a["exp_ms"], hops, (origin, *signers)
        )

    def _hops(
        self,
        custody: Custody,
        claims: CallerClaims,
        assertion: dict[str, Any],
        now_ms: int,
        at: datetime,
    ) -> tuple[tuple[HopRecord, ...], tuple[NodeIdentity, ...]]:
        hops: list[HopRecord] = []
        signers: list[NodeIdentity] = []
        previous, audience = custody.assertion, assertion["aud"]
        deadline = assertion["deadline_ms"]
        for number, token in enumerate(custody.hops, start=1):
            h, signer = self._open(token, HOP_TYP, _HOP_FIELDS, at)
            where = f"hop {number} ({h['node']})"
            if signer.region_code != h["node"]:
                raise _fail(
                    AssertionFailure.ISSUER_MISMATCH, f"{where} is signed by {signer.region_code}"
                )
            if h["prev"] != hashlib.sha256(previous.encode("ascii")).hexdigest():
                raise _fail(AssertionFailure.CUSTODY_BROKEN, f"{where} does not follow its link")
            if h["node"] != audience:
                raise _fail(
                    AssertionFailure.CUSTODY_BROKEN,
                    f"{where} forwarded a link addressed to {audience}",
                )
            if h["deadline_ms"] > deadline:
                raise _fail(AssertionFailure.CUSTODY_BROKEN, f"{where} extended the deadline")
            if not assertion["iat_ms"] - self._skew <= h["recv_ms"] <= now_ms + self._skew:
                raise _fail(AssertionFailure.CUSTODY_BROKEN, f"{where} has an impossible recv_ms")
            if h["digest"] != claims.request_digest:
                raise _fail(AssertionFailure.DIGEST_MISMATCH, f"{where} altered the request")
            hops.append(
                HopRecord(
                    h["node"], h["aud"], h["recv_ms"], h["digest"], h["prev"], h["deadline_ms"]
                )
            )
            signers.append(signer)
            previous, audience, deadline = token, h["aud"], h["deadline_ms"]
        return tuple(hops), tuple(signers)
