"""The deployment's X.509 PKI: CAs per administrative level, department certificates, CRLs.

A deployment has one root CA (normally at the national level) and one
intermediate CA per level below it that issues certificates. The path length
of a CA follows its level: a CA at level L may have ``COUNTY - L`` CAs below it,
so the national root allows province → city → county CAs and a county CA
issues only end-entity certificates. Department (issuing-agency) certificates
carry the department's Chinese name and its unified social credit code (USCC),
KeyUsage digitalSignature + nonRepudiation and the EKUs id-kp-documentSigning
(RFC 9336) and emailProtection (which NSS-based PDF verifiers demand). Chain
verification and CRL checks live in :mod:`signing.trust`.

Example::

    >>> from datetime import timedelta
    >>> from zhida.regions import Level
    >>> root = create_root_ca("国家政务服务平台根CA")
    >>> hubei = create_intermediate_ca(root, "湖北省政务服务CA", Level.PROVINCE)
    >>> key = ES256.generate_private_key()
    >>> cert = issue_department_cert(
    ...     hubei, "湖北省市场监督管理局", "114200000113644983", key.public_key()
    ... )
    >>> department_identity(cert)
    DepartmentIdentity(name='湖北省市场监督管理局', uscc='114200000113644983')
    >>> crl = create_crl(hubei, [cert.serial_number])
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from stdnum.cn import uscc as stdnum_uscc

from signing.algorithms import ES256, algorithm_for_key
from zhida.errors import FailedPrecondition, InvalidArgument
from zhida.regions import Level

__all__ = [
    "DOCUMENT_SIGNING",
    "CertificateAuthority",
    "DepartmentIdentity",
    "RevokedCertificate",
    "cert_sha256",
    "create_crl",
    "create_intermediate_ca",
    "create_root_ca",
    "department_identity",
    "issue_department_cert",
    "issue_intermediate_ca",
    "validate_uscc",
]

DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
"""id-kp-documentSigning (RFC 9336): the EKU of department signing certificates."""

ROOT_VALIDITY = timedelta(days=20 * 365)
CA_VALIDITY = timedelta(days=10 * 365)
DEPARTMENT_VALIDITY = timedelta(days=2 * 365)
CRL_VALIDITY = timedelta(days=7)
_BACKDATE = timedelta(minutes=5)  # tolerate small clock skew on notBefore


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate with its signing key. Keep instances off shared disks."""

    certificate: x509.Certificate
    private_key: CertificateIssuerPrivateKeyTypes
    level: Level

    @property
    def name(self) -> str:
        return _common_name(self.certificate.subject)

    @property
    def path_length(self) -> int | None:
        return self.certificate.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value.path_length


@dataclass(frozen=True, slots=True)
class DepartmentIdentity:
    """Who a department certificate belongs to."""

    name: str
    uscc: str


@dataclass(frozen=True, slots=True)
class RevokedCertificate:
    """One CRL entry. ``reason`` None means unspecified (treated as compromise)."""

    serial_number: int
    revoked_at: datetime
    reason: x509.ReasonFlags | None = None


def validate_uscc(uscc: str) -> str:
    """Return the 18-character USCC (GB 32100) or raise InvalidArgument."""
    try:
        return str(stdnum_uscc.validate(uscc))
    except Exception as exc:  # stdnum raises its own ValidationError subclasses
        raise InvalidArgument(f"invalid USCC {uscc!r}: {exc}", reason="INVALID_USCC") from None


def cert_sha256(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the certificate's DER: how seals name certificates."""
    return hashlib.sha256(cert.public_bytes(_DER)).hexdigest()


def create_root_ca(
    name: str,
    *,
    level: Level = Level.NATIONAL,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    validity: timedelta = ROOT_VALIDITY,
    now: datetime | None = None,
) -> CertificateAuthority:
    """A self-signed root CA named ``name`` (Chinese), ES256 unless ``key`` is given."""
    key = key or ES256.generate_private_key()
    subject = _ca_name(name)
    start = (now or datetime.now(UTC)) - _BACKDATE
    builder = _ca_builder(subject, subject, key.public_key(), key.public_key(), level)
    cert = _sign(builder.not_valid_before(start).not_valid_after(start + validity), key)
    return CertificateAuthority(cert, key, level)


def create_intermediate_ca(
    parent: CertificateAuthority,
    name: str,
    level: Level,
    *,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    validity: timedelta = CA_VALIDITY,
    now: datetime | None = None,
) -> CertificateAuthority:
    """A CA for ``level`` below ``parent``, with a new key unless ``key`` is given.

    See :func:`issue_intermediate_ca` for the rules.
    """
    key = key or ES256.generate_private_key()
    cert = issue_intermediate_ca(parent, name, level, key.public_key(), validity=validity, now=now)
    return CertificateAuthority(cert, key, level)


def issue_intermediate_ca(
    parent: CertificateAuthority,
    name: str,
    level: Level,
    public_key: CertificatePublicKeyTypes,
    *,
    validity: timedelta = CA_VALIDITY,
    now: datetime | None = None,
) -> x509.Certificate:
    """The certificate of a CA for ``level`` (holding ``public_key``) below ``parent``.

    Its path length is ``COUNTY - level``; KeyUsage keyCertSign + cRLSign.
    Raises FailedPrecondition when ``parent`` may not have CAs below it and
    InvalidArgument when ``level`` is not below the parent's level.
    """
    if parent.path_length == 0:
        raise FailedPrecondition(
            f"CA {parent.name!r} has path length 0 and may only issue end-entity certificates",
            reason="PATH_LENGTH_EXCEEDED",
        )
    if level <= parent.level:
        raise InvalidArgument(
            f"a {level.name} CA cannot be issued by a {parent.level.name} CA",
            reason="CA_LEVEL_NOT_BELOW_PARENT",
        )
    algorithm_for_key(public_key)  # refuse key types the verifier would not accept
    start, end = _window(parent, now, validity)
    builder = _ca_builder(
        _ca_name(name),
        parent.certificate.subject,
        public_key,
        parent.private_key.public_key(),
        level,
    )
    return _sign(builder.not_valid_before(start).not_valid_after(end), parent.private_key)


def issue_department_cert(
    ca: CertificateAuthority,
    department_name: str,
    uscc: str,
    public_key: CertificatePublicKeyTypes,
    validity: timedelta = DEPARTMENT_VALIDITY,
    *,
    not_before: datetime | None = None,
) -> x509.Certificate:
    """A document-signing certificate for a department's key (ES256 or EdDSA).

    The validity ends no later than the CA's own certificate.
    """
    uscc = validate_uscc(uscc)
    if not department_name.strip():
        raise InvalidArgument("department name is empty", reason="INVALID_DEPARTMENT_NAME")
    algorithm_for_key(public_key)  # refuse key types the verifier would not accept
    start, end = _window(ca, not_before, validity)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, department_name),
            # The USCC goes in organizationIdentifier (2.5.4.97, X.520), the
            # attribute meant for legal-person registration numbers; it is
            # stored as the bare 18 characters, without ETSI's "NTRCN-" prefix.
            x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, uscc),
            x509.NameAttribute(NameOID.COMMON_NAME, department_name),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signing=True), critical=True)
        # emailProtection next to documentSigning: NSS (and so poppler's pdfsig)
        # verifies PDF signers for the "email signer" usage and refuses a leaf
        # whose EKU lacks it; zhida's own verifier requires documentSigning.
        .add_extension(
            x509.ExtendedKeyUsage([DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    )
    return _sign(builder, ca.private_key)


def create_crl(
    ca: CertificateAuthority,
    revoked: Iterable[int | RevokedCertificate],
    *,
    crl_number: int | None = None,
    now: datetime | None = None,
    validity: timedelta = CRL_VALIDITY,
) -> x509.CertificateRevocationList:
    """A CRL signed by ``ca`` listing ``revoked`` serials (plain ints: revoked now).

    ``crl_number`` defaults to the current Unix time, so later CRLs sort later.
    """
    this_update = (now or datetime.now(UTC)).replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(this_update)
        .next_update(this_update + validity)
        .add_extension(
            x509.CRLNumber(crl_number if crl_number is not None else int(this_update.timestamp())),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    )
    for item in revoked:
        entry = (
            item if isinstance(item, RevokedCertificate) else RevokedCertificate(item, this_update)
        )
        revoked_builder = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial_number)
            .revocation_date(entry.revoked_at)
        )
        if entry.reason is not None:
            revoked_builder = revoked_builder.add_extension(
                x509.CRLReason(entry.reason), critical=False
            )
        builder = builder.add_revoked_certificate(revoked_builder.build())
    return builder.sign(ca.private_key, algorithm_for_key(ca.private_key).x509_hash())


def department_identity(cert: x509.Certificate) -> DepartmentIdentity:
    """The department name (O) and USCC (organizationIdentifier) of a certificate."""
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    ids = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)
    if len(orgs) != 1 or len(ids) != 1:
        raise InvalidArgument(
            f"certificate {cert.subject.rfc4514_string()} names no single department and USCC",
            reason="NOT_A_DEPARTMENT_CERT",
        )
    return DepartmentIdentity(str(orgs[0].value), str(ids[0].value))


# -- helpers -------------------------------------------------------------------

_DER = Encoding.DER


def _common_name(name: x509.Name) -> str:
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else name.rfc4514_string()


def _ca_name(name: str) -> x509.Name:
    if not name.strip():
        raise InvalidArgument("CA name is empty", reason="INVALID_CA_NAME")
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )


def _key_usage(*, signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=signing,  # nonRepudiation
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not signing,
        crl_sign=not signing,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer_key: CertificateIssuerPublicKeyTypes,
    level: Level,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=int(Level.COUNTY) - int(level)),
            critical=True,
        )
        .add_extension(_key_usage(signing=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
        )
    )


def _window(
    issuer: CertificateAuthority, start: datetime | None, validity: timedelta
) -> tuple[datetime, datetime]:
    begin = start if start is not None else datetime.now(UTC) - _BACKDATE
    end = min(begin + validity, issuer.certificate.not_valid_after_utc)
    if end <= begin:
        raise FailedPrecondition(
            f"CA {issuer.name!r} expires before the requested validity starts",
            reason="CA_EXPIRED",
        )
    return begin, end


def _sign(
    builder: x509.CertificateBuilder, key: CertificateIssuerPrivateKeyTypes
) -> x509.Certificate:
    return builder.sign(key, algorithm_for_key(key).x509_hash())
