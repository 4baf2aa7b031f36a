""":class:`AuditLog`: one node's tamper-evident log, the API other modules use.

It ties together the storage (:class:`~audit_log.sql.SqlLogStorage`), the
group-commit :class:`~audit_log.sequencer.Sequencer`, the node's keys
(:mod:`audit_log.keys`) and the proof maths. Appends return once the event is
durable; checkpoints are signed on demand or every ``interval`` seconds by a
background thread; proofs are served from stored node hashes, with arguments
checked so that a bad request names its field.

Example::

    from audit_log.events import Action, AuditEvent
    from audit_log.log import AuditLog
    from zhida.config import load_config
    from zhida.db import utcnow

    log = AuditLog.open(load_config(None))
    index = log.append(AuditEvent(action=Action.LICENCE_FETCH, time=utcnow(),
                                  holder_ref=log.holder_ref("42010219900101001X")))
    signed = log.publish_checkpoint()          # sign the tree as it is now
    proof = log.inclusion_proof(index)         # against the latest checkpoint
    log.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from audit_log.checkpoint import open_checkpoint
from audit_log.errors import AuditLogError
from audit_log.events import AuditEvent
from audit_log.hashes import NodeID
from audit_log.keys import AuditKeys, keys_for_config
from audit_log.merkle import consistency_plan, inclusion_plan
from audit_log.sequencer import DEFAULT_MAX_BATCH, DEFAULT_MAX_DELAY, Sequencer
from audit_log.sql import SqlLogStorage
from audit_log.storage import EncodedEvent, LogStorage, SignedCheckpoint
from zhida.config import Config
from zhida.db import Database
from zhida.errors import FailedPrecondition, FieldViolation, IntegrityError, InvalidArgument

log = logging.getLogger("zhida.audit")

DEFAULT_CHECKPOINT_INTERVAL = 60.0
CHECKPOINT_TTL = 1.0  # another worker process may publish; serve its checkpoint within 1 s


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Leaf ``index`` with its hash and audit path in the tree of ``tree_size``."""

    index: int
    tree_size: int
    leaf_hash: bytes
    proof: list[bytes]


def bad_argument(field: str, problem: str, reason: str = "INVALID_TREE_RANGE") -> InvalidArgument:
    """An InvalidArgument naming ``field`` (the wire name), as the service returns it."""
    return InvalidArgument(
        f"{field} {problem}", reason=reason, violations=[FieldViolation(field, problem)]
    )


class AuditLog:
    """A node's audit log: append, checkpoint, prove. Thread-safe."""

    def __init__(
        self,
        storage: LogStorage,
        keys: AuditKeys,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_delay: float = DEFAULT_MAX_DELAY,
    ) -> None:
        self.storage = storage
        self.keys = keys
        self.sequencer = Sequencer(storage, max_batch=max_batch, max_delay=max_delay)
        # Trees only grow, so a size once seen stays valid: proofs for sizes up
        # to it skip the tree-head query (one round trip per proof instead of two).
        self._known_size = 0
        # The verified latest checkpoint, re-read at most every CHECKPOINT_TTL s.
        self._checkpoint: tuple[float, SignedCheckpoint | None] = (-CHECKPOINT_TTL, None)
        self._lock = threading.Lock()
        self._publisher: threading.Thread | None = None
        self._stop_publishing = threading.Event()

    @classmethod
    def open(
        cls, config: Config, database: Database | None = None, *, create_keys: bool | None = None
    ) -> AuditLog:
        """The log of the node ``config`` describes (keys created iff ``auth.dev_keys``)."""
        keys = keys_for_config(config, create=create_keys)
        return cls(SqlLogStorage(database or Database.from_config(config.database)), keys)

    @property
    def origin(self) -> str:
        return self.keys.origin

    # --- appending -------------------------------------------------------

    def holder_ref(self, holder_id: str) -> str:
        """The keyed hash under which events about ``holder_id`` are stored and found."""
        return self.keys.holder.ref(holder_id)

    def append(self, event: AuditEvent | EncodedEvent, timeout: float | None = None) -> int:
        """Append and wait until durable; the event's leaf index."""
        return self.sequencer.append(event, timeout)

    async def append_async(self, event: AuditEvent | EncodedEvent) -> int:
        """Append from asyncio code; resumes once the event is durable."""
        return await self.sequencer.append_async(event)

    async def append_many_async(self, events: Sequence[AuditEvent | EncodedEvent]) -> list[int]:
        """Append several events at once from asyncio code; resumes once all are durable."""
        return await self.sequencer.append_many_async(events)

    # --- checkpoints -----------------------------------------------------

    def publish_checkpoint(self) -> SignedCheckpoint:
        """Sign the current tree (unless it did not grow) and return the latest checkpoint."""
        signed, new = self.storage.publish_checkpoint(
            self.origin, self.keys.signer, self.keys.verifier
        )
        self._remember(signed)
        if new:
            log.info(
                "audit checkpoint signed",
                extra={"origin": self.origin, "tree_size": signed.checkpoint.size},
            )
        return signed

    def latest_checkpoint(self, *, cached: bool = False) -> SignedCheckpoint | None:
        """The newest signed checkpoint, its signature checked with this log's key.

        ``cached`` accepts one read up to :data:`CHECKPOINT_TTL` seconds ago
        (what the service does on hot paths); verification reads afresh.
        """
        read_at, signed = self._checkpoint
        if cached and time.monotonic() - read_at < CHECKPOINT_TTL:
            return signed
        note = self.storage.latest_checkpoint()
        if note is None:
            return None
        if signed is not None and signed.note == note:
            self._remember(signed)
            return signed
        try:
            checkpoint = open_checkpoint(note, [self.keys.verifier], origin=self.origin)
        except AuditLogError as exc:
            raise IntegrityError(
                f"the stored checkpoint does not verify: {exc.message}", reason="DATA_INTEGRITY"
            ) from None
        signed = SignedCheckpoint(checkpoint, note)
        self._remember(signed)
        return signed

    def _remember(self, signed: SignedCheckpoint) -> None:
        """Cache ``signed`` unless a newer one is cached (threads may race here)."""
        with self._lock:
            cached = self._checkpoint[1]
            if cached is None or cached.checkpoint.size <= signed.checkpoint.size:
                self._checkpoint = (time.monotonic(), signed)

    def require_checkpoint(self, *, cached: bool = False) -> SignedCheckpoint:
        """:meth:`latest_checkpoint`, or FailedPrecondition if none was signed yet."""
        signed = self.latest_checkpoint(cached=cached)
        if signed is None:
            raise FailedPrecondition("the log has no signed checkpoint yet", reason="NO_CHECKPOINT")
        return signed

    def start_publishing(self, interval: float = DEFAULT_CHECKPOINT_INTERVAL) -> None:
        """Sign a checkpoint now and then every ``interval`` seconds, in a background thread.

        Several processes of one node may all publish: storage signs each tree
        size once and returns the existing checkpoint to the others.
        """
        if self._publisher is not None:
            return
        self._stop_publishing.clear()

        def run() -> None:
            while True:
                try:
                    self.publish_checkpoint()
                except Exception:  # keep publishing; a fork attempt is logged loudly
                    log.exception("audit checkpoint publication failed")
                if self._stop_publishing.wait(interval):
                    return

        self._publisher = threading.Thread(target=run, name="zhida-audit-checkpoints", daemon=True)
        self._publisher.start()

    def stop_publishing(self) -> None:
        self._stop_publishing.set()
        if self._publisher is not None:
            self._publisher.join(10)
            self._publisher = None

    # --- proofs ----------------------------------------------------------

    def _size_or_latest(self, field: str, tree_size: int | None) -> int:
        if tree_size is None or tree_size == 0:
            return self.require_checkpoint(cached=True).checkpoint.size
        if tree_size > self._known_size:
            self._known_size = max(self._known_size, self.storage.tree_head().size)
            if tree_size > self._known_size:
                raise bad_argument(
                    field, f"{tree_size} is beyond the tree (size {self._known_size})"
                )
        return tree_size

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> InclusionProof:
        """Proof that leaf ``index`` is in the tree of ``tree_size`` (default: last checkpoint)."""
        size = self._size_or_latest("tree_size", tree_size)
        if not 0 <= index < size:
            raise bad_argument("index", f"{index} is outside the tree of size {size}")
        plan = inclusion_plan(index, size)
        ids = (NodeID(0, index), *plan.node_ids)
        hashes = list(self.storage.get_nodes(ids))
        return InclusionProof(index, size, hashes[0], plan.assemble(hashes[1:]))

    def consistency_proof(self, first_size: int, second_size: int | None = None) -> list[bytes]:
        """Proof that tree ``second_size`` (default: last checkpoint) extends ``first_size``."""
        size2 = self._size_or_latest("second_size", second_size)
        if not 0 < first_size <= size2:
            raise bad_argument("first_size", f"{first_size} must be in 1..{size2}")
        plan = consistency_plan(first_size, size2)
        if not plan.segments:
            return []
        return plan.assemble(self.storage.get_nodes(plan.node_ids))

    # --- lifecycle -------------------------------------------------------

    def close(self) -> None:
        """Stop publishing, flush queued appends, release connections (not the Database)."""
        self.stop_publishing()
        self.sequencer.close()
        close = getattr(self.storage, "close", None)
        if callable(close):
            close()

    def __repr__(self) -> str:
        return f"AuditLog({self.origin!r})"
