"""Child nodes' CAs under the one deployment root through a CSR (signing.deployment_ca).

Every deployment here has its own data directory: the root holder's key
store is never read by a child.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from signing.bundle import VerifierBundle
from signing.deployment import Deployment
from signing.errors import Failure, VerificationError
from signing.sub_ca import read_ca_csr
from signing.trust import ChainVerifier, TrustBundle
from signing.verify import verify_document
from tests.unit.signing.conftest import deployment_config
from zhida.cli.main import main
from zhida.config import Config
from zhida.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from zhida.regions import Level

PROVINCE_DEPT = ("湖北省市场监督管理局", "11420000MB00000004")
CITY_DEPT = ("武汉市市场监督管理局", "11420100MB00000009")


def _config(directory: Path, region: str) -> Config:
    return deployment_config(directory, node__region_code=region)


def _root(tmp_path: Path) -> Deployment:
    """The root holder: a national node."""
    return Deployment.init(_config(tmp_path / "national", "100000"), env={})


def _pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(Encoding.PEM)


def _own_crl(deployment: Deployment) -> x509.CertificateRevocationList:
    """The CRL a node signs for its issuing CA (what it publishes for verifiers)."""
    subject = deployment.ca_certificate.subject
    return next(c for c in deployment.crls(refresh=False) if c.issuer == subject)


def _child(tmp_path: Path, root: Deployment, region: str = "420000") -> Deployment:
    config = _config(tmp_path / region, region)
    csr = Deployment.request_ca(config, env={})
    certs = root.issue_sub_ca(_pem(csr), Level.PROVINCE)
    return Deployment.import_ca(
        config,
        certs,
        root=root.root_certificate,
        crls=root.crls(),
        env={},
    )


def test_a_child_ca_signs_what_the_roots_bundle_verifies(tmp_path: Path) -> None:
    root = _root(tmp_path)
    province = _child(tmp_path, root)
    assert not province.holds_root
    assert "pki-root" not in {k.key_id for k in province.key_store.list()}  # never copied
    assert province.root_certificate == root.root_certificate
    ca = province.ca_certificate
    assert ca.issuer == root.root_certificate.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 2
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    assert not usage.digital_signature

    name, uscc = PROVINCE_DEPT
    dept = province.issue_department_cert(name, uscc)
    province.create_seal(uscc, valid_days=30)
    token = province.sign_licence_jws(uscc, {"证照编号": "P-1"}).encode()
    assert province.verify(token).valid  # its own bundle: the root CRL copy included

    # a verifier with the root holder's exported bundle and the child's published CRL
    exported = tmp_path / "root-trust.json"
    root.export_trust(exported)
    root_trust = VerifierBundle.from_json(exported.read_text(encoding="utf-8")).trust
    trust = root_trust.with_crls(_own_crl(province))
    path = ChainVerifier(trust).verify(dept.certificate, [ca])
    assert path.certificates == (dept.certificate, ca, root.root_certificate)
    result = verify_document(token, trust, province.seal_registry())
    assert result.valid, result.message
    assert result.chain[-1] == root.root_certificate
    # without the child's CRL a verifier fails closed
    missing = verify_document(token, root_trust, province.seal_registry())
    assert missing.failure is Failure.REVOCATION_UNAVAILABLE

    # only the parent can revoke the child's CA; its CRL then refuses the child's signatures
    with pytest.raises(FailedPrecondition) as not_held:
        province.revoke(ca.serial_number, "cACompromise")
    assert not_held.value.reason == "ROOT_NOT_HELD"
    root.revoke(ca.serial_number, "cACompromise")
    revoked = root.trust_bundle().with_crls(_own_crl(province))
    assert verify_document(token, revoked, province.seal_registry()).failure is (
        Failure.CERT_REVOKED
    )


def test_a_grandchild_chains_through_its_parents_ca(tmp_path: Path) -> None:
    root = _root(tmp_path)
    province = _child(tmp_path, root)
    config = _config(tmp_path / "420100", "420100")
    csr = Deployment.request_ca(config, level=Level.CITY, env={})
    with pytest.raises(InvalidArgument) as too_high:  # a province CA issues below it only
        province.issue_sub_ca(
            _pem(Deployment.request_ca(_config(tmp_path / "x", "430000"), env={})),
            Level.PROVINCE,
        )
    assert too_high.value.reason == "CA_LEVEL_NOT_BELOW_PARENT"
    certs = province.issue_sub_ca(_pem(csr), Level.CITY)
    assert certs[1:] == (province.ca_certificate,)  # the CA above travels with it
    city = Deployment.import_ca(
        config,
        certs,
        root=root.root_certificate,
        crls=province.verifier_bundle().trust.crls,
        env={},
    )
    assert city.ca_chain == (certs[0], province.ca_certificate)
    name, uscc = CITY_DEPT
    city.issue_department_cert(name, uscc)
    city.create_seal(uscc, valid_days=30)
    token = city.sign_licence_jws(uscc, {"证照编号": "C-1"}).encode()
    assert city.verify(token).valid
    trust = root.trust_bundle().with_crls(_own_crl(province), _own_crl(city))
    result = verify_document(token, trust, city.seal_registry())
    assert result.valid, result.message
    assert len(result.chain) == 4  # department, city CA, province CA, root


def test_a_csr_with_a_bad_signature_is_refused(tmp_path: Path) -> None:
    root = _root(tmp_path)
    csr = Deployment.request_ca(_config(tmp_path / "420000", "420000"), env={})
    der = csr.public_bytes(Encoding.DER)
    name = b"zhida"
    assert der.count(name) >= 1
    altered = der.replace(name, b"zhidb")  # still a CSR, for another name
    with pytest.raises(InvalidArgument) as err:
        root.issue_sub_ca(altered, Level.PROVINCE)
    assert err.value.reason == "CSR_BAD_SIGNATURE"
    assert "signature does not verify" in err.value.message
    with pytest.raises(InvalidArgument) as garbage:
        read_ca_csr(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n")
    assert garbage.value.reason == "INVALID_CSR"
    with pytest.raises(InvalidArgument) as level:
        root.issue_sub_ca(der, Level.CITY)  # the CSR asks for a province CA
    assert level.value.reason == "CA_LEVEL_MISMATCH"
    assert root.sub_ca_certificates() == []  # nothing issued


def test_an_import_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    root = _root(tmp_path)
    config = _config(tmp_path / "420000", "420000")
    csr = Deployment.request_ca(config, env={})
    with pytest.raises(FailedPrecondition) as pending:
        Deployment.open(config, env={})
    assert pending.value.reason == "CA_NOT_IMPORTED"
    with pytest.raises(AlreadyExists):
        Deployment.init(config, env={})

    def attempt(certs: tuple[x509.Certificate, ...], anchor: x509.Certificate) -> None:
        Deployment.import_ca(config, certs, root=anchor, env={})

    # a certificate for another node's key
    other = Deployment.request_ca(_config(tmp_path / "430000", "430000"), env={})
    with pytest.raises(InvalidArgument) as mismatch:
        attempt(root.issue_sub_ca(_pem(other), Level.PROVINCE), root.root_certificate)
    assert mismatch.value.reason == "CA_KEY_MISMATCH"
    # this node's key, but issued under another deployment's root
    stranger = Deployment.init(_config(tmp_path / "stranger", "100000"), env={})
    foreign = stranger.issue_sub_ca(_pem(csr), Level.PROVINCE)
    with pytest.raises(VerificationError) as chain:
        attempt(foreign, root.root_certificate)
    assert chain.value.failure is Failure.CHAIN_INVALID
    assert "does not chain to the root" in chain.value.message
    # the right certificate with a parent CA given as "the root"
    good = root.issue_sub_ca(_pem(csr), Level.PROVINCE)
    with pytest.raises(InvalidArgument) as not_root:
        attempt(good, root.ca_certificate)
    assert not_root.value.reason == "NOT_A_ROOT"
    # the refusals left the request in place: the right certificate still imports
    attempt(good, root.root_certificate)
    assert Deployment.open(config, env={}).ca_certificate == good[0]
    with pytest.raises(AlreadyExists):
        attempt(good, root.root_certificate)


def test_crls_from_above_are_checked_and_kept_newest(tmp_path: Path) -> None:
    root = _root(tmp_path)
    province = _child(tmp_path, root)
    held = [c for c in province.crls(refresh=False) if c.issuer == root.root_certificate.subject]
    assert len(held) == 1
    stranger = _root(tmp_path / "stranger")
    with pytest.raises(InvalidArgument) as foreign:
        province.import_crls(stranger.crls())  # same names, other keys
    assert foreign.value.reason == "NO_USABLE_CRL"
    other = root.issue_sub_ca(_pem(_request(tmp_path, "430000")), Level.PROVINCE)[0]
    later = datetime.now(UTC) + timedelta(minutes=1)  # a CRL number surely above the first
    newer = root.revoke(other.serial_number, "cessationOfOperation", now=later)
    assert province.import_crls([newer]) == [newer]  # the root's newer CRL is taken
    assert province.import_crls([newer]) == []  # the same one again: nothing to do
    assert province.import_crls(held) == []  # an older one is not taken
    upstream = [
        c for c in province.crls(refresh=False) if c.issuer == root.root_certificate.subject
    ]
    assert len(upstream[0]) == 1  # the newer list, with its one revoked CA
    with pytest.raises(FailedPrecondition):
        root.import_crls([newer])  # the root holder signs its own


def _request(tmp_path: Path, region: str) -> x509.CertificateSigningRequest:
    return Deployment.request_ca(_config(tmp_path / region, region), env={})


# -- the commands, in two data directories ------------------------------------------


def _use(monkeypatch: pytest.MonkeyPatch, directory: Path, region: str) -> None:
    monkeypatch.setenv("ZHIDA_NODE__DATA_DIR", str(directory))
    monkeypatch.setenv("ZHIDA_NODE__REGION_CODE", region)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZHIDA_PKI_PASSPHRASE", "pki passphrase")
    monkeypatch.delenv("ZHIDA_CONFIG", raising=False)
    monkeypatch.delenv("ZHIDA_PKI_PASSPHRASE_FILE", raising=False)
    return tmp_path


def test_cli_child_ca_end_to_end(
    cli: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root_dir, city_dir = cli / "national", cli / "city"
    csr, ca_pem, trust = cli / "city.csr", cli / "city-ca.pem", cli / "root-trust.json"
    _use(monkeypatch, root_dir, "100000")
    assert main(["pki", "init"]) == 0
    _use(monkeypatch, city_dir, "420100")
    assert main(["pki", "init", "--csr", str(csr), "--level", "city"]) == 0
    assert (
        b"ENCRYPTED PRIVATE KEY" in (city_dir / "keys" / "pki" / "pki-ca-city.key.pem").read_bytes()
    )

    _use(monkeypatch, root_dir, "100000")
    bad = cli / "bad.csr"
    der = x509.load_pem_x509_csr(csr.read_bytes()).public_bytes(Encoding.DER)
    bad.write_bytes(der.replace(b"zhida", b"zhidb"))
    capsys.readouterr()
    assert main(["pki", "issue-sub-ca", str(bad), "--level", "city", "--out", str(ca_pem)]) == 2
    assert "signature does not verify" in capsys.readouterr().err
    assert main(["pki", "issue-sub-ca", str(csr), "--level", "city", "--out", str(ca_pem)]) == 0
    assert main(["pki", "export-trust", str(trust)]) == 0
    capsys.readouterr()

    # refusals on the child: another deployment's root, then another node's certificate
    _use(monkeypatch, cli / "stranger", "100000")
    assert main(["pki", "init"]) == 0
    stranger_trust = cli / "stranger-trust.json"
    assert main(["pki", "export-trust", str(stranger_trust)]) == 0
    other = Deployment.request_ca(_config(cli / "other", "420200"), env={})
    (cli / "other.csr").write_bytes(_pem(other))
    _use(monkeypatch, root_dir, "100000")
    other_pem = cli / "other-ca.pem"
    assert main(["pki", "issue-sub-ca", str(cli / "other.csr"), "--level", "city",
                 "--out", str(other_pem)]) == 0  # fmt: skip
    _use(monkeypatch, city_dir, "420100")
    capsys.readouterr()
    assert main(["pki", "import-ca", str(ca_pem), "--root", str(stranger_trust)]) == 2
    assert "does not chain to the root" in capsys.readouterr().err
    assert main(["pki", "import-ca", str(other_pem), "--root", str(trust)]) == 2
    assert "does not hold this node's CA key" in capsys.readouterr().err

    assert main(["pki", "import-ca", str(ca_pem), "--root", str(trust)]) == 0
    name, uscc = CITY_DEPT
    assert main(["pki", "issue-dept-cert", "--name", name, "--uscc", uscc]) == 0
    assert main(["seal", "create", "--dept-uscc", uscc, "--valid-days", "30"]) == 0
    assert main(["pki", "list"]) == 0
    assert "root (key elsewhere)" in capsys.readouterr().out

    city = Deployment.open(deployment_config(city_dir, node__region_code="420100"))
    token = city.sign_licence_jws(uscc, {"证照编号": "C-2"}).encode()
    root_trust = TrustBundle.from_json(trust.read_text(encoding="utf-8"))
    result = verify_document(token, root_trust.with_crls(_own_crl(city)), city.seal_registry())
    assert result.valid, result.message
    assert result.chain[-1] == root_trust.roots[0]
