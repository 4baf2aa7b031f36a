"""The ``[federation]`` section: tables from TOML or the environment, one clear error per key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from zhida.cli.main import main
from zhida.config import load_config
from zhida.errors import ConfigError

PROVINCE_TOML = """\
[node]
region_code = "420000"

[federation]
parent = "national.zhida.example:50051"
hop_reserve_ms = 35
tls_ca = "/etc/zhida/ca.crt"

[federation.children]
"420100" = "wuhan:50051"
"429004" = "xiantao:50051"

[federation.shortcuts]
"43" = "hunan:50051"
"4201" = "wuhan-direct:50051"
"""


def test_defaults(tmp_path: Path) -> None:
    fed = load_config(None, env={"ZHIDA_NODE__DATA_DIR": str(tmp_path)}).federation
    assert (fed.parent, fed.children, fed.shortcuts, fed.hop_reserve_ms) == ("", (), (), 20)
    assert fed.tls_cert == tmp_path / "pki" / "node.crt"
    assert fed.tls_key == tmp_path / "pki" / "node.key"
    assert fed.tls_ca == tmp_path / "pki" / "ca.crt"


def test_tables_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "province.toml"
    path.write_text(PROVINCE_TOML, encoding="utf-8")
    fed = load_config(path, env={}).federation
    assert fed.parent == "national.zhida.example:50051"
    assert dict(fed.children) == {"420100": "wuhan:50051", "429004": "xiantao:50051"}
    assert dict(fed.shortcuts) == {"430000": "hunan:50051", "420100": "wuhan-direct:50051"}
    assert fed.hop_reserve_ms == 35
    assert fed.tls_ca == Path("/etc/zhida/ca.crt")
    hash(load_config(path, env={}))  # the configuration stays hashable


def test_tables_from_environment() -> None:
    env = {
        "ZHIDA_NODE__REGION_CODE": "100000",
        "ZHIDA_FEDERATION__CHILDREN": "420000=hubei:50051, 430000=hunan:50051",
        "ZHIDA_FEDERATION__SHORTCUTS": "420102=jiangan:50051",
    }
    fed = load_config(None, env=env).federation
    assert dict(fed.children) == {"420000": "hubei:50051", "430000": "hunan:50051"}
    assert dict(fed.shortcuts) == {"420102": "jiangan:50051"}


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ZHIDA_FEDERATION__PARENT": "nowhere"}, "federation.parent"),
        (
            {"ZHIDA_NODE__REGION_CODE": "100000", "ZHIDA_FEDERATION__PARENT": "up:1"},
            "federation.parent",
        ),
        ({"ZHIDA_FEDERATION__CHILDREN": "420100"}, "federation.children"),
        ({"ZHIDA_FEDERATION__CHILDREN": "42=x:1"}, "federation.children.42"),
        ({"ZHIDA_FEDERATION__CHILDREN": "430100=x:1"}, "federation.children.430100"),
        (
            {"ZHIDA_NODE__REGION_CODE": "420000", "ZHIDA_FEDERATION__CHILDREN": "420000=x:1"},
            "federation.children.420000",
        ),
        (
            {"ZHIDA_NODE__REGION_CODE": "420000", "ZHIDA_FEDERATION__CHILDREN": "420100=x"},
            "federation.children.420100",
        ),
        ({"ZHIDA_FEDERATION__SHORTCUTS": "99=x:1"}, "federation.shortcuts.99"),
        ({"ZHIDA_FEDERATION__SHORTCUTS": "420=x:1"}, "federation.shortcuts.420"),
        ({"ZHIDA_FEDERATION__SHORTCUTS": "420102=x:1"}, "federation.shortcuts.420102"),
        ({"ZHIDA_FEDERATION__SHORTCUTS": "43=nowhere"}, "federation.shortcuts.43"),
        ({"ZHIDA_FEDERATION__HOP_RESERVE_MS": "-1"}, "federation.hop_reserve_ms"),
        ({"ZHIDA_FEDERATION__HOP_RESERVE_MS": "lots"}, "federation.hop_reserve_ms"),
    ],
)
def test_each_wrong_value_names_its_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env=env)
    assert info.value.key == key
    assert key in str(info.value)


def test_bad_table_in_toml(tmp_path: Path) -> None:
    path = tmp_path / "z.toml"
    path.write_text('[federation]\nchildren = "not a table"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"federation\.children"):
        load_config(path, env={})
    path.write_text('[federation.children]\n"420100" = 50051\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"federation\.children: must be a table of strings"):
        load_config(path, env={})
    path.write_text("[federation]\nparnet = ''\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"federation\.parnet"):
        load_config(path, env={})


def test_cli_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "z.toml"
    path.write_text('[federation.shortcuts]\n"99" = "x:1"\n', encoding="utf-8")
    monkeypatch.setenv("ZHIDA_CONFIG", str(path))
    assert main(["config", "check"]) == 2
    assert "federation.shortcuts.99" in capsys.readouterr().err


def test_check_prints_the_federation_and_exchange_sections_as_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "z.toml"
    providers = '\n[exchange.providers]\nsamr-registry = "127.0.0.1:7001"\n'
    path.write_text(PROVINCE_TOML + providers, encoding="utf-8")
    monkeypatch.setenv("ZHIDA_CONFIG", str(path))
    monkeypatch.setenv("ZHIDA_NODE__DATA_DIR", str(tmp_path / "data"))
    assert main(["config", "check"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["federation"]["parent"] == "national.zhida.example:50051"
    assert printed["federation"]["hop_reserve_ms"] == 35
    assert printed["federation"]["children"] == {"420100": "wuhan:50051", "429004": "xiantao:50051"}
    loaded = load_config(path, env={"ZHIDA_NODE__DATA_DIR": str(tmp_path / "data")})
    assert printed["federation"]["shortcuts"] == dict(loaded.federation.shortcuts)
    assert "hunan:50051" in printed["federation"]["shortcuts"].values()
    assert printed["exchange"]["providers"] == {"samr-registry": "127.0.0.1:7001"}
