"""Node certificates for mutual TLS between federation nodes (issue 8).

Every exchange node holds one certificate from the deployment PKI
(:mod:`signing.pki`): EKUs serverAuth *and* clientAuth (a node both serves
and calls its neighbours), KeyUsage digitalSignature, SAN = the node's IP
addresses (``127.0.0.1`` by default) and DNS names, and a subject that names
the node:

* ``serialNumber`` (2.5.4.5) = the node's GB/T 2260 region code (``430000``),
* ``OU`` = ``zhida-node:<level>`` (``zhida-node:province``),
* ``CN`` = the node's name, ``O`` = the issuing CA's organisation.

A CA may only issue node certificates for its own level or below (a county
CA cannot mint a province node); a national node's certificate may come from
the root or from a province-level issuing CA, the way
:class:`signing.deployment.Deployment` places a national node's issuing CA.

:class:`NodeCredentials` writes the PEM files gRPC wants
(``grpc.ssl_server_credentials`` with ``require_client_auth=True`` and
``grpc.ssl_channel_credentials``). :class:`NodeVerifier` (in
:mod:`signing.node_verifier`, re-exported here) checks a peer's certificate —
as ``context.auth_context()`` gives it (``x509_pem_cert``) or as the ``x5c``
of a signed assertion — with cryptography's X.509 verifier against THIS
deployment's root, optionally against CRLs, and returns the peer node's
:class:`NodeIdentity`. Every refusal is one :class:`NodeAuthError`
(UNAUTHENTICATED, reason ``NODE_CERT_INVALID``) whose ``failure`` says which
check failed. The TLS handshake already refuses a certificate from another
deployment (wrong root); the verifier is the second, explicit check that
also pins EKUs, the subject format and the CA's level.

Example::

    root = create_root_ca("zhida 联邦根CA")
    hunan = create_intermediate_ca(root, "湖南省政务服务CA", Level.PROVINCE)
    creds = issue_node_cert(hunan, "430000", root=root.certificate)
    files = creds.write(data_dir / "pki")                  # node.crt, node.key, ca.crt
    server.add_secure_port("127.0.0.1:0", files.load().server_credentials())
    verifier = NodeVerifier([root.certificate])
    peer = verifier.verify_auth_context(context.auth_context())   # in a handler
    peer.region_code                                              # '430000'
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import NameOID

from signing.algorithms import ES256, algorithm_for_key
from signing.node_verifier import (
    NODE_EKUS,
    NODE_UNIT_PREFIX,
    NodeAuthError,
    NodeIdentity,
    NodeVerifier,
    ca_level,
    may_issue,
    node_identity,
)
from signing.pki import CertificateAuthority
from zhida.errors import InvalidArgument
from zhida.files import atomic_write
from zhida.regions import RegionCodeError, parse_region

__all__ = [
    "NODE_UNIT_PREFIX",
    "NodeAuthError",
    "NodeCredentials",
    "NodeIdentity",
    "NodeTlsFiles",
    "NodeVerifier",
    "ca_level",
    "issue_node_cert",
    "node_identity",
]

NODE_VALIDITY = timedelta(days=365)
_BACKDATE = timedelta(minutes=5)
# digitalSignature only: ECDHE key exchange needs nothing else
_TLS_KEY_USAGE = x509.KeyUsage(True, False, False, False, False, False, False, False, False)


@dataclass(frozen=True)
class NodeTlsFiles:
    """Where a node's TLS material lives: ``cert`` (leaf + CAs), ``key``, ``ca`` (the root)."""

    cert: Path
    key: Path
    ca: Path

    def load(self) -> NodeCredentials:
        """Read the three PEM files back; InvalidArgument if they do not fit together."""
        certs = x509.load_pem_x509_certificates(self.cert.read_bytes())
        key = load_pem_private_key(self.key.read_bytes(), password=None)
        root = x509.load_pem_x509_certificate(self.ca.read_bytes())
        return NodeCredentials(key, certs[0], tuple(certs[1:]), root)  # type: ignore[arg-type]


@dataclass(frozen=True)
class NodeCredentials:
    """A node's key, certificate, the CAs between it and the root, and the root."""

    private_key: CertificateIssuerPrivateKeyTypes
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    """Issuing CAs, nearest first, without the root."""
    root: x509.Certificate

    def __post_init__(self) -> None:
        if self.private_key.public_key() != self.certificate.public_key():
            raise InvalidArgument(
                "the node key does not belong to the node certificate", reason="KEY_CERT_MISMATCH"
            )

    @property
    def identity(self) -> NodeIdentity:
        return node_identity(self.certificate)

    def key_pem(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM: what gRPC's TLS credentials take."""
        return self.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def chain_pem(self) -> bytes:
        """Leaf first, then the issuing CAs: the chain the node presents in the handshake."""
        return b"".join(c.public_bytes(Encoding.PEM) for c in (self.certificate, *self.chain))

    def root_pem(self) -> bytes:
        return self.root.public_bytes(Encoding.PEM)

    def x5c(self) -> tuple[str, ...]:
        """The chain as a JOSE ``x5c`` (standard base64 DER, leaf first, no root)."""
        return tuple(
            base64.b64encode(c.public_bytes(Encoding.DER)).decode("ascii")
            for c in (self.certificate, *self.chain)
        )

    def write(self, directory: Path) -> NodeTlsFiles:
        """Write ``node.crt``, ``node.key`` (mode 0600) and ``ca.crt`` atomically."""
        files = NodeTlsFiles(directory / "node.crt", directory / "node.key", directory / "ca.crt")
        return self.write_files(files)

    def write_files(self, files: NodeTlsFiles) -> NodeTlsFiles:
        """Write the chain, key (mode 0600) and root to the paths ``files`` names."""
        atomic_write(files.key, self.key_pem(), mode=0o600)
        atomic_write(files.cert, self.chain_pem(), mode=0o644)
        atomic_write(files.ca, self.root_pem(), mode=0o644)
        return files

    def server_credentials(self) -> grpc.ServerCredentials:
        """TLS for the node's federation port; peers must present a cert from the root."""
        return grpc.ssl_server_credentials(
            [(self.key_pem(), self.chain_pem())],
            root_certificates=self.root_pem(),
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """TLS for calls to a neighbour: trust only the root, present this node's chain."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_pem(),
            private_key=self.key_pem(),
            certificate_chain=self.chain_pem(),
        )


def issue_node_cert(
    ca: CertificateAuthority,
    region_code: str,
    *,
    root: x509.Certificate,
    chain: Sequence[x509.Certificate] | None = None,
    name: str | None = None,
    dns_names: Iterable[str] = ("localhost",),
    ip_addresses: Iterable[str] = ("127.0.0.1",),
    key: CertificateIssuerPrivateKeyTypes | None = None,
    validity: timedelta = NODE_VALIDITY,
    now: datetime | None = None,
) -> NodeCredentials:
    """A TLS certificate for the node of ``region_code``, issued by ``ca``.

    ``chain`` lists the CAs between the leaf and ``root`` (default: ``ca``
    alone, or nothing when ``ca`` is the root). A new ES256 key is made unless
    ``key`` is given. InvalidArgument for a bad region code or SAN entry, or a
    CA whose level is below the node's (CA_LEVEL_TOO_LOW).
    """
    try:
        region = parse_region(region_code)
    except RegionCodeError as exc:
        raise InvalidArgument(str(exc), reason="INVALID_REGION_CODE") from None
    if not may_issue(ca.level, region.level):
        raise InvalidArgument(
            f"a {ca.level.name} CA may not issue a certificate for the "
            f"{region.level.name} node {region.code}",
            reason="CA_LEVEL_TOO_LOW",
        )
    try:
        ips = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    except ValueError as exc:
        raise InvalidArgument(f"bad IP address for the SAN: {exc}", reason="INVALID_SAN") from None
    sans: list[x509.GeneralName] = [*ips, *(x509.DNSName(d) for d in dns_names)]
    if not sans:
        raise InvalidArgument("a node certificate needs a SAN", reason="INVALID_SAN")
    key = key or ES256.generate_private_key()
    algorithm_for_key(key)
    if chain is None:
        chain = () if ca.certificate == root else (ca.certificate,)
    start = (now or datetime.now(UTC)) - _BACKDATE
    end = min(start + validity, ca.certificate.not_valid_after_utc)
    orgs = ca.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(orgs[0].value) if orgs else "zhida"),
            x509.NameAttribute(
                NameOID.ORGANIZATIONAL_UNIT_NAME, NODE_UNIT_PREFIX + region.level.name.lower()
            ),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, region.code),
            x509.NameAttribute(NameOID.COMMON_NAME, name or f"zhida-node-{region.code}"),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_TLS_KEY_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(NODE_EKUS)), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    )
    cert = builder.sign(ca.private_key, algorithm_for_key(ca.private_key).x509_hash())
    return NodeCredentials(key, cert, tuple(chain), root)
