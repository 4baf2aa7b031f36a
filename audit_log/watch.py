"""Follow a node's checkpoints and check each one extends the last one seen.

This is what ``zhida audit watch`` runs, and what any monitor of a zhida log
needs: fetch the latest checkpoint, verify its signature with the log's key
(pinned on first use, or given), and ask the node for a consistency proof from
the last checkpoint seen. A smaller tree, a different root at the same size,
a bad signature or a failing proof raise :class:`WatchAlarm`: the node showed
this watcher a history that contradicts what it showed before. The last
checkpoint seen is kept in a small JSON state file, written atomically, so the
check survives restarts of the watcher.

Example::

    stub = AuditServiceStub(grpc.insecure_channel("127.0.0.1:50051"))
    state = load_state(path)
    state, message = watch_step(stub, metadata, state)
    save_state(path, state)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from audit_log.checkpoint import Checkpoint, open_checkpoint
from audit_log.errors import AuditLogError
from audit_log.merkle import verify_consistency
from audit_log.note import Ed25519Verifier
from zhida.audit.v1 import audit_service_pb2 as pb
from zhida.errors import FailedPrecondition
from zhida.files import atomic_write


class WatchAlarm(Exception):
    """The log contradicted itself (or could not be checked as it must be)."""


@dataclass(frozen=True, slots=True)
class WatchState:
    origin: str
    verifier_key: str
    tree_size: int
    root_hash: str  # base64
    checkpoint: str  # the signed note

    @property
    def root(self) -> bytes:
        return base64.b64decode(self.root_hash)


def load_state(path: Path) -> WatchState | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return WatchState(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise FailedPrecondition(
            f"watch state {path} is unreadable: {exc}", reason="WATCH_STATE_INVALID"
        ) from None


def save_state(path: Path, state: WatchState) -> None:
    atomic_write(path, (json.dumps(asdict(state), indent=2) + "\n").encode(), mode=0o644)


def watch_step(
    stub: Any,
    metadata: Sequence[tuple[str, str]],
    state: WatchState | None,
    *,
    key: str | None = None,
    timeout: float = 10.0,
) -> tuple[WatchState, str]:
    """Check the node's latest checkpoint against ``state``; the new state and a summary."""
    response = stub.GetCheckpoint(pb.GetCheckpointRequest(), metadata=metadata, timeout=timeout)
    vkey = state.verifier_key if state else (key or response.verifier_key)
    try:
        verifier = Ed25519Verifier.from_vkey(vkey)
        checkpoint = open_checkpoint(
            response.checkpoint, [verifier], origin=state.origin if state else None
        )
    except AuditLogError as exc:
        raise WatchAlarm(f"checkpoint does not verify with the pinned key: {exc.message}") from None
    new = WatchState(
        origin=checkpoint.origin,
        verifier_key=vkey,
        tree_size=checkpoint.size,
        root_hash=base64.b64encode(checkpoint.root_hash).decode(),
        checkpoint=response.checkpoint,
    )
    if state is None:
        pinned = "given" if key else "trusted on first use"
        return (
            new,
            f"first checkpoint of {checkpoint.origin}: size {checkpoint.size} (key {pinned})",
        )
    _check_extends(stub, metadata, state, checkpoint, timeout)
    if checkpoint.size == state.tree_size:
        return new, f"size {checkpoint.size}: unchanged"
    return new, f"size {state.tree_size} -> {checkpoint.size}: consistent"


def _check_extends(
    stub: Any,
    metadata: Sequence[tuple[str, str]],
    state: WatchState,
    checkpoint: Checkpoint,
    timeout: float,
) -> None:
    if checkpoint.size < state.tree_size:
        raise WatchAlarm(f"the tree shrank from {state.tree_size} to {checkpoint.size}")
    if checkpoint.size == state.tree_size:
        if checkpoint.root_hash != state.root:
            raise WatchAlarm(f"two different roots for size {checkpoint.size}: a fork")
        return
    if state.tree_size == 0:
        return  # every tree extends the empty one
    reply = stub.GetConsistencyProof(
        pb.GetConsistencyProofRequest(first_size=state.tree_size, second_size=checkpoint.size),
        metadata=metadata,
        timeout=timeout,
    )
    try:
        verify_consistency(
            state.tree_size, checkpoint.size, list(reply.proof), state.root, checkpoint.root_hash
        )
    except AuditLogError as exc:
        raise WatchAlarm(
            f"size {checkpoint.size} is not consistent with size {state.tree_size}: {exc.message}"
        ) from None
