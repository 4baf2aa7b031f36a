"""The end-to-end story behind ``make demo``, told in chapters.

The first chapter starts the local four-level federation
(:class:`exchange.federation.local.LocalFederation`: national 100000, 湖北
420000, 湖南 430000, 武汉 420100 and 江岸区 420102, each a real ``zhida
serve`` process on loopback) under the demo's data directory. The story's
own chapters run at the county node, 江岸区, as its departments would; the
federation chapters then route calls between the levels. Each chapter is a
function ``(DemoContext) -> None`` that prints what it does and raises
:class:`DemoError` on anything unexpected; :func:`run` runs them in order,
stops every node at the end (also on a failure, Ctrl-C or SIGTERM) and
returns 0 only if every chapter succeeded and every node drained cleanly.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import grpc
from rich.console import Console

if TYPE_CHECKING:
    from exchange.federation.local import LocalFederation
    from zhida.localnode import LocalNode

COUNTY = "420102"  # 江岸区: where the story's departments work
CITY = "420100"  # 武汉市
PROVINCE = "420000"  # 湖北省
HUNAN = "430000"  # 湖南省
NATIONAL = "100000"


@dataclass
class DemoContext:
    console: Console
    data_dir: Path
    federation: LocalFederation | None = None
    facts: dict[str, str] = field(default_factory=dict)
    """What a chapter hands on to a later one (e.g. the trace id of the routed request)."""
    channels: dict[str, grpc.Channel] = field(default_factory=dict)


Chapter = Callable[[DemoContext], None]


class DemoError(RuntimeError):
    """A demo step did not behave as the story says it must."""


def federation(ctx: DemoContext) -> LocalFederation:
    """The running federation, started by the first chapter."""
    if ctx.federation is None:
        raise DemoError("the federation is not running (the first chapter starts it)")
    return ctx.federation


def node_at(ctx: DemoContext, region: str) -> LocalNode:
    """The node of ``region`` in the running federation."""
    node = federation(ctx).nodes.get(region)
    if node is None:
        raise DemoError(f"no node of region {region} is running")
    return node


def channel(ctx: DemoContext, region: str) -> grpc.Channel:
    """A channel to the bearer-token port of ``region``'s node (kept until the nodes stop)."""
    if region not in ctx.channels:
        ctx.channels[region] = grpc.insecure_channel(node_at(ctx, region).address)
    return ctx.channels[region]


def demo_node(ctx: DemoContext) -> LocalNode:
    """The story's county node (江岸区, 420102)."""
    return node_at(ctx, COUNTY)


def _chapters() -> list[tuple[str, Chapter]]:
    from zhida.demo import (
        audit,
        catalog,
        crossprovince,
        exchange,
        foundation,
        national,
        trail,
        vault,
    )

    return [
        ("Four levels on this machine: the local federation", foundation.chapter),
        ("The data catalogue and the three lists, at every level", catalog.chapter),
        ("The licence vault: issue, consent, fetch, verify, revoke (at 江岸区)", vault.chapter),
        ("The exchange: apply, approve fewer items, receive only those", exchange.chapter),
        ("Catalogue federation: a national resource found at the county", national.catalogue),
        ("A county request served by the national provider, four levels away", national.routed),
        ("跨省通办: a 湖南 licence used in 湖北 with the holder's consent", crossprovince.chapter),
        ("One request in four nodes' logs: proven and witnessed", trail.chapter),
        # Last: the county's log then holds the whole story (refusals, catalogue, licences, data).
        ("The access log: every refusal and change, provable", audit.chapter),
    ]


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM ends the story like Ctrl-C: the ``finally`` blocks still stop every node."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_federation(ctx: DemoContext) -> dict[str, int]:
    """SIGTERM to every node at once, wait for the drains; print and return the exit codes."""
    for open_channel in ctx.channels.values():
        open_channel.close()
    ctx.channels.clear()
    fed = ctx.federation
    if fed is None:
        return {}
    codes = fed.stop()
    ctx.federation = None
    for region, code in codes.items():
        colour = "green" if code == 0 else "red"
        ctx.console.print(
            f"SIGTERM to node [cyan]{fed.plans[region].label} {region}[/cyan]: "
            f"drained, exit code [{colour}]{code}[/{colour}]"
        )
    return codes


def run(data_dir: Path | None = None, console: Console | None = None) -> int:
    from zhida.client import error_details
    from zhida.localnode import NodeStartError

    # Not a terminal (CI, a log file): wide enough for the story's tables.
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    started = time.monotonic()
    failure = ""
    current = "starting"
    with tempfile.TemporaryDirectory(prefix="zhida-demo-") as tmp:
        ctx = DemoContext(console, (data_dir or Path(tmp)).resolve())
        try:
            with _sigterm_interrupts():
                for number, (title, chapter) in enumerate(_chapters(), start=1):
                    console.rule(f"[bold]Chapter {number}: {title}")
                    current = f"chapter {number} ({title})"
                    began = time.monotonic()
                    chapter(ctx)
                    console.print(f"[dim]chapter {number} took {time.monotonic() - began:.1f} s")
        except (DemoError, NodeStartError) as exc:
            failure = f"{current}: {exc}"
        except grpc.RpcError as exc:  # a call the story expected to succeed
            failure = f"{current}: a call failed: {error_details(exc)}"
            if ctx.federation is not None and ctx.federation.exited():
                failure += f"; node(s) exited: {ctx.federation.exited()}"
        finally:
            console.rule("[bold]Stopping the federation")
            codes = stop_federation(ctx)
    if failure:
        console.print(f"[bold red]demo failed:[/bold red] {failure}", highlight=False)
        logs = "federation/<region>/data/node.log"
        if data_dir is None:
            console.print(f"rerun with --data-dir DIR to keep every node's log (DIR/{logs})")
        else:
            console.print(f"every node's log: {data_dir.resolve() / logs}")
        return 1
    if any(codes.values()):
        console.print(f"[bold red]demo failed:[/bold red] a node did not exit cleanly: {codes}")
        return 1
    elapsed = time.monotonic() - started
    console.rule(f"[bold green]demo finished in {elapsed:.0f} s: every step succeeded")
    return 0
