"""The ``[exchange]`` section: providers by name, the node's token, the provider timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhida.config import load_config
from zhida.errors import ConfigError

TOML = """\
[exchange]
provider_token_file = "/etc/zhida/node-token"
provider_timeout_seconds = 2.5

[exchange.providers]
"samr-registry" = "registry.samr.example:50071"
"civil-marriage" = "10.0.0.7:50072"
"""


def test_defaults() -> None:
    ex = load_config(None, env={}).exchange
    assert ex.providers == ()
    assert ex.provider_token_file is None
    assert ex.provider_timeout_seconds == 10.0


def test_from_toml_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "zhida.toml"
    path.write_text(TOML, encoding="utf-8")
    ex = load_config(path, env={}).exchange
    assert dict(ex.providers) == {
        "samr-registry": "registry.samr.example:50071",
        "civil-marriage": "10.0.0.7:50072",
    }
    assert ex.provider_token_file == Path("/etc/zhida/node-token")
    assert ex.provider_timeout_seconds == 2.5
    env = {"ZHIDA_EXCHANGE__PROVIDERS": "a=127.0.0.1:1, b=127.0.0.1:2"}
    assert load_config(None, env=env).exchange.providers == (
        ("a", "127.0.0.1:1"),
        ("b", "127.0.0.1:2"),
    )


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ZHIDA_EXCHANGE__PROVIDERS": "x=nohost"}, "exchange.providers.x"),
        ({"ZHIDA_EXCHANGE__PROVIDERS": "hosted=127.0.0.1:1"}, "exchange.providers.hosted"),
        ({"ZHIDA_EXCHANGE__PROVIDERS": "oops"}, "exchange.providers"),
        ({"ZHIDA_EXCHANGE__PROVIDER_TIMEOUT_SECONDS": "0"}, "exchange.provider_timeout_seconds"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env=env)
    assert caught.value.key == key
