"""A node's CA chained to the deployment root without the root key: CSRs and checks.

A deployment has ONE root. A child node (a province, city or county) makes
its own CA key and a certificate signing request (:func:`create_ca_csr`);
the parent node — the root holder, or a CA above the child's level —
checks the request (:func:`read_ca_csr`: parseable, signed by the key it
names, an allowed key type, a name) and issues the CA certificate with
:func:`signing.pki.issue_intermediate_ca` (path length ``COUNTY - level``,
KeyUsage keyCertSign + cRLSign). The child checks what comes back
(:func:`check_ca_certificate`): it holds the child's own key, it is a CA of
the level asked for, and it chains to the root the child was given, with
cryptography's X.509 verifier. :func:`check_upstream_crl` accepts a CRL
only when it is signed by a CA of that chain. The deployment side (files,
key store) is :mod:`signing.deployment_ca`.

Example::

    csr = create_ca_csr("zhida 签发CA 武汉 420100", Level.CITY, city_key)      # child
    request = read_ca_csr(csr.public_bytes(Encoding.PEM))                      # parent
    cert = issue_intermediate_ca(root, request.name, Level.CITY, request.public_key)
    path = check_ca_certificate(cert, public_key=city_key.public_key(),        # child
                                level=Level.CITY, root=root.certificate)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import verification as xv
from cryptography.x509.oid import NameOID

from signing.algorithms import algorithm_for_key
from signing.errors import Failure, VerificationError
from signing.node_verifier import ca_level
from zhida.errors import InvalidArgument
from zhida.regions import Level

__all__ = [
    "CaRequest",
    "check_ca_certificate",
    "check_upstream_crl",
    "create_ca_csr",
    "read_ca_csr",
    "read_certificates",
]


@dataclass(frozen=True, slots=True)
class CaRequest:
    """What a checked CSR asks for."""

    name: str
    level: Level | None
    """The level the CSR asks for (its BasicConstraints path length), if it says."""
    public_key: CertificatePublicKeyTypes
    csr: x509.CertificateSigningRequest


def create_ca_csr(
    name: str, level: Level, key: CertificateIssuerPrivateKeyTypes
) -> x509.CertificateSigningRequest:
    """A CSR for a CA of ``level`` named ``name``, signed by ``key`` (proof of possession)."""
    if not name.strip():
        raise InvalidArgument("CA name is empty", reason="INVALID_CA_NAME")
    if level is Level.NATIONAL:
        raise InvalidArgument(
            "a national CA is a root: run 'zhida pki init' without --csr", reason="INVALID_LEVEL"
        )
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    # the path length says which level is asked for; the parent checks it against its --level
    constraints = x509.BasicConstraints(ca=True, path_length=int(Level.COUNTY) - int(level))
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(constraints, critical=True)
    )
    return builder.sign(key, algorithm_for_key(key).x509_hash())


def read_ca_csr(data: bytes) -> CaRequest:
    """Parse and check a CA request (PEM or DER).

    InvalidArgument: INVALID_CSR (unparseable, no name, a key type zhida does
    not verify), CSR_BAD_SIGNATURE (not signed by the key it carries).
    """
    try:
        if data.lstrip().startswith(b"-----"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
        public_key = csr.public_key()
    except ValueError as exc:
        raise InvalidArgument(f"not a certificate request: {exc}", reason="INVALID_CSR") from None
    if not csr.is_signature_valid:
        raise InvalidArgument(
            "the CSR's signature does not verify with the public key it carries: it was "
            "altered, or not made by the holder of that key",
            reason="CSR_BAD_SIGNATURE",
        )
    try:
        algorithm_for_key(public_key)
    except InvalidArgument as exc:
        raise InvalidArgument(
            f"the CSR's key is not usable: {exc.message}", reason="INVALID_CSR"
        ) from None
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value).strip() if names else ""
    if not name:
        raise InvalidArgument("the CSR names no CA (no common name)", reason="INVALID_CSR")
    level: Level | None = None
    try:
        constraints = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca and constraints.path_length is not None:
        level = Level(max(int(Level.NATIONAL), int(Level.COUNTY) - constraints.path_length))
    return CaRequest(name, level, public_key, csr)


def read_certificates(data: bytes, what: str) -> list[x509.Certificate]:
    """Every PEM certificate in ``data``; InvalidArgument (INVALID_CERTIFICATE) if none."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InvalidArgument(
            f"{what} holds no readable PEM certificate: {exc}", reason="INVALID_CERTIFICATE"
        ) from None
    return certs


def _require_ca(_policy: xv.Policy, _cert: x509.Certificate, bc: x509.BasicConstraints) -> None:
    if not bc.ca:
        raise ValueError("the certificate is not a CA (BasicConstraints ca=false)")


def _require_ca_key_usage(_policy: xv.Policy, _cert: x509.Certificate, ku: x509.KeyUsage) -> None:
    if not (ku.key_cert_sign and ku.crl_sign):
        raise ValueError("the certificate's KeyUsage lacks keyCertSign or cRLSign")


# The certificate checked here is a CA, not an end entity: the leaf policy asks for CA
# extensions instead of webpki's end-entity rules.
_CA_LEAF_POLICY = (
    xv.ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, xv.Criticality.CRITICAL, _require_ca)
    .require_present(x509.KeyUsage, xv.Criticality.CRITICAL, _require_ca_key_usage)
)


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def check_ca_certificate(
    cert: x509.Certificate,
    *,
    public_key: CertificatePublicKeyTypes,
    level: Level,
    root: x509.Certificate,
    intermediates: Sequence[x509.Certificate] = (),
    at: datetime | None = None,
) -> tuple[x509.Certificate, ...]:
    """Check a CA certificate a parent issued for this node; the path, ``cert`` to ``root``.

    InvalidArgument NOT_A_ROOT (``root`` is not self-signed), CA_KEY_MISMATCH
    (not this node's key), CA_LEVEL_MISMATCH
    (not the level asked for); VerificationError CHAIN_INVALID (no valid path
    to ``root``: another deployment, expired, not a CA, …).
    """
    try:  # the anchor must be a root: a parent's CA given instead would become "the root"
        root.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise InvalidArgument(
            f"{root.subject.rfc4514_string()} is not a self-signed root certificate: give "
            "the deployment's root",
            reason="NOT_A_ROOT",
        ) from None
    if _spki(cert.public_key()) != _spki(public_key):
        raise InvalidArgument(
            f"the certificate {cert.subject.rfc4514_string()} does not hold this node's CA key: "
            "it was issued for another CSR",
            reason="CA_KEY_MISMATCH",
        )
    verifier = (
        xv.PolicyBuilder()
        .store(xv.Store([root]))
        .time(at or datetime.now(UTC))
        .extension_policies(
            ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(), ee_policy=_CA_LEAF_POLICY
        )
        .build_client_verifier()
    )
    try:
        path = tuple(verifier.verify(cert, list(intermediates)).chain)
    except xv.VerificationError as exc:
        raise VerificationError(
            Failure.CHAIN_INVALID,
            f"the CA certificate {cert.subject.rfc4514_string()} does not chain to the root "
            f"{root.subject.rfc4514_string()}: {exc}",
        ) from None
    issued = ca_level(cert)
    if issued is not level:
        raise InvalidArgument(
            f"the parent issued a {issued.name.lower()} CA, this node asked for a "
            f"{level.name.lower()} CA: issue it again with --level {level.name.lower()}",
            reason="CA_LEVEL_MISMATCH",
        )
    return path


def check_upstream_crl(
    crl: x509.CertificateRevocationList, issuers: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The CA among ``issuers`` that signed ``crl``, or None (another CA's, or forged)."""
    for issuer in issuers:
        if crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            return issuer
    return None
