"""Small file-system recipes shared across packages.

Example::

    from zhida.files import atomic_write

    atomic_write(path, b'{"keys": []}\\n', mode=0o644)  # readers see old or new, never half
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a reader or a crash never sees half a file.

    The bytes go to a temporary file in the same directory (same file system,
    so the rename is atomic), are fsynced, get ``mode``, and are renamed over
    ``path``; the temporary file is removed on any failure.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
