"""Node configuration: one TOML file plus ``ZHIDA_*`` environment overrides.

Every setting has a default that suits a newcomer's laptop (the *embedded
default*): SQLite and a blob directory under ``data_dir``, development keys
created there on first run. Values are validated once at start-up; a wrong
value raises :class:`zhida.errors.ConfigError` naming the key.

An environment variable ``ZHIDA_<SECTION>__<KEY>`` overrides ``[section] key``
(``ZHIDA_DATABASE__URL``, ``ZHIDA_BLOBSTORE__S3__BUCKET``). ``ZHIDA_CONFIG``
names the TOML file when ``--config`` is not given. S3 credentials default to
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` so they need not sit in a file.

Example::

    from zhida.config import load_config

    cfg = load_config(None, env={"ZHIDA_NODE__REGION_CODE": "420102"})
    assert cfg.node.level.name == "COUNTY"
    print(cfg.database.url)  # sqlite:///.../.zhida/zhida.db
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhida.errors import ConfigError
from zhida.regions import Level, Region, RegionCodeError, parse_region

ENV_PREFIX = "ZHIDA_"
# S3 bucket naming rules: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
SUPPORTED_JWT_ALGORITHMS = ("ES256", "EdDSA")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    region_code: str
    level: Level
    listen: str
    workers: int
    max_concurrent_rpcs: int
    max_message_bytes: int
    grace_seconds: float
    data_dir: Path


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    url: str
    auto_migrate: bool
    pool_size: int


@dataclass(frozen=True, slots=True)
class S3Config:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    secure: bool
    region: str


@dataclass(frozen=True, slots=True)
class BlobStoreConfig:
    backend: str  # "filesystem" or "s3"
    path: Path
    s3: S3Config | None


@dataclass(frozen=True, slots=True)
class AuthConfig:
    issuer: str
    audience: str
    jwks_file: Path
    leeway_seconds: int
    algorithms: tuple[str, ...]
    dev_keys: bool  # create a development signing key and JWKS on first run


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: str  # "" disables the Prometheus endpoint


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str
    format: str  # "json" or "text"


@dataclass(frozen=True, slots=True)
class FederationConfig:
    """Neighbours of this node in the four-level federation (issue 8)."""

    parent: str  # host:port of the parent node; "" at the national level (or standalone)
    # (region code, host:port) pairs, sorted; tuples keep Config hashable: dict() them
    children: tuple[tuple[str, str], ...]  # child region -> address
    shortcuts: tuple[tuple[str, str], ...]  # region (from a 2/4/6-digit prefix) -> address
    tls_cert: Path  # this node's certificate chain (PEM, leaf first)
    tls_key: Path
    tls_ca: Path  # the deployment root that peers must chain to
    hop_reserve_ms: int  # deadline kept back per hop for the answer's way back
    listen: str = ""  # host:port of the mutual-TLS federation port; "" = none
    # background work with the neighbours (catalogue push/pull, licence index; witnessing)
    sync_interval_seconds: float = 1.0
    witness_interval_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    """How the node reaches departments' data providers (issue 7)."""

    # (provider name, host:port) pairs, sorted; a resource's delivery_service names one
    providers: tuple[tuple[str, str], ...]
    provider_token_file: Path | None  # the node's bearer token for providers; None: a dev token
    provider_timeout_seconds: float  # longest wait for a provider's answer


@dataclass(frozen=True, slots=True)
class LicenceConfig:
    """The node's electronic-licence vault (issue 5)."""

    # how often the node stores 'expired' for licences past their end date; 0 = never
    # (then run ``zhida licence expire`` from cron)
    expire_interval_seconds: float = 3600.0


@dataclass(frozen=True, slots=True)
class Config:
    node: NodeConfig
    database: DatabaseConfig
    blobstore: BlobStoreConfig
    auth: AuthConfig
    metrics: MetricsConfig
    log: LogConfig
    federation: FederationConfig
    exchange: ExchangeConfig
    source: Path | None  # the TOML file read, if any
    licence: LicenceConfig = LicenceConfig()

    @property
    def keys_dir(self) -> Path:
        return self.node.data_dir / "keys"


# --- parsing helpers -------------------------------------------------------

_Parser = Callable[[str, Any], Any]


def _as_str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, got {type(value).__name__}")
    return value


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "1", "yes", "false", "0", "no"}:
        return value.lower() in {"true", "1", "yes"}
    raise ConfigError(key, f"must be true or false, got {value!r}")


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(key, f"must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ConfigError(key, f"must be an integer, got {value!r}")


def _as_float(key: str, value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(key, f"must be a number, got {value!r}")


def _as_str_list(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, "must be a list of strings")
    return tuple(value)


def _as_str_table(key: str, value: Any) -> dict[str, str]:
    """A TOML table of strings, or ``"k=v,k=v"`` from the environment."""
    if isinstance(value, str):
        pairs = [p.strip().partition("=") for p in value.split(",") if p.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ConfigError(key, "must be a table, or k=v pairs separated by commas")
        value = {k.strip(): v.strip() for k, _, v in pairs}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(key, "must be a table of strings")
    return dict(value)


# key -> (parser, default). Defaults that depend on data_dir are None here.
_SCHEMA: dict[str, tuple[_Parser, Any]] = {
    "node.name": (_as_str, "zhida-dev"),
    "node.region_code": (_as_str, "420102"),
    "node.listen": (_as_str, "127.0.0.1:50051"),
    "node.workers": (_as_int, 1),
    "node.max_concurrent_rpcs": (_as_int, 1000),
    "node.max_message_bytes": (_as_int, 4 * 1024 * 1024),
    "node.grace_seconds": (_as_float, 10.0),
    "node.data_dir": (_as_str, ".zhida"),
    "database.url": (_as_str, None),
    "database.auto_migrate": (_as_bool, True),
    "database.pool_size": (_as_int, 10),
    "blobstore.backend": (_as_str, "filesystem"),
    "blobstore.path": (_as_str, None),
    "blobstore.s3.endpoint": (_as_str, ""),
    "blobstore.s3.bucket": (_as_str, "zhida"),
    "blobstore.s3.access_key": (_as_str, None),
    "blobstore.s3.secret_key": (_as_str, None),
    "blobstore.s3.secure": (_as_bool, False),
    "blobstore.s3.region": (_as_str, "us-east-1"),
    "auth.issuer": (_as_str, "zhida-dev"),
    "auth.audience": (_as_str, "zhida"),
    "auth.jwks_file": (_as_str, None),
    "auth.leeway_seconds": (_as_int, 30),
    "auth.algorithms": (_as_str_list, list(SUPPORTED_JWT_ALGORITHMS)),
    "auth.dev_keys": (_as_bool, True),
    "metrics.listen": (_as_str, "127.0.0.1:9464"),
    "log.level": (_as_str, "info"),
    "log.format": (_as_str, "json"),
    "federation.parent": (_as_str, ""),
    "federation.children": (_as_str_table, {}),
    "federation.shortcuts": (_as_str_table, {}),
    "federation.tls_cert": (_as_str, None),
    "federation.tls_key": (_as_str, None),
    "federation.tls_ca": (_as_str, None),
    "federation.hop_reserve_ms": (_as_int, 20),
    "federation.listen": (_as_str, ""),
    "federation.sync_interval_seconds": (_as_float, 1.0),
    "federation.witness_interval_seconds": (_as_float, 10.0),
    "exchange.providers": (_as_str_table, {}),
    "exchange.provider_token_file": (_as_str, ""),
    "exchange.provider_timeout_seconds": (_as_float, 10.0),
    "licence.expire_interval_seconds": (_as_float, 3600.0),
}


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in _SCHEMA:  # a schema key may hold a table
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "ZHIDA_CONFIG" or "__" not in name:
            continue
        key = name[len(ENV_PREFIX) :].lower().replace("__", ".")
        if key not in _SCHEMA:
            raise ConfigError(key, f"unknown setting (from environment variable {name})")
        out[key] = value
    return out


def _check_host_port(key: str, value: str, *, allow_empty: bool = False) -> str:
    if allow_empty and value == "":
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"must be host:port, got {value!r}")
    return value


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate the configuration; raise ConfigError on the first bad key."""
    env = os.environ if env is None else env
    if path is None and env.get("ZHIDA_CONFIG"):
        path = Path(env["ZHIDA_CONFIG"])
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = _flatten(tomllib.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ConfigError("--config", f"file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
        for key in raw:
            if key not in _SCHEMA:
                raise ConfigError(key, f"unknown setting in {path}")
    raw.update(_env_overrides(env))

    values: dict[str, Any] = {}
    for key, (parse, default) in _SCHEMA.items():
        values[key] = parse(key, raw[key]) if key in raw else default
    return _build(values, env, path)


def _build(v: dict[str, Any], env: Mapping[str, str], source: Path | None) -> Config:
    try:
        region = parse_region(v["node.region_code"])
    except RegionCodeError as exc:
        raise ConfigError("node.region_code", str(exc)) from None
    data_dir = Path(v["node.data_dir"]).expanduser().resolve()
    for key, low, high in (
        ("node.workers", 1, 64),
        ("node.max_concurrent_rpcs", 1, 1_000_000),
        ("node.max_message_bytes", 1024, 1 << 30),
        ("database.pool_size", 1, 1000),
        ("auth.leeway_seconds", 0, 300),
    ):
        if not low <= v[key] <= high:
            raise ConfigError(key, f"must be between {low} and {high}, got {v[key]}")
    if not 0 <= v["node.grace_seconds"] <= 600:
        raise ConfigError("node.grace_seconds", "must be between 0 and 600")
    if not v["node.name"].strip():
        raise ConfigError("node.name", "must not be empty")
    _check_host_port("node.listen", v["node.listen"])
    _check_host_port("metrics.listen", v["metrics.listen"], allow_empty=True)

    db_url = v["database.url"] or f"sqlite:///{data_dir / 'zhida.db'}"
    if not db_url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise ConfigError("database.url", f"must be a sqlite: or postgresql: URL, got {db_url!r}")

    backend = v["blobstore.backend"]
    s3: S3Config | None = None
    if backend == "s3":
        endpoint = v["blobstore.s3.endpoint"]
        if not endpoint:
            raise ConfigError("blobstore.s3.endpoint", "is required when blobstore.backend = 's3'")
        _check_host_port("blobstore.s3.endpoint", endpoint)
        access = v["blobstore.s3.access_key"] or env.get("AWS_ACCESS_KEY_ID", "")
        secret = v["blobstore.s3.secret_key"] or env.get("AWS_SECRET_ACCESS_KEY", "")
        if not access or not secret:
            raise ConfigError(
                "blobstore.s3.access_key",
                "S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )
        bucket = v["blobstore.s3.bucket"]
        if not _BUCKET_NAME.fullmatch(bucket):
            raise ConfigError("blobstore.s3.bucket", f"is not a valid bucket name: {bucket!r}")
        s3 = S3Config(
            endpoint, bucket, access, secret, v["blobstore.s3.secure"], v["blobstore.s3.region"]
        )
    elif backend != "filesystem":
        raise ConfigError("blobstore.backend", f"must be 'filesystem' or 's3', got {backend!r}")

    algorithms = v["auth.algorithms"]
    bad = [a for a in algorithms if a not in SUPPORTED_JWT_ALGORITHMS]
    if bad or not algorithms:
        raise ConfigError(
            "auth.algorithms",
            f"must be a non-empty subset of {list(SUPPORTED_JWT_ALGORITHMS)}, "
            f"got {list(algorithms)}",
        )
    if v["log.level"].lower() not in {"debug", "info", "warning", "error"}:
        raise ConfigError(
            "log.level", f"must be debug, info, warning or error, got {v['log.level']!r}"
        )
    if v["log.format"] not in {"json", "text"}:
        raise ConfigError("log.format", f"must be 'json' or 'text', got {v['log.format']!r}")

    federation = _federation(v, region, data_dir)

    return Config(
        node=NodeConfig(
            name=v["node.name"],
            region_code=region.code,
            level=region.level,
            listen=v["node.listen"],
            workers=v["node.workers"],
            max_concurrent_rpcs=v["node.max_concurrent_rpcs"],
            max_message_bytes=v["node.max_message_bytes"],
            grace_seconds=v["node.grace_seconds"],
            data_dir=data_dir,
        ),
        database=DatabaseConfig(db_url, v["database.auto_migrate"], v["database.pool_size"]),
        blobstore=BlobStoreConfig(
            backend, Path(v["blobstore.path"] or data_dir / "blobs").expanduser(), s3
        ),
        auth=AuthConfig(
            issuer=v["auth.issuer"],
            audience=v["auth.audience"],
            jwks_file=Path(v["auth.jwks_file"] or data_dir / "keys" / "jwks.json").expanduser(),
            leeway_seconds=v["auth.leeway_seconds"],
            algorithms=tuple(algorithms),
            dev_keys=v["auth.dev_keys"],
        ),
        metrics=MetricsConfig(v["metrics.listen"]),
        log=LogConfig(v["log.level"].lower(), v["log.format"]),
        federation=federation,
        exchange=_exchange(v),
        source=source,
        licence=_licence(v),
    )


def _region_from_prefix(key: str, prefix: str) -> str:
    """``43`` → ``430000``, ``4331`` → ``433100``, six digits as they are; ConfigError if bad."""
    code = prefix + "0" * (6 - len(prefix)) if len(prefix) in (2, 4) else prefix
    try:
        return parse_region(code).code
    except RegionCodeError as exc:
        raise ConfigError(key, f"{prefix!r}: {exc}") from None


def _federation(v: dict[str, Any], region: Region, data_dir: Path) -> FederationConfig:
    parent = v["federation.parent"]
    _check_host_port("federation.parent", parent, allow_empty=True)
    if parent and region.level is Level.NATIONAL:
        raise ConfigError("federation.parent", "the national node has no parent; leave it empty")
    children: dict[str, str] = {}
    for code, address in v["federation.children"].items():
        key = f"federation.children.{code}"
        try:
            child = parse_region(code)
        except RegionCodeError as exc:
            raise ConfigError(key, str(exc)) from None
        if child.code == region.code or not region.contains(child):
            raise ConfigError(key, f"region {code} is not below this node's region {region.code}")
        children[child.code] = _check_host_port(key, address)
    shortcuts: dict[str, str] = {}
    for prefix, address in v["federation.shortcuts"].items():
        key = f"federation.shortcuts.{prefix}"
        code = _region_from_prefix(key, prefix)
        if code == region.code:
            raise ConfigError(key, "a shortcut to this node itself")
        shortcuts[code] = _check_host_port(key, address)
    if not 0 <= v["federation.hop_reserve_ms"] <= 60_000:
        raise ConfigError("federation.hop_reserve_ms", "must be between 0 and 60000")
    _check_host_port("federation.listen", v["federation.listen"], allow_empty=True)
    for key in ("federation.sync_interval_seconds", "federation.witness_interval_seconds"):
        if not 0.05 <= v[key] <= 3600:
            raise ConfigError(key, "must be between 0.05 and 3600 seconds")
    pki = data_dir / "pki"
    return FederationConfig(
        parent=parent,
        children=tuple(sorted(children.items())),
        shortcuts=tuple(sorted(shortcuts.items())),
        tls_cert=Path(v["federation.tls_cert"] or pki / "node.crt").expanduser(),
        tls_key=Path(v["federation.tls_key"] or pki / "node.key").expanduser(),
        tls_ca=Path(v["federation.tls_ca"] or pki / "ca.crt").expanduser(),
        hop_reserve_ms=v["federation.hop_reserve_ms"],
        listen=v["federation.listen"],
        sync_interval_seconds=v["federation.sync_interval_seconds"],
        witness_interval_seconds=v["federation.witness_interval_seconds"],
    )


def _exchange(v: dict[str, Any]) -> ExchangeConfig:
    providers: dict[str, str] = {}
    for name, address in v["exchange.providers"].items():
        key = f"exchange.providers.{name}"
        if not name.strip() or name.strip() == "hosted" or len(name) > 128:
            raise ConfigError(key, "a provider name must be 1-128 characters, not 'hosted'")
        providers[name.strip()] = _check_host_port(key, address)
    timeout = v["exchange.provider_timeout_seconds"]
    if not 0 < timeout <= 3600:
        raise ConfigError("exchange.provider_timeout_seconds", "must be between 0 and 3600")
    token_file = v["exchange.provider_token_file"]
    return ExchangeConfig(
        providers=tuple(sorted(providers.items())),
        provider_token_file=Path(token_file).expanduser() if token_file else None,
        provider_timeout_seconds=timeout,
    )


def _licence(v: dict[str, Any]) -> LicenceConfig:
    key = "licence.expire_interval_seconds"
    interval = v[key]
    # 0 turns the job off; below 1 s it would only re-read the same due licences
    if interval != 0 and not 1 <= interval <= 7 * 86400:
        raise ConfigError(key, "must be 0 (off) or between 1 and 604800 seconds (7 days)")
    return LicenceConfig(expire_interval_seconds=interval)
