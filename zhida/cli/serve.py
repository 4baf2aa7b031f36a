"""``zhida serve``: run the node's gRPC server until SIGTERM/SIGINT.

Flags override the configuration (``--listen`` → ``node.listen``,
``--workers`` → ``node.workers``) and are validated the same way: a bad value
stops the process with one line naming the key, exit 2.

Example::

    $ zhida serve                                   # 127.0.0.1:50051, one process
    $ zhida serve --listen 0.0.0.0:50051 --workers 4
    $ ZHIDA_NODE__REGION_CODE=420100 zhida --config node.toml serve
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from zhida.config import ENV_PREFIX, load_config


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the node's gRPC server",
        description="Run the node's gRPC server until SIGTERM or SIGINT (then drain and exit 0).",
    )
    parser.add_argument(
        "--listen", metavar="HOST:PORT", help="address to serve on (overrides node.listen)"
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        help="worker processes sharing the port (overrides node.workers)",
    )
    parser.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    # Flags go through the same parsing and checks as the file and environment.
    if args.listen is not None:
        env[f"{ENV_PREFIX}NODE__LISTEN"] = args.listen
    if args.workers is not None:
        env[f"{ENV_PREFIX}NODE__WORKERS"] = args.workers
    config_file = getattr(args, "config", None)
    config = load_config(Path(config_file) if config_file else None, env)

    from zhida.server.runner import run  # keeps `zhida --help` fast

    return run(config)
