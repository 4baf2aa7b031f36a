"""mint_token input rules, DEMO_ORGS, and the ``zhida token`` commands."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jwt
import pytest
from stdnum.cn import uscc

from tests.unit.auth.conftest import Clock
from tests.unit.auth.tokens import ORG
from zhida.auth.keys import read_jwks
from zhida.auth.mint import DEMO_ORGS, mint_token
from zhida.auth.principal import Role
from zhida.auth.verifier import TokenVerifier
from zhida.cli import token as token_cli
from zhida.config import Config, load_config
from zhida.errors import InvalidArgument, Unauthenticated
from zhida.regions import parse_region


def _gb11714_ok(code: str) -> bool:
    """Check character of the 9-character organisation code inside a USCC."""
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    rest = 11 - sum(int(c, 36) * w for c, w in zip(code[:8], weights, strict=True)) % 11
    return code[8] == {10: "X", 11: "0"}.get(rest, str(rest))


@pytest.mark.parametrize(("name", "code"), sorted(DEMO_ORGS.items()))
def test_demo_orgs_are_valid_codes(name: str, code: str) -> None:
    assert uscc.validate(code) == code
    assert code.startswith("11")  # 机关 (government body)
    parse_region(code[2:8])
    assert _gb11714_ok(code[8:17]), name


def test_demo_orgs_cover_the_documented_departments() -> None:
    assert {"武汉市市场监督管理局", "湖北省公安厅", "国家市场监督管理总局"} <= DEMO_ORGS.keys()
    assert DEMO_ORGS["国家市场监督管理总局"][2:8] == "100000"
    assert len(set(DEMO_ORGS.values())) == len(DEMO_ORGS)


def test_minted_claims(config: Config) -> None:
    token = mint_token(
        config,
        role=Role.ISSUER,
        organisation=ORG,
        region_code="420100",
        subject="issuer-1",
        ttl_seconds=120,
    )
    header = jwt.get_unverified_header(token)
    body = jwt.decode(token, options={"verify_signature": False})
    assert header["kid"] in {k["kid"] for k in read_jwks(config.auth.jwks_file)}
    assert set(body) == {"iss", "aud", "sub", "iat", "exp", "jti", "role", "org", "region"}
    assert body["exp"] - body["iat"] == 120
    assert (body["role"], body["org"], body["region"]) == ("issuer", ORG, "420100")
    again = jwt.decode(
        mint_token(config, role=Role.ISSUER, organisation=ORG, region_code="420100", subject="x"),
        options={"verify_signature": False},
    )
    assert again["jti"] != body["jti"]


def test_not_before(config: Config, clock: Clock, verifier: TokenVerifier) -> None:
    nbf = int(time.time()) + 3600
    token = mint_token(
        config,
        role=Role.HOLDER,
        organisation=ORG,
        region_code="420102",
        subject="citizen",
        ttl_seconds=60,
        not_before=nbf,
    )
    body = jwt.decode(token, options={"verify_signature": False})
    assert (body["nbf"], body["exp"]) == (nbf, nbf + 60)  # lifetime counts from nbf
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(token)
    assert info.value.reason == "TOKEN_NOT_YET_VALID"
    clock.now = nbf + 1
    assert verifier.verify(token).role is Role.HOLDER


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("organisation", {"organisation": "11420100MB1234567X"}),
        ("organisation", {"organisation": "114201000000301708 "}),
        ("region_code", {"region_code": "420001"}),
        ("region_code", {"region_code": "42"}),
        ("subject", {"subject": ""}),
        ("subject", {"subject": "a\tb"}),
        ("ttl_seconds", {"ttl_seconds": 0}),
        ("ttl_seconds", {"ttl_seconds": 10**9}),
        ("not_before", {"not_before": -1}),
        ("role", {"role": "admin"}),
    ],
)
def test_mint_rejects_bad_input(config: Config, field: str, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "role": Role.ADMIN,
        "organisation": ORG,
        "region_code": "420100",
        "subject": "s",
        **kwargs,
    }
    with pytest.raises(InvalidArgument) as info:
        mint_token(config, **args)  # type: ignore[arg-type]
    assert [v.field for v in info.value.violations] == [field]
    assert field in info.value.message


def test_mint_with_unknown_kid(config: Config) -> None:
    with pytest.raises(InvalidArgument) as info:
        mint_token(
            config, role=Role.ADMIN, organisation=ORG, region_code="420100", subject="s", kid="x"
        )
    assert info.value.reason == "UNKNOWN_KEY"


# --- the CLI -----------------------------------------------------------------------


@pytest.fixture
def cli_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import os

    for name in [n for n in os.environ if n.startswith("ZHIDA_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "zhida.toml"
    path.write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\nregion_code = "420106"\n')
    return path


def _run(config_path: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="zhida")
    parser.add_argument("--config")
    token_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--config", str(config_path), *argv])
    result: int = args.handler(args)
    return result


def test_cli_mint_defaults(cli_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(cli_config, "token", "mint", "--role", "department", "--org", ORG) == 0
    token = capsys.readouterr().out.strip()
    cfg = load_config(cli_config)
    p = TokenVerifier(cfg.auth).verify(token)
    assert (p.role, p.subject, p.region_code, p.organisation) == (
        Role.DEPARTMENT,
        "department",
        "420106",
        ORG,
    )


def test_cli_mint_options_and_demo_name(
    cli_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["token", "mint", "--role", "admin", "--org", "湖北省公安厅"]
    argv += ["--region", "420000", "--subject", "ops", "--ttl", "90"]
    assert _run(cli_config, *argv) == 0
    token = capsys.readouterr().out.strip()
    p = TokenVerifier(load_config(cli_config).auth).verify(token)
    assert (p.subject, p.organisation, p.region_code) == (
        "ops",
        DEMO_ORGS["湖北省公安厅"],
        "420000",
    )
    assert abs(p.expires_at - time.time() - 90) < 5


def test_cli_mint_invalid_org_raises(cli_config: Path) -> None:
    with pytest.raises(InvalidArgument):
        _run(cli_config, "token", "mint", "--role", "admin", "--org", "123")


def test_cli_rejects_unknown_role(cli_config: Path) -> None:
    with pytest.raises(SystemExit):
        _run(cli_config, "token", "mint", "--role", "root", "--org", ORG)


def test_cli_rotate_key(cli_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(cli_config, "token", "rotate-key", "--alg", "EdDSA") == 0
    out = capsys.readouterr()
    kid = out.out.strip()
    cfg = load_config(cli_config)
    keys = read_jwks(cfg.auth.jwks_file)
    assert keys[-1]["kid"] == kid
    assert keys[-1]["alg"] == "EdDSA"
    assert len(keys) == 3
    assert "older keys stay published" in out.err
    assert _run(cli_config, "token", "mint", "--role", "node", "--org", ORG) == 0
    assert jwt.get_unverified_header(capsys.readouterr().out.strip())["kid"] == kid
