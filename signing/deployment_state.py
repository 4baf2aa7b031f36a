"""The files behind :class:`signing.deployment.Deployment`, and their lock.

Layout under the node's data directory::

    keys/pki/                  FileKeyStore: pki-root, pki-ca-<level>, seal-maker, dept-*
    pki/state.json             CA certificates, department certificates, revocations
    pki/crl-root.pem           the root's latest CRL (lists revoked intermediates); only
                               where the root key is held
    pki/crl-ca.pem             the issuing CA's latest CRL (lists department certificates)
    pki/ca-request.json        a child node's CA key id, level and CSR, until its parent's
                               certificate is imported (``zhida pki init --csr``)
    pki/crls-upstream/*.pem    a child node's copies of the CRLs of the CAs above its own
    pki/seals/<seal id>.json   one GB/T 38540-style seal each (signed by the seal maker)
    pki/seal-revocations.json  revoked seals
    pki/.lock                  flock(2) held while any of these change

Every write replaces a whole file atomically under the lock, so readers in
other processes (the vault while ``zhida pki revoke`` runs) see the old or
the new state, never half of one. :meth:`PkiFiles.generation` is a cheap
fingerprint (modification times) that tells a reader its cache is stale;
:attr:`PkiFiles.changes` counts the changes made by this process, so its own
caches see them at once.

Example::

    files = PkiFiles(config.node.data_dir)
    with files.locked():
        state = files.load()
        state.departments.append(...)
        files.save(state)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zhida.errors import FailedPrecondition
from zhida.files import atomic_write

__all__ = [
    "CaRecord",
    "CaRequestRecord",
    "ChangeCount",
    "DepartmentRecord",
    "PkiFiles",
    "PkiState",
    "RevocationRecord",
    "SubCaRecord",
]

STATE_VERSION = 1


@dataclass(slots=True)
class CaRecord:
    key_id: str  # "" for a root whose key this node does not hold (a child node)
    cert_pem: str
    level: str


@dataclass(slots=True)
class SubCaRecord:
    """A child node's CA certificate this deployment issued from a CSR."""

    cert_pem: str
    level: str
    issuer: str  # "root" or "ca": whose CRL lists it once revoked
    issued: str  # ISO 8601


@dataclass(slots=True)
class CaRequestRecord:
    """A child node's pending CA: its key, level and CSR, until the certificate comes back."""

    key_id: str
    level: str
    csr_pem: str
    created: str  # ISO 8601

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> CaRequestRecord:
        return cls(**json.loads(text))


@dataclass(slots=True)
class DepartmentRecord:
    name: str
    uscc: str
    key_id: str
    cert_pem: str
    issued: str  # ISO 8601


@dataclass(slots=True)
class RevocationRecord:
    serial: str  # hex, as openssl prints it
    issuer: str  # "root" or "ca"
    revoked_at: str  # ISO 8601
    reason: str  # x509.ReasonFlags value, e.g. "keyCompromise"


@dataclass(slots=True)
class PkiState:
    root: CaRecord
    ca: CaRecord
    seal_maker_key_id: str
    departments: list[DepartmentRecord] = field(default_factory=list)
    revoked: list[RevocationRecord] = field(default_factory=list)
    # CA certificates between ``ca`` and ``root``, nearest first (a child node's CA
    # issued by a CA below the root); empty when the root issued ``ca``
    chain: list[str] = field(default_factory=list)
    sub_cas: list[SubCaRecord] = field(default_factory=list)

    def to_json(self) -> str:
        doc = {"version": STATE_VERSION, **asdict(self)}
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PkiState:
        doc: Any = json.loads(text)
        if doc.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported PKI state version {doc.get('version')!r}")
        return cls(
            root=CaRecord(**doc["root"]),
            ca=CaRecord(**doc["ca"]),
            seal_maker_key_id=doc["seal_maker_key_id"],
            departments=[DepartmentRecord(**d) for d in doc["departments"]],
            revoked=[RevocationRecord(**r) for r in doc["revoked"]],
            # absent from files written before child nodes existed
            chain=list(doc.get("chain", [])),
            sub_cas=[SubCaRecord(**r) for r in doc.get("sub_cas", [])],
        )


class ChangeCount:
    """How many times this process changed one deployment's files (shared by every
    :class:`PkiFiles` of the same directory): a cache that saw another count is stale."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


_CHANGE_COUNTS: dict[str, ChangeCount] = {}
_CHANGE_COUNTS_LOCK = threading.Lock()


class PkiFiles:
    """Paths, atomic writes and the inter-process lock of one deployment."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        with _CHANGE_COUNTS_LOCK:
            self.changes = _CHANGE_COUNTS.setdefault(str(data_dir.resolve()), ChangeCount())
        self.keys_dir = data_dir / "keys" / "pki"
        self.dir = data_dir / "pki"
        self.state_path = self.dir / "state.json"
        self.seals_dir = self.dir / "seals"
        self.seal_revocations_path = self.dir / "seal-revocations.json"
        self.request_path = self.dir / "ca-request.json"
        self.upstream_crls_dir = self.dir / "crls-upstream"
        self._thread_lock = threading.RLock()

    def crl_path(self, which: str) -> Path:
        return self.dir / f"crl-{which}.pem"

    def exists(self) -> bool:
        return self.state_path.exists()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the deployment's lock (threads and processes) for a read-modify-write.

        Leaving it counts a change (:attr:`changes`), written or not: caches in
        this process drop what they built from the files before.
        """
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._thread_lock:
            fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                with _CHANGE_COUNTS_LOCK:
                    self.changes.value += 1
                os.close(fd)  # closing releases the flock

    def load(self) -> PkiState:
        try:
            return PkiState.from_json(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if self.request_path.exists():
                raise FailedPrecondition(
                    f"the PKI in {self.dir} waits for its CA certificate: run 'zhida pki "
                    "import-ca' with the certificate the parent issued for the CSR",
                    reason="CA_NOT_IMPORTED",
                ) from None
            raise FailedPrecondition(
                f"no PKI in {self.dir}: run 'zhida pki init' first", reason="PKI_NOT_INITIALISED"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise FailedPrecondition(
                f"{self.state_path} is unreadable: {exc}", reason="PKI_STATE_CORRUPT"
            ) from None

    def save(self, state: PkiState) -> None:
        atomic_write(self.state_path, state.to_json().encode(), mode=0o644)

    def generation(self) -> tuple[int, ...]:
        """Modification times of everything a signer caches; changes on every write."""
        stamps = []
        paths = (
            self.state_path,
            self.seals_dir,
            self.seal_revocations_path,
            self.upstream_crls_dir,
        )
        for path in paths:
            try:
                stamps.append(path.stat().st_mtime_ns)
            except FileNotFoundError:
                stamps.append(0)
        return tuple(stamps)
