"""Run the benchmark suite and write bench/results/<utc time>.json.

Usage: ``python -m bench [--strict] [NAME ...]`` (default: every benchmark).
The results are written whatever the figures; ``--strict`` exits 1 when a
target is missed.

Each benchmark module has ``run() -> dict`` returning at least ``name``,
``figure`` (one line for humans), ``target`` and ``met``, plus its raw numbers.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.machine import describe

BENCHMARKS = (
    "node_echo",
    "audit_log",
    "signing",
    "catalog",
    "licence_vault",
    "exchange",
    "federation",
)
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def main(argv: list[str]) -> int:
    strict = "--strict" in argv  # exit 1 when a target is missed (for gating)
    names = [a for a in argv if a != "--strict"] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    console = Console()
    started = dt.datetime.now(dt.UTC)
    results: list[dict[str, Any]] = []
    for name in names:
        console.print(f"[bold]running {name}[/bold] …")
        results.append(importlib.import_module(f"bench.{name}").run())
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": describe(),
        "results": results,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    table = Table(title="zhida benchmarks")
    for col in ("benchmark", "figure", "target", "met"):
        table.add_column(col)
    for r in results:
        table.add_row(r["name"], r["figure"], str(r["target"]), "yes" if r["met"] else "NO")
    console.print(table)
    console.print(f"written {path}")
    missed = [r["name"] for r in results if not r["met"]]
    if missed:
        console.print(f"[yellow]targets missed[/yellow]: {', '.join(missed)} (see the table)")
    return 1 if strict and missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
