"""Content-addressed, integrity-checked blob storage (filesystem or S3).

Blobs are named by the lowercase hex SHA-256 of their bytes; every read is
re-hashed and a mismatch raises ``IntegrityError(reason="BLOB_HASH_MISMATCH")``
instead of returning the bytes. See :mod:`zhida.blobstore.base` for the
contract, :mod:`.filesystem` and :mod:`.s3` for the backends.

Example::

    from zhida.blobstore import open_blobstore
    from zhida.config import load_config

    store = open_blobstore(load_config().blobstore)
    store.check()                      # Unavailable if the backend is down
    digest = store.put(b"%PDF-1.7 ...")
    assert store.get(digest).startswith(b"%PDF")
"""

from __future__ import annotations

from zhida.blobstore.base import (
    REASON_ACCESS_DENIED,
    REASON_HASH_MISMATCH,
    REASON_INVALID_DIGEST,
    REASON_NOT_FOUND,
    REASON_UNAVAILABLE,
    BlobStore,
    object_key,
    sha256_hex,
    validate_digest,
)
from zhida.blobstore.filesystem import FilesystemBlobStore
from zhida.blobstore.s3 import S3BlobStore
from zhida.config import BlobStoreConfig
from zhida.errors import ConfigError

__all__ = [
    "REASON_ACCESS_DENIED",
    "REASON_HASH_MISMATCH",
    "REASON_INVALID_DIGEST",
    "REASON_NOT_FOUND",
    "REASON_UNAVAILABLE",
    "BlobStore",
    "FilesystemBlobStore",
    "S3BlobStore",
    "object_key",
    "open_blobstore",
    "sha256_hex",
    "validate_digest",
]


def open_blobstore(cfg: BlobStoreConfig) -> BlobStore:
    """Open the configured backend; S3 creates its bucket and fails fast if unreachable."""
    if cfg.backend == "filesystem":
        return FilesystemBlobStore(cfg.path)
    if cfg.backend == "s3":
        if cfg.s3 is None:
            raise ConfigError("blobstore.s3.endpoint", "is required when blobstore.backend = 's3'")
        return S3BlobStore(cfg.s3)
    raise ConfigError("blobstore.backend", f"must be 'filesystem' or 's3', got {cfg.backend!r}")
