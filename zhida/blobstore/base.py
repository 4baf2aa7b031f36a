"""The content-addressed blob store interface shared by every backend.

A blob is named by the lowercase hex SHA-256 of its bytes and stored under the
key ``sha256/<2 hex>/<2 hex>/<64 hex>``. The interface is deliberately small
(in the spirit of transparency-dev/tessera storage drivers): ``put``, ``get``,
``exists``, ``delete`` and ``check``. Backends implement a few private
primitives; the public methods live here so that every backend validates
digests and re-hashes on every read the same way. A backend therefore cannot
forget the integrity check: tampered bytes are never returned.

Example::

    from pathlib import Path
    from zhida.blobstore import FilesystemBlobStore

    store = FilesystemBlobStore(Path("/var/lib/zhida/blobs"))
    digest = store.put(b"licence scan")
    assert store.get(digest) == b"licence scan"
"""

from __future__ import annotations

import abc
import hashlib
import re
from types import TracebackType

from zhida.errors import FieldViolation, IntegrityError, InvalidArgument, NotFound, Unavailable

KEY_PREFIX = "sha256"

REASON_NOT_FOUND = "BLOB_NOT_FOUND"
REASON_HASH_MISMATCH = "BLOB_HASH_MISMATCH"
REASON_INVALID_DIGEST = "BLOB_DIGEST_INVALID"
REASON_UNAVAILABLE = "BLOBSTORE_UNAVAILABLE"
REASON_ACCESS_DENIED = "BLOBSTORE_ACCESS_DENIED"

# Only the canonical form is accepted: one key per blob, no case aliases.
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


def sha256_hex(data: bytes) -> str:
    """The digest ``put`` returns for ``data``."""
    return hashlib.sha256(data).hexdigest()


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is 64 lowercase hex characters, else raise InvalidArgument."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        shown = digest[:80] if isinstance(digest, str) else type(digest).__name__
        problem = f"must be 64 lowercase hex characters (a SHA-256), got {shown!r}"
        raise InvalidArgument(
            f"blob digest {problem}",
            reason=REASON_INVALID_DIGEST,
            violations=[FieldViolation("digest", problem)],
        )
    return digest


def object_key(digest: str) -> str:
    """The storage key of a blob: ``sha256/ab/cd/abcd...``.

    Two levels of fan-out keep directories (and S3 listing prefixes) small.
    """
    validate_digest(digest)
    return f"{KEY_PREFIX}/{digest[0:2]}/{digest[2:4]}/{digest}"


def unavailable(backend: str, detail: str) -> Unavailable:
    return Unavailable(
        f"blob store ({backend}) unavailable: {detail}",
        reason=REASON_UNAVAILABLE,
        metadata={"backend": backend},
    )


def access_denied(backend: str, detail: str, hint: str) -> Unavailable:
    return Unavailable(
        f"blob store ({backend}) refused access: {detail}; {hint}",
        reason=REASON_ACCESS_DENIED,
        metadata={"backend": backend},
    )


class BlobStore(abc.ABC):
    """Content-addressed, integrity-checked storage of immutable blobs.

    Errors: ``InvalidArgument`` (malformed digest), ``NotFound`` (BLOB_NOT_FOUND),
    ``IntegrityError`` (BLOB_HASH_MISMATCH), ``Unavailable`` (BLOBSTORE_UNAVAILABLE
    or BLOBSTORE_ACCESS_DENIED). Instances are safe to share between threads.
    """

    backend: str  # "filesystem" or "s3"

    # --- public API ----------------------------------------------------------

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its lowercase hex SHA-256.

        Idempotent: if an intact copy is already stored nothing is written. A
        stored copy that no longer matches its hash is replaced (self-healing).
        """
        if not isinstance(data, bytes):
            raise InvalidArgument(
                f"blob data must be bytes, got {type(data).__name__}",
                violations=[FieldViolation("data", "must be bytes")],
            )
        digest = sha256_hex(data)
        key = object_key(digest)
        if not self._is_stored(key, digest, len(data)):
            self._write(key, digest, data)
        return digest

    def get(self, digest: str) -> bytes:
        """Return the blob's bytes after checking they still hash to ``digest``."""
        key = object_key(digest)
        data = self._read(key)
        if data is None:
            raise NotFound(
                f"blob {digest} not found",
                reason=REASON_NOT_FOUND,
                metadata={"digest": digest},
            )
        actual = sha256_hex(data)
        if actual != digest:
            # The bytes are dropped here on purpose: corrupted or tampered data
            # must never reach a caller, not even alongside an error.
            raise IntegrityError(
                f"blob {digest} is corrupted: stored bytes hash to {actual}",
                reason=REASON_HASH_MISMATCH,
                metadata={"digest": digest, "actual_digest": actual, "backend": self.backend},
            )
        return data

    def exists(self, digest: str) -> bool:
        """True if an object is stored under ``digest`` (its bytes are not verified)."""
        return self._exists(object_key(digest))

    def delete(self, digest: str) -> None:
        """Remove the blob; deleting an absent blob is not an error."""
        self._delete(object_key(digest))

    @abc.abstractmethod
    def check(self) -> None:
        """Raise ``Unavailable`` if the backend cannot be reached or written."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections; the store must not be used afterwards."""

    def __enter__(self) -> BlobStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- backend primitives (keys are already validated) ----------------------

    @abc.abstractmethod
    def _read(self, key: str) -> bytes | None:
        """The stored bytes, or None if nothing is stored under ``key``."""

    @abc.abstractmethod
    def _write(self, key: str, digest: str, data: bytes) -> None:
        """Store ``data`` atomically: readers see the old state or all of ``data``."""

    @abc.abstractmethod
    def _is_stored(self, key: str, digest: str, size: int) -> bool:
        """True if an intact copy is stored, so ``put`` may skip the write."""

    @abc.abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def _delete(self, key: str) -> None: ...
