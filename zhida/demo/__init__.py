"""The end-to-end story behind ``make demo``, told in chapters.

Each chapter is a function ``(DemoContext) -> None`` that prints what it does
and raises on anything unexpected; :func:`run` runs them in order and returns
0 only if every chapter succeeded. Later issues add chapters (catalogue,
vault, audit, exchange, federation) to :data:`CHAPTERS`.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from zhida.localnode import LocalNode


@dataclass
class DemoContext:
    console: Console
    data_dir: Path
    nodes: dict[str, LocalNode] = field(default_factory=dict)


Chapter = Callable[[DemoContext], None]
COUNTY_NODE = "county-420102"


class DemoError(RuntimeError):
    """A demo step did not behave as the story says it must."""


def demo_node(ctx: DemoContext) -> LocalNode:
    """The story's county node (江岸区, 420102), started by the first chapter."""
    node = ctx.nodes.get(COUNTY_NODE)
    if node is None:
        raise DemoError("the county node is not running")
    return node


def _chapters() -> list[tuple[str, Chapter]]:
    from zhida.demo import audit, catalog, exchange, foundation, vault

    return [
        ("A node on the embedded default", foundation.chapter),
        ("The data catalogue and the three lists", catalog.chapter),
        ("The licence vault: issue, consent, fetch, verify, revoke", vault.chapter),
        ("The exchange: apply, approve fewer items, receive only those", exchange.chapter),
        # Last: the log then holds the whole story (refusals, catalogue, licences, data).
        ("The access log: every refusal and change, provable", audit.chapter),
    ]


def run(data_dir: Path | None = None, console: Console | None = None) -> int:
    # Not a terminal (CI, a log file): wide enough for the story's tables.
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    with tempfile.TemporaryDirectory(prefix="zhida-demo-") as tmp:
        ctx = DemoContext(console, data_dir or Path(tmp))
        try:
            for number, (title, chapter) in enumerate(_chapters(), start=1):
                console.rule(f"[bold]Chapter {number}: {title}")
                chapter(ctx)
        finally:
            codes = {name: node.stop() for name, node in ctx.nodes.items()}
            for name, code in codes.items():
                console.print(f"SIGTERM to node [cyan]{name}[/cyan]: drained, exit code {code}")
        if any(codes.values()):
            raise DemoError(f"a node did not exit cleanly: {codes}")
    console.rule("[bold green]demo finished: every step succeeded")
    return 0
