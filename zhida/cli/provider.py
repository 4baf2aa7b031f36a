"""``zhida provider``: run an example department data provider (DataProviderService).

``zhida provider example`` serves the synthetic business registry of
武汉市市场监督管理局 (:mod:`exchange.sample_registry`) over
``zhida.provider.v1.DataProviderService`` until SIGTERM or SIGINT. It checks
callers' bearer tokens against the deployment's JWKS (``auth.jwks_file`` of the
configuration): only tokens with role ``node`` are served. Once listening it
prints one JSON line, ``{"msg": "provider started", "listen": "host:port"}``.

Point a node at it with ``[exchange] providers`` (or
``ZHIDA_EXCHANGE__PROVIDERS=samr-registry=127.0.0.1:50071``) and give the
catalogue resource ``delivery_service = "samr-registry"``.

Example::

    $ zhida provider example --listen 127.0.0.1:50071 --records 5000
    {"msg": "provider started", "listen": "127.0.0.1:50071", "records": 5000, ...}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

from exchange.sample_registry import RESOURCE_CODE
from zhida.config import load_config


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "provider",
        help="run an example department data provider",
        description="Example systems implementing zhida.provider.v1.DataProviderService.",
    )
    sub = parser.add_subparsers(dest="provider_command", metavar="COMMAND", required=True)
    example = sub.add_parser(
        "example",
        help="serve the synthetic business registry (市场主体登记) until SIGTERM",
        description="Serve the market regulator's synthetic business registry. Callers need a "
        "node token of this deployment (auth.jwks_file).",
    )
    example.add_argument(
        "--listen",
        default="127.0.0.1:50071",
        metavar="HOST:PORT",
        help="address to serve on; port 0 picks one (default: %(default)s)",
    )
    example.add_argument(
        "--records",
        type=int,
        default=1000,
        metavar="N",
        help="companies in the registry (default: %(default)s)",
    )
    example.add_argument(
        "--resource",
        action="append",
        metavar="CODE",
        help=f"catalogue code served; repeatable (default: {RESOURCE_CODE})",
    )
    example.add_argument(
        "--fault",
        choices=("none", "malformed", "slow"),
        default="none",
        help="misbehave, to see how the node copes (default: none)",
    )
    example.add_argument("--no-auth", action="store_true",
                         help="serve without checking tokens (local experiments only)")  # fmt: skip
    example.set_defaults(handler=cmd_example)


def cmd_example(args: argparse.Namespace) -> int:
    from exchange.example_provider import ExampleProvider, start_server
    from exchange.sample_registry import companies

    config_file = getattr(args, "config", None)
    config = None if args.no_auth else load_config(Path(config_file) if config_file else None)
    provider = ExampleProvider(
        companies(max(0, args.records)),
        resource_codes=args.resource or (RESOURCE_CODE,),
        fault=args.fault,
    )

    async def serve() -> None:
        server, address = await start_server(provider, args.listen, config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        line = {
            "msg": "provider started", "listen": address, "records": len(provider.records),
            "resource_codes": sorted(provider.resource_codes), "fault": provider.fault,
            "auth": config is not None,
        }  # fmt: skip
        print(json.dumps(line, ensure_ascii=False), flush=True)
        await stop.wait()
        await server.stop(1.0)

    asyncio.run(serve())
    print(json.dumps({"msg": "provider stopped", "calls": provider.calls}), file=sys.stderr)
    return 0
