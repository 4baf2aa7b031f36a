"""PKI builders and chain verification with cryptography's verifier, plus CRLs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signing.errors import Failure, VerificationError
from signing.pki import (
    DOCUMENT_SIGNING,
    CertificateAuthority,
    RevokedCertificate,
    create_crl,
    create_intermediate_ca,
    create_root_ca,
    department_identity,
    issue_department_cert,
)
from signing.trust import ChainVerifier, TrustBundle
from tests.unit.signing.conftest import SCJ_NAME, SCJ_USCC, World
from zhida.errors import FailedPrecondition, InvalidArgument
from zhida.regions import Level


def _failure(verifier: ChainVerifier, cert: x509.Certificate, *rest: x509.Certificate) -> Failure:
    with pytest.raises(VerificationError) as err:
        verifier.verify(cert, rest)
    return err.value.failure


def test_chain_valid(world: World) -> None:
    chain = ChainVerifier(world.bundle).verify(world.scj_cert, world.scj_chain[1:])
    assert chain.certificates == (
        world.scj_cert,
        world.city.certificate,
        world.province.certificate,
        world.root.certificate,
    )
    assert chain.not_before <= world.now <= chain.not_after
    # intermediates may come from the bundle alone
    assert ChainVerifier(world.bundle).verify(world.mzj_cert).leaf == world.mzj_cert


def test_department_certificate_contents(world: World) -> None:
    cert = world.scj_cert
    assert department_identity(cert).name == SCJ_NAME
    assert department_identity(cert).uscc == SCJ_USCC
    oid_values = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)
    assert [a.value for a in oid_values] == [SCJ_USCC]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    assert ku.content_commitment
    assert not ku.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    # emailProtection too: NSS (poppler's pdfsig) refuses PDF signers without it
    assert list(eku) == [DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]
    assert world.root.path_length == 3
    assert world.province.path_length == 2
    assert world.city.path_length == 1


def test_expired_certificate(world: World) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    old = issue_department_cert(
        world.city,
        SCJ_NAME,
        SCJ_USCC,
        key.public_key(),
        timedelta(days=10),
        not_before=world.now - timedelta(days=20),
    )
    verifier = ChainVerifier(world.bundle)
    assert _failure(verifier, old) is Failure.CERT_EXPIRED
    # a signature made while it was valid still verifies
    assert verifier.verify(old, at=world.now - timedelta(days=15)).leaf == old


def test_expired_intermediate_ca(world: World) -> None:
    # a county CA that served for ten days and ended twenty days ago, and a department
    # certificate under it still within its own dates (the builder would clamp it to
    # the CA's end: this one is made by hand, as a careless or hostile CA could)
    start = world.now - timedelta(days=30)
    county = create_intermediate_ca(
        world.city, "江岸区CA", Level.COUNTY, validity=timedelta(days=10), now=start
    )
    key = ec.generate_private_key(ec.SECP256R1())
    template = issue_department_cert(
        county, SCJ_NAME, SCJ_USCC, key.public_key(), not_before=start + timedelta(days=1)
    )
    leaf = _resigned(template, county, not_after=world.now + timedelta(days=30))
    assert leaf.not_valid_before_utc < world.now < leaf.not_valid_after_utc
    assert county.certificate.not_valid_after_utc < world.now
    bundle = TrustBundle(
        world.bundle.roots,
        (*world.bundle.intermediates, county.certificate),
        (*world.bundle.crls, create_crl(county, [], now=world.now)),
    )
    verifier = ChainVerifier(bundle)
    with pytest.raises(VerificationError) as err:
        verifier.verify(leaf)
    assert err.value.failure is Failure.CERT_EXPIRED
    assert "江岸区CA" in err.value.message  # the intermediate, not the leaf
    # a signature made while the CA was valid still verifies
    assert verifier.verify(leaf, at=world.now - timedelta(days=25)).leaf == leaf


def _resigned(
    template: x509.Certificate, issuer: CertificateAuthority, *, not_after: datetime
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(template.issuer)
        .public_key(template.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(template.not_valid_before_utc)
        .not_valid_after(not_after)
    )
    for ext in template.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    return builder.sign(issuer.private_key, hashes.SHA256())


def test_revoked_certificate(world: World) -> None:
    bundle = world.bundle.with_crls(*world.crls(world.scj_cert.serial_number))
    assert _failure(ChainVerifier(bundle), world.scj_cert) is Failure.CERT_REVOKED
    assert ChainVerifier(bundle).verify(world.mzj_cert).leaf == world.mzj_cert


def test_revoked_intermediate(world: World) -> None:
    crl = create_crl(world.province, [world.city.certificate.serial_number], now=world.now)
    bundle = world.bundle.with_crls(crl)
    assert _failure(ChainVerifier(bundle), world.mzj_cert) is Failure.CERT_REVOKED


def test_superseded_after_signing_keeps_old_signatures(world: World) -> None:
    entry = RevokedCertificate(
        world.scj_cert.serial_number, world.now - timedelta(hours=1), x509.ReasonFlags.superseded
    )
    bundle = world.bundle.with_crls(create_crl(world.city, [entry], now=world.now))
    verifier = ChainVerifier(bundle)
    assert verifier.verify(world.scj_cert, at=world.now - timedelta(hours=2)).leaf
    with pytest.raises(VerificationError) as err:
        verifier.verify(world.scj_cert, at=world.now - timedelta(minutes=30))
    assert err.value.failure is Failure.CERT_REVOKED
    compromised = RevokedCertificate(
        world.scj_cert.serial_number, world.now, x509.ReasonFlags.key_compromise
    )
    bundle = world.bundle.with_crls(create_crl(world.city, [compromised], now=world.now))
    with pytest.raises(VerificationError, match=r"revoked at .* \(keyCompromise\)"):
        ChainVerifier(bundle).verify(world.scj_cert, at=world.now - timedelta(days=1))


def test_crl_missing_forged_or_stale_fails_closed(world: World) -> None:
    no_city_crl = TrustBundle(world.bundle.roots, world.bundle.intermediates, world.crls()[:2])
    assert _failure(ChainVerifier(no_city_crl), world.scj_cert) is Failure.REVOCATION_UNAVAILABLE
    # A CRL with the city CA's name but signed by another key is ignored.
    impostor = create_root_ca("武汉市政务服务CA")
    forged = create_crl(impostor, [], now=world.now)
    assert forged.issuer == world.city.certificate.subject
    bundle = no_city_crl.with_crls(forged)
    assert _failure(ChainVerifier(bundle), world.scj_cert) is Failure.REVOCATION_UNAVAILABLE
    stale = create_crl(world.city, [], now=world.now - timedelta(days=30))
    bundle = world.bundle.with_crls(stale)
    assert _failure(ChainVerifier(bundle), world.scj_cert) is Failure.REVOCATION_UNAVAILABLE
    assert ChainVerifier(bundle, crl_grace=timedelta(days=30)).verify(world.scj_cert)


def test_certificate_from_another_deployment(world: World) -> None:
    other_root = create_root_ca("国家政务服务平台根CA")  # same name, another key
    other_city = create_intermediate_ca(other_root, "武汉市政务服务CA", Level.CITY)
    key = ec.generate_private_key(ec.SECP256R1())
    foreign = issue_department_cert(other_city, SCJ_NAME, SCJ_USCC, key.public_key())
    verifier = ChainVerifier(world.bundle)
    assert _failure(verifier, foreign, other_city.certificate) is Failure.CHAIN_INVALID
    with pytest.raises(VerificationError, match="no valid path"):
        verifier.verify(foreign, [other_city.certificate, other_root.certificate])


def test_path_length_violated(world: World) -> None:
    # The city CA (path length 1) issues a county CA (0), which issues yet another CA:
    # cryptography's builder would sign it, the verifier must refuse it.
    county = create_intermediate_ca(world.city, "江岸区CA", Level.COUNTY)
    assert county.path_length == 0
    with pytest.raises(FailedPrecondition):
        create_intermediate_ca(county, "rogue", Level.COUNTY)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue_ca = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue CA")]))
        .issuer_name(county.certificate.subject)
        .public_key(rogue_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(world.now - timedelta(days=1))
        .not_valid_after(world.now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(rogue_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(county.private_key.public_key()),
            False,
        )
        .sign(county.private_key, hashes.SHA256())
    )

    rogue = CertificateAuthority(rogue_ca, rogue_key, Level.COUNTY)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue_department_cert(rogue, SCJ_NAME, SCJ_USCC, leaf_key.public_key())
    bundle = TrustBundle(
        world.bundle.roots,
        world.bundle.intermediates,
        (*world.bundle.crls, create_crl(county, []), create_crl(rogue, [])),
    )
    with pytest.raises(VerificationError) as err:
        ChainVerifier(bundle).verify(leaf, [rogue_ca, county.certificate])
    assert err.value.failure is Failure.CHAIN_INVALID
    assert "path length" in err.value.message


def test_wrong_extended_key_usage_refused(world: World) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    template = issue_department_cert(world.city, SCJ_NAME, SCJ_USCC, key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(template.issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(template.not_valid_before_utc)
        .not_valid_after(template.not_valid_after_utc)
    )
    for ext in template.extensions:
        if isinstance(ext.value, x509.ExtendedKeyUsage):
            value: x509.ExtensionType = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING])
        else:
            value = ext.value
        builder = builder.add_extension(value, ext.critical)
    code_signing = builder.sign(world.city.private_key, hashes.SHA256())
    with pytest.raises(VerificationError, match="documentSigning"):
        ChainVerifier(world.bundle).verify(code_signing)


def test_trust_bundle_roundtrip(world: World) -> None:
    text = world.bundle.to_json()
    loaded = TrustBundle.from_json(text)
    assert loaded.roots == world.bundle.roots
    assert loaded.intermediates == world.bundle.intermediates
    assert [c.fingerprint(hashes.SHA256()) for c in loaded.crls] == [
        c.fingerprint(hashes.SHA256()) for c in world.bundle.crls
    ]
    assert ChainVerifier(loaded).verify(world.scj_cert).leaf == world.scj_cert
    for bad in ["{}", "[]", "not json", '{"format": "zhida-trust-bundle", "version": 1}']:
        with pytest.raises(InvalidArgument):
            TrustBundle.from_json(bad)
    with pytest.raises(InvalidArgument):
        TrustBundle(roots=(world.scj_cert,))


def test_builders_validate_input(world: World) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidArgument):
        issue_department_cert(world.city, SCJ_NAME, "11420102MB1A234560", key.public_key())
    with pytest.raises(InvalidArgument):
        create_intermediate_ca(world.city, "湖北省CA", Level.PROVINCE)
    short = issue_department_cert(
        world.city, SCJ_NAME, SCJ_USCC, key.public_key(), timedelta(days=99999)
    )
    assert short.not_valid_after_utc == world.city.certificate.not_valid_after_utc
