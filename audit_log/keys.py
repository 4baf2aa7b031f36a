"""The node's audit-log secrets: checkpoint signing key, witness key, holder-hash key.

All three live in the node's keys directory (``<data_dir>/keys``, mode 0700)
as 32 random bytes in base64, one file each, mode 0600:

``audit-log.seed``
    Ed25519 seed of the log's note signer; its key name is the log origin
    ``zhida.<region code>/<node name>``.
``audit-witness.seed``
    Ed25519 seed of the cosigning key (C2SP tlog-cosignature, type 0x04) the
    node uses as a witness of its children's logs; same name.
``audit-holder.key``
    HMAC-SHA256 key of :class:`~audit_log.events.HolderHasher`. It must never
    change for the life of the log, or older events stop matching searches.

Files are created on first use when ``create`` is true (development; the
default follows ``auth.dev_keys``). Creation is race-free across the worker
processes of one node: each file is written aside and hard-linked into place,
so exactly one random key wins and every process reads that one.

Example::

    from audit_log.keys import load_audit_keys, log_origin
    from zhida.config import load_config

    config = load_config(None)
    keys = load_audit_keys(config.keys_dir, log_origin(config), create=True)
    print(keys.signer.verifier().vkey())   # zhida.420102/zhida-dev+1a2b3c4d+AQ...
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from audit_log.checkpoint import CosignatureSigner
from audit_log.errors import NoteError
from audit_log.events import HOLDER_KEY_BYTES, HolderHasher
from audit_log.note import Ed25519Signer, Ed25519Verifier, check_key_name
from zhida.config import Config
from zhida.errors import ConfigError, FailedPrecondition

LOG_KEY_FILE = "audit-log.seed"
WITNESS_KEY_FILE = "audit-witness.seed"
HOLDER_KEY_FILE = "audit-holder.key"


def log_origin(config: Config) -> str:
    """``zhida.<region code>/<node name>``: the log's origin line and key name."""
    origin = f"zhida.{config.node.region_code}/{config.node.name}"
    try:
        return check_key_name(origin)
    except NoteError:
        raise ConfigError(
            "node.name", f"must not contain spaces or '+' (it names the audit log: {origin!r})"
        ) from None


@dataclass(frozen=True, slots=True)
class AuditKeys:
    """The log's signer, the node's witness key and the holder hasher."""

    origin: str
    signer: Ed25519Signer
    cosigner: CosignatureSigner
    holder: HolderHasher

    @property
    def verifier(self) -> Ed25519Verifier:
        return self.signer.verifier()


def load_audit_keys(keys_dir: Path, origin: str, *, create: bool) -> AuditKeys:
    """Read (and, if ``create``, first create) the three secrets under ``keys_dir``."""
    check_key_name(origin)
    return AuditKeys(
        origin=origin,
        signer=Ed25519Signer.from_seed(origin, _secret(keys_dir / LOG_KEY_FILE, create)),
        cosigner=CosignatureSigner.from_seed(origin, _secret(keys_dir / WITNESS_KEY_FILE, create)),
        holder=HolderHasher(_secret(keys_dir / HOLDER_KEY_FILE, create)),
    )


def keys_for_config(config: Config, *, create: bool | None = None) -> AuditKeys:
    """:func:`load_audit_keys` for a node configuration (create iff ``auth.dev_keys``)."""
    return load_audit_keys(
        config.keys_dir,
        log_origin(config),
        create=config.auth.dev_keys if create is None else create,
    )


def _secret(path: Path, create: bool) -> bytes:
    if not path.exists():
        if not create:
            raise FailedPrecondition(
                f"audit key {path} is missing; create it with 'zhida audit keys --create' "
                "(and keep a backup: a lost holder key hides older events from searches)",
                reason="AUDIT_KEY_MISSING",
            )
        _create(path)
    try:
        raw = base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)
    except (OSError, UnicodeDecodeError, binascii.Error) as exc:
        raise FailedPrecondition(
            f"audit key {path} is unreadable: {exc}", reason="AUDIT_KEY_INVALID"
        ) from None
    if len(raw) != HOLDER_KEY_BYTES:
        raise FailedPrecondition(
            f"audit key {path} must hold {HOLDER_KEY_BYTES} bytes", reason="AUDIT_KEY_INVALID"
        )
    return raw


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".audit-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:  # mkstemp: mode 0600
            f.write(base64.b64encode(secrets.token_bytes(HOLDER_KEY_BYTES)).decode() + "\n")
            f.flush()
            os.fsync(f.fileno())
        # link() fails if another process created the key meanwhile: theirs wins.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
