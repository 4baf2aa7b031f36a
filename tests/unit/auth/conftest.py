"""Fixtures for the auth tests: a throw-away data dir with real development keys.

Tokens are signed with real keys through PyJWT; nothing in the crypto is mocked.
Helpers that craft deliberately bad tokens live in :mod:`tests.unit.auth.tokens`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from zhida.auth.keys import ensure_dev_keys
from zhida.auth.verifier import TokenVerifier
from zhida.config import Config, load_config


class Clock:
    """A settable clock for TokenVerifier(clock=...)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


def make_config(data_dir: Path, **env: str) -> Config:
    """A Config rooted at ``data_dir``; ``env`` adds ZHIDA_* overrides (no os.environ)."""
    return load_config(None, env={"ZHIDA_NODE__DATA_DIR": str(data_dir), **env})


@pytest.fixture
def config(tmp_path: Path) -> Config:
    cfg = make_config(tmp_path / "data")
    ensure_dev_keys(cfg)
    return cfg


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(config: Config, clock: Clock) -> TokenVerifier:
    return TokenVerifier(config.auth, clock=clock, reload_interval=0)
