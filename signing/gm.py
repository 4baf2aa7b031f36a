"""SM2 signatures with SM3 (GB/T 32918, GB/T 32905), the optional ``gm`` extra.

``pip install zhida[gm]`` installs ``tongsuopy`` (Tongsuo, the OpenSSL fork
with the Chinese algorithms). When it imports, :func:`register_sm2` adds the
algorithm ``SM2`` to :mod:`signing.algorithms`, so key stores can generate
and keep SM2 keys and JWS / seal signatures can use them. ``signing``
imports this module on start-up; without tongsuopy nothing happens and
``SM2`` stays unknown (``ALGORITHM_NOT_ALLOWED``).

Signatures follow GB/T 32918.2: the signer's Z value is
``SM3(ENTL || ID || a || b || xG || yG || xA || yA)`` with the default signer
id ``1234567812345678`` (GM/T 0009), the message digest is ``SM3(Z || M)``.
Tongsuo computes Z itself; :func:`z_value` recomputes it here so the tests can
prove which id Tongsuo used by cross-checking with the independent
pure-Python ``gmssl`` package (each verifies what the other signed). The JOSE
encoding is ``r || s``, 32 bytes each, like ES256.

Not covered: X.509 certificates with SM2 keys (cryptography cannot parse or
issue them), hence no SM2 department certificates or PDF signatures yet.

Example::

    >>> from signing.algorithms import get_algorithm
    >>> sm2 = get_algorithm("SM2")                       # doctest: +SKIP
    >>> key = sm2.generate_private_key()                 # doctest: +SKIP
    >>> sm2.verify(key.public_key(), sm2.sign(key, b"m"), b"m")  # doctest: +SKIP
    True
"""

from __future__ import annotations

from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from signing.algorithms import Algorithm, allowed_algorithms, register
from zhida.errors import InvalidArgument

__all__ = ["DEFAULT_SIGNER_ID", "SM2_NAME", "available", "register_sm2", "z_value"]

SM2_NAME = "SM2"
DEFAULT_SIGNER_ID = b"1234567812345678"
_SIZE = 32

# GB/T 32918.5 curve parameters (sm2p256v1)
_A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
_B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
_GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
_GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

try:
    from tongsuopy.crypto import hashes as _gm_hashes
    from tongsuopy.crypto import serialization as _gm_serialization
    from tongsuopy.crypto.asymciphers import ec as _gm_ec
    from tongsuopy.crypto.exceptions import InvalidSignature as _GmInvalidSignature
except ImportError:  # the extra is not installed
    _gm_ec = None


def available() -> bool:
    """True when tongsuopy imports (``pip install zhida[gm]``)."""
    return _gm_ec is not None


def z_value(public_key: Any, signer_id: bytes = DEFAULT_SIGNER_ID) -> bytes:
    """GB/T 32918.2 Z_A of an SM2 public key (tongsuopy key) for ``signer_id``."""
    numbers = public_key.public_numbers()
    digest = _gm_hashes.Hash(_gm_hashes.SM3())
    digest.update((len(signer_id) * 8).to_bytes(2, "big") + signer_id)
    for value in (_A, _B, _GX, _GY, numbers.x, numbers.y):
        digest.update(value.to_bytes(_SIZE, "big"))
    return cast(bytes, digest.finalize())


class _SM2(Algorithm):
    name = SM2_NAME

    def generate_private_key(self) -> Any:
        return _gm_ec.generate_private_key(_gm_ec.SM2())

    def accepts(self, key: Any) -> bool:
        return isinstance(
            key, _gm_ec.EllipticCurvePublicKey | _gm_ec.EllipticCurvePrivateKey
        ) and isinstance(key.curve, _gm_ec.SM2)

    def sign(self, private_key: PrivateKeyTypes, data: bytes) -> bytes:
        key: Any = private_key
        if not isinstance(key, _gm_ec.EllipticCurvePrivateKey):
            raise InvalidArgument("SM2 needs an SM2 key", reason="KEY_TYPE_MISMATCH")
        # Tongsuo hashes SM3(Z || M) with Z from the default id 1234567812345678
        r, s = decode_dss_signature(key.sign(data, _gm_ec.ECDSA(_gm_hashes.SM3())))
        return r.to_bytes(_SIZE, "big") + s.to_bytes(_SIZE, "big")

    def verify(self, public_key: PublicKeyTypes, signature: bytes, data: bytes) -> bool:
        key: Any = public_key
        if len(signature) != 2 * _SIZE or not isinstance(key, _gm_ec.EllipticCurvePublicKey):
            return False
        der = encode_dss_signature(
            int.from_bytes(signature[:_SIZE], "big"), int.from_bytes(signature[_SIZE:], "big")
        )
        try:
            key.verify(der, data, _gm_ec.ECDSA(_gm_hashes.SM3()))
        except (_GmInvalidSignature, ValueError):
            return False
        return True

    def x509_hash(self) -> None:
        return None  # unused: cryptography cannot build SM2 certificates

    def private_pem(self, key: PrivateKeyTypes, passphrase: bytes | None) -> bytes:
        ser = _gm_serialization
        encryption = ser.BestAvailableEncryption(passphrase) if passphrase else ser.NoEncryption()
        gm_key: Any = key
        pem: bytes = gm_key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, encryption)
        return pem

    def load_private_pem(self, pem: bytes, passphrase: bytes | None) -> PrivateKeyTypes:
        return cast(
            PrivateKeyTypes, _gm_serialization.load_pem_private_key(pem, password=passphrase)
        )

    def public_pem(self, key: PublicKeyTypes) -> bytes:
        ser = _gm_serialization
        gm_key: Any = key
        pem: bytes = gm_key.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
        return pem

    def load_public_pem(self, pem: bytes) -> PublicKeyTypes:
        return cast(PublicKeyTypes, _gm_serialization.load_pem_public_key(pem))


SM2: Algorithm | None = _SM2() if available() else None


def register_sm2() -> bool:
    """Register ``SM2`` if the extra is installed; True when it is registered."""
    if SM2 is None:
        return False
    if SM2_NAME not in allowed_algorithms():
        register(SM2)
    return True


register_sm2()
