"""Signature algorithms, by their JOSE ``alg`` name, in one registry.

zhida signs with ECDSA P-256/SHA-256 (``ES256``, the default) or Ed25519
(``EdDSA``). Each :class:`Algorithm` generates keys, signs and verifies with
signatures in the JOSE encoding (ES256: the 64-byte ``r || s``, RFC 7518 §3.4),
and says which keys it accepts. The mandated Chinese algorithm, SM2 with SM3,
comes later as an optional extra that calls :func:`register` with its own
:class:`Algorithm` subclass; nothing else in ``signing`` names an algorithm.

Example::

    >>> from signing.algorithms import ES256, get_algorithm
    >>> key = ES256.generate_private_key()
    >>> sig = ES256.sign(key, b"data")
    >>> len(sig), get_algorithm("ES256").verify(key.public_key(), sig, b"data")
    (64, True)
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from zhida.errors import InvalidArgument

__all__ = [
    "DEFAULT_ALGORITHM",
    "ES256",
    "Algorithm",
    "EdDSA",
    "algorithm_for_key",
    "allowed_algorithms",
    "get_algorithm",
    "register",
]


class Algorithm(abc.ABC):
    """One signature algorithm. Instances are stateless singletons."""

    name: str
    """The JOSE ``alg`` value (RFC 7518 / RFC 8037)."""

    prehash: str | None = None
    """hashlib name of the digest the algorithm signs, if it can sign a digest
    computed by the caller (:meth:`sign_digest`); None for Ed25519 and SM2,
    which hash the message themselves."""

    @abc.abstractmethod
    def generate_private_key(self) -> CertificateIssuerPrivateKeyTypes:
        """A fresh private key for this algorithm."""

    @abc.abstractmethod
    def accepts(self, key: PublicKeyTypes | PrivateKeyTypes) -> bool:
        """True when ``key`` (public or private) belongs to this algorithm."""

    @abc.abstractmethod
    def sign(self, private_key: PrivateKeyTypes, data: bytes) -> bytes:
        """Sign ``data``; the signature in JOSE encoding."""

    @abc.abstractmethod
    def verify(self, public_key: PublicKeyTypes, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` (JOSE encoding) is valid; never raises for bad input."""

    def sign_digest(self, private_key: PrivateKeyTypes, digest: bytes) -> bytes:
        """Sign a :attr:`prehash` digest of the message (same signature as :meth:`sign`)."""
        raise NotImplementedError(f"{self.name} signs messages, not digests")

    def digest_signer(self, private_key: PrivateKeyTypes) -> Callable[[bytes], bytes]:
        """:meth:`sign_digest` with the key bound, its type checked once (for key stores
        that sign many times with one key); NotImplementedError as :meth:`sign_digest`."""
        if self.prehash is None:
            raise NotImplementedError(f"{self.name} signs messages, not digests")
        return functools.partial(self.sign_digest, private_key)

    def verify_digest(self, public_key: PublicKeyTypes, signature: bytes, digest: bytes) -> bool:
        """:meth:`verify` given the message's :attr:`prehash` digest."""
        raise NotImplementedError(f"{self.name} verifies messages, not digests")

    def digest_verifier(self, public_key: PublicKeyTypes) -> Callable[[bytes, bytes], bool]:
        """``verify(signature, digest)``: :meth:`verify_digest` with the key bound, its
        type checked once (for verifiers that check many tokens of one signer);
        NotImplementedError as :meth:`verify_digest`."""
        if self.prehash is None:
            raise NotImplementedError(f"{self.name} verifies messages, not digests")
        return functools.partial(self.verify_digest, public_key)

    @abc.abstractmethod
    def x509_hash(self) -> hashes.SHA256 | None:
        """The hash to pass to cryptography's x509 builders' ``sign``."""

    # Key serialisation, for key stores. The defaults use cryptography; an
    # algorithm whose keys come from another library (SM2) overrides them.

    def private_pem(self, key: PrivateKeyTypes, passphrase: bytes | None) -> bytes:
        """PKCS#8 PEM, encrypted (best available) when ``passphrase`` is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase is not None
            else serialization.NoEncryption()
        )
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def load_private_pem(self, pem: bytes, passphrase: bytes | None) -> PrivateKeyTypes:
        """The key in ``pem``; ValueError for a wrong passphrase or a broken file."""
        return serialization.load_pem_private_key(pem, password=passphrase)

    def public_pem(self, key: PublicKeyTypes) -> bytes:
        """SubjectPublicKeyInfo PEM."""
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def load_public_pem(self, pem: bytes) -> PublicKeyTypes:
        return serialization.load_pem_public_key(pem)

    def __repr__(self) -> str:
        return f"<Algorithm {self.name}>"


_EC_PRIVATE = type(ec.derive_private_key(1, ec.SECP256R1()))  # the concrete (Rust) classes
_EC_PUBLIC = type(ec.derive_private_key(1, ec.SECP256R1()).public_key())


class _ES256(Algorithm):
    name = "ES256"
    prehash = "sha256"
    _SIZE = 32  # bytes per coordinate on P-256
    _ECDSA = ec.ECDSA(hashes.SHA256())
    _PREHASHED = ec.ECDSA(Prehashed(hashes.SHA256()))

    def generate_private_key(self) -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def accepts(self, key: PublicKeyTypes | PrivateKeyTypes) -> bool:
        return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and (
            isinstance(key.curve, ec.SECP256R1)
        )

    def sign(self, private_key: PrivateKeyTypes, data: bytes) -> bytes:
        return self._sign(private_key, data, self._ECDSA)

    def sign_digest(self, private_key: PrivateKeyTypes, digest: bytes) -> bytes:
        return self._sign(private_key, digest, self._PREHASHED)

    def digest_signer(self, private_key: PrivateKeyTypes) -> Callable[[bytes], bytes]:
        key = self._ec_key(private_key)
        sign, mode = key.sign, self._PREHASHED

        def sign_digest(digest: bytes) -> bytes:
            return _jose_from_der(sign(digest, mode))

        return sign_digest

    def _sign(self, private_key: PrivateKeyTypes, data: bytes, mode: ec.ECDSA) -> bytes:
        return _jose_from_der(self._ec_key(private_key).sign(data, mode))

    @staticmethod
    def _ec_key(private_key: PrivateKeyTypes) -> ec.EllipticCurvePrivateKey:
        # an exact-type test first: isinstance against the ABC costs a sizeable
        # part of the JWS overhead
        if type(private_key) is not _EC_PRIVATE and not isinstance(
            private_key, ec.EllipticCurvePrivateKey
        ):
            raise InvalidArgument("ES256 needs an EC P-256 key", reason="KEY_TYPE_MISMATCH")
        return private_key

    def verify(self, public_key: PublicKeyTypes, signature: bytes, data: bytes) -> bool:
        return self._verify(public_key, signature, data, self._ECDSA)

    def verify_digest(self, public_key: PublicKeyTypes, signature: bytes, digest: bytes) -> bool:
        return self._verify(public_key, signature, digest, self._PREHASHED)

    def _verify(
        self, public_key: PublicKeyTypes, signature: bytes, data: bytes, mode: ec.ECDSA
    ) -> bool:
        if len(signature) != 2 * self._SIZE or (
            type(public_key) is not _EC_PUBLIC
            and not isinstance(public_key, ec.EllipticCurvePublicKey)
        ):
            return False
        try:
            public_key.verify(_der_from_jose(signature), data, mode)
        except InvalidSignature:
            return False
        return True

    def digest_verifier(self, public_key: PublicKeyTypes) -> Callable[[bytes, bytes], bool]:
        if not (self.accepts(public_key) and isinstance(public_key, ec.EllipticCurvePublicKey)):
            return lambda signature, digest: False  # not a P-256 key: nothing verifies
        verify, mode, invalid = public_key.verify, self._PREHASHED, InvalidSignature

        def verify_digest(signature: bytes, digest: bytes) -> bool:
            if len(signature) != 64:
                return False
            try:
                verify(_der_from_jose(signature), digest, mode)
            except invalid:
                return False
            return True

        return verify_digest

    def x509_hash(self) -> hashes.SHA256:
        return hashes.SHA256()


def _der_from_jose(signature: bytes) -> bytes:
    """The DER ECDSA signature of a JOSE ``r || s`` (two equal halves).

    What ``encode_dss_signature`` returns, byte for byte (each INTEGER minimal:
    leading zero bytes dropped, one 0x00 before a high bit, zero as ``02 01 00``),
    built by slicing at half its cost. Up to 60-byte halves (P-256, SM2) every
    length fits in one byte; longer signatures take ``encode_dss_signature``.
    """
    half = len(signature) // 2
    if half > 60:
        return encode_dss_signature(
            int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        )
    r, s = signature[:half].lstrip(b"\0"), signature[half:].lstrip(b"\0")
    if not r or r[0] & 0x80:
        r = b"\0" + r
    if not s or s[0] & 0x80:
        s = b"\0" + s
    r_len, s_len = len(r), len(s)
    return b"".join((bytes((0x30, r_len + s_len + 4, 0x02, r_len)), r, bytes((0x02, s_len)), s))


def _jose_from_der(der: bytes, size: int = 32) -> bytes:
    """``r || s`` (``size`` bytes each) of a DER ECDSA signature from OpenSSL.

    For P-256 the DER is at most 72 bytes, so every length is one byte:
    ``30 L 02 Lr r 02 Ls s``, each integer minimal (a 0x00 before a high bit,
    leading zeros dropped). Slicing costs a fifth of ``decode_dss_signature``
    and two ``int.to_bytes``; anything else takes that general path.
    """
    n = len(der)
    r_len = der[3]
    s_at = 6 + r_len  # where s starts
    s_len = n - s_at
    if (
        der[0] == 0x30
        and der[1] == n - 2
        and der[2] == 0x02
        and 0 < r_len <= size + 1
        and 0 < s_len <= size + 1
        and der[s_at - 2] == 0x02
        and der[s_at - 1] == s_len
    ):
        r_bytes, s_bytes = der[4 : s_at - 2][-size:], der[s_at:][-size:]
        return r_bytes.rjust(size, b"\0") + s_bytes.rjust(size, b"\0")
    r, s = decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


class _EdDSA(Algorithm):
    name = "EdDSA"

    def generate_private_key(self) -> ed25519.Ed25519PrivateKey:
        return ed25519.Ed25519PrivateKey.generate()

    def accepts(self, key: PublicKeyTypes | PrivateKeyTypes) -> bool:
        return isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey)

    def sign(self, private_key: PrivateKeyTypes, data: bytes) -> bytes:
        if not isinstance(private_key, ed25519.Ed25519PrivateKey):
            raise InvalidArgument("EdDSA needs an Ed25519 key", reason="KEY_TYPE_MISMATCH")
        return private_key.sign(data)

    def verify(self, public_key: PublicKeyTypes, signature: bytes, data: bytes) -> bool:
        if len(signature) != 64 or not isinstance(public_key, ed25519.Ed25519PublicKey):
            return False
        try:
            public_key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def x509_hash(self) -> None:
        return None


ES256: Algorithm = _ES256()
EdDSA: Algorithm = _EdDSA()
DEFAULT_ALGORITHM = ES256

_REGISTRY: dict[str, Algorithm] = {ES256.name: ES256, EdDSA.name: EdDSA}


def register(algorithm: Algorithm) -> None:
    """Add an algorithm (e.g. SM2/SM3 from an optional extra) to the allow-list."""
    if algorithm.name in _REGISTRY and _REGISTRY[algorithm.name] is not algorithm:
        raise InvalidArgument(
            f"algorithm {algorithm.name!r} is already registered", reason="ALGORITHM_EXISTS"
        )
    _REGISTRY[algorithm.name] = algorithm


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm called ``name``; InvalidArgument otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidArgument(
            f"signature algorithm {name!r} is not allowed; allowed: {sorted(_REGISTRY)}",
            reason="ALGORITHM_NOT_ALLOWED",
        ) from None


def allowed_algorithms() -> frozenset[str]:
    """The ``alg`` names a verifier accepts: never ``none``, never an HMAC."""
    return frozenset(_REGISTRY)


def algorithm_for_key(
    key: PublicKeyTypes | PrivateKeyTypes | CertificatePublicKeyTypes,
) -> Algorithm:
    """The registered algorithm that accepts ``key``; InvalidArgument if none does."""
    for algorithm in _REGISTRY.values():
        if algorithm.accepts(key):
            return algorithm
    raise InvalidArgument(
        f"no allowed signature algorithm for a {type(key).__name__}",
        reason="ALGORITHM_NOT_ALLOWED",
    )
