"""``zhida config check``: validate the configuration and print it, secrets masked.

Reads the same sources as ``zhida serve`` (``--config`` / ``$ZHIDA_CONFIG`` and
``ZHIDA_*`` variables) and prints every effective setting as TOML. A wrong
value stops with one line naming the key, exit 2.

Example::

    $ ZHIDA_DATABASE__URL=postgresql://zhida:s3cret@db/zhida zhida config check
    # zhida configuration: OK (defaults + environment)
    [node]
    name = "zhida-dev"
    ...
    [database]
    url = "postgresql://zhida:***@db/zhida"
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from zhida.config import Config, load_config
from zhida.errors import ConfigError

MASK = "***"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("config", help="validate and show the configuration")
    sub = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND", title="subcommands")
    sub.required = True
    check = sub.add_parser(
        "check", help="validate the configuration and print it with secrets masked"
    )
    check.set_defaults(handler=cmd_check)


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***``; ConfigError if it does not parse."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError("database.url", f"is not a valid URL: {exc}") from None
    if parsed.password is None:
        return url
    return parsed.render_as_string(hide_password=True)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def render(config: Config) -> Iterator[str]:
    """The effective configuration as TOML lines, secrets masked."""
    node = config.node
    yield "[node]"
    yield f"name = {_value(node.name)}"
    yield f"region_code = {_value(node.region_code)}  # {node.level.name.lower()} level"
    for key in (
        "listen",
        "workers",
        "max_concurrent_rpcs",
        "max_message_bytes",
        "grace_seconds",
        "data_dir",
    ):
        yield f"{key} = {_value(getattr(node, key))}"
    db = config.database
    yield ""
    yield "[database]"
    yield f"url = {_value(masked_url(db.url))}"
    yield f"auto_migrate = {_value(db.auto_migrate)}"
    yield f"pool_size = {_value(db.pool_size)}"
    blob = config.blobstore
    yield ""
    yield "[blobstore]"
    yield f"backend = {_value(blob.backend)}"
    yield f"path = {_value(blob.path)}"
    if blob.s3 is not None:
        s3 = blob.s3
        yield ""
        yield "[blobstore.s3]"
        yield f"endpoint = {_value(s3.endpoint)}"
        yield f"bucket = {_value(s3.bucket)}"
        yield f"access_key = {_value(s3.access_key[:4] + MASK if s3.access_key else '')}"
        yield f"secret_key = {_value(MASK if s3.secret_key else '')}"
        yield f"secure = {_value(s3.secure)}"
        yield f"region = {_value(s3.region)}"
    auth = config.auth
    yield ""
    yield "[auth]"
    for key in ("issuer", "audience", "jwks_file", "leeway_seconds", "algorithms", "dev_keys"):
        yield f"{key} = {_value(getattr(auth, key))}"
    yield ""
    yield "[metrics]"
    off = "" if config.metrics.listen else "  # off"
    yield f"listen = {_value(config.metrics.listen)}{off}"
    yield ""
    yield "[log]"
    yield f"level = {_value(config.log.level)}"
    yield f"format = {_value(config.log.format)}"
    fed = config.federation
    yield ""
    yield "[federation]"
    for key in ("parent", "listen", "tls_cert", "tls_key", "tls_ca", "hop_reserve_ms"):
        yield f"{key} = {_value(getattr(fed, key))}"
    yield f"sync_interval_seconds = {_value(fed.sync_interval_seconds)}"
    yield f"witness_interval_seconds = {_value(fed.witness_interval_seconds)}"
    yield from _table("federation.children", fed.children)
    yield from _table("federation.shortcuts", fed.shortcuts)
    exchange = config.exchange
    yield ""
    yield "[exchange]"
    yield f"provider_token_file = {_value(exchange.provider_token_file or '')}"
    yield f"provider_timeout_seconds = {_value(exchange.provider_timeout_seconds)}"
    yield from _table("exchange.providers", exchange.providers)
    yield ""
    yield "[licence]"
    every = config.licence.expire_interval_seconds
    yield f"expire_interval_seconds = {_value(every)}{'' if every else '  # off'}"


def _table(name: str, pairs: tuple[tuple[str, str], ...]) -> Iterator[str]:
    """A ``[name]`` table of ``key = "value"`` lines (nothing when empty)."""
    if pairs:
        yield ""
        yield f"[{name}]"
        yield from (f"{_value(k)} = {_value(v)}" for k, v in pairs)


def cmd_check(args: argparse.Namespace) -> int:
    config_file = getattr(args, "config", None)
    config = load_config(Path(config_file) if config_file else None)
    lines = list(render(config))  # may raise ConfigError before anything is printed
    source = str(config.source) if config.source is not None else "defaults"
    print(f"# zhida configuration: OK ({source} + environment)")
    print("\n".join(lines))
    return 0
