"""One deployment PKI for a local federation: a shared root, node TLS certs, signing CAs.

The local launcher (:mod:`exchange.federation.local`) runs several nodes of
ONE deployment on this machine. Left alone, every node would make its own
signing PKI on first run (:func:`licence_vault.deployment_signer.open_deployment`)
and no node would trust another's licences. :class:`DeploymentRoot` makes
the deployment's secrets once, under ``<base>/deployment``::

    keys/pki-root.*            the deployment root CA key (FileKeyStore, dev mode)
    keys/seal-maker.*          the deployment's seal maker (制章者) key
    keys/pki-nodeca-<level>.*  the CAs that issue node TLS certificates, per level
    root.crt, nodeca-<level>.crt
    audit-holder.key           the holder-hash secret every node's audit log shares

and provisions each node's data directory before its first start, using
only the public pieces of :mod:`signing` (no change to how a node opens its
deployment):

* ``pki/node.crt``, ``node.key``, ``ca.crt``: the node's mTLS certificate
  from the CA of its level (as ``deploy/compose/make_node_certs.py`` does),
  chaining to the shared root — the ``[federation] tls_*`` defaults;
* ``pki/state.json`` + ``keys/pki``: a signing deployment whose root is the
  shared root (its key copied, so the node keeps its root CRL fresh), whose
  issuing CA is the node's own (made here, at the node's level, never below
  province, like ``Deployment.init``) and whose seal maker is the shared one;
  then a certificate and a 电子证照专用章 for each department the node signs
  for. A licence issued by 湖南 therefore chains to the root 湖北 trusts;
* ``keys/audit-holder.key``: the shared holder-hash key, so a holder's
  events and licence-index entries hash alike on every node.

Everything is idempotent: what exists is kept. Development only — the keys
are unencrypted, and a production deployment keeps its root offline.

Example::

    root = DeploymentRoot.open_or_create(base / "deployment")
    root.provision(node_config, departments={"湖南省市场监督管理局": "11430000…"})
    bundle = federation_bundle([hubei_config, hunan_config])   # one offline trust file
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit_log.keys import HOLDER_KEY_FILE
from signing.bundle import VerifierBundle
from signing.deployment import Deployment
from signing.deployment_ops import ROOT_KEY, SEAL_MAKER_KEY
from signing.deployment_state import CaRecord, PkiFiles, PkiState
from signing.keystore import FileKeyStore
from signing.node_certs import NodeTlsFiles, issue_node_cert
from signing.pki import CertificateAuthority, create_intermediate_ca, create_root_ca
from signing.seal import Seal, SealRevocations
from signing.trust import TrustBundle
from zhida.config import Config
from zhida.files import atomic_write
from zhida.regions import Level, parse_region

__all__ = ["DeploymentRoot", "departments_for", "federation_bundle", "quiet_dev_key_warnings"]

_NODE_CA_NAMES = {
    Level.PROVINCE: "zhida 省级节点CA",
    Level.CITY: "zhida 市级节点CA",
    Level.COUNTY: "zhida 县级节点CA",
}


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


@contextlib.contextmanager
def quiet_dev_key_warnings() -> Iterator[None]:
    """Silence "writing PKI key … UNENCRYPTED" while provisioning (said once by the caller)."""
    logger = logging.getLogger("signing.deployment_ops")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class DeploymentRoot:
    """The shared secrets of a local deployment; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        store: FileKeyStore,
        root: CertificateAuthority,
        node_cas: Mapping[Level, CertificateAuthority],
    ) -> None:
        self.directory = directory
        self.store = store
        self.root = root
        self.node_cas = dict(node_cas)

    @property
    def root_path(self) -> Path:
        return self.directory / "root.crt"

    @property
    def holder_key_path(self) -> Path:
        return self.directory / HOLDER_KEY_FILE

    @classmethod
    def open_or_create(cls, directory: Path) -> DeploymentRoot:
        """The deployment under ``directory``, made on first use."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = FileKeyStore(directory / "keys", dev_mode=True)
        known = {k.key_id for k in store.list()}
        for key_id in (ROOT_KEY, SEAL_MAKER_KEY):
            if key_id not in known:
                store.generate(key_id)
        root_path = directory / "root.crt"
        if root_path.exists():
            cert = x509.load_pem_x509_certificate(root_path.read_bytes())
            root = CertificateAuthority(
                cert, store.certificate_issuer_key(ROOT_KEY), Level.NATIONAL
            )
        else:
            root = create_root_ca("zhida 本地联邦根CA", key=store.certificate_issuer_key(ROOT_KEY))
            atomic_write(root_path, root.certificate.public_bytes(Encoding.PEM), mode=0o644)
        cas: dict[Level, CertificateAuthority] = {Level.NATIONAL: root}
        parent = root
        for level in (Level.PROVINCE, Level.CITY, Level.COUNTY):
            key_id = f"pki-nodeca-{level.name.lower()}"
            path = directory / f"nodeca-{level.name.lower()}.crt"
            if key_id not in known:
                store.generate(key_id)
            key = store.certificate_issuer_key(key_id)
            if path.exists():
                ca = CertificateAuthority(
                    x509.load_pem_x509_certificate(path.read_bytes()), key, level
                )
            else:
                ca = create_intermediate_ca(parent, _NODE_CA_NAMES[level], level, key=key)
                atomic_write(path, ca.certificate.public_bytes(Encoding.PEM), mode=0o644)
            cas[level] = parent = ca
        holder = directory / HOLDER_KEY_FILE
        if not holder.exists():
            secret = base64.b64encode(secrets.token_bytes(32)) + b"\n"
            atomic_write(holder, secret, mode=0o600)
        return cls(directory, store, root, cas)

    # -- per node ------------------------------------------------------------------------

    def provision(self, config: Config, departments: Mapping[str, str]) -> None:
        """Node TLS files, signing deployment and audit holder key for ``config``'s node."""
        self.node_tls(config)
        self.signing(config, departments)
        self.share_holder_key(config)

    def node_tls(self, config: Config) -> NodeTlsFiles:
        """Write the node's mTLS certificate (from its level's CA) unless it exists."""
        fed = config.federation
        files = NodeTlsFiles(fed.tls_cert, fed.tls_key, fed.tls_ca)
        if fed.tls_cert.exists() and fed.tls_key.exists() and fed.tls_ca.exists():
            return files
        level = config.node.level
        chain = tuple(
            self.node_cas[lv].certificate for lv in reversed(Level) if Level.NATIONAL < lv <= level
        )
        creds = issue_node_cert(
            self.node_cas[level],
            config.node.region_code,
            root=self.root.certificate,
            chain=chain,
            name=config.node.name,
        )
        for path in (files.cert, files.key, files.ca):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return creds.write_files(files)

    def signing(self, config: Config, departments: Mapping[str, str]) -> None:
        """The node's signing deployment under the shared root (kept if it exists)."""
        files = PkiFiles(config.node.data_dir)
        if not files.exists():
            keys_dir = config.node.data_dir / "keys" / "pki"
            store = FileKeyStore(keys_dir, dev_mode=True)
            for key_id in (ROOT_KEY, SEAL_MAKER_KEY):
                for source in self.store.directory.glob(f"{key_id}.*"):
                    shutil.copy2(source, keys_dir / source.name)
            node = config.node
            level = max(node.level, Level.PROVINCE)
            ca_key = f"pki-ca-{level.name.lower()}"
            if not any(k.key_id == ca_key for k in store.list()):
                store.generate(ca_key)
            ca = create_intermediate_ca(
                self.root,
                f"zhida 签发CA {node.name} {node.region_code}",
                level,
                key=store.certificate_issuer_key(ca_key),
            )
            with files.locked():
                files.save(
                    PkiState(
                        root=CaRecord(ROOT_KEY, _pem(self.root.certificate), Level.NATIONAL.name),
                        ca=CaRecord(ca_key, _pem(ca.certificate), level.name),
                        seal_maker_key_id=SEAL_MAKER_KEY,
                    )
                )
        deployment = Deployment.open(config)
        deployment.crls()  # written on first use, re-signed when stale
        have = {d.uscc for d in deployment.departments()}
        for name, uscc in sorted(departments.items(), key=lambda kv: kv[1]):
            if uscc not in have:
                deployment.issue_department_cert(name, uscc)
                deployment.create_seal(uscc)

    def share_holder_key(self, config: Config) -> None:
        """Give the node the deployment's audit holder-hash key (before its log's first event)."""
        target = config.keys_dir / HOLDER_KEY_FILE
        if target.exists():
            return
        config.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(config.keys_dir, 0o700)
        atomic_write(target, self.holder_key_path.read_bytes(), mode=0o600)


def departments_for(
    region_code: str, regions: Iterable[str], departments: Mapping[str, str]
) -> dict[str, str]:
    """The departments the node of ``region_code`` signs for: those whose USCC region
    (characters 3-8) lies in its region and in no deeper node's among ``regions``.

    >>> departments_for("420100", ["100000", "420000", "420100", "420102"],
    ...                 {"武汉市市场监督管理局": "114201000000301708",
    ...                  "武汉市江岸区市场监督管理局": "11420102000040176F"})
    {'武汉市市场监督管理局': '114201000000301708'}
    """
    nodes = [parse_region(code) for code in regions]
    out: dict[str, str] = {}
    for name, uscc in departments.items():
        try:
            home = parse_region(uscc[2:8])
        except ValueError:
            continue
        holders = [n for n in nodes if n.contains(home)]
        if holders and max(holders, key=lambda n: n.level).code == region_code:
            out[name] = uscc
    return out


def federation_bundle(configs: Iterable[Config]) -> VerifierBundle:
    """One offline verifier bundle for every node of the deployment: the shared root,
    each node's issuing CA and CRLs, the seal makers, every seal and seal revocation."""
    roots: dict[bytes, x509.Certificate] = {}
    cas: dict[bytes, x509.Certificate] = {}
    crls: list[x509.CertificateRevocationList] = []
    makers: dict[bytes, PublicKeyTypes] = {}
    seals: dict[str, Seal] = {}
    revoked: list[tuple[str, datetime, str]] = []
    for config in configs:
        part = Deployment.open(config).verifier_bundle(refresh_crls=False)
        for cert in part.trust.roots:
            roots[cert.fingerprint(hashes.SHA256())] = cert
        for cert in part.trust.intermediates:
            cas[cert.fingerprint(hashes.SHA256())] = cert
        crls.extend(part.trust.crls)
        for key in part.seal_makers:
            makers[key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)] = key
        for seal in part.seals:
            seals[seal.seal_id] = seal
            entry = part.seal_revocations.get(seal.seal_id)
            if entry is not None:
                revoked.append((seal.seal_id, entry[0], entry[1]))
    trust = TrustBundle(tuple(roots.values()), tuple(cas.values()), tuple(crls))
    return VerifierBundle(
        trust, tuple(makers.values()), tuple(seals.values()), SealRevocations(revoked)
    )
