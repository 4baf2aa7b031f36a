"""SM2/SM3 (the gm extra): registered, GB/T 32918 Z value, cross-checked with gmssl.

The extra is part of the dev install, so these tests fail rather than skip
when tongsuopy or gmssl is missing.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from gmssl import sm2 as gmssl_sm2
from gmssl import sm3 as gmssl_sm3

from signing import gm
from signing.algorithms import algorithm_for_key, allowed_algorithms, get_algorithm
from signing.errors import KeyStoreError
from signing.keystore import FileKeyStore

MESSAGE = "电子证照 SM2 签名".encode()


def _gmssl(key: Any) -> gmssl_sm2.CryptSM2:
    numbers = key.private_numbers()
    public = numbers.public_numbers
    crypt = gmssl_sm2.CryptSM2(private_key=f"{numbers.private_value:064x}", public_key="")
    # set after construction: gmssl's __init__ does public_key.lstrip("04"), which also eats
    # the leading 0s and 4s of an x coordinate starting "04" (1 key in 256: a flaky test)
    crypt.public_key = f"{public.x:064x}{public.y:064x}"
    return crypt


def test_sm2_is_registered() -> None:
    assert gm.available()
    assert "SM2" in allowed_algorithms()
    sm2 = get_algorithm("SM2")
    key = sm2.generate_private_key()
    assert algorithm_for_key(key.public_key()) is sm2


def test_each_verifies_what_the_other_signed() -> None:
    sm2 = get_algorithm("SM2")
    for _ in range(5):
        key: Any = sm2.generate_private_key()
        other = _gmssl(key)
        ours = sm2.sign(key, MESSAGE)  # JOSE r || s
        assert len(ours) == 64
        assert other.verify_with_sm3(ours.hex(), MESSAGE)
        theirs = bytes.fromhex(other.sign_with_sm3(MESSAGE, secrets.token_hex(32)))
        assert sm2.verify(key.public_key(), theirs, MESSAGE)
        assert not sm2.verify(key.public_key(), theirs, MESSAGE + b"!")
        assert not other.verify_with_sm3(ours.hex(), MESSAGE + b"!")


def test_digest_is_sm3_of_z_with_the_default_signer_id() -> None:
    """Tongsuo's signature verifies as a raw SM2 signature over SM3(Z || M), Z from our formula."""
    sm2 = get_algorithm("SM2")
    key: Any = sm2.generate_private_key()
    z = gm.z_value(key.public_key(), b"1234567812345678")
    e = gmssl_sm3.sm3_hash(list(z + MESSAGE))
    signature = sm2.sign(key, MESSAGE)
    assert _gmssl(key).verify(signature.hex(), bytes.fromhex(e))
    other_id = gm.z_value(key.public_key(), b"another-signer-id")
    e_other = gmssl_sm3.sm3_hash(list(other_id + MESSAGE))
    assert not _gmssl(key).verify(signature.hex(), bytes.fromhex(e_other))


def test_sm2_keys_in_the_key_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIDA_TEST_SM2_PASSPHRASE", "sm2 passphrase")
    store = FileKeyStore(tmp_path, passphrase_env="ZHIDA_TEST_SM2_PASSPHRASE")
    info = store.generate("sm2-dept", "SM2")
    assert b"ENCRYPTED" in (tmp_path / "sm2-dept.key.pem").read_bytes()
    reopened = FileKeyStore(tmp_path, passphrase_env="ZHIDA_TEST_SM2_PASSPHRASE")
    signature = reopened.sign("sm2-dept", MESSAGE)
    assert info.algorithm.verify(reopened.public_key("sm2-dept"), signature, MESSAGE)
    r, s = decode_dss_signature(_der(signature))
    assert r.to_bytes(32, "big") + s.to_bytes(32, "big") == signature
    monkeypatch.setenv("ZHIDA_TEST_SM2_PASSPHRASE", "wrong")
    with pytest.raises(KeyStoreError) as err:
        FileKeyStore(tmp_path, passphrase_env="ZHIDA_TEST_SM2_PASSPHRASE").sign("sm2-dept", b"x")
    assert err.value.reason == "WRONG_PASSPHRASE"


def _der(signature: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    return encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
