"""Digest validation, key layout and the ``open_blobstore`` factory.

Example::

    .venv/bin/pytest tests/unit/blobstore -q
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from zhida.blobstore import (
    FilesystemBlobStore,
    object_key,
    open_blobstore,
    sha256_hex,
    validate_digest,
)
from zhida.config import BlobStoreConfig
from zhida.errors import ConfigError, InvalidArgument

DIGEST = hashlib.sha256(b"x").hexdigest()


def test_object_key_layout() -> None:
    assert object_key(DIGEST) == f"sha256/{DIGEST[:2]}/{DIGEST[2:4]}/{DIGEST}"


def test_sha256_hex_matches_hashlib() -> None:
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize(
    "bad", ["", DIGEST[:-1], DIGEST + "0", DIGEST.upper(), "z" * 64, "../" + DIGEST[3:]]
)
def test_validate_digest_rejects(bad: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_digest(bad)
    assert info.value.reason == "BLOB_DIGEST_INVALID"
    assert info.value.violations[0].field == "digest"


def test_validate_digest_rejects_non_strings() -> None:
    with pytest.raises(InvalidArgument):
        validate_digest(b"0" * 64)  # type: ignore[arg-type]


def test_put_rejects_non_bytes(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    with pytest.raises(InvalidArgument):
        store.put("text is not bytes")  # type: ignore[arg-type]


def test_factory_opens_filesystem(tmp_path: Path) -> None:
    store = open_blobstore(BlobStoreConfig("filesystem", tmp_path / "b", None))
    assert isinstance(store, FilesystemBlobStore)
    assert store.backend == "filesystem"
    assert store.root == tmp_path / "b"


def test_factory_requires_s3_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        open_blobstore(BlobStoreConfig("s3", tmp_path, None))
    assert info.value.key == "blobstore.s3.endpoint"


def test_factory_rejects_unknown_backend(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        open_blobstore(BlobStoreConfig("tape", tmp_path, None))
    assert info.value.key == "blobstore.backend"
