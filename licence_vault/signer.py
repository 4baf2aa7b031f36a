"""How the vault signs: the :class:`LicenceSigner` interface and its implementations.

The vault never touches keys. It asks a :class:`LicenceSigner` whether an
issuing department has a usable seal (:meth:`~LicenceSigner.issuer`), to sign a
licence payload as the department's ``zhida-licence+jws``, to sign the
department's ``statuslist+jwt``, and optionally to render the sealed PDF.
Verification material (trust bundle, known seals) comes from the same place.

:class:`KeyStoreSigner` is built from the committed ``signing`` primitives:
a :class:`~signing.keystore.KeyStore` holding each department's key, its
certificate chain (:mod:`signing.pki`) and its electronic seal
(:mod:`signing.seal`). :func:`open_dev_signer` makes (first run) or loads a
*development* deployment under a directory — a root and a city CA, a seal
maker, and one key, certificate and 电子证照专用章 per department — the way
``auth.dev_keys`` makes development token keys. Production deployments plug
in the ``signing.deployment`` facade through :func:`open_signer`.

Example::

    signer = open_dev_signer(Path(".zhida/licence-signing"), DEMO_ORGS)
    seal = signer.issuer("11420102000040176F")          # FailedPrecondition if none
    token = signer.sign_licence("11420102000040176F", {"证照名称": "营业执照"})
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PublicKeyTypes,
)

from licence_vault.status_list import StatusList, sign_status_list_token
from signing.errors import VerificationError
from signing.jws import sign_jws
from signing.keystore import FileKeyStore, KeyStore
from signing.pki import (
    CertificateAuthority,
    cert_sha256,
    create_crl,
    create_intermediate_ca,
    create_root_ca,
    department_identity,
    issue_department_cert,
)
from signing.seal import Seal, SealPurpose, SealRegistry, SealRevocations, create_seal
from signing.trust import ChainVerifier, TrustBundle
from zhida.config import Config
from zhida.errors import FailedPrecondition
from zhida.files import atomic_write
from zhida.regions import Level

__all__ = [
    "NO_VALID_SEAL",
    "IssuerCredentials",
    "IssuerSeal",
    "KeyStoreSigner",
    "LicenceSigner",
    "open_dev_signer",
    "open_signer",
]

NO_VALID_SEAL = "ISSUER_NO_VALID_SEAL"
SEAL_MAKER_KEY = "seal-maker"
DEV_SEAL_YEARS = 3
DEV_CRL_VALIDITY = timedelta(days=90)  # fresh CRLs are made on every open


@dataclass(frozen=True, slots=True)
class IssuerSeal:
    """An issuing department able to sign now: its name and the seal it signs under."""

    issuer_code: str
    issuer_name: str
    seal_id: str
    seal_name: str
    seal_valid_until: datetime
    seal_picture: bytes


@runtime_checkable
class LicenceSigner(Protocol):
    """What the vault needs from the signing side. Implementations are thread-safe."""

    def issuer(self, issuer_code: str, *, at: datetime | None = None) -> IssuerSeal:
        """The department's usable seal; FailedPrecondition(ISSUER_NO_VALID_SEAL) if none."""
        ...

    def sign_licence(self, issuer_code: str, payload: Mapping[str, Any]) -> str:
        """The payload as the department's sealed ``zhida-licence+jws``."""
        ...

    def sign_status_list(self, issuer_code: str, uri: str, status_list: StatusList) -> str:
        """The department's ``statuslist+jwt`` for ``uri``."""
        ...

    def trust_bundle(self) -> TrustBundle: ...

    def seal_registry(self) -> SealRegistry: ...

    def chain_verifier(self) -> ChainVerifier: ...

    def seals(self) -> list[Seal]:
        """Every seal the deployment's departments sign with."""
        ...

    def seal_maker_keys(self) -> list[PublicKeyTypes]:
        """The public keys of the trusted seal makers."""
        ...


@dataclass(frozen=True)
class IssuerCredentials:
    """One department's signing identity: key id in the store, chain (leaf first), seal."""

    key_id: str
    chain: tuple[x509.Certificate, ...]
    seal: Seal

    @property
    def name(self) -> str:
        return department_identity(self.chain[0]).name


class KeyStoreSigner:
    """A :class:`LicenceSigner` over a key store, certificates and seals."""

    def __init__(
        self,
        key_store: KeyStore,
        credentials: Mapping[str, IssuerCredentials],
        trust: TrustBundle,
        seals: SealRegistry,
        seal_makers: Sequence[PublicKeyTypes],
    ) -> None:
        self.key_store = key_store
        self.credentials = dict(credentials)
        self._trust = trust
        self._seals = seals
        self._makers = list(seal_makers)
        self._chains = ChainVerifier(trust)

    def issuer(self, issuer_code: str, *, at: datetime | None = None) -> IssuerSeal:
        creds = self.credentials.get(issuer_code)
        if creds is None:
            raise FailedPrecondition(
                f"department {issuer_code} has no electronic seal in this deployment",
                reason=NO_VALID_SEAL,
                metadata={"issuer_code": issuer_code},
            )
        when = at or datetime.now(UTC)
        try:
            self._seals.check(creds.seal.seal_id, at=when, signer_hash=cert_sha256(creds.chain[0]))
            self._chains.verify(creds.chain[0], creds.chain[1:], at=when)
        except VerificationError as exc:
            raise FailedPrecondition(
                f"department {issuer_code} has no valid seal: {exc.message}",
                reason=NO_VALID_SEAL,
                metadata={"issuer_code": issuer_code, "failure": exc.reason},
            ) from None
        if self.key_store.info(creds.key_id).retired is not None:
            raise FailedPrecondition(
                f"the signing key of department {issuer_code} is retired",
                reason=NO_VALID_SEAL,
                metadata={"issuer_code": issuer_code},
            )
        return IssuerSeal(
            issuer_code=issuer_code,
            issuer_name=creds.name,
            seal_id=creds.seal.seal_id,
            seal_name=creds.seal.name,
            seal_valid_until=creds.seal.valid_until,
            seal_picture=creds.seal.picture.data,
        )

    def _creds(self, issuer_code: str) -> IssuerCredentials:
        creds = self.credentials.get(issuer_code)
        if creds is None:
            self.issuer(issuer_code)  # raises with the reason
            raise AssertionError("unreachable")
        return creds

    def sign_licence(self, issuer_code: str, payload: Mapping[str, Any]) -> str:
        creds = self._creds(issuer_code)
        return sign_jws(payload, self.key_store, creds.key_id, creds.chain, creds.seal.seal_id)

    def sign_status_list(self, issuer_code: str, uri: str, status_list: StatusList) -> str:
        creds = self._creds(issuer_code)
        return sign_status_list_token(
            self.key_store, creds.key_id, creds.chain, uri=uri, status_list=status_list
        )

    def trust_bundle(self) -> TrustBundle:
        return self._trust

    def seal_registry(self) -> SealRegistry:
        return self._seals

    def chain_verifier(self) -> ChainVerifier:
        return self._chains

    def seals(self) -> list[Seal]:
        return [c.seal for c in self.credentials.values()]

    def seal_maker_keys(self) -> list[PublicKeyTypes]:
        return list(self._makers)


# -- the development deployment ------------------------------------------------------


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on ``directory/.lock`` (several node workers start at once)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / ".lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_ca(path: Path, ca: CertificateAuthority) -> None:
    key_pem = ca.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    doc = {
        "level": ca.level.name,
        "certificate": ca.certificate.public_bytes(serialization.Encoding.PEM).decode(),
        "key": key_pem.decode(),
    }
    atomic_write(path, json.dumps(doc, indent=2).encode())


def _read_ca(path: Path) -> CertificateAuthority:
    doc = json.loads(path.read_text(encoding="utf-8"))
    key = serialization.load_pem_private_key(doc["key"].encode(), password=None)
    cert = x509.load_pem_x509_certificate(doc["certificate"].encode())
    assert not isinstance(key, type(None))
    return CertificateAuthority(cert, _issuer_key(key), Level[doc["level"]])


def _issuer_key(key: Any) -> CertificateIssuerPrivateKeyTypes:
    return key  # type: ignore[no-any-return]


def open_dev_signer(
    directory: Path,
    departments: Mapping[str, str],
    *,
    region_name: str = "武汉市",
    now: datetime | None = None,
) -> KeyStoreSigner:
    """Load (or create on first use) a development signing deployment under ``directory``.

    ``departments`` maps department names to USCCs; each gets an ES256 key, a
    document-signing certificate from the city CA and a 电子证照专用章 valid for
    three years. CA keys are stored unencrypted: for development only.
    Departments added later are provisioned on the next open.
    """
    start = now or datetime.now(UTC)
    with _locked(directory):
        ca_dir = directory / "ca"
        ca_dir.mkdir(exist_ok=True, mode=0o700)
        root_path, city_path = ca_dir / "root.json", ca_dir / "city.json"
        if not root_path.exists():
            _write_ca(root_path, create_root_ca("zhida 开发环境根CA", now=start))
        root = _read_ca(root_path)
        if not city_path.exists():
            city_ca = create_intermediate_ca(root, f"{region_name}政务服务CA（开发）", Level.CITY)
            _write_ca(city_path, city_ca)
        city = _read_ca(city_path)
        store = FileKeyStore(directory / "keys", dev_mode=True)
        if not (directory / "keys" / f"{SEAL_MAKER_KEY}.meta.json").exists():
            store.generate(SEAL_MAKER_KEY)
        maker_public = store.public_key(SEAL_MAKER_KEY)

        dept_dir = directory / "departments"
        dept_dir.mkdir(exist_ok=True, mode=0o700)
        credentials: dict[str, IssuerCredentials] = {}
        seals: list[Seal] = []
        for name, uscc in sorted(departments.items(), key=lambda kv: kv[1]):
            path = dept_dir / f"{uscc}.json"
            key_id = f"dept-{uscc}"
            if not path.exists():
                if not (directory / "keys" / f"{key_id}.meta.json").exists():
                    store.generate(key_id)
                cert = issue_department_cert(city, name, uscc, store.public_key(key_id))
                seal = create_seal(
                    store,
                    SEAL_MAKER_KEY,
                    purpose=SealPurpose.LICENCE,
                    owner_name=name,
                    owner_uscc=uscc,
                    signer_certificates=[cert],
                    valid_from=start - timedelta(minutes=5),
                    valid_until=start + timedelta(days=365 * DEV_SEAL_YEARS),
                    now=start,
                )
                doc = {
                    "key_id": key_id,
                    "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
                    "seal": seal.to_json(),
                }
                atomic_write(path, json.dumps(doc, ensure_ascii=False, indent=2).encode())
            doc = json.loads(path.read_text(encoding="utf-8"))
            cert = x509.load_pem_x509_certificate(doc["certificate"].encode())
            seal = Seal.from_json(doc["seal"])
            seals.append(seal)
            credentials[uscc] = IssuerCredentials(
                doc["key_id"], (cert, city.certificate, root.certificate), seal
            )
        revocations_path = directory / "seal-revocations.json"
        revocations = (
            SealRevocations.from_json(revocations_path.read_text(encoding="utf-8"))
            if revocations_path.exists()
            else SealRevocations()
        )
    trust = TrustBundle(
        roots=(root.certificate,),
        intermediates=(city.certificate,),
        crls=(
            create_crl(root, [], validity=DEV_CRL_VALIDITY),
            create_crl(city, [], validity=DEV_CRL_VALIDITY),
        ),
    )
    registry = SealRegistry([maker_public], revocations, seals)
    return KeyStoreSigner(store, credentials, trust, registry, [maker_public])


def open_signer(config: Config) -> tuple[LicenceSigner, Any]:
    """The node's signer and PDF renderer (None when PDFs cannot be made).

    Uses the node's signing deployment (:mod:`signing.deployment`, through
    :mod:`licence_vault.deployment_signer`); a build without it falls back to
    the development deployment under ``<data_dir>/licence-signing`` with a
    seal for every department of :data:`zhida.auth.mint.DEMO_ORGS`, JWS only.
    """
    try:
        from licence_vault.deployment_signer import (
            DeploymentPdf,
            DeploymentSigner,
            open_deployment,
        )
    except ImportError:  # pragma: no cover - a build without the deployment facade
        from zhida.auth.mint import DEMO_ORGS

        return open_dev_signer(config.node.data_dir / "licence-signing", DEMO_ORGS), None
    deployment = open_deployment(config)
    return DeploymentSigner(deployment), DeploymentPdf(deployment)
