"""Per-phase timestamps: off by default; one JSON line per call when a file is named."""

from __future__ import annotations

import contextvars
import json
import os
import threading
from pathlib import Path

import pytest

from exchange.federation import phases


def test_off_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phases, "_PATH", "")  # ZHIDA_FEDERATION_PHASES unset
    assert phases.start("forward") is None
    phases.mark("verified")  # no record: a no-op
    phases.finish(None, "trace")


def test_one_line_per_call_with_marks_from_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(phases, "_PATH", str(tmp_path / "phases"))

    def call() -> None:
        record = phases.start("forward")
        phases.mark("verified")
        worker = threading.Thread(
            target=contextvars.copy_context().run, args=(phases.mark, "replay")
        )
        worker.start()
        worker.join()
        phases.finish(record, "t-1")

    contextvars.copy_context().run(call)
    (line,) = (tmp_path / f"phases.{os.getpid()}").read_text().splitlines()
    got = json.loads(line)
    assert (got["role"], got["trace"]) == ("forward", "t-1")
    assert 0 <= got["verified"] <= got["replay"]
