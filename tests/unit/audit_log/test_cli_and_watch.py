"""``zhida audit`` on a local database, and the watch loop against a fake node."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from audit_log.checkpoint import Checkpoint, sign_checkpoint
from audit_log.log import AuditLog
from audit_log.note import Ed25519Signer
from audit_log.watch import WatchAlarm, load_state, save_state, watch_step
from tests.unit.audit_log.conftest import make_event
from zhida.audit.v1 import audit_service_pb2 as pb
from zhida.cli.main import main
from zhida.config import Config, load_config
from zhida.db import Database

HOLDER = "110101199003070011"


@pytest.fixture
def node_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    for name in [k for k in __import__("os").environ if k.startswith("ZHIDA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ZHIDA_NODE__DATA_DIR", str(tmp_path / "node"))
    monkeypatch.setenv("COLUMNS", "200")  # rich would fold the table at 80
    return load_config(None)


@pytest.fixture
def filled(node_config: Config) -> Iterator[AuditLog]:
    assert main(["db", "upgrade"]) == 0
    log = AuditLog.open(node_config)
    ref = log.holder_ref(HOLDER)
    log.sequencer.append_many([make_event(i, holder_ref=ref) for i in range(30)], timeout=30)
    yield log
    log.close()


def test_checkpoint_verify_export_search(
    filled: AuditLog, node_config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "checkpoint"]) == 0
    assert capsys.readouterr().out.startswith("zhida.420102/zhida-dev\n30\n")
    assert main(["audit", "verify"]) == 0
    assert "OK" in capsys.readouterr().out
    out = tmp_path / "audit.jsonl"
    assert main(["audit", "export", "--from", "10", "--to", "20", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 11
    assert json.loads(lines[1])["index"] == 10
    assert main(["audit", "search", "--holder", HOLDER, "--limit", "5"]) == 0
    table = capsys.readouterr().out
    assert "licence.fetch" in table
    assert "next page: --page-token" in table
    assert main(["audit", "keys"]) == 0
    assert "log verifier key  zhida.420102/zhida-dev+" in capsys.readouterr().out


def test_verify_exits_1_naming_the_first_bad_entry(
    filled: AuditLog, node_config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "checkpoint"]) == 0
    db = Database(node_config.database.url)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event WHERE idx = 17"))
    db.dispose()
    assert main(["audit", "verify"]) == 1
    captured = capsys.readouterr()
    assert "first bad entry 17 (missing)" in captured.out
    assert "first bad entry: 17 (missing)" in captured.err
    assert main(["audit", "verify", "--from", "0", "--to", "17"]) == 0


def test_commands_need_a_migrated_database(
    node_config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify"]) == 2
    assert "zhida db upgrade" in capsys.readouterr().err


class FakeNode:
    """Serves GetCheckpoint / GetConsistencyProof from an AuditLog, like the service."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self.override: str | None = None

    def GetCheckpoint(self, request: Any, **_: Any) -> pb.GetCheckpointResponse:
        signed = self.log.require_checkpoint()
        return pb.GetCheckpointResponse(
            checkpoint=self.override or signed.note, verifier_key=self.log.keys.verifier.vkey()
        )

    def GetConsistencyProof(self, request: Any, **_: Any) -> pb.GetConsistencyProofResponse:
        proof = self.log.consistency_proof(request.first_size, request.second_size)
        return pb.GetConsistencyProofResponse(proof=proof)


def test_watch_follows_growth_and_alarms_on_forks(filled: AuditLog, tmp_path: Path) -> None:
    node, path = FakeNode(filled), tmp_path / "watch.json"
    filled.publish_checkpoint()
    state, message = watch_step(node, (), load_state(path))
    assert "trusted on first use" in message
    assert state.tree_size == 30
    save_state(path, state)
    filled.sequencer.append_many([make_event(i) for i in range(30, 45)], timeout=30)
    filled.publish_checkpoint()
    state, message = watch_step(node, (), load_state(path))
    assert message == "size 30 -> 45: consistent"
    save_state(path, state)
    signer = filled.keys.signer  # the node's own key signs a contradicting tree
    fork = Checkpoint(filled.origin, 45, b"\x01" * 32)
    node.override = sign_checkpoint(fork, [signer])
    with pytest.raises(WatchAlarm, match="fork"):
        watch_step(node, (), state)
    node.override = sign_checkpoint(Checkpoint(filled.origin, 40, b"\x01" * 32), [signer])
    with pytest.raises(WatchAlarm, match="shrank"):
        watch_step(node, (), state)
    filled.sequencer.append_many([make_event(i) for i in range(45, 50)], timeout=30)
    node.override = sign_checkpoint(Checkpoint(filled.origin, 50, b"\x01" * 32), [signer])
    with pytest.raises(WatchAlarm, match="not consistent"):
        watch_step(node, (), state)
    other = Ed25519Signer.from_seed(filled.origin, bytes(32))
    node.override = sign_checkpoint(Checkpoint(filled.origin, 45, fork.root_hash), [other])
    with pytest.raises(WatchAlarm, match="does not verify"):
        watch_step(node, (), state)
