"""The node's signing deployment: one facade over keys, CAs, departments, seals, CRLs.

``zhida pki`` / ``zhida seal`` manage it; the licence vault signs through it::

    deployment = Deployment.open(config)            # keys/pki + pki/ under node.data_dir
    token = deployment.sign_licence_jws("11420102MB1A23456R", {"证照标识": "…", …})
    pdf = deployment.issue_licence_pdf("11420102MB1A23456R", LicenceDocument(...))
    signed = deployment.sign_pdf("11420102MB1A23456R", pdf_bytes)   # any PDF
    seal = deployment.seal_for("11420102MB1A23456R")                  # picture: seal.picture.data
    result = deployment.verify(token.encode())                         # VerificationResult

What it holds (files: :mod:`signing.deployment_state`): a root CA and one
issuing CA for the node's level (a national node's issuing CA sits at
province level) — or, on a child node, an issuing CA its parent issued from
a CSR under the deployment's one root, whose key stays with the root holder
(:meth:`Deployment.request_ca`, :meth:`Deployment.import_ca`,
:mod:`signing.deployment_ca`) — their keys and every department's signing
key in a :class:`signing.keystore.KeyStore`: by default a
:class:`signing.keystore.FileKeyStore` under ``keys/pki``, encrypted with
the passphrase from ``ZHIDA_PKI_PASSPHRASE`` or the file named by
``ZHIDA_PKI_PASSPHRASE_FILE`` (or ``passphrase_file=``); unencrypted only
when ``auth.dev_keys`` is true and no passphrase is given, which is logged
as a warning. Another store (``key_store=``) must offer ``certificate_issuer_key``
(:class:`signing.keystore.CaKeyStore`) for CA work; signing needs only the
interface. Department certificates (newest per USCC signs), seals made by
the ``seal-maker`` key, CRLs (re-signed when half their 7-day life is gone)
and seal revocations.

Signing methods take the department's USCC and pick its newest valid,
unrevoked certificate and the seal bound to it; they raise
FailedPrecondition (``NO_DEPARTMENT_CERT``, ``NO_USABLE_SEAL``) when there is
none, so a licence is never signed under a seal that verifiers would refuse.
The per-department signing context (certificate, chain, seal) is cached:
dropped at once when this process changes the PKI (a revocation, a new
certificate or seal, through any :class:`Deployment` of the same directory),
and the files are looked at again at most once a second, so a change made by
another process (``zhida pki revoke``) reaches signing within a second.
Thread-safe.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from time import time as _time
from typing import Any

from cryptography import x509

from signing import deployment_ops as ops
from signing.bundle import VerifierBundle
from signing.deployment_ca import CaOps
from signing.errors import KeyStoreError, KeyStoreReason
from signing.jws_signer import JwsSigner
from signing.keystore import FileKeyStore, KeyStore
from signing.pdf import KeyStoreSigner, sign_pdf
from signing.pdf_layout import LicenceDocument, render_licence_pdf
from signing.pki import CertificateAuthority, cert_sha256
from signing.seal import Seal, SealPurpose, SealRegistry
from signing.trust import TrustBundle
from signing.verify import VerificationResult, verify_document
from zhida.config import Config
from zhida.errors import FailedPrecondition
from zhida.regions import Level

__all__ = [
    "PASSPHRASE_ENV",
    "PASSPHRASE_FILE_ENV",
    "DepartmentCert",
    "Deployment",
    "pki_key_store",
]

PASSPHRASE_ENV = "ZHIDA_PKI_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
PASSPHRASE_FILE_ENV = "ZHIDA_PKI_PASSPHRASE_FILE"  # noqa: S105

DepartmentCert = ops.DepartmentCert


@dataclass(frozen=True, slots=True)
class _SigningContext:
    department: DepartmentCert
    chain: tuple[x509.Certificate, ...]
    seal: Seal
    jws_signer: JwsSigner
    pdf_signer: KeyStoreSigner
    usable_from: float  # Unix times between which the certificate and the seal are valid
    usable_until: float


# How long a signer trusts its cached view of the files before looking again:
# a revocation by another process reaches signing within this time.
_RECHECK_SECONDS = 1.0


class Deployment(CaOps):
    """The PKI, seals and signing of one node. Build with :meth:`open` or :meth:`init`."""

    # -- opening ------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        config: Config,
        *,
        passphrase_file: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        key_store: KeyStore | None = None,
    ) -> Deployment:
        """The deployment under ``config.node.data_dir``; FailedPrecondition if not initialised.

        Opening needs no passphrase; the first operation that uses a private
        key does (KeyStoreError WRONG_PASSPHRASE / PASSPHRASE_MISSING).
        ``key_store`` replaces the default FileKeyStore under ``keys/pki``.
        """
        deployment = cls(config, _store(config, key_store, passphrase_file, env))
        deployment.files.load()  # fail early when there is no PKI yet
        return deployment

    @classmethod
    def init(
        cls,
        config: Config,
        *,
        root_name: str | None = None,
        ca_name: str | None = None,
        passphrase_file: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        key_store: KeyStore | None = None,
        now: datetime | None = None,
    ) -> Deployment:
        """Create the root CA, the issuing CA, the seal maker key and empty CRLs.

        AlreadyExists if the data directory already has a PKI (or a CA request).
        """
        deployment = cls(config, _store(config, key_store, passphrase_file, env))
        deployment._initialise(root_name, ca_name, now)
        return deployment

    @classmethod
    def request_ca(
        cls,
        config: Config,
        *,
        level: Level | None = None,
        ca_name: str | None = None,
        passphrase_file: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        key_store: KeyStore | None = None,
        now: datetime | None = None,
    ) -> x509.CertificateSigningRequest:
        """A child node's first step: its CA key (default level: the node's, at least
        province) and seal maker key, and the CSR for its parent to sign.

        The request waits in ``pki/ca-request.json`` until :meth:`import_ca`.
        AlreadyExists if the data directory has a PKI or a request already.
        """
        deployment = cls(config, _store(config, key_store, passphrase_file, env))
        return deployment._request_ca(level, ca_name, now)

    @classmethod
    def import_ca(
        cls,
        config: Config,
        certificates: Sequence[x509.Certificate],
        *,
        root: x509.Certificate,
        intermediates: Sequence[x509.Certificate] = (),
        crls: Iterable[x509.CertificateRevocationList] = (),
        passphrase_file: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        key_store: KeyStore | None = None,
        now: datetime | None = None,
    ) -> Deployment:
        """A child node's last step: the CA certificate its parent issued for the CSR
        (first of ``certificates``; the rest, and ``intermediates``, are the CAs
        between it and ``root``) becomes its issuing CA.

        Checked first (:func:`signing.sub_ca.check_ca_certificate`): it holds
        the requested key, it is a CA of the requested level, and it chains to
        ``root`` (VerificationError CHAIN_INVALID otherwise). Of ``crls``, those
        of the CAs above are kept (see :meth:`import_crls`).
        """
        deployment = cls(config, _store(config, key_store, passphrase_file, env))
        deployment._import_ca(certificates, root, intermediates, crls, now)
        return deployment

    def __init__(self, config: Config, key_store: KeyStore) -> None:
        super().__init__(config, key_store)
        self._contexts: dict[str, _SigningContext] = {}
        # what the cached contexts were built from: the files' generation and this
        # process's change count; _epoch moves whenever the cache is cleared
        self._contexts_generation: tuple[int, ...] = ()
        self._changes = self.files.changes
        self._contexts_changes = -1
        self._epoch = 0
        self._checked_at = 0.0
        self._contexts_lock = threading.Lock()

    # -- signing (the vault's API) ------------------------------------------------------

    def sign_licence_jws(
        self, dept_uscc: str, payload: Mapping[str, Any], *, now: datetime | None = None
    ) -> str:
        """A compact JWS of ``payload`` (RFC 8785 canonical JSON) by the department.

        The header carries ``kid`` (key id), ``x5c`` (department certificate,
        issuing CA) and ``seal``; ``iat`` is added unless present.
        """
        if now is not None:  # an explicit time (tests, backfills): no cache
            return self._context(dept_uscc, now).jws_signer.sign(payload, now=now)
        clock = _time()
        return self._context_at(dept_uscc, clock).jws_signer.sign_at(payload, int(clock))

    def sign_pdf(self, dept_uscc: str, pdf: bytes, *, now: datetime | None = None) -> bytes:
        """``pdf`` with the department's PAdES B-B signature under its seal."""
        context = self._context(dept_uscc, now)
        return sign_pdf(
            pdf,
            self.key_store,
            context.department.key_id,
            context.chain,
            seal_id=context.seal.seal_id,
            signer=context.pdf_signer,
            location=self.config.node.region_code,
            now=now,
        )

    def issue_licence_pdf(
        self, dept_uscc: str, document: LicenceDocument, *, now: datetime | None = None
    ) -> bytes:
        """Render ``document`` with the department's seal picture, then sign it."""
        context = self._context(dept_uscc, now)
        pdf = render_licence_pdf(document, seal_png=context.seal.picture.data)
        return self.sign_pdf(dept_uscc, pdf, now=now)

    def seal_for(
        self,
        dept_uscc: str,
        *,
        purpose: SealPurpose = SealPurpose.LICENCE,
        at: datetime | None = None,
    ) -> Seal:
        """The department's usable seal: bound to its current certificate, valid, unrevoked.

        Among several, the one valid from the latest date. FailedPrecondition
        (NO_USABLE_SEAL) if none: run ``zhida seal create``.
        """
        at = at or datetime.now(UTC)
        department = self.department(dept_uscc, at=at)
        cert_hash = cert_sha256(department.certificate)
        revoked = self.seal_revocations()
        usable = [
            seal
            for seal in self.seals()
            if seal.owner_uscc == department.uscc
            and seal.purpose is purpose
            and cert_hash in seal.cert_hashes
            and seal.valid_from <= at <= seal.valid_until
            and seal.seal_id not in revoked
        ]
        if not usable:
            raise FailedPrecondition(
                f"department {dept_uscc} has no usable {purpose.label} bound to its current "
                f"certificate: run 'zhida seal create --dept-uscc {dept_uscc}'",
                reason="NO_USABLE_SEAL",
            )
        return max(usable, key=lambda s: (s.valid_from, s.created, s.seal_id))

    # -- verification -------------------------------------------------------------------

    def trust_bundle(self, *, refresh_crls: bool = True) -> TrustBundle:
        """Roots, the issuing CA and the CRLs (re-signed when stale, unless told not to:
        that needs the CA keys and so the passphrase)."""
        return TrustBundle(
            roots=(self.root_certificate,),
            # child nodes' CAs this node issued too: a verifier with this bundle finds
            # their paths (their CRLs come from the child nodes)
            intermediates=(*self.ca_chain, *self.sub_ca_certificates()),
            crls=self.crls(refresh=refresh_crls),
        )

    def seal_registry(self) -> SealRegistry:
        return SealRegistry(self.seal_makers(), self.seal_revocations(), self.seals())

    def verifier_bundle(self, *, refresh_crls: bool = True) -> VerifierBundle:
        """What ``zhida pki export-trust`` writes: trust bundle + seals + seal revocations."""
        return VerifierBundle.of(
            self.trust_bundle(refresh_crls=refresh_crls),
            self.seal_makers(),
            self.seals(),
            self.seal_revocations(),
        )

    def export_trust(self, path: str | os.PathLike[str]) -> VerifierBundle:
        bundle = self.verifier_bundle()
        Path(path).write_text(bundle.to_json(), encoding="utf-8")
        return bundle

    def verify(self, data: bytes, *, now: datetime | None = None) -> VerificationResult:
        """:func:`signing.verify.verify_document` against this deployment's own trust."""
        return verify_document(data, self.trust_bundle(), self.seal_registry(), now=now)

    # -- caching --------------------------------------------------------------------------

    def _context(self, dept_uscc: str, now: datetime | None) -> _SigningContext:
        if now is not None:  # an explicit time (tests, backfills): no cache
            return self._build_context(dept_uscc, now)
        return self._context_at(dept_uscc, _time())

    def _context_at(self, dept_uscc: str, clock: float) -> _SigningContext:
        """The cached context at Unix time ``clock``: dropped at once after a change made
        in this process, within _RECHECK_SECONDS after one made by another."""
        if (
            self._changes.value != self._contexts_changes
            or clock - self._checked_at > _RECHECK_SECONDS
        ):
            self._revalidate(clock)
        context = self._contexts.get(dept_uscc)
        if context is None or not context.usable_from <= clock < context.usable_until:
            epoch = self._epoch
            context = self._build_context(dept_uscc, datetime.fromtimestamp(clock, UTC))
            with self._contexts_lock:
                if epoch == self._epoch:  # else built from files that have changed since
                    self._contexts[dept_uscc] = context
        return context

    def _revalidate(self, clock: float) -> None:
        changes = self._changes.value  # read before the files
        generation = self.files.generation()
        with self._contexts_lock:
            if generation != self._contexts_generation or changes != self._contexts_changes:
                self._contexts.clear()
                self._epoch += 1
                self._contexts_generation = generation
                self._contexts_changes = changes
            self._checked_at = clock

    def _build_context(self, dept_uscc: str, at: datetime) -> _SigningContext:
        department = self.department(dept_uscc, at=at)
        seal = self.seal_for(dept_uscc, at=at)
        chain = (department.certificate, *self.ca_chain)
        jws_signer = JwsSigner(self.key_store, department.key_id, chain, seal.seal_id)
        pdf_signer = KeyStoreSigner(self.key_store, department.key_id, chain)
        cert = department.certificate
        usable_from = max(cert.not_valid_before_utc, seal.valid_from).timestamp()
        usable_until = min(cert.not_valid_after_utc, seal.valid_until).timestamp()
        return _SigningContext(
            department, chain, seal, jws_signer, pdf_signer, usable_from, usable_until
        )

    def issuing_ca(self) -> CertificateAuthority:
        """The issuing CA with its key (needs the passphrase)."""
        return self._ca("ca")


def _store(
    config: Config,
    key_store: KeyStore | None,
    passphrase_file: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
) -> KeyStore:
    if key_store is not None:
        return key_store
    return pki_key_store(config, passphrase_file=passphrase_file, env=env)


def pki_key_store(
    config: Config,
    *,
    passphrase_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> FileKeyStore:
    """The default key store: ``keys/pki`` under the data directory, encrypted with the
    passphrase from ``passphrase_file``, ``$ZHIDA_PKI_PASSPHRASE_FILE`` or
    ``$ZHIDA_PKI_PASSPHRASE``; unencrypted only with ``auth.dev_keys`` (its
    ``encrypts`` is then False), else KeyStoreError PASSPHRASE_MISSING."""
    env = os.environ if env is None else env
    directory = config.node.data_dir / "keys" / "pki"
    dev = config.auth.dev_keys
    file = passphrase_file or env.get(PASSPHRASE_FILE_ENV) or None
    if file is not None:
        return FileKeyStore(directory, passphrase_file=file, dev_mode=dev)
    if env.get(PASSPHRASE_ENV):
        return FileKeyStore(directory, passphrase=env[PASSPHRASE_ENV], dev_mode=dev)
    if dev:  # DeploymentOps warns when it writes a key unencrypted
        return FileKeyStore(directory, dev_mode=True)
    raise KeyStoreError(
        KeyStoreReason.PASSPHRASE_MISSING,
        f"the PKI key store needs a passphrase: set {PASSPHRASE_ENV} or {PASSPHRASE_FILE_ENV} "
        "(unencrypted keys only with auth.dev_keys = true)",
    )
