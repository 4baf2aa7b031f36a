"""PKI and seal management of a deployment: the half of the facade the CLI drives.

:class:`DeploymentOps` is the base of :class:`signing.deployment.Deployment`
(use that): initialising the CAs, issuing and revoking department
certificates, keeping the CRLs current, making and revoking seals. State is
in files (:mod:`signing.deployment_state`); every change happens under the
deployment's lock.

Keys go through the :class:`signing.keystore.KeyStore` interface. CA work
(certificates, CRLs) needs the store's optional ``certificate_issuer_key``
capability (:class:`signing.keystore.CaKeyStore`); a store without it
refuses those operations with KeyStoreError CA_SIGNING_UNSUPPORTED. A child
node's CA, issued by its parent from a CSR, is :mod:`signing.deployment_ca`.

Re-issuing a department's certificate rotates its key: the department's
previous keys are retired (they sign no more; signatures made with them,
and their certificates, stay verifiable).

Example::

    deployment = Deployment.init(config)
    dept = deployment.issue_department_cert("武汉市市场监督管理局", "11420100MB00000009")
    seal = deployment.create_seal(dept.uscc, valid_days=3 * 365)
    deployment.revoke(dept.serial, "keyCompromise")       # a new CRL
    deployment.revoke_seal(seal.seal_id, "印章遗失")
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding

from signing.deployment_state import (
    CaRecord,
    DepartmentRecord,
    PkiFiles,
    PkiState,
    RevocationRecord,
)
from signing.keystore import FileKeyStore, KeyInfo, KeyStore, ca_signing_key
from signing.pki import (
    CRL_VALIDITY,
    DEPARTMENT_VALIDITY,
    CertificateAuthority,
    RevokedCertificate,
    create_crl,
    create_intermediate_ca,
    create_root_ca,
    department_identity,
    issue_department_cert,
    validate_uscc,
)
from signing.seal import Seal, SealPurpose, SealRevocations, create_seal
from zhida.config import Config
from zhida.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from zhida.files import atomic_write
from zhida.regions import Level

__all__ = ["DepartmentCert", "DeploymentOps"]

ROOT_KEY = "pki-root"
SEAL_MAKER_KEY = "seal-maker"
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DepartmentCert:
    """A department's signing certificate and the key id it signs with."""

    name: str
    uscc: str
    key_id: str
    certificate: x509.Certificate
    issued: datetime

    @property
    def serial(self) -> int:
        return self.certificate.serial_number


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def ca_key_id(level: Level) -> str:
    """The key id of a node's issuing CA at ``level``."""
    return f"pki-ca-{level.name.lower()}"


def default_ca_name(config: Config) -> str:
    return f"zhida 签发CA {config.node.name} {config.node.region_code}"


def _own_issuers(state: PkiState) -> tuple[str, ...]:
    """The CAs whose CRLs this node signs: not the root on a child node."""
    return ("root", "ca") if state.root.key_id else ("ca",)


def parse_reason(reason: str | x509.ReasonFlags) -> x509.ReasonFlags:
    """``keyCompromise``, ``superseded``, … (RFC 5280 names) as ReasonFlags."""
    if isinstance(reason, x509.ReasonFlags):
        return reason
    try:
        return x509.ReasonFlags(reason)
    except ValueError:
        flags = [r for r in x509.ReasonFlags if r is not x509.ReasonFlags.remove_from_crl]
        names = ", ".join(r.value for r in flags)
        raise InvalidArgument(
            f"unknown revocation reason {reason!r}; one of: {names}", reason="INVALID_REASON"
        ) from None


class DeploymentOps:
    """Management operations; see :class:`signing.deployment.Deployment`."""

    def __init__(self, config: Config, key_store: KeyStore) -> None:
        self.config = config
        self.key_store = key_store
        self.files = PkiFiles(config.node.data_dir)

    @property
    def writes_clear_keys(self) -> bool:
        """True when new keys land unencrypted on disk (a dev-mode FileKeyStore)."""
        return isinstance(self.key_store, FileKeyStore) and not self.key_store.encrypts

    def _generate(self, key_id: str, algorithm: str = "ES256") -> KeyInfo:
        if self.writes_clear_keys:
            _log.warning(
                "writing PKI key %s UNENCRYPTED in %s: auth.dev_keys is true and neither "
                "ZHIDA_PKI_PASSPHRASE nor ZHIDA_PKI_PASSPHRASE_FILE is set (development only)",
                key_id,
                self.files.keys_dir,
            )
        return self.key_store.generate(key_id, algorithm)

    def _generate_new(self, *key_ids: str) -> None:
        """Generate each key; AlreadyExists (PKI_EXISTS) before making any if one exists."""
        existing = {k.key_id for k in self.key_store.list()}
        for key_id in key_ids:
            if key_id in existing:
                raise AlreadyExists(
                    f"key {key_id!r} already exists in {self.files.keys_dir}",
                    reason="PKI_EXISTS",
                )
        for key_id in key_ids:
            self._generate(key_id)

    def _issuer_key(self, key_id: str) -> CertificateIssuerPrivateKeyTypes:
        return ca_signing_key(self.key_store, key_id)

    def _refuse_existing(self) -> None:
        """AlreadyExists (PKI_EXISTS) if this data directory has a PKI or a pending CA request."""
        if self.files.exists():
            raise AlreadyExists(f"a PKI already exists in {self.files.dir}", reason="PKI_EXISTS")
        if self.files.request_path.exists():
            raise AlreadyExists(
                f"a CA request is pending in {self.files.request_path}: import its certificate "
                "with 'zhida pki import-ca'",
                reason="PKI_EXISTS",
            )

    # -- CAs ------------------------------------------------------------------------------

    def _initialise(self, root_name: str | None, ca_name: str | None, now: datetime | None) -> None:
        node = self.config.node
        with self.files.locked():
            self._refuse_existing()
            # a national node's issuing CA sits one level down: a CA must be below its parent
            level = max(node.level, Level.PROVINCE)
            ca_key = ca_key_id(level)
            self._generate_new(ROOT_KEY, ca_key, SEAL_MAKER_KEY)
            root = create_root_ca(
                root_name or f"zhida 部署根CA {node.name}",
                key=self._issuer_key(ROOT_KEY),
                now=now,
            )
            ca = create_intermediate_ca(
                root,
                ca_name or default_ca_name(self.config),
                level,
                key=self._issuer_key(ca_key),
                now=now,
            )
            state = PkiState(
                root=CaRecord(ROOT_KEY, _pem(root.certificate), Level.NATIONAL.name),
                ca=CaRecord(ca_key, _pem(ca.certificate), level.name),
                seal_maker_key_id=SEAL_MAKER_KEY,
            )
            self.files.save(state)
            self._write_crls(state, now)

    def _ca(self, which: str) -> CertificateAuthority:
        record = getattr(self.files.load(), which)
        assert isinstance(record, CaRecord)
        if not record.key_id:
            raise FailedPrecondition(
                "this node does not hold the deployment root's key (its CA was issued by its "
                "parent): do this on the root holder",
                reason="ROOT_NOT_HELD",
            )
        return CertificateAuthority(
            _cert(record.cert_pem), self._issuer_key(record.key_id), Level[record.level]
        )

    @property
    def root_certificate(self) -> x509.Certificate:
        return _cert(self.files.load().root.cert_pem)

    @property
    def ca_certificate(self) -> x509.Certificate:
        return _cert(self.files.load().ca.cert_pem)

    @property
    def ca_chain(self) -> tuple[x509.Certificate, ...]:
        """The issuing CA and the CAs above it, up to but without the root."""
        state = self.files.load()
        return tuple(_cert(pem) for pem in (state.ca.cert_pem, *state.chain))

    @property
    def holds_root(self) -> bool:
        """False on a child node, whose CA its parent issued from a CSR."""
        return bool(self.files.load().root.key_id)

    # -- departments ---------------------------------------------------------------------

    def departments(self) -> list[DepartmentCert]:
        """Every department certificate ever issued, oldest first."""
        return [
            DepartmentCert(
                d.name, d.uscc, d.key_id, _cert(d.cert_pem), datetime.fromisoformat(d.issued)
            )
            for d in self.files.load().departments
        ]

    def revoked_serials(self) -> dict[int, RevocationRecord]:
        return {int(r.serial, 16): r for r in self.files.load().revoked}

    def department(self, uscc: str, *, at: datetime | None = None) -> DepartmentCert:
        """The department's most recently issued certificate valid at ``at``, not revoked."""
        uscc = validate_uscc(uscc)
        at = at or datetime.now(UTC)
        revoked = self.revoked_serials()
        usable = [
            d
            for d in self.departments()
            if d.uscc == uscc
            and d.serial not in revoked
            and d.certificate.not_valid_before_utc <= at <= d.certificate.not_valid_after_utc
        ]
        if not usable:
            raise FailedPrecondition(
                f"department {uscc} has no valid, unrevoked signing certificate: "
                f"run 'zhida pki issue-dept-cert --uscc {uscc}'",
                reason="NO_DEPARTMENT_CERT",
            )
        return usable[-1]  # the most recently issued

    def issue_department_cert(
        self,
        name: str,
        uscc: str,
        *,
        algorithm: str = "ES256",
        validity: timedelta = DEPARTMENT_VALIDITY,
        now: datetime | None = None,
    ) -> DepartmentCert:
        """Generate a key in the store and issue its certificate from the issuing CA.

        The department's earlier keys are retired (a rotation): its newest
        certificate is the one that signs, so an older key has nothing left to
        do. Their certificates stay valid for verifiers (revoke one with
        :meth:`revoke` if its key was compromised).
        """
        uscc = validate_uscc(uscc)
        when = now or datetime.now(UTC)
        with self.files.locked():
            ca = self._ca("ca")  # needs the passphrase: fail before making a key
            state = self.files.load()
            key_id = f"dept-{uscc}-{when.strftime('%Y%m%d%H%M%S')}"
            existing = {k.key_id for k in self.key_store.list()}
            suffix = 1
            while key_id in existing:
                suffix += 1
                key_id = f"dept-{uscc}-{when.strftime('%Y%m%d%H%M%S')}-{suffix}"
            info = self._generate(key_id, algorithm)
            cert = issue_department_cert(ca, name, uscc, info.public_key, validity, not_before=now)
            record = DepartmentRecord(name, uscc, key_id, _pem(cert), when.isoformat())
            earlier = [d.key_id for d in state.departments if d.uscc == uscc]
            state.departments.append(record)
            self.files.save(state)
            for old in earlier:  # after the save: a failure leaves a usable new certificate
                self._retire(old)
        identity = department_identity(cert)
        return DepartmentCert(identity.name, identity.uscc, key_id, cert, when)

    def _retire(self, key_id: str) -> None:
        try:
            if self.key_store.info(key_id).retired is None:
                self.key_store.retire(key_id)
        except NotFound:  # the key is gone already: nothing left that could sign
            _log.warning("department key %s is not in the key store; nothing to retire", key_id)

    # -- revocation -----------------------------------------------------------------------

    def revoke(
        self,
        serial: int,
        reason: str | x509.ReasonFlags = x509.ReasonFlags.unspecified,
        *,
        now: datetime | None = None,
    ) -> x509.CertificateRevocationList:
        """Revoke a department certificate, a child node's CA this node issued, or the
        issuing CA (only where the root key is held) by serial; the new CRL."""
        flag = parse_reason(reason)
        when = (now or datetime.now(UTC)).replace(microsecond=0)
        with self.files.locked():
            state = self.files.load()
            if any(int(r.serial, 16) == serial for r in state.revoked):
                raise AlreadyExists(f"serial {serial:x} is already revoked", reason="REVOKED")
            sub_ca = next(
                (r for r in state.sub_cas if _cert(r.cert_pem).serial_number == serial), None
            )
            if any(_cert(d.cert_pem).serial_number == serial for d in state.departments):
                issuer = "ca"
            elif sub_ca is not None:
                issuer = sub_ca.issuer
            elif _cert(state.ca.cert_pem).serial_number == serial:
                issuer = "root"
            else:
                raise NotFound(f"no certificate with serial {serial:x}", reason="UNKNOWN_SERIAL")
            if issuer == "root" and not state.root.key_id:
                raise FailedPrecondition(
                    f"serial {serial:x} is this node's CA, issued by its parent: revoke it "
                    "there ('zhida pki revoke' on the parent)",
                    reason="ROOT_NOT_HELD",
                )
            state.revoked.append(
                RevocationRecord(f"{serial:x}", issuer, when.isoformat(), flag.value)
            )
            self.files.save(state)
            crls = self._write_crls(state, now)
        return crls[issuer]

    def crls(self, *, refresh: bool = True) -> tuple[x509.CertificateRevocationList, ...]:
        """This node's CRLs (root — where its key is held — and issuing CA), re-signed
        first when half their life is gone, then the imported CRLs of the CAs above
        a child node's CA (:mod:`signing.deployment_ca`; refreshed by importing).

        ``refresh=False`` returns the stored CRLs as they are (no key needed).
        """
        now = datetime.now(UTC)
        own = _own_issuers(self.files.load())
        try:
            current = tuple(
                x509.load_pem_x509_crl(self.files.crl_path(w).read_bytes()) for w in own
            )
        except (FileNotFoundError, ValueError):
            current = ()
        fresh = len(current) == len(own) and all(
            c.next_update_utc is not None and c.next_update_utc - now > CRL_VALIDITY / 2
            for c in current
        )
        if not fresh and (refresh or len(current) != len(own)):
            with self.files.locked():
                current = tuple(self._write_crls(self.files.load(), None).values())
        return current + self._upstream_crls()

    def _upstream_crls(self) -> tuple[x509.CertificateRevocationList, ...]:
        directory = self.files.upstream_crls_dir
        if not directory.is_dir():
            return ()
        return tuple(
            x509.load_pem_x509_crl(p.read_bytes()) for p in sorted(directory.glob("*.pem"))
        )

    def _write_crls(
        self, state: PkiState, now: datetime | None
    ) -> dict[str, x509.CertificateRevocationList]:
        out = {}
        number = int((now or datetime.now(UTC)).timestamp() * 1000)  # later CRLs sort later
        for which in _own_issuers(state):
            entries = [
                RevokedCertificate(
                    int(r.serial, 16),
                    datetime.fromisoformat(r.revoked_at),
                    parse_reason(r.reason),
                )
                for r in state.revoked
                if r.issuer == which
            ]
            crl = create_crl(self._ca(which), entries, crl_number=number, now=now)
            atomic_write(self.files.crl_path(which), crl.public_bytes(Encoding.PEM), mode=0o644)
            out[which] = crl
        return out

    # -- seals ----------------------------------------------------------------------------

    def seal_makers(self) -> list[PublicKeyTypes]:
        """Public keys of every seal-maker key, retired ones too (old seals stay valid)."""
        return [
            cast(PublicKeyTypes, k.public_key)
            for k in self.key_store.list()
            if k.key_id.startswith(SEAL_MAKER_KEY)
        ]

    def seals(self) -> list[Seal]:
        if not self.files.seals_dir.is_dir():
            return []
        paths = sorted(self.files.seals_dir.glob("*.json"))
        return [Seal.from_json(p.read_text(encoding="utf-8")) for p in paths]

    def seal_revocations(self) -> SealRevocations:
        try:
            return SealRevocations.from_json(self.files.seal_revocations_path.read_bytes())
        except FileNotFoundError:
            return SealRevocations()

    def create_seal(
        self,
        dept_uscc: str,
        *,
        purpose: SealPurpose = SealPurpose.LICENCE,
        valid_days: int = 3 * 365,
        valid_from: datetime | None = None,
        name: str | None = None,
        now: datetime | None = None,
    ) -> Seal:
        """A seal for the department, bound to its current certificate, made by seal-maker."""
        if not 1 <= valid_days <= 20 * 365:
            raise InvalidArgument("valid days must be 1 to 7300", reason="INVALID_VALIDITY")
        department = self.department(dept_uscc, at=now)
        start = (valid_from or now or datetime.now(UTC)).replace(microsecond=0)
        with self.files.locked():
            seal = create_seal(
                self.key_store,
                self.files.load().seal_maker_key_id,
                purpose=purpose,
                owner_name=department.name,
                owner_uscc=department.uscc,
                signer_certificates=[department.certificate],
                valid_from=start,
                valid_until=start + timedelta(days=valid_days),
                name=name,
                now=now,
            )
            path = self.files.seals_dir / f"{seal.seal_id}.json"
            atomic_write(path, seal.to_json().encode(), mode=0o644)
        return seal

    def revoke_seal(self, seal_id: str, reason: str, *, now: datetime | None = None) -> None:
        """Put the seal on the seal revocation list; every signature under it is refused."""
        if not reason.strip():
            raise InvalidArgument("a seal revocation needs a reason", reason="INVALID_REASON")
        with self.files.locked():
            if not (self.files.seals_dir / f"{seal_id}.json").is_file():
                raise NotFound(f"no seal {seal_id!r}", reason="UNKNOWN_SEAL")
            revocations = self.seal_revocations()
            if seal_id in revocations:
                raise AlreadyExists(f"seal {seal_id} is already revoked", reason="REVOKED")
            revocations.revoke(seal_id, reason, now)
            atomic_write(
                self.files.seal_revocations_path, revocations.to_json().encode(), mode=0o644
            )
