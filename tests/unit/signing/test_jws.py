"""Licence JWS: signing, every verification failure, tampering, rotation, PyJWT interop."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding

from signing.canonical import b64url_decode, b64url_encode, canonical_json
from signing.errors import Failure, VerificationError
from signing.jws import TYP, JwsVerifier, sign_jws, verify_jws
from signing.keystore import FileKeyStore
from signing.pki import issue_department_cert
from signing.seal import SealRegistry
from tests.unit.signing.conftest import (
    MZJ_NAME,
    SCJ_NAME,
    SCJ_USCC,
    World,
    ended_signer,
    make_seal,
)

LICENCE: dict[str, Any] = {
    "证照标识": "1.2.156.3005.2.11100000000013127D001.11420102MB1A23456R.00000001.001.K",
    "证照名称": "食品经营许可证",
    "持证主体": "武汉市江岸区某某餐饮有限公司",
    "持证主体代码": "91420102MA4K000000",
    "颁发日期": "2025-01-02",
    "有效期至": "2030-01-01",
    "经营项目": ["热食类食品制售", "冷食类食品制售"],
    "区划": "420102",
}


def _sign(world: World, payload: dict[str, Any] | None = None, **kw: Any) -> str:
    return sign_jws(
        payload or LICENCE, world.store, "scj-2025", world.scj_chain, world.seal.seal_id, **kw
    )


def _verify(world: World, token: str, registry: SealRegistry | None = None) -> Any:
    return JwsVerifier(world.bundle, registry or world.registry()).verify(token)


def _failure(world: World, token: str, registry: SealRegistry | None = None) -> Failure:
    with pytest.raises(VerificationError) as err:
        _verify(world, token, registry)
    return err.value.failure


def _segments(token: str) -> tuple[dict[str, Any], bytes, str]:
    h, p, s = token.split(".")
    return json.loads(b64url_decode(h)), b64url_decode(p), s


def _forge(header: dict[str, Any], payload: bytes, signature: str = "") -> str:
    return f"{b64url_encode(json.dumps(header).encode())}.{b64url_encode(payload)}.{signature}"


def test_sign_and_verify(world: World) -> None:
    token = _sign(world, now=world.now)
    header, payload, _ = _segments(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == "scj-2025"
    assert header["typ"] == TYP
    assert header["seal"] == world.seal.seal_id
    assert base64.b64decode(header["x5c"][0]) == world.scj_cert.public_bytes(Encoding.DER)
    assert payload == canonical_json({**LICENCE, "iat": int(world.now.timestamp())})
    verified = verify_jws(token, world.bundle, world.registry())
    assert verified.payload == {**LICENCE, "iat": int(world.now.timestamp())}
    assert verified.signed_at == world.now
    assert verified.department.name == SCJ_NAME
    assert verified.department.uscc == SCJ_USCC
    assert verified.seal.seal_id == world.seal.seal_id
    assert verified.signer == world.scj_cert
    assert verified.chain[-1] == world.root.certificate


def test_eddsa_department(world: World) -> None:
    token = sign_jws(LICENCE, world.store, "mzj-2025", world.mzj_chain, world.mzj_seal.seal_id)
    assert _segments(token)[0]["alg"] == "EdDSA"
    verified = _verify(world, token)
    assert verified.department.name == MZJ_NAME
    assert verified.algorithm == "EdDSA"


def test_alg_none_and_hmac_refused(world: World) -> None:
    header, payload, _ = _segments(_sign(world))
    assert _failure(world, _forge({**header, "alg": "none"}, payload)) is Failure.ALG_NOT_ALLOWED
    assert _failure(world, _forge({**header, "alg": "None"}, payload)) is Failure.ALG_NOT_ALLOWED
    # An HMAC token (in the algorithm-confusion attack, keyed with the public key).
    hs_header = {k: v for k, v in header.items() if k != "alg"}
    hs = jwt.api_jws.PyJWS().encode(payload, "k" * 32, algorithm="HS256", headers=hs_header)
    assert _segments(hs)[0]["alg"] == "HS256"
    assert _failure(world, hs) is Failure.ALG_NOT_ALLOWED
    for alg in [None, 7, ["ES256"], "RS256", "ES384"]:
        assert _failure(world, _forge({**header, "alg": alg}, payload)) is Failure.ALG_NOT_ALLOWED


def test_alg_must_match_the_certificate_key(world: World) -> None:
    token = _sign(world)
    header, payload, signature = _segments(token)
    forged = _forge({**header, "alg": "EdDSA"}, payload, signature)
    assert _failure(world, forged) is Failure.ALG_NOT_ALLOWED


def test_swapped_x5c(world: World) -> None:
    header, payload, signature = _segments(_sign(world))
    other_x5c = _segments(
        sign_jws(LICENCE, world.store, "mzj-2025", world.mzj_chain, world.mzj_seal.seal_id)
    )[0]["x5c"]
    swapped = _forge({**header, "alg": "EdDSA", "x5c": other_x5c}, payload, signature)
    assert _failure(world, swapped) is Failure.BAD_SIGNATURE
    # and a valid ES256 certificate of another department
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_cert = issue_department_cert(
        world.city, MZJ_NAME, "11420102MB3333333T", other_key.public_key()
    )
    x5c = [base64.b64encode(other_cert.public_bytes(Encoding.DER)).decode()]
    assert (
        _failure(world, _forge({**header, "x5c": x5c}, payload, signature)) is Failure.BAD_SIGNATURE
    )


@pytest.mark.filterwarnings("ignore")  # fuzzed certificates make cryptography warn
def test_every_changed_character_is_refused(world: World) -> None:
    token = _sign(world)
    verifier = JwsVerifier(world.bundle, world.registry())
    assert verifier.verify(token).payload["证照名称"] == "食品经营许可证"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    refused = 0
    for i, char in enumerate(token):
        # flip the lowest bit of the 6-bit value (the case that only touches unused
        # trailing bits at the end of a segment) and the highest one
        if char == ".":
            replacements = ["A", ""]
        else:
            index = alphabet.index(char)
            replacements = [alphabet[index ^ 1], alphabet[index ^ 32]]
        for new in replacements:
            tampered = token[:i] + new + token[i + 1 :]
            with pytest.raises(VerificationError):
                verifier.verify(tampered)
            refused += 1
    assert refused == 2 * len(token)


def test_non_canonical_payload_refused(world: World) -> None:
    # Signed by the department's key, but the payload bytes are not canonical.
    header, payload, _ = _segments(_sign(world))
    h64 = b64url_encode(canonical_json(header))
    for bad in [
        json.dumps(json.loads(payload), ensure_ascii=True).encode(),  # \\u escapes
        payload[:-1] + b',"iat":1}',  # duplicate key
    ]:
        signing_input = f"{h64}.{b64url_encode(bad)}".encode()
        signature = b64url_encode(world.store.sign("scj-2025", signing_input))
        assert _failure(world, f"{signing_input.decode()}.{signature}") is Failure.MALFORMED


def test_signing_time_checks(world: World) -> None:
    future = _sign(world, {**LICENCE, "iat": int((world.now + timedelta(hours=1)).timestamp())})
    assert _failure(world, future) is Failure.SIGNING_TIME_INVALID
    before_cert = _sign(world, {**LICENCE, "iat": int((world.now - timedelta(days=3)).timestamp())})
    assert _failure(world, before_cert) is Failure.CERT_EXPIRED


def test_signed_after_the_certificate_ended(world: World, tmp_path: Path) -> None:
    ended = ended_signer(world, tmp_path)
    cert = ended.certificate
    verifier = JwsVerifier(world.bundle, ended.registry)
    during = cert.not_valid_before_utc + timedelta(hours=12)
    token = sign_jws(LICENCE, ended.store, ended.key_id, [cert], ended.seal.seal_id, now=during)
    assert verifier.verify(token).signer == cert  # made while it was valid: still valid
    after = cert.not_valid_after_utc + timedelta(days=1)  # before now: not a future iat
    assert after < world.now
    late = sign_jws(LICENCE, ended.store, ended.key_id, [cert], ended.seal.seal_id, now=after)
    with pytest.raises(VerificationError) as err:
        verifier.verify(late)
    assert err.value.failure is Failure.CERT_EXPIRED
    assert "not at the signing time" in err.value.message


def test_revoked_certificate(world: World) -> None:
    token = _sign(world)
    bundle = world.bundle.with_crls(*world.crls(world.scj_cert.serial_number))
    with pytest.raises(VerificationError) as err:
        JwsVerifier(bundle, world.registry()).verify(token)
    assert err.value.failure is Failure.CERT_REVOKED


def test_seal_checks(world: World) -> None:
    # signer not bound: the civil-affairs key signs under the market-regulation seal
    token = sign_jws(LICENCE, world.store, "mzj-2025", world.mzj_chain, world.seal.seal_id)
    assert _failure(world, token) is Failure.SEAL_NOT_BOUND
    unknown = sign_jws(LICENCE, world.store, "scj-2025", world.scj_chain, "no-such-seal")
    assert _failure(world, unknown) is Failure.SEAL_UNKNOWN
    registry = world.registry()
    registry.revocations.revoke(world.seal.seal_id, "单位撤销")
    assert _failure(world, _sign(world), registry) is Failure.SEAL_REVOKED
    late = make_seal(
        world.store,
        world.scj_cert,
        SCJ_NAME,
        SCJ_USCC,
        world.now,
        valid_from=world.now + timedelta(days=1),
        valid_until=world.now + timedelta(days=2),
    )
    registry = SealRegistry([world.store.public_key("seal-maker")], seals=[late])
    token = sign_jws(LICENCE, world.store, "scj-2025", world.scj_chain, late.seal_id)
    assert _failure(world, token, registry) is Failure.SEAL_EXPIRED


def test_other_deployment_refused(world: World, tmp_path: Path) -> None:
    from tests.unit.signing.conftest import build_world

    other = build_world(tmp_path)
    token = sign_jws(LICENCE, other.store, "scj-2025", other.scj_chain, other.seal.seal_id)
    assert _failure(world, token, world.registry()) is Failure.CHAIN_INVALID


def test_key_rotation_old_signatures_still_verify(world: World, tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path, dev_mode=True)
    old = store.generate("scj-2024")
    old_cert = issue_department_cert(
        world.city, SCJ_NAME, SCJ_USCC, old.public_key, not_before=world.now - timedelta(days=1)
    )
    old_seal = make_seal(world.store, old_cert, SCJ_NAME, SCJ_USCC, world.now)
    old_token = sign_jws(LICENCE, store, "scj-2024", [old_cert], old_seal.seal_id)
    new = store.rotate("scj-2024", "scj-2025")
    new_cert = issue_department_cert(world.city, SCJ_NAME, SCJ_USCC, new.public_key)
    new_seal = make_seal(world.store, new_cert, SCJ_NAME, SCJ_USCC, world.now)
    new_token = sign_jws(LICENCE, store, "scj-2025", [new_cert], new_seal.seal_id)
    registry = SealRegistry([world.store.public_key("seal-maker")], seals=[old_seal, new_seal])
    verifier = JwsVerifier(world.bundle, registry)
    assert verifier.verify(old_token).key_id == "scj-2024"
    assert verifier.verify(new_token).key_id == "scj-2025"
    with pytest.raises(Exception, match="retired"):
        sign_jws(LICENCE, store, "scj-2024", [old_cert], old_seal.seal_id)


def _x5c_key(token: str) -> Any:
    """What a third party has: the signer's key from x5c[0] of the token's own header."""
    header = jwt.get_unverified_header(token)
    return x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0])).public_key()


def test_pyjwt_verifies_our_tokens(world: World) -> None:
    token = _sign(world)
    scj_key = _x5c_key(token)
    assert isinstance(scj_key, ec.EllipticCurvePublicKey)
    decoded = jwt.decode(token, scj_key, algorithms=["ES256"])  # the allow-list, not the header
    assert decoded["证照名称"] == "食品经营许可证"
    ed = sign_jws(LICENCE, world.store, "mzj-2025", world.mzj_chain, world.mzj_seal.seal_id)
    mzj_key = _x5c_key(ed)
    assert isinstance(mzj_key, ed25519.Ed25519PublicKey)
    assert jwt.decode(ed, mzj_key, algorithms=["EdDSA"])["区划"] == "420102"
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, stranger, algorithms=["ES256"])


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_we_verify_pyjwt_tokens(world: World, algorithm: str) -> None:
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if algorithm == "ES256"
        else ed25519.Ed25519PrivateKey.generate()
    )
    cert = issue_department_cert(
        world.city, SCJ_NAME, SCJ_USCC, key.public_key(), not_before=world.now - timedelta(hours=1)
    )
    seal = make_seal(world.store, cert, SCJ_NAME, SCJ_USCC, world.now)
    registry = SealRegistry([world.store.public_key("seal-maker")], seals=[seal])
    der = cert.public_bytes(Encoding.DER)
    headers = {
        "kid": "pyjwt",
        "x5c": [base64.b64encode(der).decode()],
        "typ": TYP,
        "seal": seal.seal_id,
    }
    payload = canonical_json({**LICENCE, "iat": int(world.now.timestamp())})
    # PyJWS signs the canonical bytes we give it: we accept the result.
    token = jwt.api_jws.PyJWS().encode(payload, key, algorithm=algorithm, headers=headers)
    verified = _verify(world, token, registry)
    assert verified.payload["持证主体"] == "武汉市江岸区某某餐饮有限公司"
    assert verified.key_id == "pyjwt"
    # PyJWT's own JSON (ASCII escapes, unsorted keys) is not RFC 8785: refused.
    jwt_token = jwt.encode(
        {**LICENCE, "iat": int(world.now.timestamp())}, key, algorithm=algorithm, headers=headers
    )
    assert _failure(world, jwt_token, registry) is Failure.MALFORMED
    # ASCII-only payloads with sorted keys happen to be canonical.
    ascii_token = jwt.encode(
        {"iat": int(world.now.timestamp()), "licence": "A-1"},
        key,
        algorithm=algorithm,
        headers=headers,
    )
    assert _verify(world, ascii_token, registry).payload["licence"] == "A-1"


def test_malformed_tokens(world: World) -> None:
    header, payload, signature = _segments(_sign(world))
    cases = [
        "",
        "a.b",
        "a.b.c.d",
        _sign(world) + "=",
        _forge({**header, "crit": ["exp"]}, payload, signature),
        _forge({**header, "typ": "JWT"}, payload, signature),
        _forge({k: v for k, v in header.items() if k != "seal"}, payload, signature),
        _forge({**header, "x5c": []}, payload, signature),
        _forge({**header, "x5c": ["not base64!"]}, payload, signature),
        _forge({**header, "x5c": [base64.b64encode(b"junk").decode()]}, payload, signature),
        b64url_encode(b'{"alg":"ES256","alg":"ES256"}') + ".e30." + signature,
        b64url_encode(b"[1]") + ".e30." + signature,
    ]
    for token in cases:
        assert _failure(world, token) is Failure.MALFORMED, token[:80]
