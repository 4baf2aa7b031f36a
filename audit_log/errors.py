"""Typed errors of the audit log: Merkle proofs, signed notes, checkpoints.

Every error derives from :class:`AuditLogError`, itself a
:class:`zhida.errors.ZhidaError`, so the server layer maps them to gRPC status
codes without knowing this package. Messages are precise (which check failed,
with the sizes involved) but never echo secret material.

Example::

    from audit_log.errors import AuditLogError, ProofError

    try:
        verify_inclusion(leaf, index, size, proof, root)
    except ProofError as exc:  # the proof does not check out, whatever the reason
        log.warning("rejected proof: %s", exc)
"""

from __future__ import annotations

from zhida.errors import ErrorCode, ZhidaError


class AuditLogError(ZhidaError):
    """Base class of every error raised by ``audit_log``."""

    code = ErrorCode.INTERNAL
    default_reason = "AUDIT_LOG"


class ProofError(AuditLogError):
    """An inclusion or consistency proof failed to verify, or was malformed.

    Deliberately one opaque type: callers must treat every failure the same
    way (reject), and must never branch on why a proof is bad.
    """

    code = ErrorCode.INVALID_ARGUMENT
    default_reason = "INVALID_PROOF"


class TreeError(AuditLogError):
    """A proof or node was requested outside the tree (index >= size, ...)."""

    code = ErrorCode.INVALID_ARGUMENT
    default_reason = "INVALID_TREE_RANGE"


class TreeStateError(AuditLogError):
    """Stored tree state is corrupt: a missing node, a bad hash length, bad bytes."""

    code = ErrorCode.INTERNAL
    default_reason = "DATA_INTEGRITY"


class NoteError(AuditLogError):
    """A signed note, a key string or a note signature is malformed or invalid."""

    code = ErrorCode.INVALID_ARGUMENT
    default_reason = "INVALID_NOTE"


class CosignatureError(NoteError):
    """A witness cosignature is malformed or does not verify."""

    default_reason = "INVALID_COSIGNATURE"


class CheckpointError(AuditLogError):
    """A checkpoint body is malformed (origin, size, root hash, extension lines)."""

    code = ErrorCode.INVALID_ARGUMENT
    default_reason = "INVALID_CHECKPOINT"


class InconsistentCheckpointError(CheckpointError):
    """Signing this checkpoint would contradict one the log already signed."""

    code = ErrorCode.FAILED_PRECONDITION
    default_reason = "CHECKPOINT_INCONSISTENT"
