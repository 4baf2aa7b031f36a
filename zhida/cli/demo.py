"""``zhida demo``: the end-to-end story on the local four-level federation (`make demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run the end-to-end story on throwaway local nodes"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="keep the nodes' data here (default: a temp dir)"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from zhida.demo import run

    return run(args.data_dir)
