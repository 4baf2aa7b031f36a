"""One worker of N: a non-blocking ``flock`` elects who runs a node's background job.

With ``zhida serve --workers N`` every worker starts the same background jobs
(federation sync, licence expiry); each job tries an exclusive ``flock`` on its
own file in ``data_dir``. The worker that gets it runs the job; the others try
again now and then, so another takes over when it dies (the kernel releases
the lock with the process). Locks are per open file, so two jobs in one
process exclude each other too.

Example::

    fd = try_lock(config.node.data_dir / "licence-expiry.lock")
    if fd is not None:            # this process runs the job ...
        os.close(fd)              # ... until it closes the file: the lock is released
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["try_lock"]


def try_lock(path: Path) -> int | None:
    """A file descriptor holding an exclusive lock on ``path`` (created 0600), or
    None when another holder has it. Close the descriptor to release the lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
