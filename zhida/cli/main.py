"""Entry point of the ``zhida`` console script.

Each command group lives in its own module exposing ``register(subparsers)``;
a command's handler returns an exit code. A :class:`zhida.errors.ZhidaError`
(including a bad configuration) is printed as one line on stderr, exit 2.

Example::

    $ zhida --help
    $ zhida db upgrade
    $ zhida token mint --role department --org 114201000000301708
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from zhida import __version__
from zhida.errors import ZhidaError

# Command modules, in the order --help lists them.
COMMAND_MODULES = (
    "zhida.cli.serve",
    "zhida.cli.db",
    "zhida.cli.token",
    "zhida.cli.config_cmd",
    "zhida.cli.catalog",
    "zhida.cli.exchange",
    "zhida.cli.data",
    "zhida.cli.provider",
    "zhida.cli.audit",
    "zhida.cli.licence",
    "zhida.cli.pki",
    "zhida.cli.verify",
    "zhida.cli.federation",
    "zhida.cli.demo",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zhida",
        description="zhida (直达): government data-sharing exchange and electronic-licence vault.",
    )
    parser.add_argument("--version", action="version", version=f"zhida {__version__}")
    parser.add_argument(
        "--config", metavar="FILE", help="TOML configuration file (default: $ZHIDA_CONFIG)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ZhidaError as exc:
        print(f"zhida: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zhida: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
