"""Verified-token cache (expiry still enforced) and JWKS reload on key rotation."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from tests.unit.auth.conftest import Clock
from tests.unit.auth.tokens import ORG, claims, sign
from zhida.auth.keys import read_jwks, rotate_dev_key
from zhida.auth.mint import mint_token
from zhida.auth.principal import Role
from zhida.auth.verifier import TokenVerifier
from zhida.config import Config
from zhida.errors import Unauthenticated


def _mint(config: Config, ttl_seconds: int = 3600) -> str:
    return mint_token(
        config,
        role=Role.DEPARTMENT,
        organisation=ORG,
        region_code="420100",
        subject="clerk",
        ttl_seconds=ttl_seconds,
    )


def _reason(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(token)
    return info.value.reason


def test_repeat_verification_hits_cache(config: Config, verifier: TokenVerifier) -> None:
    token = _mint(config)
    first = verifier.verify(token)
    assert verifier.cached_tokens == 1
    assert verifier.verify(token) is first  # the cached Principal itself


def test_cached_token_rejected_once_expired(
    config: Config, verifier: TokenVerifier, clock: Clock
) -> None:
    token = _mint(config, ttl_seconds=60)
    exp = verifier.verify(token).expires_at
    assert verifier.cached_tokens == 1
    clock.now = exp - 1
    assert verifier.verify(token).expires_at == exp  # still a hit
    clock.now = exp + 1  # past exp but within leeway: re-verified, accepted, not re-cached
    assert verifier.verify(token).expires_at == exp
    assert verifier.cached_tokens == 0
    clock.now = exp + config.auth.leeway_seconds + 1
    assert _reason(verifier, token) == "TOKEN_EXPIRED"


def test_cache_is_bounded_lru(config: Config, clock: Clock) -> None:
    verifier = TokenVerifier(config.auth, clock=clock, cache_size=3)
    tokens = [sign(config, claims(config, sub=f"user-{i}")) for i in range(5)]
    for t in tokens:
        verifier.verify(t)
    assert verifier.cached_tokens == 3
    assert all(verifier.verify(t).subject == f"user-{i}" for i, t in enumerate(tokens))


def test_cache_can_be_disabled(config: Config) -> None:
    verifier = TokenVerifier(config.auth, cache_size=0)
    token = _mint(config)
    verifier.verify(token)
    verifier.verify(token)
    assert verifier.cached_tokens == 0


def test_cache_hit_is_cheap(config: Config, verifier: TokenVerifier) -> None:
    """Cached verification must cost far less than a signature check."""
    token = _mint(config)
    verifier.verify(token)
    rounds = 2000
    start = time.perf_counter()
    for _ in range(rounds):
        verifier.verify(token)
    per_call = (time.perf_counter() - start) / rounds
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per cached verification"


def test_rotation_old_tokens_survive_and_new_tokens_use_new_kid(
    config: Config, verifier: TokenVerifier
) -> None:
    old = _mint(config)
    old_kid = jwt.get_unverified_header(old)["kid"]
    new_kid = rotate_dev_key(config, "EdDSA")
    assert new_kid != old_kid
    new = _mint(config)
    header = jwt.get_unverified_header(new)
    assert (header["kid"], header["alg"]) == (new_kid, "EdDSA")
    # Same verifier object: the JWKS is reloaded, no restart.
    assert verifier.verify(new).subject == "clerk"
    assert verifier.verify(old).subject == "clerk"
    assert new_kid in verifier.key_ids


def test_reload_waits_for_the_interval(config: Config) -> None:
    verifier = TokenVerifier(config.auth, reload_interval=3600)
    new_kid = rotate_dev_key(config, "ES256")
    token = _mint(config)
    assert _reason(verifier, token) == "TOKEN_UNKNOWN_KEY"  # not re-read yet
    verifier.reload_now()
    assert new_kid in verifier.key_ids
    assert verifier.verify(token).role is Role.DEPARTMENT


def test_withdrawn_key_evicts_cached_tokens(config: Config, verifier: TokenVerifier) -> None:
    token = _mint(config)
    verifier.verify(token)
    kid = jwt.get_unverified_header(token)["kid"]
    remaining = [k for k in read_jwks(config.auth.jwks_file) if k["kid"] != kid]
    config.auth.jwks_file.write_text(json.dumps({"keys": remaining}))
    assert _reason(verifier, token) == "TOKEN_UNKNOWN_KEY"


def test_broken_jwks_keeps_current_keys(config: Config, verifier: TokenVerifier) -> None:
    token = _mint(config)
    before = verifier.key_ids
    config.auth.jwks_file.write_text("{ half-written")
    assert verifier.verify(token).subject == "clerk"
    assert verifier.key_ids == before
    config.auth.jwks_file.unlink()
    assert verifier.verify(token).subject == "clerk"
