"""Filesystem-only behaviour: crash leftovers, atomic writes, permissions.

The backend-independent contract is in tests/integration/blobstore/test_contract.py.

Example::

    .venv/bin/pytest tests/unit/blobstore/test_filesystem.py -q
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from zhida.blobstore import FilesystemBlobStore, object_key
from zhida.blobstore.filesystem import TEMP_PREFIX, TEMP_SUFFIX
from zhida.errors import NotFound, Unavailable

DATA = b"electronic licence, page 1 of 1" * 100
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 0, so any mode below 0o777 must have been chosen by the code."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leave_crash_debris(store: FilesystemBlobStore, digest: str, partial: bytes) -> Path:
    """What a writer killed between write() and os.replace() leaves behind."""
    final = store.path_of(object_key(digest))
    final.parent.mkdir(parents=True, exist_ok=True)
    debris = final.parent / f"{TEMP_PREFIX}k1lled{TEMP_SUFFIX}"
    debris.write_bytes(partial)
    return debris


def test_crash_leftover_is_not_an_object(store: FilesystemBlobStore) -> None:
    debris = _leave_crash_debris(store, DIGEST, DATA[: len(DATA) // 2])
    assert not store.exists(DIGEST)
    with pytest.raises(NotFound):
        store.get(DIGEST)
    store.check()
    assert debris.exists()


def test_crash_leftover_does_not_break_a_later_put(store: FilesystemBlobStore) -> None:
    _leave_crash_debris(store, DIGEST, DATA[:10])
    assert store.put(DATA) == DIGEST
    assert store.get(DIGEST) == DATA


def test_put_leaves_no_temp_files(store: FilesystemBlobStore) -> None:
    store.put(DATA)
    store.put(DATA)
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert files == [store.path_of(object_key(DIGEST))]


def test_idempotent_put_does_not_rewrite(store: FilesystemBlobStore) -> None:
    path = store.path_of(object_key(store.put(DATA)))
    before = path.stat()
    store.put(DATA)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_put_replaces_a_corrupt_copy_atomically(store: FilesystemBlobStore) -> None:
    path = store.path_of(object_key(store.put(DATA)))
    path.write_bytes(b"bit rot")
    inode = path.stat().st_ino
    store.put(DATA)
    # A new inode: the repair was a rename over the old file, not an in-place
    # rewrite a concurrent reader could observe half-done.
    assert path.stat().st_ino != inode
    assert store.get(DIGEST) == DATA


@pytest.mark.usefixtures("open_umask")
def test_restrictive_permissions(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "blobs"
    store = FilesystemBlobStore(root)
    path = store.path_of(object_key(store.put(DATA)))
    for d in (tmp_path / "a", tmp_path / "a" / "b", root, path.parent, path.parent.parent):
        assert _mode(d) == 0o700, d
    assert _mode(path) == 0o600


def test_existing_root_is_used_as_is(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    store = FilesystemBlobStore(tmp_path)
    store.put(DATA)
    assert _mode(tmp_path) == 0o755  # the operator's directory, not ours to chmod


def test_root_that_is_a_file_is_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "not-a-dir"
    root.write_bytes(b"")
    with pytest.raises(Unavailable) as info:
        FilesystemBlobStore(root)
    assert info.value.reason == "BLOBSTORE_UNAVAILABLE"


def test_check_fails_when_root_disappears(store: FilesystemBlobStore) -> None:
    shutil.rmtree(store.root)
    with pytest.raises(Unavailable) as info:
        store.check()
    assert info.value.reason == "BLOBSTORE_UNAVAILABLE"
    assert str(store.root) in info.value.message


def test_check_creates_no_files(store: FilesystemBlobStore) -> None:
    store.check()
    assert list(store.root.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_root_is_access_denied(store: FilesystemBlobStore) -> None:
    store.root.chmod(0o500)
    try:
        with pytest.raises(Unavailable) as info:
            store.check()
        with pytest.raises(Unavailable):
            store.put(DATA)
    finally:
        store.root.chmod(0o700)
    assert info.value.reason == "BLOBSTORE_ACCESS_DENIED"
    assert "permissions" in info.value.message


def test_delete_keeps_fanout_dirs_usable(store: FilesystemBlobStore) -> None:
    store.put(DATA)
    store.delete(DIGEST)
    assert store.path_of(object_key(DIGEST)).parent.is_dir()
    assert store.put(DATA) == DIGEST
