"""`make demo` in CI: the whole story runs on the local federation and exits 0.

Beyond the exit code and what the story prints, the nodes' data left in
``--data-dir`` is checked independently of the demo's own checks: the
routed request is in the four nodes' logs under one trace id, only the
granted items were released at national, and every node's log verifies.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from audit_log.log import AuditLog
from audit_log.verify import verify_log
from zhida.config import load_config
from zhida.demo import national

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROUTE = ("420102", "420100", "420000", "100000")


def _events(database: Path, trace: str) -> list[dict[str, Any]]:
    with sqlite3.connect(database) as db:
        leaves = [json.loads(leaf) for (leaf,) in db.execute("SELECT leaf FROM audit_event")]
    return [leaf for leaf in leaves if leaf.get("trace_id") == trace]


def test_demo_story_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zhida.cli.main", "demo", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-3000:]
    assert "every step succeeded" in out
    assert "FAILED at entry" in out  # the tampering was caught
    assert "routed 江岸区 420102 → 武汉市 420100 → 湖北省 420000 → 国家 100000" in out
    assert "江岸区 420102 → 武汉市 420100 → 湖北省 420000 → 国家 100000 → 湖南省 430000" in out
    assert "CONSENT_WRONG_ORGANISATION" in out
    assert out.count("drained, exit code 0") == 5
    # the catalogue chapter: each region's part at its node, refusals, 江岸区's coverage rows
    assert "江岸区 420102: published 2 resources of 2 departments" in out
    assert "人像照片 be released? refused (NEGATIVE_LISTED)" in out
    assert "tries to share 人像照片 again: FAILED_PRECONDITION NEGATIVE_LISTED_SHAREABLE" in out
    assert "coverage per department" in out
    assert "coverage per region" in out
    jiangan = r"│ 420102 │ 武汉市江岸区政务服务和大数据管理局 +│ +0 │ +3 │ +2 │ +1 │ +0 │"
    assert re.search(jiangan, out), out[out.find("coverage per department") :][:3000]

    match = re.search(r"RequestData by key \d+ \(trace (demo-[0-9a-f]{12})\)", out)
    assert match, out[-4000:]
    trace = match.group(1)
    parts = {}
    for region in ROUTE:
        config = load_config(tmp_path / "federation" / region / "node.toml", env={})
        events = _events(Path(config.database.url.removeprefix("sqlite:///")), trace)
        parts[region] = [(e["action"], e["details"].get("federation")) for e in events]
        assert {e["subject"] for e in events} == {"clerk-liu@ja-gov"}, region
        if region == "100000":
            (release,) = (e for e in events if e["action"] == "data.release")
            items = release["details"]["items"].split(",")
            assert sorted(items) == sorted(national.GRANTED)
        log = AuditLog.open(config, create_keys=False)
        try:
            assert verify_log(log).problem is None, region
        finally:
            log.close()
    assert parts["420102"] == [("data.request", "origin")]
    assert parts["420100"] == [("data.request", "forward")]
    assert parts["420000"] == [("data.request", "forward")]
    assert parts["100000"] == [
        ("data.request", "serve"),
        ("data.request", None),
        ("data.release", None),
    ]
