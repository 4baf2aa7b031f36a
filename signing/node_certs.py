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
``grpc.ssl_channel_credentials``). :class:`NodeVerifier` checks a peer's
certificate — as ``context.auth_context()`` gives it (``x509_pem_cert``) or
as the ``x5c`` of a signed assertion — with cryptography's X.509 verifier
against THIS deployment's root, optionally against CRLs, and returns the peer
node's :class:`NodeIdentity`. Every refusal is one :class:`NodeAuthError`
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
import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from cryptography.x509 import verification as xv
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signing.algorithms import ES256, algorithm_for_key
from signing.errors import Failure
from signing.pki import CertificateAuthority, cert_sha256
from zhida.errors import InvalidArgument, Unauthenticated
from zhida.files import atomic_write
from zhida.regions import Level, RegionCodeError, parse_region

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

NODE_UNIT_PREFIX = "zhida-node:"
NODE_VALIDITY = timedelta(days=365)
_BACKDATE = timedelta(minutes=5)
_NODE_EKUS = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
# digitalSignature only: ECDHE key exchange needs nothing else
_TLS_KEY_USAGE = x509.KeyUsage(True, False, False, False, False, False, False, False, False)


class NodeAuthError(Unauthenticated):
    """A peer node's certificate was refused; ``failure`` says which check failed."""

    default_reason = "NODE_CERT_INVALID"

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message, metadata={"failure": failure.value})
        self.failure = failure


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Who a verified node certificate belongs to."""

    region_code: str
    level: Level
    name: str
    serial_number: int
    fingerprint: str
    """Lower-case hex SHA-256 of the certificate's DER."""


def ca_level(cert: x509.Certificate) -> Level:
    """The level of a zhida CA certificate, read from its path length (``COUNTY - level``)."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca or constraints.path_length is None:
        raise InvalidArgument(
            f"{cert.subject.rfc4514_string()} is not a zhida CA", reason="NOT_A_ZHIDA_CA"
        )
    return Level(max(int(Level.NATIONAL), int(Level.COUNTY) - constraints.path_length))


def _may_issue(issuer_level: Level, node_level: Level) -> bool:
    return issuer_level <= max(node_level, Level.PROVINCE)


def node_identity(cert: x509.Certificate) -> NodeIdentity:
    """Read the region code, level and name from a node certificate (no chain check).

    InvalidArgument (NOT_A_NODE_CERT) if the subject is not a node's.
    """

    def one(oid: x509.ObjectIdentifier) -> str:
        values = cert.subject.get_attributes_for_oid(oid)
        if len(values) != 1:
            raise InvalidArgument(
                f"{cert.subject.rfc4514_string()} is not a zhida node certificate",
                reason="NOT_A_NODE_CERT",
            )
        return str(values[0].value)

    unit = one(NameOID.ORGANIZATIONAL_UNIT_NAME)
    code = one(NameOID.SERIAL_NUMBER)
    try:
        region = parse_region(code)
    except RegionCodeError:
        raise InvalidArgument(
            f"node certificate names region {code!r}", reason="NOT_A_NODE_CERT"
        ) from None
    if unit != NODE_UNIT_PREFIX + region.level.name.lower():
        raise InvalidArgument(
            f"node certificate OU {unit!r} does not match region {code} "
            f"({region.level.name.lower()} level)",
            reason="NOT_A_NODE_CERT",
        )
    return NodeIdentity(
        region.code, region.level, one(NameOID.COMMON_NAME), cert.serial_number, cert_sha256(cert)
    )


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
    if not _may_issue(ca.level, region.level):
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
        .add_extension(x509.ExtendedKeyUsage(list(_NODE_EKUS)), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    )
    cert = builder.sign(ca.private_key, algorithm_for_key(ca.private_key).x509_hash())
    return NodeCredentials(key, cert, tuple(chain), root)


# -- verification ------------------------------------------------------------------


def _require_node_ekus(
    _policy: xv.Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage
) -> None:
    if not all(oid in eku for oid in _NODE_EKUS):
        raise ValueError("leaf certificate lacks EKU serverAuth + clientAuth (not a node cert)")


_EE_POLICY = xv.ExtensionPolicy.webpki_defaults_ee().require_present(
    x509.ExtendedKeyUsage, xv.Criticality.AGNOSTIC, _require_node_ekus
)
_CA_POLICY = xv.ExtensionPolicy.webpki_defaults_ca()


@dataclass(frozen=True, slots=True)
class _Verified:
    identity: NodeIdentity
    path: tuple[x509.Certificate, ...]
    key: PublicKeyTypes
    not_before: datetime
    not_after: datetime


class NodeVerifier:
    """Verifies peer node certificates against one deployment's root(s). Thread-safe.

    ``intermediates`` are CA certificates the verifier may use to build paths
    when a peer presents only its leaf; ``crls`` (optional) are checked for
    every certificate below the root whose issuer has one — a stale CRL
    refuses (REVOCATION_UNAVAILABLE). Verified paths are cached by the
    presented certificates while ``at`` lies inside their validity.
    """

    def __init__(
        self,
        roots: Sequence[x509.Certificate],
        intermediates: Sequence[x509.Certificate] = (),
        crls: Sequence[x509.CertificateRevocationList] = (),
        *,
        cache_size: int = 256,
    ) -> None:
        if not roots:
            raise InvalidArgument("a node verifier needs a root", reason="NO_ROOTS")
        self._store = xv.Store(list(roots))
        self._intermediates = list(intermediates)
        self._crls: dict[x509.Name, x509.CertificateRevocationList] = {}
        for crl in crls:
            known = self._crls.get(crl.issuer)
            if known is None or crl.last_update_utc > known.last_update_utc:
                self._crls[crl.issuer] = crl
        self._crl_signed: dict[tuple[int, bytes], bool] = {}  # (id(crl), issuer DER) -> ok
        self._cache: OrderedDict[tuple[bytes, ...], _Verified] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def verify(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate] = (),
        *,
        at: datetime | None = None,
    ) -> NodeIdentity:
        """Verify a node certificate at ``at`` (default now); NodeAuthError if refused."""
        return self._verified(leaf, intermediates, at or datetime.now(UTC)).identity

    def verify_key(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate] = (),
        *,
        at: datetime | None = None,
        ders: tuple[bytes, ...] | None = None,
    ) -> tuple[NodeIdentity, PublicKeyTypes]:
        """:meth:`verify`, also returning the leaf's public key (for signed assertions).

        ``ders``: the certificates' DER bytes (leaf first) when the caller has
        them already, e.g. decoded from a token's ``x5c``: they are the cache
        key, and re-encoding them costs most of a cached verification.
        """
        verified = self._verified(leaf, intermediates, at or datetime.now(UTC), ders)
        return verified.identity, verified.key

    def verify_pem(self, pem: bytes | str, *, at: datetime | None = None) -> NodeIdentity:
        """Verify PEM certificates, leaf first (e.g. grpc's ``x509_pem_cert``)."""
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise NodeAuthError(Failure.MALFORMED, f"unreadable peer certificate: {exc}") from None
        return self.verify(certs[0], certs[1:], at=at)

    def verify_auth_context(
        self, auth_context: Mapping[str, Iterable[bytes]], *, at: datetime | None = None
    ) -> NodeIdentity:
        """Verify the peer of a gRPC call from ``ServicerContext.auth_context()``.

        The leaf is ``x509_pem_cert``; the CAs the peer sent come from
        ``x509_pem_cert_chain`` (on a server it lacks the leaf, on a client it
        starts with it). A call without a client certificate (plaintext, or
        TLS without mTLS) is refused.
        """
        leaf_pem = b"".join(auth_context.get("x509_pem_cert", ()))
        if not leaf_pem:
            raise NodeAuthError(Failure.MALFORMED, "the peer presented no client certificate")
        try:
            leaf = x509.load_pem_x509_certificate(leaf_pem)
            sent = x509.load_pem_x509_certificates(
                b"".join(auth_context.get("x509_pem_cert_chain", ())) or leaf_pem
            )
        except ValueError as exc:
            raise NodeAuthError(Failure.MALFORMED, f"unreadable peer certificate: {exc}") from None
        return self.verify(leaf, [c for c in sent if c != leaf], at=at)

    def _verified(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        at: datetime,
        ders: tuple[bytes, ...] | None = None,
    ) -> _Verified:
        key = ders or tuple(c.public_bytes(Encoding.DER) for c in (leaf, *intermediates))
        entry = self._cache.get(key)
        if entry is None or not entry.not_before <= at <= entry.not_after:
            entry = self._build(leaf, intermediates, at)
            with self._lock:
                self._cache[key] = entry
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        self._check_revocation(entry.path, at)
        return entry

    def _build(
        self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], at: datetime
    ) -> _Verified:
        verifier = (
            xv.PolicyBuilder()
            .store(self._store)
            .time(at)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
            .build_client_verifier()
        )
        try:
            path = tuple(verifier.verify(leaf, [*intermediates, *self._intermediates]).chain)
        except xv.VerificationError as exc:
            failure = Failure.CHAIN_INVALID
            if not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
                failure = Failure.CERT_EXPIRED
            raise NodeAuthError(
                failure,
                f"no valid path from {leaf.subject.rfc4514_string()} to this deployment's "
                f"root: {exc}",
            ) from None
        try:
            identity = node_identity(leaf)
            issuer_level = ca_level(path[1])
        except InvalidArgument as exc:
            raise NodeAuthError(Failure.CHAIN_INVALID, exc.message) from None
        if not _may_issue(issuer_level, identity.level):
            raise NodeAuthError(
                Failure.CHAIN_INVALID,
                f"a {issuer_level.name} CA may not vouch for the {identity.level.name} node "
                f"{identity.region_code}",
            )
        return _Verified(
            identity,
            path,
            leaf.public_key(),
            max(c.not_valid_before_utc for c in path),
            min(c.not_valid_after_utc for c in path),
        )

    def _check_revocation(self, path: Sequence[x509.Certificate], at: datetime) -> None:
        for cert, issuer in itertools.pairwise(path):
            crl = self._crls.get(issuer.subject)
            if crl is None:
                continue
            signed_key = (id(crl), issuer.public_bytes(Encoding.DER))
            signed = self._crl_signed.get(signed_key)
            if signed is None:
                signed = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
                self._crl_signed[signed_key] = signed
            next_update = crl.next_update_utc
            if not signed or (next_update is not None and next_update < at):
                raise NodeAuthError(
                    Failure.REVOCATION_UNAVAILABLE,
                    f"the CRL of {issuer.subject.rfc4514_string()} is not current or not signed "
                    "by its issuer",
                )
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise NodeAuthError(
                    Failure.CERT_REVOKED,
                    f"certificate {cert.subject.rfc4514_string()} "
                    f"(serial {cert.serial_number:x}) is revoked",
                )
