"""The BlobStore contract, run unchanged against every backend.

The ``blobstore`` fixture is parametrised over the filesystem backend and the
S3 backend (a real SeaweedFS from ``tests/fixtures/seaweedfs.py``, marked
``integration``). ``-m "not integration"`` keeps only the filesystem run.

Example::

    .venv/bin/pytest tests/integration/blobstore/test_contract.py -k filesystem
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fixtures.seaweedfs import S3Server
from zhida.blobstore import (
    BlobStore,
    FilesystemBlobStore,
    S3BlobStore,
    object_key,
    open_blobstore,
)
from zhida.config import BlobStoreConfig
from zhida.errors import IntegrityError, InvalidArgument, NotFound

Tamper = Callable[[str, bytes], None]

BACKENDS = [
    pytest.param("filesystem", id="filesystem"),
    pytest.param("s3", id="s3", marks=pytest.mark.integration),
]

MALFORMED = [
    "",
    "abc",
    "0" * 63,
    "0" * 65,
    "A" * 64,  # uppercase is not the canonical form
    "g" * 64,
    "../" * 21 + "a",
    "sha256/00/00/" + "0" * 64,
    " " + "0" * 63,
]


@pytest.fixture(params=BACKENDS)
def blobstore(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "filesystem":
        cfg = BlobStoreConfig("filesystem", tmp_path / "blobs", None)
    else:
        # Looked up lazily so filesystem-only runs never start SeaweedFS.
        server: S3Server = request.getfixturevalue("s3_server")
        cfg = BlobStoreConfig("s3", tmp_path, server.s3_config())
    with open_blobstore(cfg) as store:
        yield store


@pytest.fixture
def tamper(blobstore: BlobStore, request: pytest.FixtureRequest) -> Tamper:
    """Overwrite a stored object behind the store's back, under the same key."""

    def overwrite(digest: str, data: bytes) -> None:
        key = object_key(digest)
        if isinstance(blobstore, FilesystemBlobStore):
            blobstore.path_of(key).write_bytes(data)
        else:
            assert isinstance(blobstore, S3BlobStore)
            server: S3Server = request.getfixturevalue("s3_server")
            server.client().put_object(blobstore.bucket, key, io.BytesIO(data), len(data))

    return overwrite


def test_backend_name(blobstore: BlobStore, request: pytest.FixtureRequest) -> None:
    assert blobstore.backend == request.node.callspec.params["blobstore"]


def test_round_trip(blobstore: BlobStore) -> None:
    data = b"\x00\xffzhida \xe6\x95\xb0\xe6\x8d\xae\n" * 3
    digest = blobstore.put(data)
    assert blobstore.get(digest) == data
    assert blobstore.exists(digest)


def test_empty_blob(blobstore: BlobStore) -> None:
    digest = blobstore.put(b"")
    assert digest == hashlib.sha256(b"").hexdigest()
    assert blobstore.get(digest) == b""


def test_digest_is_lowercase_hex_sha256(blobstore: BlobStore) -> None:
    data = b"digest format"
    digest = blobstore.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_put_is_idempotent(blobstore: BlobStore) -> None:
    data = b"same bytes twice"
    first = blobstore.put(data)
    second = blobstore.put(data)
    assert first == second
    assert blobstore.get(first) == data


def test_concurrent_puts_of_the_same_blob(blobstore: BlobStore) -> None:
    data = os.urandom(256 * 1024)
    with ThreadPoolExecutor(max_workers=6) as pool:
        digests = set(pool.map(lambda _: blobstore.put(data), range(12)))
    assert digests == {hashlib.sha256(data).hexdigest()}
    assert blobstore.get(digests.pop()) == data


def test_distinct_blobs_do_not_interfere(blobstore: BlobStore) -> None:
    digests = {blobstore.put(f"blob {i}".encode()): i for i in range(5)}
    assert len(digests) == 5
    for digest, i in digests.items():
        assert blobstore.get(digest) == f"blob {i}".encode()


def test_missing_blob_is_not_found(blobstore: BlobStore) -> None:
    digest = hashlib.sha256(b"never stored").hexdigest()
    assert not blobstore.exists(digest)
    with pytest.raises(NotFound) as info:
        blobstore.get(digest)
    assert info.value.reason == "BLOB_NOT_FOUND"
    assert digest in info.value.message


@pytest.mark.parametrize("digest", MALFORMED)
def test_malformed_digest_is_invalid_argument(blobstore: BlobStore, digest: str) -> None:
    for op in (blobstore.get, blobstore.exists, blobstore.delete):
        with pytest.raises(InvalidArgument) as info:
            op(digest)
        assert info.value.violations[0].field == "digest"


def test_tampered_blob_raises_integrity_error(blobstore: BlobStore, tamper: Tamper) -> None:
    original = b"original licence record"
    evil = b"forged licence record!!"
    digest = blobstore.put(original)
    tamper(digest, evil)

    with pytest.raises(IntegrityError) as info:
        blobstore.get(digest)
    err = info.value
    assert err.reason == "BLOB_HASH_MISMATCH"
    assert err.metadata["actual_digest"] == hashlib.sha256(evil).hexdigest()
    # The tampered bytes travel nowhere: not in the message, args or attributes.
    assert evil.decode() not in repr(err) + repr(err.args) + repr(vars(err))
    assert blobstore.exists(digest)  # still there, for forensics


def test_tampered_empty_object_is_detected(blobstore: BlobStore, tamper: Tamper) -> None:
    digest = blobstore.put(b"will be truncated")
    tamper(digest, b"")
    with pytest.raises(IntegrityError):
        blobstore.get(digest)


def test_put_repairs_a_tampered_blob(blobstore: BlobStore, tamper: Tamper) -> None:
    data = b"repair me"
    digest = blobstore.put(data)
    tamper(digest, b"damage")
    assert blobstore.put(data) == digest
    assert blobstore.get(digest) == data


def test_delete(blobstore: BlobStore) -> None:
    digest = blobstore.put(b"short-lived")
    blobstore.delete(digest)
    assert not blobstore.exists(digest)
    with pytest.raises(NotFound):
        blobstore.get(digest)
    blobstore.delete(digest)  # absent: still fine
    assert blobstore.put(b"short-lived") == digest  # and it can come back
    assert blobstore.get(digest) == b"short-lived"


@pytest.mark.parametrize("size", [5 * 1024 * 1024, 5 * 1024 * 1024 + 1])
def test_large_object(blobstore: BlobStore, size: int) -> None:
    # 5 MiB + 1 crosses minio's multipart threshold; the S3 backend must
    # still upload it as one atomic, checksummed PutObject.
    data = os.urandom(size)
    digest = blobstore.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert blobstore.get(digest) == data


def test_check_passes_when_healthy(blobstore: BlobStore) -> None:
    blobstore.check()
