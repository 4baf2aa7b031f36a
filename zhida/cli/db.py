"""``zhida db``: apply and inspect schema migrations of the configured database.

Example::

    $ zhida db upgrade          # prints the revision reached, e.g. 0001
    $ zhida db current          # prints the current revision, or "none"
    $ zhida --config node.toml db upgrade --revision 0001
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from zhida.config import Config, load_config
from zhida.db import migrate


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("db", help="database schema migrations")
    sub = parser.add_subparsers(dest="db_command", metavar="SUBCOMMAND", title="subcommands")
    sub.required = True

    up = sub.add_parser("upgrade", help="migrate the database schema (default: to the newest)")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    up.set_defaults(handler=cmd_upgrade)

    current = sub.add_parser("current", help="print the schema revision of the database")
    current.set_defaults(handler=cmd_current)


def _config(args: argparse.Namespace) -> Config:
    config = getattr(args, "config", None)
    return load_config(Path(config) if config else None)


def cmd_upgrade(args: argparse.Namespace) -> int:
    revision = migrate.upgrade(_config(args).database.url, args.revision)
    print(revision)
    return 0


def cmd_current(args: argparse.Namespace) -> int:
    revision = migrate.current_revision(_config(args).database.url)
    print(revision or "none")
    head = migrate.head_revision()
    if revision != head:  # a hint for people; stdout stays machine-readable
        print(f"zhida: newest revision is {head}; run 'zhida db upgrade'", file=sys.stderr)
    return 0
