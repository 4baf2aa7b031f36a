"""IETF Token Status List (draft-ietf-oauth-status-list): each issuer's signed status list.

Every licence JWS carries ``"status": {"status_list": {"idx": N, "uri": U}}``.
The list at ``U`` is a byte array of 2-bit statuses — licence ``N`` occupies
bits ``2*(N%4)`` and ``2*(N%4)+1`` of byte ``N//4``, least significant bits
first — compressed with DEFLATE in the ZLIB format and base64url-encoded
without padding: ``{"bits": 2, "lst": "..."}``. The issuer signs it as a JWT
with ``typ: statuslist+jwt`` whose claims are ``sub`` (= ``U``), ``iat``,
``exp``, ``ttl`` (how long a verifier may cache it) and ``status_list``; the
protected header carries ``x5c``, the issuer's certificate chain, so a verifier
holding the trust bundle checks it offline like a licence.

Values used by zhida: 0 valid, 1 revoked (INVALID), 2 suspended (SUSPENDED),
3 superseded (application-specific); see :mod:`licence_vault.model`.

A list's length is rounded up to :data:`CHUNK` entries so that issuing new
licences rarely changes it; entries past the last issued index are 0.

Example::

    >>> lst = StatusList.from_entries(8, {1: 1, 6: 2})
    >>> encoded = lst.encode()
    >>> encoded["bits"], StatusList.decode(encoded).get(6)
    (2, 2)
    >>> StatusList.decode(encoded).get(0)
    0
"""

from __future__ import annotations

import base64
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from signing.algorithms import allowed_algorithms, get_algorithm
from signing.canonical import b64url_decode, b64url_encode, canonical_json, loads_strict
from signing.errors import Failure, VerificationError
from signing.keystore import KeyStore
from signing.pki import department_identity
from signing.trust import ChainVerifier
from zhida.errors import InvalidArgument, ZhidaError

__all__ = [
    "BITS",
    "CHUNK",
    "TYP",
    "StatusList",
    "StatusListCache",
    "VerifiedStatusList",
    "sign_status_list_token",
    "status_list_uri",
    "verify_status_list_token",
]

BITS = 2
CHUNK = 16384  # entries per growth step: 4 KiB raw, a few bytes compressed when all valid
TYP = "statuslist+jwt"
DEFAULT_TTL_SECONDS = 300
DEFAULT_LIFETIME_SECONDS = 24 * 3600
_PER_BYTE = 8 // BITS
_MASK = (1 << BITS) - 1


def status_list_uri(base: str, issuer_code: str) -> str:
    """The list URI of an issuer: ``<base>/<issuer USCC>``."""
    return f"{base.rstrip('/')}/{issuer_code}"


class StatusList:
    """A mutable array of 2-bit statuses."""

    __slots__ = ("_data", "size")

    def __init__(self, size: int, data: bytes | bytearray | None = None) -> None:
        if size < 0:
            raise ValueError("negative size")
        self.size = size
        need = (size + _PER_BYTE - 1) // _PER_BYTE
        self._data = bytearray(data or b"")
        if len(self._data) < need:
            self._data.extend(bytes(need - len(self._data)))
        del self._data[need:]

    @classmethod
    def from_entries(cls, size: int, entries: Mapping[int, int]) -> StatusList:
        lst = cls(size)
        for idx, value in entries.items():
            lst.set(idx, value)
        return lst

    @staticmethod
    def capacity_for(count: int) -> int:
        """The list size covering ``count`` indices, rounded up to :data:`CHUNK`."""
        return max(CHUNK, -(-count // CHUNK) * CHUNK)

    def set(self, idx: int, value: int) -> None:
        if not 0 <= idx < self.size:
            raise IndexError(f"index {idx} outside the list of {self.size}")
        if not 0 <= value <= _MASK:
            raise ValueError(f"status value {value} does not fit {BITS} bits")
        byte, shift = divmod(idx, _PER_BYTE)
        shift *= BITS
        self._data[byte] = (self._data[byte] & ~(_MASK << shift) & 0xFF) | (value << shift)

    def get(self, idx: int) -> int:
        if not 0 <= idx < self.size:
            raise IndexError(f"index {idx} outside the list of {self.size}")
        byte, shift = divmod(idx, _PER_BYTE)
        return (self._data[byte] >> (shift * BITS)) & _MASK

    def encode(self) -> dict[str, Any]:
        """The ``status_list`` claim: ``{"bits": 2, "lst": base64url(zlib(bytes))}``."""
        compressed = zlib.compress(bytes(self._data), 9)
        return {"bits": BITS, "lst": b64url_encode(compressed)}

    @classmethod
    def decode(cls, claim: Mapping[str, Any]) -> StatusList:
        """Parse a ``status_list`` claim; ValueError if it is not a 2-bit list."""
        if claim.get("bits") != BITS:
            raise ValueError(f"only {BITS}-bit status lists are used here, got {claim.get('bits')}")
        lst = claim.get("lst")
        if not isinstance(lst, str):
            raise ValueError("lst must be a string")
        try:
            raw = zlib.decompress(b64url_decode(lst))
        except (zlib.error, ValueError) as exc:
            raise ValueError(f"lst does not decode: {exc}") from None
        return cls(len(raw) * _PER_BYTE, raw)


# -- the signed token ---------------------------------------------------------------


def sign_status_list_token(
    key_store: KeyStore,
    key_id: str,
    chain: Sequence[x509.Certificate],
    *,
    uri: str,
    status_list: StatusList,
    now: datetime | None = None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
) -> str:
    """A ``statuslist+jwt`` signed with ``key_id`` (chain: the signer first)."""
    info = key_store.info(key_id)
    iat = int((now or datetime.now(UTC)).timestamp())
    header = {
        "alg": info.algorithm.name,
        "kid": key_id,
        "typ": TYP,
        "x5c": [base64.b64encode(c.public_bytes(Encoding.DER)).decode("ascii") for c in chain],
    }
    claims = {
        "sub": uri,
        "iat": iat,
        "exp": iat + lifetime_seconds,
        "ttl": ttl_seconds,
        "status_list": status_list.encode(),
    }
    signing_input = (
        b64url_encode(canonical_json(header)) + "." + b64url_encode(canonical_json(claims))
    ).encode("ascii")
    signature = key_store.sign(key_id, signing_input)
    return signing_input.decode("ascii") + "." + b64url_encode(signature)


@dataclass(frozen=True, slots=True)
class VerifiedStatusList:
    uri: str
    issuer_code: str
    issued_at: datetime
    expires_at: datetime
    ttl_seconds: int
    status_list: StatusList

    def status(self, idx: int) -> int:
        try:
            return self.status_list.get(idx)
        except IndexError:
            raise VerificationError(
                Failure.MALFORMED, f"status index {idx} lies outside the list at {self.uri}"
            ) from None


def _fail(message: str, failure: Failure = Failure.MALFORMED) -> VerificationError:
    return VerificationError(failure, f"status list: {message}")


def verify_status_list_token(
    token: str,
    chains: ChainVerifier,
    *,
    uri: str,
    issuer_code: str | None = None,
    now: datetime | None = None,
) -> VerifiedStatusList:
    """Check a ``statuslist+jwt``: signature, chain to a trusted root, subject, expiry.

    ``issuer_code`` (when given) must be the USCC of the signer certificate.
    Raises VerificationError at the first failed check.
    """
    clock = now or datetime.now(UTC)
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise _fail("not a compact JWS")
    try:
        header = loads_strict(b64url_decode(parts[0]))
        claims = loads_strict(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(f"does not parse: {exc}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _fail("header and claims must be JSON objects")
    if header.get("typ") != TYP:
        raise _fail(f"typ is {header.get('typ')!r}, expected {TYP!r}")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed_algorithms():
        raise _fail(f"alg {alg!r} is not allowed", Failure.ALG_NOT_ALLOWED)
    x5c = header.get("x5c")
    if not (isinstance(x5c, list) and x5c and all(isinstance(c, str) for c in x5c)):
        raise _fail("x5c must be a non-empty array of strings")
    try:
        certs = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c]
        leaf_key = certs[0].public_key()
    except Exception as exc:  # attacker-supplied bytes: any parse failure is MALFORMED
        raise _fail(f"x5c does not parse: {exc}") from None
    algorithm = get_algorithm(alg)
    if not algorithm.accepts(leaf_key):
        raise _fail(f"alg {alg} does not match the signer key", Failure.ALG_NOT_ALLOWED)
    if not algorithm.verify(leaf_key, signature, f"{parts[0]}.{parts[1]}".encode("ascii")):
        raise _fail("the signature does not verify", Failure.BAD_SIGNATURE)
    iat, exp, ttl = claims.get("iat"), claims.get("exp"), claims.get("ttl", DEFAULT_TTL_SECONDS)
    if type(iat) is not int or (exp is not None and type(exp) is not int) or type(ttl) is not int:
        raise _fail("iat, exp and ttl must be integers")
    if iat > clock.timestamp() + 300:
        raise _fail("iat lies in the future", Failure.SIGNING_TIME_INVALID)
    if exp is not None and exp < clock.timestamp():
        raise _fail("the list has expired", Failure.SIGNING_TIME_INVALID)
    if claims.get("sub") != uri:
        raise _fail(f"sub {claims.get('sub')!r} is not the referenced uri {uri!r}")
    signed_at = datetime.fromtimestamp(iat, UTC)
    chains.verify(certs[0], certs[1:], at=signed_at, now=clock, cache_key=tuple(x5c))
    try:
        signer = department_identity(certs[0]).uscc
    except ZhidaError:
        raise _fail("the signer certificate names no department", Failure.CHAIN_INVALID) from None
    if issuer_code is not None and signer != issuer_code:
        raise _fail(f"signed by {signer}, not by the issuer {issuer_code}", Failure.CHAIN_INVALID)
    claim = claims.get("status_list")
    if not isinstance(claim, dict):
        raise _fail("no status_list claim")
    try:
        status_list = StatusList.decode(claim)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    return VerifiedStatusList(
        uri=uri,
        issuer_code=signer,
        issued_at=signed_at,
        expires_at=datetime.fromtimestamp(exp if exp is not None else iat + ttl, UTC),
        ttl_seconds=ttl,
        status_list=status_list,
    )


class StatusListCache:
    """Verified status lists by uri, each kept for its ``ttl`` (and never past ``exp``).

    ``fetch(uri)`` returns the token (from the vault over gRPC, a file, …).
    Thread-safe; :meth:`invalidate` forgets one list or all.
    """

    def __init__(
        self,
        fetch: Callable[[str], str],
        chains: ChainVerifier,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._chains = chains
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, VerifiedStatusList]] = {}

    def get(self, uri: str, issuer_code: str | None = None) -> VerifiedStatusList:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(uri)
        if entry is not None and entry[0] > now:
            return entry[1]
        token = self._fetch(uri)
        verified = verify_status_list_token(
            token,
            self._chains,
            uri=uri,
            issuer_code=issuer_code,
            now=datetime.fromtimestamp(now, UTC),
        )
        until = min(now + verified.ttl_seconds, verified.expires_at.timestamp())
        with self._lock:
            self._entries[uri] = (until, verified)
        return verified

    def invalidate(self, uri: str | None = None) -> None:
        with self._lock:
            if uri is None:
                self._entries.clear()
            else:
                self._entries.pop(uri, None)


def parse_status_claim(payload: Mapping[str, Any]) -> tuple[int, str]:
    """(idx, uri) of a licence payload's ``status`` claim; InvalidArgument if absent."""
    status = payload.get("status")
    ref = status.get("status_list") if isinstance(status, dict) else None
    idx = ref.get("idx") if isinstance(ref, dict) else None
    uri = ref.get("uri") if isinstance(ref, dict) else None
    if type(idx) is not int or idx < 0 or not isinstance(uri, str) or not uri:
        raise InvalidArgument(
            "the licence carries no status list reference", reason="NO_STATUS_REFERENCE"
        )
    return idx, uri
