"""PKI and seal management of a deployment: the half of the facade the CLI drives.

:class:`DeploymentOps` is the base of :class:`signing.deployment.Deployment`
(use that): initialising the CAs, issuing and revoking department
certificates, keeping the CRLs current, making and revoking seals. State is
in files (:mod:`signing.deployment_state`); every change happens under the
deployment's lock.

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
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from signing.deployment_state import (
    CaRecord,
    DepartmentRecord,
    PkiFiles,
    PkiState,
    RevocationRecord,
)
from signing.keystore import FileKeyStore, KeyInfo
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

    def __init__(self, config: Config, key_store: FileKeyStore) -> None:
        self.config = config
        self.key_store = key_store
        self.files = PkiFiles(config.node.data_dir)

    def _generate(self, key_id: str, algorithm: str = "ES256") -> KeyInfo:
        if not self.key_store.encrypts:
            _log.warning(
                "writing PKI key %s UNENCRYPTED in %s: auth.dev_keys is true and neither "
                "ZHIDA_PKI_PASSPHRASE nor ZHIDA_PKI_PASSPHRASE_FILE is set (development only)",
                key_id,
                self.key_store.directory,
            )
        return self.key_store.generate(key_id, algorithm)

    # -- CAs ------------------------------------------------------------------------------

    def _initialise(self, root_name: str | None, ca_name: str | None, now: datetime | None) -> None:
        node = self.config.node
        with self.files.locked():
            if self.files.exists():
                raise AlreadyExists(
                    f"a PKI already exists in {self.files.dir}", reason="PKI_EXISTS"
                )
            # a national node's issuing CA sits one level down: a CA must be below its parent
            level = max(node.level, Level.PROVINCE)
            ca_key = f"pki-ca-{level.name.lower()}"
            for key_id in (ROOT_KEY, ca_key, SEAL_MAKER_KEY):
                if any(k.key_id == key_id for k in self.key_store.list()):
                    raise AlreadyExists(
                        f"key {key_id!r} already exists in {self.key_store.directory}",
                        reason="PKI_EXISTS",
                    )
                self._generate(key_id)
            root = create_root_ca(
                root_name or f"zhida 部署根CA {node.name}",
                key=self.key_store.certificate_issuer_key(ROOT_KEY),
                now=now,
            )
            ca = create_intermediate_ca(
                root,
                ca_name or f"zhida 签发CA {node.name} {node.region_code}",
                level,
                key=self.key_store.certificate_issuer_key(ca_key),
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
        return CertificateAuthority(
            _cert(record.cert_pem),
            self.key_store.certificate_issuer_key(record.key_id),
            Level[record.level],
        )

    @property
    def root_certificate(self) -> x509.Certificate:
        return _cert(self.files.load().root.cert_pem)

    @property
    def ca_certificate(self) -> x509.Certificate:
        return _cert(self.files.load().ca.cert_pem)

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
        """Generate a key in the store and issue its certificate from the issuing CA."""
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
            state.departments.append(record)
            self.files.save(state)
        identity = department_identity(cert)
        return DepartmentCert(identity.name, identity.uscc, key_id, cert, when)

    # -- revocation -----------------------------------------------------------------------

    def revoke(
        self,
        serial: int,
        reason: str | x509.ReasonFlags = x509.ReasonFlags.unspecified,
        *,
        now: datetime | None = None,
    ) -> x509.CertificateRevocationList:
        """Revoke a department certificate (or the issuing CA) by serial; the new CRL."""
        flag = parse_reason(reason)
        when = (now or datetime.now(UTC)).replace(microsecond=0)
        with self.files.locked():
            state = self.files.load()
            if any(int(r.serial, 16) == serial for r in state.revoked):
                raise AlreadyExists(f"serial {serial:x} is already revoked", reason="REVOKED")
            if any(_cert(d.cert_pem).serial_number == serial for d in state.departments):
                issuer = "ca"
            elif _cert(state.ca.cert_pem).serial_number == serial:
                issuer = "root"
            else:
                raise NotFound(f"no certificate with serial {serial:x}", reason="UNKNOWN_SERIAL")
            state.revoked.append(
                RevocationRecord(f"{serial:x}", issuer, when.isoformat(), flag.value)
            )
            self.files.save(state)
            crls = self._write_crls(state, now)
        return crls[0] if issuer == "root" else crls[1]

    def crls(self, *, refresh: bool = True) -> tuple[x509.CertificateRevocationList, ...]:
        """(root CRL, issuing-CA CRL), re-signed first when half their life is gone.

        ``refresh=False`` returns the stored CRLs as they are (no key needed).
        """
        now = datetime.now(UTC)
        try:
            current = tuple(
                x509.load_pem_x509_crl(self.files.crl_path(w).read_bytes()) for w in ("root", "ca")
            )
        except (FileNotFoundError, ValueError):
            current = ()
        if len(current) == 2 and all(
            c.next_update_utc is not None and c.next_update_utc - now > CRL_VALIDITY / 2
            for c in current
        ):
            return current
        if not refresh and len(current) == 2:
            return current
        with self.files.locked():
            return self._write_crls(self.files.load(), None)

    def _write_crls(
        self, state: PkiState, now: datetime | None
    ) -> tuple[x509.CertificateRevocationList, ...]:
        out = []
        number = int((now or datetime.now(UTC)).timestamp() * 1000)  # later CRLs sort later
        for which in ("root", "ca"):
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
            out.append(crl)
        return tuple(out)

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
