"""C2SP checkpoints (c2sp.org/tlog-checkpoint) and witness cosignatures.

A checkpoint is the signed-note text ``<origin>\\n<size>\\n<base64 root>\\n``
plus optional extension lines. Witnesses cosign it per c2sp.org/tlog-cosignature
(Ed25519, type 0x04): they sign ``cosignature/v1\\ntime <t>\\n<checkpoint>`` and the
signature line carries ``key ID || uint64 t || signature``. A log must never sign
two inconsistent checkpoints: :class:`CheckpointGuard` refuses to.

Example::

    >>> from audit_log.merkle import EMPTY_ROOT
    >>> from audit_log.note import Ed25519Signer
    >>> log = Ed25519Signer.from_seed("log.example/zhida", bytes(32))
    >>> witness = CosignatureSigner.from_seed("witness.example/w1", bytes(range(32)))
    >>> first = Checkpoint("log.example/zhida", 0, EMPTY_ROOT)
    >>> note, guard = CheckpointGuard().sign(first, [], [log])
    >>> note = cosign(note, witness, timestamp=1700000000)
    >>> cp, cosigs = open_cosigned_checkpoint(note, [log.verifier()], [witness.verifier()])
    >>> (cp.size, [c.timestamp for c in cosigs])
    (0, [1700000000])
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from audit_log.errors import (
    CheckpointError,
    CosignatureError,
    InconsistentCheckpointError,
    NoteError,
    ProofError,
)
from audit_log.merkle import EMPTY_ROOT, HASH_SIZE, MAX_TREE_SIZE, verify_consistency
from audit_log.note import (
    Ed25519SigningKey,
    Ed25519VerifyingKey,
    NoteSigner,
    NoteVerifier,
    add_signatures,
    parse_note,
    sign_note,
    verify_note,
)

ALG_COSIGNATURE_V1 = 0x04  # signed-note §Signature types; tlog-cosignature §Format
MAX_TIMESTAMP = 2**63 - 1  # tlog-cosignature: "MUST NOT exceed 2^63 - 1"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")  # no leading zeroes; ASCII only
_CONTROL = re.compile(r"[\x00-\x1f]")


def _check_line(what: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise CheckpointError(f"{what} must be a non-empty string")
    if _CONTROL.search(value):
        raise CheckpointError(f"{what} contains a newline or control character")
    return value


def _parse_decimal(what: str, line: str, maximum: int) -> int:
    if not _DECIMAL.fullmatch(line) or int(line) > maximum:
        raise CheckpointError(f"{what} {line[:24]!r} is not a decimal in 0..{maximum}")
    return int(line)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: origin, tree size, RFC 6962 root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line("origin", self.origin)
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise CheckpointError("tree size must be an integer")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"tree size {self.size} is outside 0..2**64-1")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"root hash must be {HASH_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            raise CheckpointError("extensions must be a tuple of lines")
        for line in self.extensions:
            _check_line("extension line", line)

    def to_text(self) -> str:
        """The note text (body) of this checkpoint, ending in a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body strictly (tlog-checkpoint §Note text)."""
        if not isinstance(text, str) or not text.endswith("\n"):
            raise CheckpointError("checkpoint text must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("checkpoint needs origin, size and root hash lines")
        origin, size_line, root_line, *extensions = lines
        size = _parse_decimal("tree size", size_line, MAX_TREE_SIZE)
        try:
            root = base64.b64decode(root_line.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise CheckpointError("root hash is not valid base64") from None
        if base64.b64encode(root).decode() != root_line:
            raise CheckpointError("root hash is not canonical base64")
        return cls(origin, size, root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[NoteSigner]) -> str:
    """Sign a checkpoint as a note. Logs should go through :class:`CheckpointGuard`."""
    return sign_note(checkpoint.to_text(), signers)


def open_checkpoint(
    note: str, verifiers: Sequence[NoteVerifier], *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint against the log's keys and parse it.

    Pass ``origin`` to also require the checkpoint to be for that log: a key
    trusted for one log must not vouch for another log's tree.
    """
    checkpoint = Checkpoint.parse(verify_note(note, verifiers).text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    return checkpoint


def cosigned_message(body: str, timestamp: int) -> bytes:
    """What an Ed25519 witness signs (tlog-cosignature §Ed25519 signed message)."""
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def _check_timestamp(timestamp: object) -> int:
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise CosignatureError("cosignature timestamp must be an integer")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CosignatureError(f"cosignature timestamp {timestamp} is outside 0..2**63-1")
    return timestamp


class _TimestampedSigner:
    """A :class:`NoteSigner` view of a witness key at one timestamp."""

    __slots__ = ("_key", "_timestamp")

    def __init__(self, key: CosignatureSigner, timestamp: int) -> None:
        self._key, self._timestamp = key, _check_timestamp(timestamp)

    @property
    def name(self) -> str:
        return self._key.name

    @property
    def key_id(self) -> int:
        return self._key.key_id

    def sign(self, text: bytes, /) -> bytes:
        return self._key.sign_at(text, self._timestamp)


class CosignatureSigner(Ed25519SigningKey):
    """A witness's Ed25519 cosigning key (type 0x04)."""

    ALGORITHM = ALG_COSIGNATURE_V1

    def sign_at(self, text: bytes, timestamp: int) -> bytes:
        """``timestamped_signature``: uint64 big-endian timestamp || Ed25519 signature."""
        _check_timestamp(timestamp)
        message = cosigned_message(text.decode("utf-8"), timestamp)
        return timestamp.to_bytes(8, "big") + self._sign_raw(message)

    def at(self, timestamp: int) -> NoteSigner:
        return _TimestampedSigner(self, timestamp)

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, self.public_key)


class CosignatureVerifier(Ed25519VerifyingKey):
    """Checks a witness's type 0x04 cosignatures; usable as a :class:`NoteVerifier`."""

    ALGORITHM = ALG_COSIGNATURE_V1

    def verify(self, text: bytes, signature: bytes, /) -> bool:
        if len(signature) != 8 + 64:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        try:
            body = text.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return self._verify_raw(cosigned_message(body, timestamp), signature[8:])


class Cosignature(NamedTuple):
    """A verified witness cosignature: who, and as of when (POSIX seconds)."""

    name: str
    key_id: int
    timestamp: int


def cosign(checkpoint_note: str, witness: CosignatureSigner, timestamp: int) -> str:
    """Append ``witness``'s cosignature to a signed checkpoint.

    This only signs. A witness must first have verified the log's signature
    and the consistency with the last checkpoint it cosigned.
    """
    text, _ = parse_note(checkpoint_note)
    Checkpoint.parse(text)  # cosign checkpoints only
    return add_signatures(checkpoint_note, [witness.at(timestamp)])


def verify_cosignatures(
    note: str, witnesses: Sequence[CosignatureVerifier], *, quorum: int = 1
) -> tuple[Cosignature, ...]:
    """Verify the cosignatures of known ``witnesses``; at least ``quorum`` must hold.

    Signatures of other keys (the log's own, unknown witnesses) are ignored; a
    bad cosignature from a known witness rejects the note.
    """
    if quorum < 1:
        raise CosignatureError("quorum must be at least 1")
    try:
        verified = verify_note(note, witnesses)
    except CosignatureError:
        raise
    except NoteError as exc:
        raise CosignatureError(f"cosignatures do not verify: {exc}") from exc
    Checkpoint.parse(verified.text)
    cosignatures = tuple(
        Cosignature(
            v.signature.name, v.signature.key_id, int.from_bytes(v.signature.signature[:8], "big")
        )
        for v in verified.verified
    )
    if len(cosignatures) < quorum:
        raise CosignatureError(f"{len(cosignatures)} valid cosignatures, {quorum} required")
    return cosignatures


def open_cosigned_checkpoint(
    note: str,
    log_verifiers: Sequence[NoteVerifier],
    witnesses: Sequence[CosignatureVerifier],
    *,
    quorum: int = 1,
    origin: str | None = None,
) -> tuple[Checkpoint, tuple[Cosignature, ...]]:
    """Verify the log's signature and a quorum of witness cosignatures."""
    checkpoint = open_checkpoint(note, log_verifiers, origin=origin)
    return checkpoint, verify_cosignatures(note, witnesses, quorum=quorum)


def check_consistent(previous: Checkpoint | None, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Refuse ``new`` unless it extends ``previous`` (tlog-checkpoint §Signatures).

    ``proof`` is the consistency proof from ``previous.size`` to ``new.size``
    (empty when the sizes are equal or ``previous`` is empty).
    """
    if new.size == 0 and new.root_hash != EMPTY_ROOT:
        raise InconsistentCheckpointError("an empty tree must have the empty root")
    if previous is None:
        return
    if new.origin != previous.origin:
        raise InconsistentCheckpointError(
            f"origin {new.origin!r} differs from the signed {previous.origin!r}"
        )
    if new.size < previous.size:
        raise InconsistentCheckpointError(
            f"tree size {new.size} is smaller than the signed size {previous.size}"
        )
    if previous.size == 0:
        # Every tree extends the empty one; RFC 9162 has no proof for it.
        if previous.root_hash != EMPTY_ROOT or len(proof) != 0:
            raise InconsistentCheckpointError("bad extension of the empty tree")
        return
    if new.size == previous.size and new.root_hash != previous.root_hash:
        raise InconsistentCheckpointError(
            f"tree size {new.size} already signed with a different root: a fork"
        )
    try:
        verify_consistency(previous.size, new.size, proof, previous.root_hash, new.root_hash)
    except ProofError as exc:
        raise InconsistentCheckpointError(
            f"size {new.size} is not consistent with signed size {previous.size}: {exc}"
        ) from exc


@dataclass(frozen=True, slots=True)
class CheckpointGuard:
    """The last checkpoint a log signed; signs a new one only if consistent.

    Immutable: :meth:`sign` returns the note and the guard to keep, which the
    storage layer persists atomically with the new tree state.
    """

    last: Checkpoint | None = None

    def check(self, new: Checkpoint, proof: Sequence[bytes]) -> None:
        check_consistent(self.last, new, proof)

    def sign(
        self, new: Checkpoint, proof: Sequence[bytes], signers: Sequence[NoteSigner]
    ) -> tuple[str, CheckpointGuard]:
        self.check(new, proof)
        return sign_checkpoint(new, signers), CheckpointGuard(new)
