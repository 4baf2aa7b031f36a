"""``zhida federation up``: the four-level federation on this machine, one process per node.

Starts national (100000), 湖北 (420000), 湖南 (430000), 武汉 (420100) and
江岸区 (420102) — or the regions given — as separate ``zhida serve``
processes on 127.0.0.1 with their own databases and blob directories, ONE
deployment PKI and mutual TLS between neighbours
(:mod:`exchange.federation.local`); prints a table of the nodes and stays
up until Ctrl-C or SIGTERM, then drains every node and exits 0 (1 if a node
died or did not drain cleanly). Each node's ``node.toml`` works with the
other commands, e.g. a token for the county node::

    $ zhida federation up --dir .zhida-federation
    $ zhida --config .zhida-federation/420102/node.toml \
        token mint --role admin --org 11420102000040176F
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

DEFAULT_DIR = Path(".zhida-federation")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "federation", help="run a local four-level federation (national, province, city, county)"
    )
    commands = parser.add_subparsers(dest="federation_command", metavar="COMMAND")
    commands.required = True
    up = commands.add_parser(
        "up",
        help="start every node as its own process and stay up until Ctrl-C / SIGTERM",
        description="Start national, 湖北, 湖南, 武汉 and 江岸区 (or --regions) as separate "
        "`zhida serve` processes on 127.0.0.1 with one deployment PKI and mutual TLS "
        "between neighbours; print the nodes and stay up until Ctrl-C or SIGTERM, then "
        "drain every node.",
    )
    up.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"deployment and node data (kept between runs; default {DEFAULT_DIR})",
    )
    up.add_argument(
        "--regions",
        nargs="+",
        metavar="CODE",
        help="region codes to start (default: 100000 420000 430000 420100 420102)",
    )
    up.add_argument(
        "--sync-interval",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="catalogue and licence-index sync with the neighbours (default 0.5)",
    )
    up.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for every node to serve"
    )
    up.set_defaults(handler=cmd_up)


def cmd_up(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from exchange.federation.local import DEFAULT_REGIONS, LocalFederation
    from zhida.localnode import NodeStartError

    console = Console()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        regions = tuple(args.regions or DEFAULT_REGIONS)
        console.print(f"starting {len(regions)} nodes in [cyan]{args.dir}[/cyan] …")
        started = time.monotonic()
        try:
            federation = LocalFederation.start(
                args.dir, regions, sync_interval=args.sync_interval, timeout=args.timeout
            )
        except NodeStartError as exc:
            console.print(f"[red]zhida: a node did not start[/red]\n{exc}", highlight=False)
            return 1
        table = Table(title=f"zhida local federation ({time.monotonic() - started:.1f} s)")
        for column in ("region", "level", "address", "federation (mTLS)", "pid", "data dir"):
            table.add_column(column)
        for row in federation.rows():
            table.add_row(
                f"{row.region_code} {row.label}",
                row.level,
                row.address,
                row.federation_address,
                str(row.pid),
                str(row.data_dir),
            )
        console.print(table)
        console.print(
            f"offline trust bundle: {federation.trust_bundle_path}\n"
            "tokens: zhida --config <dir>/<region>/node.toml token mint --role admin --org USCC\n"
            "Ctrl-C or SIGTERM stops every node.",
            highlight=False,
        )
        died: dict[str, int] = {}
        while not stop.wait(1.0):
            died = federation.exited()
            if died:
                console.print(f"[red]node(s) exited: {died}; stopping the others[/red]")
                break
        codes = federation.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for region, code in codes.items():
        console.print(f"node {region}: drained, exit code {code}")
    return 0 if not died and not any(codes.values()) else 1
