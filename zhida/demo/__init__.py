"""The end-to-end story behind ``make demo``, told in chapters.

Each chapter is a function ``(DemoContext) -> None`` that prints what it does
and raises on anything unexpected; :func:`run` runs them in order and returns
0 only if every chapter succeeded. Later issues add chapters (catalogue,
vault, audit, exchange, federation) to :data:`CHAPTERS`.
"""

from __future__ import annotations

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


def _chapters() -> list[tuple[str, Chapter]]:
    from zhida.demo import foundation

    return [("A node on the embedded default", foundation.chapter)]


def run(data_dir: Path | None = None, console: Console | None = None) -> int:
    console = console or Console()
    with tempfile.TemporaryDirectory(prefix="zhida-demo-") as tmp:
        ctx = DemoContext(console, data_dir or Path(tmp))
        try:
            for number, (title, chapter) in enumerate(_chapters(), start=1):
                console.rule(f"[bold]Chapter {number}: {title}")
                chapter(ctx)
        finally:
            for name, node in ctx.nodes.items():
                code = node.stop()
                console.print(f"stopped node [cyan]{name}[/cyan] (exit code {code})")
    console.rule("[bold green]demo finished: every step succeeded")
    return 0
