"""Checking node certificates: :class:`NodeVerifier` and the node subject rules (issue 8).

Split from :mod:`signing.node_certs`, which issues the certificates and
re-exports these names from their old path. :func:`node_identity` reads the region
code, level and name a node certificate's subject carries (``serialNumber``,
``OU`` = ``zhida-node:<level>``, ``CN``) and :func:`may_issue` is the rule
that a CA vouches only for nodes of its own level or below. :class:`NodeVerifier`
checks a peer's chain with cryptography's X.509 verifier against THIS
deployment's root, pins EKUs serverAuth + clientAuth, the subject format and
the issuing CA's level, optionally consults CRLs, and refuses with one
:class:`NodeAuthError` (UNAUTHENTICATED, ``NODE_CERT_INVALID``) whose
``failure`` names the check that failed.

Example::

    verifier = NodeVerifier([root.certificate], crls=[crl])
    peer = verifier.verify_auth_context(context.auth_context())   # in a handler
    peer.region_code, peer.level                                  # '430000', Level.PROVINCE
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification as xv
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signing.errors import Failure
from signing.pki import cert_sha256
from zhida.errors import InvalidArgument, Unauthenticated
from zhida.regions import Level, RegionCodeError, parse_region

__all__ = [
    "NODE_EKUS",
    "NODE_UNIT_PREFIX",
    "NodeAuthError",
    "NodeIdentity",
    "NodeVerifier",
    "ca_level",
    "may_issue",
    "node_identity",
]

NODE_UNIT_PREFIX = "zhida-node:"
NODE_EKUS = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


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


def may_issue(issuer_level: Level, node_level: Level) -> bool:
    """Whether a CA of ``issuer_level`` may vouch for a node of ``node_level``.

    Its own level or below; a national node may also sit under a province CA.
    """
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


# -- verification ------------------------------------------------------------------


def _require_node_ekus(
    _policy: xv.Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage
) -> None:
    if not all(oid in eku for oid in NODE_EKUS):
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
        if not may_issue(issuer_level, identity.level):
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
