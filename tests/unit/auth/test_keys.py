"""Development keys: creation, permissions, thumbprints, concurrent start-up and rotation."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.synchronize
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.unit.auth.conftest import make_config
from zhida.auth.keys import (
    ensure_dev_keys,
    jwk_algorithm,
    jwk_thumbprint,
    load_signing_key,
    private_key_path,
    public_jwk,
    read_jwks,
    rotate_dev_key,
)
from zhida.config import Config
from zhida.errors import ConfigError, FailedPrecondition, InvalidArgument


def test_rfc8037_ed25519_thumbprint() -> None:
    # RFC 8037 appendix A.3.
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_thumbprint_ignores_non_required_members() -> None:
    jwk = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), "ES256")
    assert jwk_thumbprint(jwk) == jwk["kid"]
    assert jwk_thumbprint({**jwk, "kid": "other", "use": "enc"}) == jwk["kid"]


def test_first_run_creates_two_keys(config: Config) -> None:
    keys = read_jwks(config.auth.jwks_file)
    assert [(k["kty"], k["crv"], k["alg"], k["use"]) for k in keys] == [
        ("OKP", "Ed25519", "EdDSA", "sig"),
        ("EC", "P-256", "ES256", "sig"),
    ]
    for k in keys:
        assert set(k) <= {"kty", "crv", "x", "y", "kid", "alg", "use"}  # public members only
        assert k["kid"] == jwk_thumbprint(k)
        pem = private_key_path(config, k["kid"])
        assert pem.name == f"jwt-{k['kid']}.pem"
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
        private = serialization.load_pem_private_key(pem.read_bytes(), password=None)
        assert isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey)
        assert public_jwk(private.public_key(), k["alg"])["kid"] == k["kid"]
        assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert stat.S_IMODE(config.keys_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(config.auth.jwks_file.stat().st_mode) == 0o644


def test_ensure_is_idempotent(config: Config) -> None:
    before = config.auth.jwks_file.read_bytes()
    ensure_dev_keys(config)
    assert config.auth.jwks_file.read_bytes() == before
    assert len(list(config.keys_dir.glob("jwt-*.pem"))) == 2


def test_existing_jwks_is_never_overwritten(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "d")
    cfg.auth.jwks_file.parent.mkdir(parents=True)
    cfg.auth.jwks_file.write_text('{"keys": "issuer provided"}')
    ensure_dev_keys(cfg)
    assert cfg.auth.jwks_file.read_text() == '{"keys": "issuer provided"}'


def test_missing_jwks_without_dev_keys_is_config_error(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "d", ZHIDA_AUTH__DEV_KEYS="false")
    with pytest.raises(ConfigError) as info:
        ensure_dev_keys(cfg)
    assert info.value.key == "auth.jwks_file"
    assert not cfg.keys_dir.exists()


def test_jwks_file_outside_keys_dir(tmp_path: Path) -> None:
    jwks = tmp_path / "public" / "issuer-jwks.json"
    cfg = make_config(tmp_path / "d", ZHIDA_AUTH__JWKS_FILE=str(jwks))
    ensure_dev_keys(cfg)
    assert len(read_jwks(jwks)) == 2
    assert load_signing_key(cfg).alg == "ES256"


def _start(data_dir: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    cfg = make_config(Path(data_dir))
    barrier.wait()
    ensure_dev_keys(cfg)


def _rotate(data_dir: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    cfg = make_config(Path(data_dir))
    barrier.wait()
    rotate_dev_key(cfg, "EdDSA")


@pytest.mark.parametrize("target", [_start, _rotate])
def test_concurrent_processes(
    tmp_path: Path, target: Callable[[str, multiprocessing.synchronize.Barrier], None]
) -> None:
    data_dir = tmp_path / "d"
    if target is _rotate:
        ensure_dev_keys(make_config(data_dir))
    # spawn, not fork: forking pytest runs gRPC's fork handlers, which can hang
    # while gRPC's threads run (see tests/fixtures/spawn.py)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=target, args=(str(data_dir), barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    cfg = make_config(data_dir)
    keys = read_jwks(cfg.auth.jwks_file)
    # Start-up: one winner, its two keys. Rotation: no rotation lost.
    assert len(keys) == (2 if target is _start else 6)
    assert len({k["kid"] for k in keys}) == len(keys)
    for k in keys:
        assert private_key_path(cfg, k["kid"]).is_file()
    leftovers = [p.name for p in cfg.keys_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_rotate_appends_and_newest_signs(config: Config) -> None:
    before = [k["kid"] for k in read_jwks(config.auth.jwks_file)]
    kid = rotate_dev_key(config, "EdDSA")
    after = [k["kid"] for k in read_jwks(config.auth.jwks_file)]
    assert after == [*before, kid]
    assert load_signing_key(config).kid == kid
    assert load_signing_key(config, before[0]).kid == before[0]


def test_rotate_rejects_unknown_or_disallowed_algorithm(tmp_path: Path, config: Config) -> None:
    with pytest.raises(InvalidArgument):
        rotate_dev_key(config, "RS256")
    only_ed = make_config(tmp_path / "data", ZHIDA_AUTH__ALGORITHMS="EdDSA")
    with pytest.raises(InvalidArgument):
        rotate_dev_key(only_ed, "ES256")


def test_rotate_refused_without_dev_keys(tmp_path: Path, config: Config) -> None:
    prod = make_config(tmp_path / "data", ZHIDA_AUTH__DEV_KEYS="false")
    with pytest.raises(FailedPrecondition) as info:
        rotate_dev_key(prod, "ES256")
    assert info.value.reason == "DEV_KEYS_DISABLED"


def test_no_private_key_for_published_jwks(tmp_path: Path, config: Config) -> None:
    """A production-style node: the JWKS is there, the private keys are not."""
    jwks = tmp_path / "issuer.json"
    jwks.write_bytes(config.auth.jwks_file.read_bytes())
    prod = make_config(tmp_path / "other", ZHIDA_AUTH__JWKS_FILE=str(jwks))
    with pytest.raises(FailedPrecondition) as info:
        load_signing_key(prod)
    assert info.value.reason == "NO_SIGNING_KEY"
    with pytest.raises(InvalidArgument):
        load_signing_key(config, "not-a-kid")


def test_pem_not_matching_its_kid_is_refused(config: Config) -> None:
    es, ed = (k["kid"] for k in reversed(read_jwks(config.auth.jwks_file)))
    path = private_key_path(config, es)
    os.replace(private_key_path(config, ed), path)  # the Ed25519 PEM under the ES256 name
    with pytest.raises(ConfigError, match="does not match"):
        load_signing_key(config, es)


def test_jwk_algorithm_from_key_type() -> None:
    assert jwk_algorithm({"kty": "EC", "crv": "P-256"}) == "ES256"
    assert jwk_algorithm({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA"}) == "EdDSA"
    assert jwk_algorithm({"kty": "EC", "crv": "P-384"}) is None
    assert jwk_algorithm({"kty": "RSA"}) is None
    with pytest.raises(ValueError, match="declares alg"):
        jwk_algorithm({"kty": "EC", "crv": "P-256", "alg": "HS256"})


def test_private_key_path_refuses_non_base64url_kid(config: Config) -> None:
    with pytest.raises(ValueError, match="base64url"):
        private_key_path(config, "../../etc/passwd")


def test_read_jwks_errors_name_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "j.json"
    for content in ("{", '{"keys": [1]}', json.dumps({"nokeys": []})):
        path.write_text(content)
        with pytest.raises(ConfigError) as info:
            read_jwks(path)
        assert info.value.key == "auth.jwks_file"
