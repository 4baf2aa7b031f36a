"""The signing hot path's shortcuts and caches: same signatures, and never stale.

* ES256 signatures are converted from DER to ``r || s`` and back by slicing:
  the same bytes as ``decode_dss_signature`` / ``encode_dss_signature`` for
  every integer length;
* a verifier with the public key bound (``digest_verifier``) accepts and
  refuses exactly what ``verify_digest`` does;
* a key handle binds its key once, and still refuses to sign once retired;
* the deployment's per-department context drops at once when this process
  revokes a certificate or seal or issues a new certificate (through any
  ``Deployment`` of the directory), and within the recheck interval when
  another process does.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from signing import deployment as deployment_module
from signing import deployment_state
from signing.algorithms import ES256, EdDSA, _der_from_jose, _jose_from_der
from signing.canonical import b64url_decode, canonical_json
from signing.deployment import Deployment
from signing.errors import Failure, KeyStoreError
from signing.keystore import FileKeyStore
from tests.unit.signing.conftest import DEPT_NAME, DEPT_USCC, make_deployment
from zhida.errors import FailedPrecondition, InvalidArgument

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _reference(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@pytest.mark.parametrize(
    "r",
    [1, 0x7F, 0x80, 2**248 - 1, 2**248, 2**255 - 1, 2**255, P256_ORDER - 1],
)
def test_der_conversion_handles_every_integer_length(r: int) -> None:
    for s in (1, 0xFF, 2**255 + 12345, r):
        assert _jose_from_der(encode_dss_signature(r, s)) == _reference(encode_dss_signature(r, s))


def test_der_conversion_of_real_signatures() -> None:
    key = ES256.generate_private_key()
    sign = ES256.digest_signer(key)
    for i in range(2000):  # r or s of 31 bytes (leading zero byte) 1 time in 128
        digest = hashlib.sha256(i.to_bytes(4, "big")).digest()
        signature = sign(digest)
        assert ES256.verify_digest(key.public_key(), signature, digest)
        assert ES256.verify(key.public_key(), ES256.sign(key, b"m%d" % i), b"m%d" % i)


def test_unusual_der_takes_the_general_path() -> None:
    # P-521: the DER sequence needs a long-form length, which the slicing does not handle
    key = ec.generate_private_key(ec.SECP521R1())
    der = key.sign(b"m", ec.ECDSA(hashes.SHA512()))
    assert der[1] == 0x81
    r, s = decode_dss_signature(der)
    assert _jose_from_der(der, 66) == r.to_bytes(66, "big") + s.to_bytes(66, "big")
    for garbage in (b"\x30\x03\x02\x01\x01", b"\x31\x06\x02\x01\x01\x02\x01\x01"):
        with pytest.raises(ValueError, match="asn1"):
            _jose_from_der(garbage)


@pytest.mark.parametrize(
    "r",
    [0, 1, 0x7F, 0x80, 0xFF, 2**248 - 1, 2**248, 2**255 - 1, 2**255, P256_ORDER - 1, 2**256 - 1],
)
def test_jose_to_der_is_encode_dss_signature(r: int) -> None:
    for s in (0, 1, 0x80, 2**247, 2**255 + 12345, 2**256 - 1, r):
        jose = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert _der_from_jose(jose) == encode_dss_signature(r, s)
        assert _jose_from_der(_der_from_jose(jose)) == jose


def test_jose_to_der_of_long_halves_takes_the_general_path() -> None:
    for size in (48, 60, 61, 66):  # P-384; the last one-byte length; long-form lengths
        r, s = 2 ** (8 * size) - 1, 2 ** (8 * size - 9) + 7
        jose = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        assert _der_from_jose(jose) == encode_dss_signature(r, s)


def test_bound_digest_verifier_matches_verify_digest() -> None:
    key = ES256.generate_private_key()
    public = key.public_key()
    verify = ES256.digest_verifier(public)
    sign = ES256.digest_signer(key)
    for i in range(300):
        digest = hashlib.sha256(i.to_bytes(4, "big")).digest()
        signature = sign(digest)
        assert verify(signature, digest)
        assert ES256.verify_digest(public, signature, digest)
        flipped = bytes([signature[i % 64] ^ (1 << (i % 8))])  # r's bits, then s's
        tampered = signature[: i % 64] + flipped + signature[i % 64 + 1 :]
        other = hashlib.sha256(b"other").digest()
        for sig, dig in ((tampered, digest), (signature, other), (signature[:63], digest)):
            assert not verify(sig, dig)
            assert not ES256.verify_digest(public, sig, dig)
    digest = hashlib.sha256(b"x").digest()
    assert not verify(b"", digest)
    assert not verify(sign(digest) + b"\0", digest)
    assert not verify(bytes(64), digest)  # r = s = 0


def test_bound_digest_verifier_refuses_other_keys() -> None:
    digest = hashlib.sha256(b"x").digest()
    p384 = ec.generate_private_key(ec.SECP384R1())
    der = p384.sign(digest, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    jose = r.to_bytes(48, "big") + s.to_bytes(48, "big")
    assert not ES256.digest_verifier(p384.public_key())(jose, digest)
    assert not ES256.digest_verifier(EdDSA.generate_private_key().public_key())(bytes(64), digest)
    with pytest.raises(NotImplementedError):
        EdDSA.digest_verifier(EdDSA.generate_private_key().public_key())


def test_a_retired_key_stops_signing_through_its_cached_signer(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path, dev_mode=True)
    store.generate("k1")
    handle = store.handle("k1")
    digest = hashlib.sha256(b"x").digest()
    assert ES256.verify_digest(store.public_key("k1"), handle.sign_digest(digest), digest)
    store.rotate("k1", "k2")
    with pytest.raises(KeyStoreError) as err:
        handle.sign_digest(digest)
    assert err.value.reason == "KEY_RETIRED"
    with pytest.raises(KeyStoreError):
        store.sign_digest("k1", digest)


def test_revocation_stops_the_same_deployment_at_once(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path)
    other = Deployment.open(deployment.config, env={})  # same process, same directory
    token = deployment.sign_licence_jws(DEPT_USCC, {"a": 1})
    other.sign_licence_jws(DEPT_USCC, {"a": 1})  # both have cached their context
    deployment.revoke(deployment.department(DEPT_USCC).serial, "keyCompromise")
    for signer in (deployment, other):
        with pytest.raises(FailedPrecondition) as err:
            signer.sign_licence_jws(DEPT_USCC, {"a": 2})
        assert err.value.reason == "NO_DEPARTMENT_CERT"
    assert deployment.verify(token.encode()).failure is Failure.CERT_REVOKED


def test_seal_revocation_stops_the_same_deployment_at_once(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path)
    deployment.sign_licence_jws(DEPT_USCC, {"a": 1})
    deployment.revoke_seal(deployment.seal_for(DEPT_USCC).seal_id, "印章遗失")
    with pytest.raises(FailedPrecondition) as err:
        deployment.sign_licence_jws(DEPT_USCC, {"a": 2})
    assert err.value.reason == "NO_USABLE_SEAL"


def test_rotation_switches_the_same_deployment_at_once(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path)
    old_token = deployment.sign_licence_jws(DEPT_USCC, {"a": 1})
    old_key = deployment.department(DEPT_USCC).key_id
    deployment.issue_department_cert(DEPT_NAME, DEPT_USCC)
    with pytest.raises(FailedPrecondition) as err:  # the old seal is not bound to the new cert
        deployment.sign_licence_jws(DEPT_USCC, {"a": 2})
    assert err.value.reason == "NO_USABLE_SEAL"
    seal = deployment.create_seal(DEPT_USCC, valid_days=30)
    new_token = deployment.sign_licence_jws(DEPT_USCC, {"a": 3})
    new = deployment.verify(new_token.encode())
    assert new.valid, new.message
    assert new.seal is not None
    assert new.seal.seal_id == seal.seal_id
    assert deployment.department(DEPT_USCC).key_id != old_key
    assert deployment.verify(old_token.encode()).valid  # old signatures stay verifiable


def test_changes_by_another_process_arrive_within_the_recheck_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = make_deployment(tmp_path)
    deployment.sign_licence_jws(DEPT_USCC, {"a": 1})
    # another process: its own change count, not shared with this one
    monkeypatch.setattr(deployment_state, "_CHANGE_COUNTS", {})
    elsewhere = Deployment.open(deployment.config, env={})
    assert elsewhere.files.changes is not deployment.files.changes
    elsewhere.revoke_seal(deployment.seal_for(DEPT_USCC).seal_id, "印章遗失")
    deployment.sign_licence_jws(DEPT_USCC, {"a": 2})  # still cached: the documented second
    monkeypatch.setattr(deployment_module, "_RECHECK_SECONDS", 0.0)
    with pytest.raises(FailedPrecondition):
        deployment.sign_licence_jws(DEPT_USCC, {"a": 3})


@pytest.mark.parametrize(
    "payload",
    [
        {"证照类型": "食品经营许可证", "项目": ["热食类", "冷食类"]},
        {"a": 1.5, "b": [1, 2.0]},
        {"名称": "x", "n": 2**40, "嵌套": {"y": [None, True, {"z": "证"}]}},
        {"\U0001f600": "key outside the BMP", "\ufb33": 1},
        {"iat": "now", "x": "iat given"},
    ],
)
def test_signed_payloads_are_canonical_json(
    deployment: Deployment, payload: dict[str, Any]
) -> None:
    if "iat" in payload:
        payload = {**payload, "iat": int(time.time())}
    for _ in range(2):  # the second time with its shape known
        token = deployment.sign_licence_jws(DEPT_USCC, payload)
        signed = b64url_decode(token.split(".")[1])
        iat = json.loads(signed)["iat"]
        assert signed == canonical_json({**payload, "iat": iat})
        assert deployment.verify(token.encode()).valid


@pytest.mark.parametrize(
    "payload",
    [{"x": float("nan")}, {"x": 2**60}, {"x": b"bytes"}, {1: "int key"}, {"iat": 1.5}],
)
def test_payloads_that_are_not_json_are_refused(
    deployment: Deployment, payload: dict[Any, Any]
) -> None:
    with pytest.raises(InvalidArgument):
        deployment.sign_licence_jws(DEPT_USCC, payload)
