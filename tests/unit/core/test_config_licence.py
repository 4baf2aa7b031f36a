"""The ``[licence]`` section: how often the node stores expiries (0 = never)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhida.cli.main import main
from zhida.config import load_config
from zhida.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
KEY = "licence.expire_interval_seconds"


def test_default_toml_environment_and_example() -> None:
    assert load_config(None, env={}).licence.expire_interval_seconds == 3600.0
    env = {"ZHIDA_LICENCE__EXPIRE_INTERVAL_SECONDS": "0"}
    assert load_config(None, env=env).licence.expire_interval_seconds == 0.0  # off
    example = load_config(REPO / "deploy" / "zhida.example.toml", env={})
    assert example.licence == load_config(None, env={}).licence


def test_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "z.toml"
    path.write_text("[licence]\nexpire_interval_seconds = 86400\n", encoding="utf-8")
    assert load_config(path, env={}).licence.expire_interval_seconds == 86400.0


@pytest.mark.parametrize("value", ["-1", "0.5", "604801", "often", "nan", "inf"])
def test_bad_values_name_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"ZHIDA_LICENCE__EXPIRE_INTERVAL_SECONDS": value})
    assert caught.value.key == KEY


def test_cli_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "z.toml"
    path.write_text("[licence]\nexpire_interval_seconds = -5\n", encoding="utf-8")
    monkeypatch.setenv("ZHIDA_CONFIG", str(path))
    assert main(["config", "check"]) == 2
    err = capsys.readouterr().err
    assert KEY in err
    assert len(err.strip().splitlines()) == 1
