"""Licence data as a JWS compact serialisation over RFC 8785 canonical JSON.

The payload is the licence data rendered by :func:`signing.canonical.canonical_json`
(with an integer ``iat``, the signing time, added when missing). The protected
header is ``{"alg": "ES256" | "EdDSA", "kid": <key id>, "x5c": [leaf, CAs…]
(standard base64 DER), "typ": "zhida-licence+jws", "seal": <seal id>}``.

:class:`JwsVerifier` (and :func:`verify_jws`) checks, in order, and raises
:class:`signing.errors.VerificationError` at the first failure:

1. parse: three segments of canonical base64url, a JSON object header without
   duplicate keys, ``typ``, ``kid``, ``seal`` and ``x5c`` present, no ``crit``
   (MALFORMED);
2. ``alg`` in the allow-list — ``none`` and HMACs never — and matching the
   leaf certificate's key type (ALG_NOT_ALLOWED);
3. the signature, with the leaf certificate's key (BAD_SIGNATURE);
4. the payload: a JSON object in exactly its canonical form, with an integer
   ``iat`` not in the future (MALFORMED, SIGNING_TIME_INVALID);
5. the chain to a trusted root at the signing time ``iat`` (CHAIN_INVALID,
   CERT_EXPIRED) and certificate revocation (CERT_REVOKED,
   REVOCATION_UNAVAILABLE) — see :mod:`signing.trust`;
6. the seal: known, signed by a trusted seal maker, the leaf bound to it,
   valid at ``iat``, not revoked (SEAL_*) — see :mod:`signing.seal`.

Parsed certificates and verified chains are cached, keyed by the ``x5c``
strings, so repeated tokens from the same department cost one ECDSA verify;
for ES256 the SHA-256 state after the (cached) header is kept too, so only the
payload segment is hashed per token, and the leaf key is bound to its verifier.
Signing lives in :mod:`signing.jws_signer` (:class:`JwsSigner`,
:func:`sign_jws`, re-exported here).

Example::

    token = sign_jws(licence, store, "jaqsj-2025", [dept_cert, city_ca.certificate], seal.seal_id)
    verified = verify_jws(token, trust_bundle, SealRegistry([maker_public_key], seals=[seal]))
    verified.payload["证照编号"], verified.department.uscc, verified.signed_at
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from signing.algorithms import Algorithm, allowed_algorithms, get_algorithm
from signing.canonical import (
    b64url_decode,
    b64url_decode_bytes,
    loads_canonical,
    loads_strict,
)
from signing.errors import Failure, VerificationError
from signing.jws_signer import TYP, JwsSigner, sign_jws
from signing.pki import DepartmentIdentity, department_identity
from signing.seal import Seal, SealRegistry
from signing.trust import ChainVerifier, TrustBundle
from zhida.errors import ZhidaError

__all__ = ["TYP", "JwsSigner", "JwsVerifier", "VerifiedLicence", "sign_jws", "verify_jws"]

MAX_TOKEN_LENGTH = 1 << 20
_REQUIRED = ("alg", "kid", "x5c", "typ", "seal")
_UNSUPPORTED = frozenset({"crit", "jku", "jwk", "x5u", "b64", "zip"})


@dataclass(slots=True)  # not frozen: its __init__ would cost ~1 µs per verification
class VerifiedLicence:
    """A licence whose signature, chain and seal all verified."""

    payload: dict[str, Any]
    signed_at: datetime
    algorithm: str
    key_id: str
    seal: Seal
    department: DepartmentIdentity
    chain: tuple[x509.Certificate, ...]
    """Leaf (the signer) first, the trusted root last."""

    @property
    def signer(self) -> x509.Certificate:
        return self.chain[0]


# -- verification ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Presented:
    """What ``x5c`` presents, parsed once."""

    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    leaf_key: PublicKeyTypes
    leaf_hash: str
    department: DepartmentIdentity | None


def _fail(failure: Failure, message: str) -> VerificationError:
    return VerificationError(failure, message)


def _parse_x5c(x5c: tuple[str, ...]) -> _Presented:
    ders = []
    for item in x5c:
        try:
            der = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise _fail(Failure.MALFORMED, "x5c entry is not standard base64") from None
        if base64.b64encode(der).decode("ascii") != item:
            raise _fail(Failure.MALFORMED, "x5c entry is not canonical base64")
        ders.append(der)
    try:
        certs = [x509.load_der_x509_certificate(der) for der in ders]
        for cert in certs:  # cryptography parses lazily: parse everything now
            _ = (cert.subject.rfc4514_string(), cert.issuer, cert.extensions)
            _ = (cert.not_valid_before_utc, cert.not_valid_after_utc, cert.signature_algorithm_oid)
        leaf_key = certs[0].public_key()
    except Exception as exc:  # any parse failure of attacker-supplied bytes is MALFORMED
        raise _fail(Failure.MALFORMED, f"x5c holds an unreadable certificate: {exc}") from None
    try:
        department: DepartmentIdentity | None = department_identity(certs[0])
    except ZhidaError:
        department = None
    return _Presented(
        leaf=certs[0],
        intermediates=tuple(certs[1:]),
        leaf_key=leaf_key,
        leaf_hash=hashlib.sha256(ders[0]).hexdigest(),
        department=department,
    )


@dataclass(frozen=True, slots=True)
class _Header:
    """A protected header that parsed and passed every check that needs no signature."""

    algorithm: Algorithm
    kid: str
    seal_id: str
    x5c: tuple[str, ...]
    presented: _Presented
    prefix: Any
    """The hash state after ``<h64>.`` (for algorithms that verify digests), or None."""
    verify_digest: Any
    """``(signature, digest) -> bool`` with the leaf key bound (when ``prefix`` is set)."""


def _parse_header(h64: str, allowed: Mapping[str, Algorithm]) -> _Header:
    try:
        header = loads_strict(b64url_decode(h64))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(Failure.MALFORMED, f"protected header does not parse: {exc}") from None
    if not isinstance(header, dict):
        raise _fail(Failure.MALFORMED, "the protected header is not a JSON object")
    alg = header.get("alg")
    algorithm = allowed.get(alg) if isinstance(alg, str) else None
    if algorithm is None:
        raise _fail(Failure.ALG_NOT_ALLOWED, f"alg {alg!r} is not allowed")
    if missing := [k for k in _REQUIRED if k not in header]:
        raise _fail(Failure.MALFORMED, f"protected header lacks {', '.join(missing)}")
    if unsupported := sorted(_UNSUPPORTED.intersection(header)):
        raise _fail(Failure.MALFORMED, f"unsupported header parameters {unsupported}")
    if header["typ"] != TYP:
        raise _fail(Failure.MALFORMED, f"typ is {header['typ']!r}, expected {TYP!r}")
    kid, seal_id, x5c = header["kid"], header["seal"], header["x5c"]
    if not (isinstance(kid, str) and isinstance(seal_id, str) and kid and seal_id):
        raise _fail(Failure.MALFORMED, "kid and seal must be non-empty strings")
    if not (isinstance(x5c, list) and x5c and all(isinstance(c, str) for c in x5c)):
        raise _fail(Failure.MALFORMED, "x5c must be a non-empty array of strings")
    presented = _parse_x5c(tuple(x5c))
    if not algorithm.accepts(presented.leaf_key):
        raise _fail(
            Failure.ALG_NOT_ALLOWED,
            f"alg {algorithm.name} does not match the signer's {type(presented.leaf_key).__name__}",
        )
    prefix = verify_digest = None
    if algorithm.prehash:
        prefix = hashlib.new(algorithm.prehash, f"{h64}.".encode())
        verify_digest = algorithm.digest_verifier(presented.leaf_key)
    return _Header(algorithm, kid, seal_id, tuple(x5c), presented, prefix, verify_digest)


class JwsVerifier:
    """Verifies licence tokens against a trust bundle and the known seals. Thread-safe.

    Parsed protected headers are cached by their exact base64url text: a
    department's header is the same on every licence it signs.
    """

    def __init__(
        self,
        trust: TrustBundle | ChainVerifier,
        seals: SealRegistry,
        *,
        max_clock_skew: timedelta = timedelta(minutes=5),
        cache_size: int = 1024,
    ) -> None:
        self.chains = trust if isinstance(trust, ChainVerifier) else ChainVerifier(trust)
        self.seals = seals
        self._skew = max_clock_skew.total_seconds()
        self._allowed: dict[str, Algorithm] = {n: get_algorithm(n) for n in allowed_algorithms()}
        self._headers: OrderedDict[tuple[int, str], tuple[str, _Header]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # (iat, its datetime): one tuple, replaced whole, so threads read a consistent pair
        self._last_iat: tuple[int | None, datetime] = (None, datetime.fromtimestamp(0, UTC))

    def _header(self, token: str, end: int) -> _Header:
        """The parsed header ``token[:end]``.

        Keyed by length and tail, so a multi-kilobyte header is neither copied
        nor hashed on every call; the full text is compared on a hit.
        """
        key = (end, token[end - 48 : end])
        found = self._headers.get(key)
        if found is None or not token.startswith(found[0]):
            h64 = token[:end]
            header = _parse_header(h64, self._allowed)
            with self._lock:
                self._headers[key] = (h64, header)
                while len(self._headers) > self._cache_size:
                    self._headers.popitem(last=False)
            return header
        return found[1]

    def verify(self, token: str, *, now: datetime | None = None) -> VerifiedLicence:
        """Verify ``token``; VerificationError (with the failed check) if it is not valid.

        ``now`` (default: the clock) bounds ``iat`` and judges CRL freshness.
        """
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise _fail(Failure.MALFORMED, "token is not a string of at most 1 MiB")
        first, last = token.find("."), token.rfind(".")
        if first < 0 or first == last or token.find(".", first + 1) != last:
            raise _fail(Failure.MALFORMED, "a compact JWS has three segments")
        header = self._header(token, first)
        try:
            p64 = token[first + 1 : last].encode("ascii")  # encoded once: decoded and hashed
            payload_bytes, signature = b64url_decode_bytes(p64), b64url_decode(token[last + 1 :])
        except (ValueError, UnicodeEncodeError) as exc:
            raise _fail(Failure.MALFORMED, f"token does not parse: {exc}") from None
        presented = header.presented
        if header.prefix is not None:  # the header's hash state is cached: hash the payload only
            digest = header.prefix.copy()
            digest.update(p64)
            valid = header.verify_digest(signature, digest.digest())
        else:
            valid = header.algorithm.verify(
                presented.leaf_key, signature, token[:last].encode("ascii")
            )
        if not valid:
            raise _fail(Failure.BAD_SIGNATURE, "the signature does not verify with the x5c leaf")

        payload = self._payload(payload_bytes)
        iat = payload.get("iat")
        if type(iat) is not int:
            raise _fail(Failure.SIGNING_TIME_INVALID, "payload has no integer iat")
        clock = now or datetime.now(UTC)
        if iat > clock.timestamp() + self._skew:
            raise _fail(Failure.SIGNING_TIME_INVALID, f"iat {iat} lies in the future")
        cached = self._last_iat  # tokens signed in the same second share it
        if cached[0] == iat:
            signed_at = cached[1]
        else:
            signed_at = datetime.fromtimestamp(iat, UTC)
            self._last_iat = (iat, signed_at)

        chain = self.chains.verify(
            presented.leaf, presented.intermediates, at=signed_at, now=clock, cache_key=header.x5c
        )
        if presented.department is None:
            raise _fail(Failure.CHAIN_INVALID, "the signer certificate names no department USCC")
        seal = self.seals.check(header.seal_id, at=signed_at, signer_hash=presented.leaf_hash)
        return VerifiedLicence(
            payload=payload,
            signed_at=signed_at,
            algorithm=header.algorithm.name,
            key_id=header.kid,
            seal=seal,
            department=presented.department,
            chain=chain.certificates,
        )

    @staticmethod
    def _payload(data: bytes) -> dict[str, Any]:
        try:
            payload = loads_canonical(data)
        except ValueError as exc:
            raise _fail(Failure.MALFORMED, f"payload: {exc}") from None
        if not isinstance(payload, dict):
            raise _fail(Failure.MALFORMED, "payload is not a JSON object")
        return payload


_VERIFIERS: OrderedDict[tuple[int, int], tuple[TrustBundle, SealRegistry, JwsVerifier]]
_VERIFIERS = OrderedDict()
_VERIFIERS_LOCK = threading.Lock()


def verify_jws(
    token: str, trust: TrustBundle, seals: SealRegistry, *, now: datetime | None = None
) -> VerifiedLicence:
    """Verify ``token`` (see the module docstring for the checks).

    Reuses one :class:`JwsVerifier`, and so its caches, per (trust, seals) pair.
    """
    key = (id(trust), id(seals))
    with _VERIFIERS_LOCK:
        entry = _VERIFIERS.get(key)
        if entry is None or entry[0] is not trust or entry[1] is not seals:
            entry = (trust, seals, JwsVerifier(trust, seals))
            _VERIFIERS[key] = entry
            while len(_VERIFIERS) > 16:
                _VERIFIERS.popitem(last=False)
    return entry[2].verify(token, now=now)
