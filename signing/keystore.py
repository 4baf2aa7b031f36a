"""Signing keys behind one interface: callers ask the store to sign.

:class:`KeyStore` is the seam for key custody. Callers name a key id and get
a signature (or a public key); they never see private key bytes, so an
HSM (PKCS#11) or cloud KMS backend can replace :class:`FileKeyStore` without
touching them. Rotation: :meth:`KeyStore.rotate` makes a new key id with the
same algorithm and retires the old one — it can no longer sign, but its public
key stays listed so signatures made with it still verify.

CA work is the one exception: cryptography's X.509 builders
(``CertificateBuilder.sign``, ``CertificateRevocationListBuilder.sign``, CSRs)
take a private key *object*. That is the optional :class:`CaKeyStore`
capability (``certificate_issuer_key``), which :class:`FileKeyStore` offers
for ``pki-*`` keys only; :func:`ca_signing_key` asks for it. An HSM or KMS
backend implements it by returning a cryptography-compatible key object — a
subclass of ``ec.EllipticCurvePrivateKey`` (or ``ed25519.Ed25519PrivateKey``)
whose ``sign()`` calls the device, which the builders accept — or leaves it
out and does CA work by its own means (an offline CA that signs zhida's CSRs);
a store without it still signs documents.

:class:`FileKeyStore` keeps one PKCS#8 PEM per key, encrypted with
``BestAvailableEncryption`` under a passphrase read from an environment
variable or a file, plus a small JSON metadata file. Unencrypted keys exist
only with an explicit ``dev_mode=True``; outside dev mode such a key is
refused on load.

Example::

    >>> import os, tempfile
    >>> os.environ["ZHIDA_KEY_PASSPHRASE"] = "correct horse battery staple"
    >>> store = FileKeyStore(tempfile.mkdtemp(), passphrase_env="ZHIDA_KEY_PASSPHRASE")
    >>> info = store.generate("sfj-2025-01")          # ES256 by default
    >>> signature = store.sign("sfj-2025-01", b"payload")
    >>> info.algorithm.verify(store.public_key("sfj-2025-01"), signature, b"payload")
    True
    >>> new = store.rotate("sfj-2025-01", "sfj-2025-02")
    >>> [k.key_id for k in store.list() if k.retired is None]
    ['sfj-2025-02']
"""

from __future__ import annotations

import abc
import builtins
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, cast, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)

from signing.algorithms import DEFAULT_ALGORITHM, Algorithm, get_algorithm
from signing.errors import KeyStoreError, KeyStoreReason
from zhida.errors import AlreadyExists, InvalidArgument, NotFound
from zhida.files import atomic_write

__all__ = [
    "CaKeyStore",
    "FileKeyStore",
    "KeyHandle",
    "KeyInfo",
    "KeyStore",
    "ca_signing_key",
    "validate_key_id",
]

_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def validate_key_id(key_id: str) -> str:
    """Return ``key_id`` if it is 1–128 of ``[A-Za-z0-9._-]`` not starting with ``.``/``-``."""
    if not _KEY_ID.fullmatch(key_id):
        raise InvalidArgument(
            f"key id must be 1-128 characters of A-Z a-z 0-9 . _ -, got {key_id!r}",
            reason="INVALID_KEY_ID",
        )
    return key_id


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What anyone may know about a key: never the private part."""

    key_id: str
    algorithm: Algorithm
    public_key: CertificatePublicKeyTypes
    created: datetime
    retired: datetime | None = None


class KeyHandle(abc.ABC):
    """An opaque private key: it signs, it does not reveal itself.

    Callers may keep a handle: once the key is retired, the same handle refuses
    to sign (KEY_RETIRED).
    """

    @property
    @abc.abstractmethod
    def info(self) -> KeyInfo:
        """The key's public description."""

    @abc.abstractmethod
    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` with the key's algorithm (JOSE signature encoding)."""

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign a digest (the algorithm's ``prehash``) computed by the caller.

        Optional: callers fall back to :meth:`sign` on NotImplementedError.
        HSMs and KMSs usually offer it (PKCS#11 CKM_ECDSA signs a digest).
        """
        raise NotImplementedError("this key signs whole messages only")


class KeyStore(abc.ABC):
    """Where private keys live. Implementations must be thread-safe."""

    @abc.abstractmethod
    def generate(self, key_id: str, algorithm: Algorithm | str = DEFAULT_ALGORITHM) -> KeyInfo:
        """Create a key; AlreadyExists if ``key_id`` is taken."""

    @abc.abstractmethod
    def handle(self, key_id: str) -> KeyHandle:
        """The key's handle; NotFound if unknown."""

    @abc.abstractmethod
    def list(self) -> builtins.list[KeyInfo]:
        """Every key, retired ones included, sorted by creation time."""

    @abc.abstractmethod
    def retire(self, key_id: str) -> KeyInfo:
        """Stop ``key_id`` from signing; its public key stays available."""

    def info(self, key_id: str) -> KeyInfo:
        return self.handle(key_id).info

    def public_key(self, key_id: str) -> CertificatePublicKeyTypes:
        return self.info(key_id).public_key

    def sign(self, key_id: str, data: bytes) -> bytes:
        """Sign ``data`` with ``key_id``; KeyStoreError(KEY_RETIRED) for a retired key."""
        return self.handle(key_id).sign(data)

    def sign_digest(self, key_id: str, digest: bytes) -> bytes:
        """Sign a precomputed digest; NotImplementedError where unsupported."""
        return self.handle(key_id).sign_digest(digest)

    def rotate(self, key_id: str, new_key_id: str) -> KeyInfo:
        """Generate ``new_key_id`` with ``key_id``'s algorithm, then retire ``key_id``."""
        old = self.info(key_id)
        new = self.generate(new_key_id, old.algorithm)
        self.retire(key_id)
        return new


@runtime_checkable
class CaKeyStore(Protocol):
    """Optional capability of a key store: CA keys as objects cryptography's builders take."""

    def certificate_issuer_key(self, key_id: str) -> CertificateIssuerPrivateKeyTypes:
        """The CA key ``key_id`` as a private key object (see the module docstring)."""
        ...


def ca_signing_key(store: KeyStore, key_id: str) -> CertificateIssuerPrivateKeyTypes:
    """``store``'s CA key ``key_id`` for X.509 builders; KeyStoreError if it cannot do CA work."""
    if not isinstance(store, CaKeyStore):
        raise KeyStoreError(
            KeyStoreReason.CA_SIGNING_UNSUPPORTED,
            f"the key store {type(store).__name__} cannot sign certificates or CRLs "
            "(no certificate_issuer_key): do CA work with a store that can",
        )
    return store.certificate_issuer_key(key_id)


class _SoftwareKey(KeyHandle):
    __slots__ = ("_digest_signer", "_info", "_key")

    def __init__(self, info: KeyInfo, key: PrivateKeyTypes) -> None:
        self._info = info
        self._key = key
        # the algorithm's signer with the key bound (type checked once), made on first use
        self._digest_signer: Callable[[bytes], bytes] | None = None

    @property
    def info(self) -> KeyInfo:
        return self._info

    def sign(self, data: bytes) -> bytes:
        self._check_active()
        return self._info.algorithm.sign(self._key, data)

    def sign_digest(self, digest: bytes) -> bytes:
        if self._info.retired is not None:  # read on every call: retiring works in place
            self._check_active()
        signer = self._digest_signer
        if signer is None:
            signer = self._digest_signer = self._info.algorithm.digest_signer(self._key)
        return signer(digest)

    def _check_active(self) -> None:
        if self._info.retired is not None:
            raise KeyStoreError(
                KeyStoreReason.KEY_RETIRED,
                f"key {self._info.key_id!r} was retired at {self._info.retired.isoformat()}",
            )

    def __repr__(self) -> str:
        return f"<KeyHandle {self._info.key_id} {self._info.algorithm.name}>"


class FileKeyStore(KeyStore):
    """Keys as encrypted PKCS#8 PEM files in one directory.

    Give exactly one of ``passphrase_env`` (the *name* of an environment
    variable), ``passphrase_file`` (a file whose content, without the final
    newline, is the passphrase) or ``passphrase`` (the value, for callers that
    read it from elsewhere). With ``dev_mode=True`` and no passphrase, keys
    are written unencrypted — for tests and demos only. Decrypted keys are
    cached in memory after first use.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        passphrase_env: str | None = None,
        passphrase_file: str | os.PathLike[str] | None = None,
        passphrase: str | None = None,
        dev_mode: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.dev_mode = dev_mode
        if passphrase is not None:
            if passphrase_env is not None or passphrase_file is not None or not passphrase:
                raise InvalidArgument(
                    "give one non-empty passphrase source", reason="PASSPHRASE_SOURCE"
                )
            self._passphrase: bytes | None = passphrase.encode()
        else:
            self._passphrase = _read_passphrase(passphrase_env, passphrase_file, dev_mode)
        self._lock = threading.RLock()
        self._loaded: dict[str, _SoftwareKey] = {}
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _pem_path(self, key_id: str) -> Path:
        return self.directory / f"{validate_key_id(key_id)}.key.pem"

    def _meta_path(self, key_id: str) -> Path:
        return self.directory / f"{validate_key_id(key_id)}.meta.json"

    def generate(self, key_id: str, algorithm: Algorithm | str = DEFAULT_ALGORITHM) -> KeyInfo:
        alg = get_algorithm(algorithm) if isinstance(algorithm, str) else algorithm
        with self._lock:
            if self._meta_path(key_id).exists():
                raise AlreadyExists(f"key {key_id!r} already exists", reason="KEY_EXISTS")
            key = alg.generate_private_key()
            pem = alg.private_pem(key, self._passphrase)
            info = KeyInfo(key_id, alg, key.public_key(), datetime.now(UTC).replace(microsecond=0))
            _write_private(self._pem_path(key_id), pem)
            self._write_meta(info)
            self._loaded[key_id] = _SoftwareKey(info, key)
            return info

    def handle(self, key_id: str) -> KeyHandle:
        loaded = self._loaded.get(key_id)  # dict reads are atomic: no lock on the hot path
        if loaded is not None:
            return loaded
        with self._lock:
            loaded = self._loaded.get(key_id)
            if loaded is None:
                loaded = self._load(key_id)
                self._loaded[key_id] = loaded
            return loaded

    def info(self, key_id: str) -> KeyInfo:
        """From memory or the metadata file: needs no passphrase."""
        with self._lock:
            loaded = self._loaded.get(key_id)
            return loaded.info if loaded is not None else self._read_meta(key_id)

    @property
    def encrypts(self) -> bool:
        """True when new keys are written encrypted (a passphrase was given)."""
        return self._passphrase is not None

    def certificate_issuer_key(self, key_id: str) -> CertificateIssuerPrivateKeyTypes:
        """The private key object of a CA key, for cryptography's X.509 builders.

        The one exception to "keys never leave the store", and only for this
        software store: ``CertificateBuilder.sign`` and
        ``CertificateRevocationListBuilder.sign`` need the key object (the
        :class:`CaKeyStore` capability). Only CA keys (``pki-*``) are handed
        out; document-signing keys stay inside.
        """
        if not key_id.startswith("pki-"):
            raise InvalidArgument(
                f"only CA keys (pki-*) are handed out, not {key_id!r}", reason="NOT_A_CA_KEY"
            )
        handle = self.handle(key_id)
        assert isinstance(handle, _SoftwareKey)
        if handle.info.retired is not None:
            raise KeyStoreError(KeyStoreReason.KEY_RETIRED, f"key {key_id!r} was retired")
        return cast(CertificateIssuerPrivateKeyTypes, handle._key)

    def list(self) -> builtins.list[KeyInfo]:
        with self._lock:
            metas = self.directory.glob("*.meta.json")
            ids = sorted(p.name.removesuffix(".meta.json") for p in metas)
            infos = [self._read_meta(key_id) for key_id in ids]
        return sorted(infos, key=lambda i: (i.created, i.key_id))

    def retire(self, key_id: str) -> KeyInfo:
        with self._lock:
            current = self.handle(key_id)
            info = current.info
            if info.retired is None:
                info = replace(info, retired=datetime.now(UTC).replace(microsecond=0))
                self._write_meta(info)
                assert isinstance(current, _SoftwareKey)
                current._info = info  # in place: handles held elsewhere stop signing too
            return info

    # -- files ---------------------------------------------------------------

    def _write_meta(self, info: KeyInfo) -> None:
        meta = {
            "key_id": info.key_id,
            "algorithm": info.algorithm.name,
            "created": info.created.isoformat(),
            "retired": info.retired.isoformat() if info.retired else None,
            "public_key": info.algorithm.public_pem(info.public_key).decode(),
        }
        atomic_write(self._meta_path(info.key_id), json.dumps(meta, indent=2).encode(), 0o644)

    def _read_meta(self, key_id: str) -> KeyInfo:
        path = self._meta_path(key_id)
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            algorithm = get_algorithm(meta["algorithm"])
            public_key = algorithm.load_public_pem(meta["public_key"].encode())
            if not algorithm.accepts(public_key):
                raise ValueError(f"public key is no {algorithm.name} key")
            return KeyInfo(
                key_id=key_id,
                algorithm=algorithm,
                public_key=cast(CertificatePublicKeyTypes, public_key),
                created=datetime.fromisoformat(meta["created"]),
                retired=datetime.fromisoformat(meta["retired"]) if meta["retired"] else None,
            )
        except FileNotFoundError:
            raise NotFound(
                f"no key {key_id!r} in {self.directory}", reason="KEY_NOT_FOUND"
            ) from None
        except (ValueError, KeyError, TypeError, InvalidArgument) as exc:
            raise KeyStoreError(
                KeyStoreReason.KEY_CORRUPT, f"metadata of key {key_id!r} is unreadable: {exc}"
            ) from None

    def _load(self, key_id: str) -> _SoftwareKey:
        info = self._read_meta(key_id)
        pem = self._pem_path(key_id).read_bytes()
        encrypted = pem.lstrip().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        if not encrypted and not self.dev_mode:
            raise KeyStoreError(
                KeyStoreReason.UNENCRYPTED_KEY,
                f"key {key_id!r} is stored unencrypted; only allowed with dev_mode=True",
            )
        if encrypted and self._passphrase is None:
            raise KeyStoreError(
                KeyStoreReason.PASSPHRASE_MISSING,
                f"key {key_id!r} is encrypted; no passphrase given",
            )
        try:
            key = info.algorithm.load_private_pem(pem, self._passphrase if encrypted else None)
        except ValueError as exc:
            if encrypted:
                raise KeyStoreError(
                    KeyStoreReason.WRONG_PASSPHRASE,
                    f"cannot decrypt key {key_id!r}: wrong passphrase",
                ) from None
            raise KeyStoreError(
                KeyStoreReason.KEY_CORRUPT, f"key {key_id!r} is unreadable: {exc}"
            ) from None
        alg = info.algorithm
        if not alg.accepts(key) or alg.public_pem(key.public_key()) != alg.public_pem(
            info.public_key
        ):
            raise KeyStoreError(
                KeyStoreReason.KEY_CORRUPT, f"key {key_id!r} does not match its metadata"
            )
        return _SoftwareKey(info, key)


def _read_passphrase(
    env: str | None, file: str | os.PathLike[str] | None, dev_mode: bool
) -> bytes | None:
    if env is not None and file is not None:
        raise InvalidArgument(
            "give passphrase_env or passphrase_file, not both", reason="PASSPHRASE_SOURCE"
        )
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise KeyStoreError(
                KeyStoreReason.PASSPHRASE_MISSING, f"environment variable {env} is unset or empty"
            )
        return value.encode()
    if file is not None:
        try:
            value = Path(file).read_text(encoding="utf-8").removesuffix("\n")
        except OSError as exc:
            raise KeyStoreError(
                KeyStoreReason.PASSPHRASE_MISSING, f"cannot read passphrase file {file}: {exc}"
            ) from None
        if not value:
            raise KeyStoreError(
                KeyStoreReason.PASSPHRASE_MISSING, f"passphrase file {file} is empty"
            )
        return value.encode()
    if not dev_mode:
        raise KeyStoreError(
            KeyStoreReason.PASSPHRASE_MISSING,
            "a key store needs passphrase_env or passphrase_file (or dev_mode=True)",
        )
    return None


def _write_private(path: Path, data: bytes) -> None:
    atomic_write(path, data, 0o600)
