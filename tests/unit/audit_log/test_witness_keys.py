"""Witness cosigning of child checkpoints, and the audit key files."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from audit_log.checkpoint import Checkpoint, open_cosigned_checkpoint, sign_checkpoint
from audit_log.compact import CompactRange, MemoryNodeStore
from audit_log.hashes import leaf_hash
from audit_log.keys import HOLDER_KEY_FILE, LOG_KEY_FILE, load_audit_keys, log_origin
from audit_log.merkle import consistency_proof
from audit_log.note import Ed25519Signer
from audit_log.sql import SqlLogStorage
from audit_log.witness import Witness, check_child
from zhida.config import load_config
from zhida.db import Database
from zhida.errors import ConfigError, FailedPrecondition, InvalidArgument

CHILD = "zhida.420102/jiangan"


class ChildLog:
    """A child node's log in memory: appends, signs checkpoints, proves consistency."""

    def __init__(self, seed: int = 1) -> None:
        self.signer = Ed25519Signer.from_seed(CHILD, bytes([seed]) * 32)
        self.store, self.tree = MemoryNodeStore(), CompactRange()

    def grow(self, n: int, tag: bytes = b"") -> str:
        for _ in range(n):
            self.store.put(self.tree.append(leaf_hash(tag + b"%d" % self.tree.size)))
        return sign_checkpoint(Checkpoint(CHILD, self.tree.size, self.tree.root()), [self.signer])

    def proof(self, old: int) -> list[bytes]:
        return (
            consistency_proof(old, self.tree.size, self.store) if 0 < old < self.tree.size else []
        )


@pytest.fixture
def witness(tmp_path: Path) -> Witness:
    url = f"sqlite:///{tmp_path / 'parent.db'}"
    from zhida.db.migrate import upgrade

    upgrade(url)
    keys = load_audit_keys(tmp_path / "keys", "zhida.420100/wuhan", create=True)
    return Witness(SqlLogStorage(Database(url)), keys.cosigner, clock=lambda: 1_700_000_000)


def test_cosigns_consistent_growth_and_pins_the_key(witness: Witness) -> None:
    child = ChildLog()
    vkey = child.signer.verifier().vkey()
    first = witness.cosign(child.grow(5), old_size=0, proof=[], log_key=vkey)
    from audit_log.checkpoint import CosignatureVerifier

    witness_key = CosignatureVerifier.from_vkey(witness.verifier_key)
    cp, cosigs = open_cosigned_checkpoint(
        first.cosigned_note, [child.signer.verifier()], [witness_key]
    )
    assert cp.size == 5
    assert cosigs[0].timestamp == 1_700_000_000
    assert first.cosignature.startswith("— zhida.420100/wuhan ")
    second = witness.cosign(child.grow(7), old_size=5, proof=child.proof(5))  # key now pinned
    assert second.checkpoint.size == 12


def test_refuses_a_rewritten_history(witness: Witness) -> None:
    child = ChildLog()
    vkey = child.signer.verifier().vkey()
    witness.cosign(child.grow(8), old_size=0, proof=[], log_key=vkey)
    liar = ChildLog()  # same key, different leaves: a fork
    forked = liar.grow(10, tag=b"evil")
    with pytest.raises(FailedPrecondition) as info:
        witness.cosign(forked, old_size=8, proof=liar.proof(8))
    assert info.value.reason == "CHECKPOINT_INCONSISTENT"
    with pytest.raises(FailedPrecondition) as info:  # stale view of the witness
        witness.cosign(child.grow(2), old_size=3, proof=child.proof(3))
    assert info.value.reason == "WITNESS_SIZE_MISMATCH"
    assert info.value.metadata == {"witness_size": "8"}


def test_refuses_bad_signatures_and_keys(witness: Witness) -> None:
    child, impostor = ChildLog(1), ChildLog(2)
    with pytest.raises(InvalidArgument) as info:
        witness.cosign(
            impostor.grow(3), old_size=0, proof=[], log_key=child.signer.verifier().vkey()
        )
    assert info.value.reason == "INVALID_NOTE"
    with pytest.raises(InvalidArgument, match="send the log's key"):
        witness.cosign(child.grow(3), old_size=0, proof=[])
    witness.cosign(child.grow(1), old_size=0, proof=[], log_key=child.signer.verifier().vkey())
    with pytest.raises(FailedPrecondition, match="pinned"):
        witness.cosign(
            impostor.grow(1), old_size=4, proof=[], log_key=impostor.signer.verifier().vkey()
        )
    with pytest.raises(InvalidArgument) as info:
        witness.cosign("not a note", old_size=0, proof=[])
    assert info.value.violations[0].field == "checkpoint"


def test_only_a_child_region_may_be_witnessed() -> None:
    check_child("zhida.420102/jiangan", "420102", "420100")
    for origin, caller, own in [
        ("zhida.420102/jiangan", "420106", "420100"),  # submitting another node's log
        ("zhida.430102/x", "430102", "420100"),  # not below us
        ("zhida.420100/wuhan", "420100", "420100"),  # ourselves
    ]:
        with pytest.raises(FailedPrecondition):
            check_child(origin, caller, own)
    with pytest.raises(InvalidArgument):
        check_child("someone/else", "420102", "420100")


def test_keys_are_created_once_private_and_stable(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    with pytest.raises(FailedPrecondition, match="missing"):
        load_audit_keys(keys_dir, CHILD, create=False)
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(load_audit_keys(keys_dir, CHILD, create=True))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({k.verifier.vkey() for k in results}) == 1  # every racer got the same key
    assert results[0].holder.ref("x") == load_audit_keys(keys_dir, CHILD, create=False).holder.ref(
        "x"
    )
    for name in (LOG_KEY_FILE, HOLDER_KEY_FILE):
        assert stat.S_IMODE(os.stat(keys_dir / name).st_mode) == 0o600
    assert sorted(p.name for p in keys_dir.iterdir() if p.name.startswith(".")) == []
    (keys_dir / HOLDER_KEY_FILE).write_text("short\n")
    with pytest.raises(FailedPrecondition):
        load_audit_keys(keys_dir, CHILD, create=False)


def test_origin_comes_from_the_node_configuration(tmp_path: Path) -> None:
    config = load_config(
        None, env={"ZHIDA_NODE__DATA_DIR": str(tmp_path), "ZHIDA_NODE__NAME": "jiangan"}
    )
    assert log_origin(config) == "zhida.420102/jiangan"
    bad = load_config(None, env={"ZHIDA_NODE__DATA_DIR": str(tmp_path), "ZHIDA_NODE__NAME": "a b"})
    with pytest.raises(ConfigError):
        log_origin(bad)
