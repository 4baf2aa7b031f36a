"""The tamper-evident access log: RFC 6962 Merkle tree, checkpoints, proofs (issue 6).

Pure maths: :mod:`~audit_log.hashes` (RFC 6962 hashing, node addressing),
:mod:`~audit_log.compact` (the compact range a log appends to),
:mod:`~audit_log.merkle` (proofs), :mod:`~audit_log.note` (C2SP signed notes,
Ed25519) and :mod:`~audit_log.checkpoint` (C2SP checkpoints, cosignatures,
the guard against signing a fork).

The log: :mod:`~audit_log.events` (what is recorded, canonical leaf bytes,
keyed holder hashes), :mod:`~audit_log.storage` (the storage interface) with
:mod:`~audit_log.sql` (SQLite/PostgreSQL, tables in
:mod:`~audit_log.models`), :mod:`~audit_log.sequencer` (group commit),
:mod:`~audit_log.log` (:class:`AuditLog`, the API other modules use),
:mod:`~audit_log.search`, :mod:`~audit_log.export`, :mod:`~audit_log.verify`
(tamper detection), :mod:`~audit_log.witness` (cosigning children's logs),
:mod:`~audit_log.keys`. gRPC lives only in :mod:`~audit_log.service` and
:mod:`~audit_log.watch` (not imported here). Errors derive from
:class:`AuditLogError` or are :class:`zhida.errors.ZhidaError`.

Example::

    from audit_log import Action, AuditEvent, AuditLog

    log = AuditLog.open(config, database)
    index = await log.append_async(AuditEvent(
        action=Action.LICENCE_FETCH, time=utcnow(), organisation=principal.organisation,
        role=principal.role.claim, subject=principal.subject,
        holder_ref=log.holder_ref(holder_id), licence_id=licence_id, purpose=matter))
"""

from audit_log.checkpoint import (
    Checkpoint,
    CheckpointGuard,
    Cosignature,
    CosignatureSigner,
    CosignatureVerifier,
    check_consistent,
    cosign,
    open_checkpoint,
    open_cosigned_checkpoint,
    sign_checkpoint,
    verify_cosignatures,
)
from audit_log.errors import (
    AuditLogError,
    CheckpointError,
    CosignatureError,
    InconsistentCheckpointError,
    NoteError,
    ProofError,
    TreeError,
    TreeStateError,
)
from audit_log.events import Action, AuditEvent, HolderHasher, Outcome, decode_event, encode_event
from audit_log.log import AuditLog, InclusionProof
from audit_log.merkle import (
    EMPTY_ROOT,
    CompactRange,
    HashReader,
    MemoryNodeStore,
    NodeHash,
    NodeID,
    ProofPlan,
    consistency_plan,
    consistency_proof,
    inclusion_plan,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_at,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from audit_log.note import (
    Ed25519Signer,
    Ed25519Verifier,
    NoteSigner,
    NoteVerifier,
    VerifiedNote,
    add_signatures,
    sign_note,
    verify_note,
)
from audit_log.sequencer import Sequencer
from audit_log.sql import SqlLogStorage
from audit_log.storage import EncodedEvent, EventQuery, LogStorage, SignedCheckpoint, StoredEvent
from audit_log.verify import Problem, VerifyResult, verify_log

__all__ = [
    "EMPTY_ROOT",
    "Action",
    "AuditEvent",
    "AuditLog",
    "AuditLogError",
    "Checkpoint",
    "CheckpointError",
    "CheckpointGuard",
    "CompactRange",
    "Cosignature",
    "CosignatureError",
    "CosignatureSigner",
    "CosignatureVerifier",
    "Ed25519Signer",
    "Ed25519Verifier",
    "EncodedEvent",
    "EventQuery",
    "HashReader",
    "HolderHasher",
    "InclusionProof",
    "InconsistentCheckpointError",
    "LogStorage",
    "MemoryNodeStore",
    "NodeHash",
    "NodeID",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "Outcome",
    "Problem",
    "ProofError",
    "ProofPlan",
    "Sequencer",
    "SignedCheckpoint",
    "SqlLogStorage",
    "StoredEvent",
    "TreeError",
    "TreeStateError",
    "VerifiedNote",
    "VerifyResult",
    "add_signatures",
    "check_consistent",
    "consistency_plan",
    "consistency_proof",
    "cosign",
    "decode_event",
    "encode_event",
    "inclusion_plan",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "open_checkpoint",
    "open_cosigned_checkpoint",
    "root_at",
    "root_from_leaf_hashes",
    "sign_checkpoint",
    "sign_note",
    "verify_consistency",
    "verify_cosignatures",
    "verify_inclusion",
    "verify_log",
    "verify_note",
]
