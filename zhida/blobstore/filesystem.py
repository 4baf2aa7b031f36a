"""Blob store on a local (or mounted) directory.

Objects live at ``<root>/sha256/ab/cd/<digest>``. Every write goes to a temp
file in the object's own directory (``.tmp-*.partial``: never 64 hex
characters, so never taken for an object), is fsynced, renamed over the final
name with ``os.replace`` and the directory is fsynced. A crash at any point
leaves either no object or the complete one; at worst a stray temp file that
nothing reads and that a later ``put`` does not trip over. Stale temp files can
be removed by the operator (``find <root> -name '.tmp-*.partial' -mmin +60 -delete``).

Directories are created 0o700 and files 0o600: blobs are government records
and no other local user has a reason to read them.

Example::

    from pathlib import Path
    from zhida.blobstore import FilesystemBlobStore

    store = FilesystemBlobStore(Path(".zhida/blobs"))
    store.check()
    digest = store.put(b"hello")
    assert store.exists(digest) and store.get(digest) == b"hello"
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
from pathlib import Path

from zhida.blobstore.base import BlobStore, access_denied, sha256_hex, unavailable
from zhida.errors import Unavailable

log = logging.getLogger(__name__)

DIR_MODE = 0o700
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".partial"
_BACKEND = "filesystem"


class FilesystemBlobStore(BlobStore):
    """Blob store rooted at ``root``; the directory is created if missing."""

    backend = _BACKEND

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        try:
            _make_dirs(self.root)
        except OSError as exc:
            raise _os_error(exc, f"cannot create blob directory {self.root}") from exc
        if not self.root.is_dir():
            raise unavailable(_BACKEND, f"{self.root} is not a directory")

    def __repr__(self) -> str:
        return f"FilesystemBlobStore({str(self.root)!r})"

    def path_of(self, key: str) -> Path:
        """The file that holds ``key`` (an ``object_key``)."""
        return self.root / key

    def check(self) -> None:
        # A real create+remove, not os.access: it also catches read-only
        # remounts, a full disk's inode table and NFS permission mappings.
        try:
            if not self.root.is_dir():
                raise unavailable(_BACKEND, f"blob directory {self.root} is missing")
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=TEMP_PREFIX + "check-")
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise _os_error(exc, f"cannot write to blob directory {self.root}") from exc

    # --- primitives ------------------------------------------------------------

    def _read(self, key: str) -> bytes | None:
        path = self.path_of(key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _os_error(exc, f"cannot read {path}") from exc

    def _is_stored(self, key: str, digest: str, size: int) -> bool:
        # Re-hash rather than trust the name: a damaged copy is rewritten
        # instead of being kept forever behind an idempotent put.
        data = self._read(key)
        if data is None:
            return False
        if len(data) == size and sha256_hex(data) == digest:
            return True
        log.warning("blob %s on disk is corrupted; rewriting it", digest)
        return False

    def _write(self, key: str, digest: str, data: bytes) -> None:
        path = self.path_of(key)
        tmp: str | None = None
        try:
            _make_dirs(path.parent)
            # mkstemp: unique name (concurrent writers never share a temp
            # file), O_EXCL, mode 0o600; same directory so the rename is atomic.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
            # The rename is only durable once the directory entry is on disk.
            _fsync_dir(path.parent)
        except OSError as exc:
            raise _os_error(exc, f"cannot write blob {digest}") from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _exists(self, key: str) -> bool:
        path = self.path_of(key)
        try:
            os.stat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _os_error(exc, f"cannot stat {path}") from exc
        return True

    def _delete(self, key: str) -> None:
        path = self.path_of(key)
        try:
            os.unlink(path)
            _fsync_dir(path.parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _os_error(exc, f"cannot delete {path}") from exc
        # Empty fan-out directories are left in place: a concurrent put may be
        # about to create its temp file in them, and there are at most 65 536.


def _make_dirs(path: Path) -> None:
    """Create ``path`` and missing parents with mode 0o700, durably.

    Not ``os.makedirs``: since Python 3.7 its mode applies to the leaf only.
    """
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            continue  # a concurrent put created it
        _fsync_dir(d.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems (certain FUSE/network mounts) cannot fsync a
        # directory; the data itself was already fsynced, so carry on.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _os_error(exc: OSError, what: str) -> Unavailable:
    detail = f"{what}: {exc.strerror or exc}"
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return access_denied(
            _BACKEND,
            detail,
            "check the owner and permissions of blobstore.path for the zhida user",
        )
    return unavailable(_BACKEND, detail)
