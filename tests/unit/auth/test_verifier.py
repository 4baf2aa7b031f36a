"""TokenVerifier: good tokens become Principals, each bad class gets its own reason."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.unit.auth.conftest import Clock, make_config
from tests.unit.auth.tokens import ORG, b64, claims, compact, hs256_with, sign, sign_bytes
from zhida.auth.keys import ensure_dev_keys, load_signing_key, read_jwks
from zhida.auth.mint import mint_token
from zhida.auth.principal import Role
from zhida.auth.verifier import TokenVerifier
from zhida.config import Config
from zhida.errors import ConfigError, ErrorCode, Unauthenticated


def _kid_for(config: Config, alg: str) -> str:
    return str(next(k["kid"] for k in read_jwks(config.auth.jwks_file) if k["alg"] == alg))


def _reject(verifier: TokenVerifier, token: str | None, reason: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(token)
    err = info.value
    assert err.reason == reason, err.message
    assert err.code is ErrorCode.UNAUTHENTICATED
    if token and len(token) > 8:
        for part in token.split("."):  # never echo the token, not even a segment
            assert not part or part not in err.message
    return err


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_valid_token_gives_principal(config: Config, verifier: TokenVerifier, alg: str) -> None:
    token = mint_token(
        config,
        role=Role.AUDITOR,
        organisation=ORG,
        region_code="420102",
        subject="audit-1",
        kid=_kid_for(config, alg),
    )
    p = verifier.verify(token)
    assert (p.subject, p.role, p.organisation, p.region_code) == (
        "audit-1",
        Role.AUDITOR,
        ORG,
        "420102",
    )
    assert p.issuer == config.auth.issuer
    assert p.token_id
    assert abs(p.expires_at - (time.time() + 3600)) < 5


def test_default_mint_uses_newest_key_es256(config: Config, verifier: TokenVerifier) -> None:
    token = mint_token(
        config, role=Role.NODE, organisation=ORG, region_code="420000", subject="node-wh"
    )
    assert verifier.verify(token).role is Role.NODE
    assert load_signing_key(config).alg == "ES256"


def test_audience_list_is_accepted(config: Config, verifier: TokenVerifier) -> None:
    token = sign(config, claims(config, aud=["other", config.auth.audience]))
    assert verifier.verify(token).subject == "clerk-7"


def test_nbf_in_the_past_is_fine(config: Config, verifier: TokenVerifier) -> None:
    token = sign(config, claims(config, nbf=int(time.time()) - 5))
    assert verifier.verify(token).role is Role.DEPARTMENT


@pytest.mark.parametrize("token", [None, ""])
def test_missing(verifier: TokenVerifier, token: str | None) -> None:
    _reject(verifier, token, "TOKEN_MISSING")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b",
        "a.b.c.d",
        "!!!.@@@.###",
        "eyJhbGciOiJFUzI1NiJ9.e30",
        "x" * 9000,
        "bm90IGpzb24.e30.c2ln",  # header "not json"
        "WzFd.e30.c2ln",  # header is a JSON list
    ],
)
def test_malformed(verifier: TokenVerifier, token: str) -> None:
    _reject(verifier, token, "TOKEN_MALFORMED")


def test_extra_segment_on_a_good_token_is_malformed(
    config: Config, verifier: TokenVerifier
) -> None:
    _reject(verifier, sign(config, claims(config)) + ".extra", "TOKEN_MALFORMED")


@pytest.mark.parametrize("payload", [b"[1, 2]", b"not json", b'"a string"'])
def test_signed_payload_not_a_json_object_is_malformed(
    config: Config, verifier: TokenVerifier, payload: bytes
) -> None:
    _reject(verifier, sign_bytes(config, payload), "TOKEN_MALFORMED")


def test_alg_none_refused(config: Config, verifier: TokenVerifier) -> None:
    kid = load_signing_key(config).kid
    for alg in ("none", "None", "NONE", ""):
        _reject(
            verifier,
            compact({"alg": alg, "kid": kid, "typ": "JWT"}, claims(config)),
            "TOKEN_ALGORITHM_NOT_ALLOWED",
        )


def test_missing_alg_refused(config: Config, verifier: TokenVerifier) -> None:
    kid = load_signing_key(config).kid
    _reject(verifier, compact({"kid": kid}, claims(config), b"x"), "TOKEN_ALGORITHM_NOT_ALLOWED")


def test_hs256_with_public_key_as_secret_refused(config: Config, verifier: TokenVerifier) -> None:
    """Classic algorithm confusion: HMAC keyed with the published public key."""
    signing = load_signing_key(config)
    public = signing.private_key.public_key()
    jwk = next(k for k in read_jwks(config.auth.jwks_file) if k["kid"] == signing.kid)
    secrets = [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        json.dumps(jwk).encode(),
    ]
    for secret in secrets:
        token = hs256_with(secret, {"alg": "HS256", "kid": signing.kid}, claims(config))
        _reject(verifier, token, "TOKEN_ALGORITHM_NOT_ALLOWED")


def test_alg_header_must_match_the_keys_algorithm(config: Config, verifier: TokenVerifier) -> None:
    es_kid, ed_kid = _kid_for(config, "ES256"), _kid_for(config, "EdDSA")
    ed_key = load_signing_key(config, ed_kid).private_key
    es_key = load_signing_key(config, es_kid).private_key
    # Signed EdDSA but names the ES256 key, and the reverse.
    _reject(
        verifier,
        sign(config, claims(config), key=ed_key, alg="EdDSA", header_kid=es_kid),
        "TOKEN_ALGORITHM_NOT_ALLOWED",
    )
    _reject(
        verifier,
        sign(config, claims(config), key=es_key, alg="ES256", header_kid=ed_kid),
        "TOKEN_ALGORITHM_NOT_ALLOWED",
    )


def test_algorithm_outside_config_refused(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "d", ZHIDA_AUTH__ALGORITHMS="EdDSA")
    ensure_dev_keys(cfg)  # still makes both keys; the ES256 one is simply not accepted
    verifier = TokenVerifier(cfg.auth)
    es = next(k for k in read_jwks(cfg.auth.jwks_file) if k["alg"] == "ES256")
    assert es["kid"] not in verifier.key_ids
    full = make_config(tmp_path / "d")  # same keys, both algorithms allowed, to sign ES256
    _reject(verifier, sign(full, claims(cfg), kid=es["kid"]), "TOKEN_ALGORITHM_NOT_ALLOWED")
    assert load_signing_key(cfg).alg == "EdDSA"  # minting follows the allowed algorithms
    assert verifier.verify(sign(cfg, claims(cfg))).role is Role.DEPARTMENT


def test_unknown_kid(config: Config, verifier: TokenVerifier) -> None:
    _reject(verifier, sign(config, claims(config), header_kid="no-such-key"), "TOKEN_UNKNOWN_KEY")
    err = _reject(
        verifier, sign(config, claims(config), header_kid="../../etc/passwd\n"), "TOKEN_UNKNOWN_KEY"
    )
    assert "passwd" not in err.message


def test_missing_kid(config: Config, verifier: TokenVerifier) -> None:
    key = load_signing_key(config)
    token = jwt.encode(claims(config), key.private_key, algorithm=key.alg)
    _reject(verifier, token, "TOKEN_UNKNOWN_KEY")


def test_other_key_with_same_kid_is_bad_signature(config: Config, verifier: TokenVerifier) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    token = sign(config, claims(config), key=stranger, alg="ES256", kid=_kid_for(config, "ES256"))
    _reject(verifier, token, "TOKEN_BAD_SIGNATURE")


def test_tampered_payload_is_bad_signature(config: Config, verifier: TokenVerifier) -> None:
    head, _, sig = sign(config, claims(config, role="department")).split(".")
    forged = b64(json.dumps(claims(config, role="admin")).encode())
    _reject(verifier, f"{head}.{forged}.{sig}", "TOKEN_BAD_SIGNATURE")


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_mangled_signature_is_bad_signature(
    config: Config, verifier: TokenVerifier, alg: str
) -> None:
    head, body, sig = sign(config, claims(config), kid=_kid_for(config, alg)).split(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    for bad in (bytes(len(raw)), raw[:-1], raw + b"\0", bytes([raw[0] ^ 1]) + raw[1:]):
        _reject(verifier, f"{head}.{body}.{b64(bad)}", "TOKEN_BAD_SIGNATURE")


def test_expired(config: Config, verifier: TokenVerifier, clock: Clock) -> None:
    leeway = config.auth.leeway_seconds
    token = sign(config, claims(config, now=clock.now - 1000, exp=int(clock.now) - leeway - 1))
    err = _reject(verifier, token, "TOKEN_EXPIRED")
    assert "expired at" in err.message


def test_expired_within_leeway_accepted(
    config: Config, verifier: TokenVerifier, clock: Clock
) -> None:
    token = sign(config, claims(config, now=clock.now - 1000, exp=int(clock.now) - 10))
    assert verifier.verify(token).expires_at == int(clock.now) - 10
    assert verifier.cached_tokens == 0  # past exp: never cached


def test_not_yet_valid(config: Config, verifier: TokenVerifier, clock: Clock) -> None:
    token = sign(config, claims(config, nbf=int(clock.now) + 600))
    _reject(verifier, token, "TOKEN_NOT_YET_VALID")
    clock.now += 600
    assert verifier.verify(token).subject == "clerk-7"


def test_nbf_within_leeway_accepted(config: Config, verifier: TokenVerifier, clock: Clock) -> None:
    token = sign(config, claims(config, nbf=int(clock.now) + config.auth.leeway_seconds - 1))
    assert verifier.verify(token).subject == "clerk-7"


def test_issued_in_the_future_is_not_yet_valid(
    config: Config, verifier: TokenVerifier, clock: Clock
) -> None:
    token = sign(config, claims(config, now=clock.now + 3600))
    _reject(verifier, token, "TOKEN_NOT_YET_VALID")


def test_wrong_issuer(config: Config, verifier: TokenVerifier) -> None:
    _reject(verifier, sign(config, claims(config, iss="someone-else")), "TOKEN_WRONG_ISSUER")


def test_wrong_audience(config: Config, verifier: TokenVerifier) -> None:
    _reject(verifier, sign(config, claims(config, aud="another-node")), "TOKEN_WRONG_AUDIENCE")
    _reject(verifier, sign(config, claims(config, aud=["a", "b"])), "TOKEN_WRONG_AUDIENCE")


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub", "role", "org", "region"])
def test_missing_required_claim(config: Config, verifier: TokenVerifier, claim: str) -> None:
    err = _reject(verifier, sign(config, claims(config, **{claim: None})), "TOKEN_BAD_CLAIMS")
    assert f"'{claim}'" in err.message
    assert err.metadata == {"claim": claim}


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("role", "superuser"),
        ("role", "Department"),
        ("role", 1),
        ("org", "11420100MB1234567X"),  # wrong check character
        ("org", "114201000000301709"),  # DEMO code with the last character changed
        ("org", "1142 0100 0000 3017 08"),  # valid digits, but not the compact form
        ("org", "12345"),
        ("org", 114201000000301708),
        ("region", "999999"),
        ("region", "4201"),
        ("region", "420001"),
        ("region", 420100),
        ("sub", ""),
        ("sub", "line\nbreak"),
        ("sub", 7),
        ("exp", "tomorrow"),
        ("exp", True),
        ("iat", "now"),
        ("nbf", [1]),
        ("iss", 5),
        ("aud", 5),
        ("aud", ["zhida", 5]),
        ("jti", 5),
    ],
)
def test_bad_claim_values(config: Config, verifier: TokenVerifier, claim: str, value: Any) -> None:
    err = _reject(verifier, sign(config, claims(config, **{claim: value})), "TOKEN_BAD_CLAIMS")
    assert f"'{claim}'" in err.message


def test_non_finite_exp_is_bad_claims(config: Config, verifier: TokenVerifier) -> None:
    # JSON has no Infinity but Python's parser accepts it; a never-expiring token is refused.
    payload = json.dumps(claims(config, exp=float("inf"))).encode()
    assert b"Infinity" in payload
    _reject(verifier, sign_bytes(config, payload), "TOKEN_BAD_CLAIMS")


def test_start_without_jwks_is_config_error(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "none")
    with pytest.raises(ConfigError) as info:
        TokenVerifier(cfg.auth)
    assert info.value.key == "auth.jwks_file"


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"keys": []}',
        '{"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"}]}',
        '{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "x": "AA", "y": "AA"}]}',
        '{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]}',
        '{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k", "alg": "ES256", "x": "AA"}]}',
    ],
)
def test_invalid_jwks_is_config_error(tmp_path: Path, content: str) -> None:
    cfg = make_config(tmp_path / "d")
    cfg.auth.jwks_file.parent.mkdir(parents=True)
    cfg.auth.jwks_file.write_text(content)
    with pytest.raises(ConfigError) as info:
        TokenVerifier(cfg.auth)
    assert info.value.key == "auth.jwks_file"


def test_jwks_with_private_key_material_refused(config: Config) -> None:
    keys = read_jwks(config.auth.jwks_file)
    keys[0]["d"] = "c2VjcmV0"
    config.auth.jwks_file.write_text(json.dumps({"keys": keys}))
    with pytest.raises(ConfigError, match="private key material"):
        TokenVerifier(config.auth)


def test_duplicate_kid_refused(config: Config) -> None:
    keys = read_jwks(config.auth.jwks_file)
    config.auth.jwks_file.write_text(json.dumps({"keys": [*keys, keys[0]]}))
    with pytest.raises(ConfigError, match="twice"):
        TokenVerifier(config.auth)


def test_encryption_and_foreign_keys_are_skipped(config: Config, verifier: TokenVerifier) -> None:
    keys = read_jwks(config.auth.jwks_file)
    extra = [
        {"kty": "RSA", "kid": "rsa-1", "n": "AQAB", "e": "AQAB"},
        {**keys[0], "kid": "enc-1", "use": "enc"},
    ]
    config.auth.jwks_file.write_text(json.dumps({"keys": keys + extra}))
    fresh = TokenVerifier(config.auth)
    assert fresh.key_ids == {k["kid"] for k in keys}
