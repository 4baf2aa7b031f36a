"""Checkpoints: signed, idempotent, periodic, and the fork guard enforced in storage."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlalchemy import text

from audit_log.checkpoint import open_checkpoint
from audit_log.compact import CompactRange
from audit_log.errors import InconsistentCheckpointError, TreeStateError
from audit_log.hashes import leaf_hash
from audit_log.log import AuditLog
from audit_log.merkle import verify_consistency, verify_inclusion
from audit_log.storage import EncodedEvent
from tests.unit.audit_log.conftest import ORIGIN, make_event
from zhida.db import Database
from zhida.errors import IntegrityError


def _append(log: AuditLog, start: int, stop: int) -> None:
    log.sequencer.append_many([make_event(i) for i in range(start, stop)], timeout=30)


def test_signed_checkpoints_prove_inclusion_and_consistency(
    make_log: Callable[..., AuditLog],
) -> None:
    log = make_log()
    empty = log.publish_checkpoint()
    assert (empty.checkpoint.size, empty.checkpoint.origin) == (0, ORIGIN)
    _append(log, 0, 13)
    first = log.publish_checkpoint()
    assert open_checkpoint(first.note, [log.keys.verifier], origin=ORIGIN) == first.checkpoint
    assert log.publish_checkpoint() == first  # the tree did not grow: same checkpoint
    _append(log, 13, 40)
    second = log.publish_checkpoint()
    assert log.latest_checkpoint() == second
    verify_consistency(
        13, 40, log.consistency_proof(13), first.checkpoint.root_hash, second.checkpoint.root_hash
    )
    proof = log.inclusion_proof(20)
    leaf = leaf_hash(EncodedEvent.of(make_event(20)).leaf)
    verify_inclusion(leaf, 20, 40, proof.proof, second.checkpoint.root_hash)
    old = log.inclusion_proof(5, 13)
    verify_inclusion(old.leaf_hash, 5, 13, old.proof, first.checkpoint.root_hash)


def test_storage_refuses_to_sign_a_fork(
    make_log: Callable[..., AuditLog], database: Database
) -> None:
    log = make_log()
    _append(log, 0, 8)
    log.publish_checkpoint()
    # An operator rewrites history: a different tree of the same size in the state row.
    forged = CompactRange()
    for i in range(8):
        forged.append(leaf_hash(b"forged %d" % i))
    with database.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_tree SET state = :s, root_hash = :r"),
            {"s": forged.to_bytes(), "r": forged.root()},
        )
    with pytest.raises(InconsistentCheckpointError, match="fork"):
        log.publish_checkpoint()
    # ...and a forged continuation: the proof from stored nodes does not reach the signed root.
    for i in range(8, 12):
        forged.append(leaf_hash(b"forged %d" % i))
    with database.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_tree SET state = :s, root_hash = :r, size = 12"),
            {"s": forged.to_bytes(), "r": forged.root()},
        )
        for i in range(8, 12):  # nodes for the new leaves, so the proof can be built
            conn.execute(
                text("INSERT INTO audit_node (id, hash) VALUES (:i, :h)"),
                {"i": 2 * i, "h": leaf_hash(b"forged %d" % i)},
            )
    with pytest.raises((InconsistentCheckpointError, TreeStateError)):
        log.publish_checkpoint()
    assert log.require_checkpoint().checkpoint.size == 8


def test_a_tampered_stored_checkpoint_is_never_trusted(
    make_log: Callable[..., AuditLog], database: Database
) -> None:
    log = make_log()
    _append(log, 0, 4)
    note = log.publish_checkpoint().note
    with database.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_checkpoint SET note = :n"), {"n": note.replace("4\n", "3\n", 1)}
        )
    with pytest.raises(IntegrityError):
        log.latest_checkpoint()
    _append(log, 4, 6)
    with pytest.raises(TreeStateError, match="does not verify"):
        log.publish_checkpoint()


def test_one_checkpoint_per_size_in_the_database(
    make_log: Callable[..., AuditLog], database: Database
) -> None:
    from sqlalchemy.exc import IntegrityError as SAIntegrityError

    log = make_log()
    _append(log, 0, 2)
    signed = log.publish_checkpoint()
    with pytest.raises(SAIntegrityError), database.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_checkpoint (size, origin, root_hash, note, created_at) "
                "VALUES (2, :o, :r, :n, CURRENT_TIMESTAMP)"
            ),
            {"o": ORIGIN, "r": b"\x00" * 32, "n": signed.note},
        )


def test_periodic_publication(make_log: Callable[..., AuditLog]) -> None:
    log = make_log()
    _append(log, 0, 3)
    log.start_publishing(0.05)
    deadline = time.monotonic() + 10
    while log.latest_checkpoint() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    _append(log, 3, 5)
    while log.require_checkpoint().checkpoint.size < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    log.stop_publishing()
    assert log.require_checkpoint().checkpoint.size == 5
