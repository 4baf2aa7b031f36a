"""Witnessing (issue 8, item 6): a child's audit checkpoints, cosigned by its parent.

Every ``witness_interval_seconds`` a child node signs its current audit
tree (:meth:`audit_log.log.AuditLog.publish_checkpoint`; nothing new when
it did not grow) and, if it is larger than the last checkpoint its parent
cosigned, sends it with ``AuditService.CosignCheckpoint`` over the mTLS
channel: the checkpoint, the size the parent last cosigned, the consistency
proof from that size and the log's verifier key. The parent
(:mod:`audit_log.witness`) pins that key on first sight, checks the proof
and cosigns; a child that rewrote its history is refused and the parent
keeps the last good checkpoint as evidence.

The child checks the answer before keeping it: the note must still carry
its own log's valid signature over the same tree, and the parent's
cosignature must verify under the witness key the child pinned on its own
first contact. If the parent remembers another size (its records were
lost, or ours), the child retries once from the size the parent names
(``WITNESS_SIZE_MISMATCH`` / ``witness_size``). The last cosigned
checkpoint is stored as ``federation.witness`` in ``node_meta``
(:class:`Cosigned`, JSON); :func:`last_cosigned` reads it.

Example::

    client = WitnessClient(runtime.audit, SyncState(db), parent_channel, runtime.run_blocking)
    cosigned = await client.submit_once()   # None when nothing new was signed
    print(cosigned.note)                    # the checkpoint + the parent's cosignature line
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import grpc

from audit_log.checkpoint import CosignatureVerifier, open_checkpoint, verify_cosignatures
from audit_log.errors import AuditLogError
from audit_log.log import AuditLog
from audit_log.storage import SignedCheckpoint
from exchange.federation.state import SyncState
from zhida.audit.v1 import audit_service_pb2 as pb
from zhida.audit.v1 import audit_service_pb2_grpc as pb_grpc
from zhida.client import error_details
from zhida.errors import FailedPrecondition

__all__ = ["Cosigned", "WitnessClient", "last_cosigned"]

log = logging.getLogger("zhida.federation.witness")

STATE_KEY = "witness"

Run = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Cosigned:
    """The last checkpoint of this node's log that its parent cosigned."""

    size: int
    root_hash: str  # hex
    note: str  # the checkpoint with the parent's cosignature line
    witness_key: str  # the parent's cosignature verifier key, pinned at first contact
    cosigned_at: float  # Unix time

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Cosigned:
        return cls(**json.loads(text))


def last_cosigned(state: SyncState) -> Cosigned | None:
    """The stored cosigned checkpoint, or None before the first cosignature."""
    text = state.get(STATE_KEY)
    return None if text is None else Cosigned.from_json(text)


class WitnessClient:
    """Sends this node's checkpoints to its parent for cosigning; see the module docstring."""

    def __init__(
        self,
        audit: AuditLog,
        state: SyncState,
        parent: grpc.aio.Channel,
        run: Run,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.audit = audit
        self.state = state
        self.stub = pb_grpc.AuditServiceStub(parent)
        self.run = run
        self.timeout = timeout

    async def submit_once(self) -> Cosigned | None:
        """Get the newest checkpoint cosigned if it is new; the stored result (or None)."""
        signed: SignedCheckpoint = await self.run(self.audit.publish_checkpoint)
        last = await self.run(last_cosigned, self.state)
        size = signed.checkpoint.size
        if last is not None and last.size >= size:
            return None
        old = 0 if last is None else last.size
        try:
            reply = await self._send(signed, old)
        except grpc.aio.AioRpcError as err:
            details = error_details(err)
            named = details.metadata.get("witness_size", "")
            if details.reason != "WITNESS_SIZE_MISMATCH" or not named.isdigit():
                raise
            if int(named) > size:
                raise FailedPrecondition(
                    f"the parent cosigned size {named} of this log, which has {size} entries: "
                    "the log lost entries",
                    reason="WITNESS_AHEAD_OF_LOG",
                ) from None
            reply = await self._send(signed, int(named))
        pinned = reply.witness_verifier_key if last is None else last.witness_key
        cosigned = self._check(signed, reply, pinned)
        await self.run(self.state.put, STATE_KEY, cosigned.to_json())
        log.info(
            "audit checkpoint cosigned by the parent",
            extra={"tree_size": size, "witness": pinned.split("+", 1)[0]},
        )
        return cosigned

    async def _send(self, signed: SignedCheckpoint, old_size: int) -> pb.CosignCheckpointResponse:
        size = signed.checkpoint.size
        proof: list[bytes] = []
        if 0 < old_size < size:
            proof = await self.run(self.audit.consistency_proof, old_size, size)
        request = pb.CosignCheckpointRequest(
            checkpoint=signed.note,
            old_size=old_size,
            consistency_proof=proof,
            log_verifier_key=self.audit.keys.verifier.vkey(),
        )
        reply: pb.CosignCheckpointResponse = await self.stub.CosignCheckpoint(
            request, timeout=self.timeout
        )
        return reply

    def _check(
        self, signed: SignedCheckpoint, reply: pb.CosignCheckpointResponse, pinned: str
    ) -> Cosigned:
        if reply.witness_verifier_key != pinned:
            raise FailedPrecondition(
                "the parent cosigned with another witness key than the one pinned",
                reason="WITNESS_KEY_CHANGED",
            )
        try:
            checkpoint = open_checkpoint(
                reply.cosigned_checkpoint, [self.audit.keys.verifier], origin=self.audit.origin
            )
            verify_cosignatures(reply.cosigned_checkpoint, [CosignatureVerifier.from_vkey(pinned)])
        except AuditLogError as exc:
            raise FailedPrecondition(
                f"the parent's cosigned checkpoint does not verify: {exc.message}",
                reason="INVALID_COSIGNATURE",
            ) from None
        if checkpoint != signed.checkpoint:
            raise FailedPrecondition(
                "the parent cosigned another checkpoint than the one sent",
                reason="INVALID_COSIGNATURE",
            )
        return Cosigned(
            size=checkpoint.size,
            root_hash=checkpoint.root_hash.hex(),
            note=reply.cosigned_checkpoint,
            witness_key=pinned,
            cosigned_at=time.time(),
        )
