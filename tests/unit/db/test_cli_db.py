"""``zhida db upgrade`` / ``current`` handlers against a fresh SQLite path."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from zhida.cli import db as db_cli
from zhida.db.migrate import head_revision


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zhida")
    parser.add_argument("--config")
    sub = parser.add_subparsers(dest="command", required=True)
    db_cli.register(sub)
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    code: int = args.handler(args)
    return code


def test_upgrade_creates_database_and_reaches_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("ZHIDA_CONFIG", "ZHIDA_DATABASE__URL", "ZHIDA_NODE__DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    db_file = tmp_path / "state" / "node.db"
    config = tmp_path / "node.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{db_file}"\n', encoding="utf-8")

    assert _run(["--config", str(config), "db", "current"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "none"
    assert "zhida db upgrade" in err
    assert not db_file.exists()  # looking does not create the database

    assert _run(["--config", str(config), "db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == head_revision()
    assert db_file.exists()

    assert _run(["--config", str(config), "db", "current"]) == 0
    out, err = capsys.readouterr()
    assert (out.strip(), err) == (head_revision(), "")


def test_upgrade_without_config_file_uses_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("ZHIDA_CONFIG", "ZHIDA_DATABASE__URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZHIDA_NODE__DATA_DIR", str(tmp_path / "data"))
    assert _run(["db", "upgrade", "--revision", "head"]) == 0
    assert capsys.readouterr().out.strip() == head_revision()
    assert (tmp_path / "data" / "zhida.db").exists()
