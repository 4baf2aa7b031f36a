"""Configuration: defaults, TOML, environment overrides and one clear error per bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhida.config import load_config
from zhida.errors import ConfigError
from zhida.regions import Level

REPO = Path(__file__).resolve().parents[3]


def test_embedded_default_needs_no_configuration(tmp_path: Path) -> None:
    cfg = load_config(None, env={"ZHIDA_NODE__DATA_DIR": str(tmp_path)})
    assert cfg.database.url == f"sqlite:///{tmp_path / 'zhida.db'}"
    assert cfg.blobstore.backend == "filesystem"
    assert cfg.blobstore.path == tmp_path / "blobs"
    assert cfg.auth.jwks_file == tmp_path / "keys" / "jwks.json"
    assert cfg.auth.dev_keys is True
    assert cfg.node.level is Level.COUNTY


def test_example_file_is_valid_and_matches_defaults(tmp_path: Path) -> None:
    env = {"ZHIDA_NODE__DATA_DIR": str(tmp_path)}
    example = load_config(REPO / "deploy" / "zhida.example.toml", env=env)
    default = load_config(None, env=env)
    assert example.node == default.node
    assert example.database == default.database
    assert example.auth == default.auth


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "z.toml"
    path.write_text('[node]\nregion_code = "430000"\nworkers = 2\n', encoding="utf-8")
    cfg = load_config(path, env={"ZHIDA_NODE__WORKERS": "4"})
    assert cfg.node.region_code == "430000"
    assert cfg.node.level is Level.PROVINCE
    assert cfg.node.workers == 4


def test_s3_backend_takes_credentials_from_aws_environment() -> None:
    env = {
        "ZHIDA_BLOBSTORE__BACKEND": "s3",
        "ZHIDA_BLOBSTORE__S3__ENDPOINT": "127.0.0.1:8333",
        "AWS_ACCESS_KEY_ID": "ak",
        "AWS_SECRET_ACCESS_KEY": "sk",
    }
    cfg = load_config(None, env=env)
    assert cfg.blobstore.s3 is not None
    assert (cfg.blobstore.s3.access_key, cfg.blobstore.s3.secret_key) == ("ak", "sk")


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ZHIDA_NODE__REGION_CODE": "99"}, "node.region_code"),
        ({"ZHIDA_NODE__REGION_CODE": "990000"}, "node.region_code"),
        ({"ZHIDA_NODE__WORKERS": "many"}, "node.workers"),
        ({"ZHIDA_NODE__WORKERS": "0"}, "node.workers"),
        ({"ZHIDA_NODE__LISTEN": "nowhere"}, "node.listen"),
        ({"ZHIDA_NODE__GRACE_SECONDS": "-1"}, "node.grace_seconds"),
        ({"ZHIDA_DATABASE__URL": "mysql://x"}, "database.url"),
        ({"ZHIDA_DATABASE__AUTO_MIGRATE": "perhaps"}, "database.auto_migrate"),
        ({"ZHIDA_BLOBSTORE__BACKEND": "ftp"}, "blobstore.backend"),
        ({"ZHIDA_BLOBSTORE__BACKEND": "s3"}, "blobstore.s3.endpoint"),
        (
            {
                "ZHIDA_BLOBSTORE__BACKEND": "s3",
                "ZHIDA_BLOBSTORE__S3__ENDPOINT": "127.0.0.1:8333",
                "ZHIDA_BLOBSTORE__S3__BUCKET": "Zhida证照",
                "AWS_ACCESS_KEY_ID": "ak",
                "AWS_SECRET_ACCESS_KEY": "sk",
            },
            "blobstore.s3.bucket",
        ),
        ({"ZHIDA_AUTH__ALGORITHMS": "HS256"}, "auth.algorithms"),
        ({"ZHIDA_AUTH__LEEWAY_SECONDS": "3600"}, "auth.leeway_seconds"),
        ({"ZHIDA_METRICS__LISTEN": "9464"}, "metrics.listen"),
        ({"ZHIDA_LOG__LEVEL": "loud"}, "log.level"),
        ({"ZHIDA_NODE__COLOUR": "red"}, "node.colour"),
    ],
)
def test_each_wrong_value_names_its_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env=env)
    assert info.value.key == key
    assert key in str(info.value)


def test_s3_without_credentials_is_refused() -> None:
    env = {"ZHIDA_BLOBSTORE__BACKEND": "s3", "ZHIDA_BLOBSTORE__S3__ENDPOINT": "127.0.0.1:1"}
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        load_config(None, env=env)


def test_unknown_key_in_file_and_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "z.toml"
    path.write_text("[node]\nregoin_code = '420102'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"node\.regoin_code"):
        load_config(path, env={})
    path.write_text("[node\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", env={})
