"""``zhida serve`` refuses a bad config in one line; ``zhida config check`` masks secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.node import node_env, serve_command

pytestmark = pytest.mark.integration


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("overrides", "args", "key"),
    [
        ({"ZHIDA_NODE__REGION_CODE": "999999"}, [], "node.region_code"),
        ({"ZHIDA_NODE__BOGUS": "1"}, [], "node.bogus"),
        ({"ZHIDA_LOG__FORMAT": "xml"}, [], "log.format"),
        ({}, ["--listen", "nowhere"], "node.listen"),
        ({}, ["--workers", "0"], "node.workers"),
    ],
)
def test_a_wrong_config_stops_serve_with_one_line_naming_the_key(
    tmp_path: Path, overrides: dict[str, str], args: list[str], key: str
) -> None:
    result = _run(serve_command(*args), node_env(tmp_path, overrides), tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("zhida: error: ")
    assert key in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "keys").exists()  # nothing was started


def test_an_unknown_key_in_the_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "zhida.toml"
    config.write_text('[node]\nname = "x"\nregoin_code = "420102"\n', encoding="utf-8")
    cmd = [sys.executable, "-m", "zhida.cli.main", "--config", str(config), "serve"]
    result = _run(cmd, node_env(tmp_path), tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"zhida: error: config node.regoin_code: unknown setting in {config}"
    ]


def test_config_check_prints_the_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    env = node_env(
        tmp_path,
        {
            "ZHIDA_DATABASE__URL": "postgresql://zhida:pg-pass-123@db.example:5432/zhida",
            "ZHIDA_BLOBSTORE__BACKEND": "s3",
            "ZHIDA_BLOBSTORE__S3__ENDPOINT": "s3.example:9000",
            "ZHIDA_BLOBSTORE__S3__ACCESS_KEY": "AKIDEXAMPLE",
            "ZHIDA_BLOBSTORE__S3__SECRET_KEY": "very-secret-key",
            "ZHIDA_NODE__REGION_CODE": "420100",
            "ZHIDA_LICENCE__EXPIRE_INTERVAL_SECONDS": "0",
        },
    )
    cmd = [sys.executable, "-m", "zhida.cli.main", "config", "check"]
    result = _run(cmd, env, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pg-pass-123" not in out
    assert "very-secret-key" not in out
    assert "AKIDEXAMPLE" not in out
    assert 'url = "postgresql://zhida:***@db.example:5432/zhida"' in out
    assert 'secret_key = "***"' in out
    assert 'region_code = "420100"  # city level' in out
    assert "[blobstore.s3]" in out
    assert 'listen = "127.0.0.1:0"' in out
    assert "[licence]\nexpire_interval_seconds = 0.0  # off" in out

    env["ZHIDA_AUTH__ALGORITHMS"] = "RS256"
    result = _run(cmd, env, tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "auth.algorithms" in result.stderr
