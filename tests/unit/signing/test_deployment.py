"""The deployment facade (signing.deployment) and the zhida pki / seal / verify commands."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

import pytest

from signing.bundle import VerifierBundle
from signing.deployment import Deployment
from signing.errors import Failure, KeyStoreError
from signing.jws import sign_jws
from signing.pdf_layout import LicenceDocument
from signing.trust import TrustBundle
from signing.verify import verify_document
from tests.unit.signing.conftest import DEPT_NAME, DEPT_USCC, deployment_config, make_deployment
from zhida.cli.main import main
from zhida.errors import AlreadyExists, FailedPrecondition

DOC = LicenceDocument(
    "营业执照", "91420100MA4K00000A", [("名称", "某某有限公司")], DEPT_NAME, date.today()
)
OTHER_USCC = "11420102MB3333333T"


def test_sign_and_verify_through_the_facade(deployment: Deployment) -> None:
    token = deployment.sign_licence_jws(DEPT_USCC, {"证照编号": "A-1"})
    result = deployment.verify(token.encode())
    assert result.valid, result.message
    assert result.payload is not None
    assert result.payload["证照编号"] == "A-1"
    pdf = deployment.issue_licence_pdf(DEPT_USCC, DOC)
    checked = deployment.verify(pdf)
    assert checked.valid, checked.message
    assert checked.seal == deployment.seal_for(DEPT_USCC)
    assert checked.department is not None
    assert checked.department.name == DEPT_NAME


def test_keys_are_encrypted_and_a_wrong_passphrase_is_refused(tmp_path: Path) -> None:
    config = deployment_config(tmp_path, auth__dev_keys="false")
    with pytest.raises(KeyStoreError) as missing:
        Deployment.init(config, env={})
    assert missing.value.reason == "PASSPHRASE_MISSING"
    Deployment.init(config, env={"ZHIDA_PKI_PASSPHRASE": "correct horse"})
    pems = list((tmp_path / "keys" / "pki").glob("*.key.pem"))
    assert len(pems) == 3
    assert all(b"ENCRYPTED PRIVATE KEY" in p.read_bytes() for p in pems)
    wrong = Deployment.open(config, env={"ZHIDA_PKI_PASSPHRASE": "wrong"})
    with pytest.raises(KeyStoreError) as err:
        wrong.issue_department_cert(DEPT_NAME, DEPT_USCC)
    assert err.value.reason == "WRONG_PASSPHRASE"
    passfile = tmp_path / "passphrase"
    passfile.write_text("correct horse\n")
    right = Deployment.open(config, passphrase_file=passfile, env={})
    assert right.issue_department_cert(DEPT_NAME, DEPT_USCC).uscc == DEPT_USCC
    with pytest.raises(AlreadyExists):
        Deployment.init(config, passphrase_file=passfile, env={})


def test_dev_mode_writes_unencrypted_keys_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="signing"):
        Deployment.init(deployment_config(tmp_path), env={})
    assert "UNENCRYPTED" in caplog.text
    pem = next((tmp_path / "keys" / "pki").glob("pki-root.key.pem")).read_bytes()
    assert b"BEGIN PRIVATE KEY" in pem


def test_no_signing_without_a_certificate_or_a_seal(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path, seal=False)
    with pytest.raises(FailedPrecondition) as no_seal:
        deployment.sign_licence_jws(DEPT_USCC, {"a": 1})
    assert no_seal.value.reason == "NO_USABLE_SEAL"
    with pytest.raises(FailedPrecondition) as no_cert:
        deployment.sign_licence_jws(OTHER_USCC, {"a": 1})
    assert no_cert.value.reason == "NO_DEPARTMENT_CERT"


def test_revocations_reach_verifiers_and_signers(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path)
    token = deployment.sign_licence_jws(DEPT_USCC, {"a": 1})
    dept = deployment.department(DEPT_USCC)
    crl = deployment.revoke(dept.serial, "keyCompromise")
    assert crl.get_revoked_certificate_by_serial_number(dept.serial) is not None
    assert deployment.verify(token.encode()).failure is Failure.CERT_REVOKED
    with pytest.raises(FailedPrecondition):  # the revoked certificate no longer signs
        Deployment.open(deployment.config, env={}).sign_licence_jws(DEPT_USCC, {"a": 2})
    with pytest.raises(AlreadyExists):
        deployment.revoke(dept.serial, "keyCompromise")


def test_revoked_seal_refuses_its_signatures(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path)
    token = deployment.sign_licence_jws(DEPT_USCC, {"a": 1})
    seal = deployment.seal_for(DEPT_USCC)
    deployment.revoke_seal(seal.seal_id, "印章遗失")
    assert deployment.verify(token.encode()).failure is Failure.SEAL_REVOKED
    with pytest.raises(FailedPrecondition):
        deployment.seal_for(DEPT_USCC)


def test_rotation_needs_a_new_seal_and_keeps_old_licences_valid(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path)
    old_token = deployment.sign_licence_jws(DEPT_USCC, {"a": 1})
    old = deployment.department(DEPT_USCC)
    old_seal = deployment.seal_for(DEPT_USCC)
    deployment.issue_department_cert(DEPT_NAME, DEPT_USCC)  # the newest certificate signs
    other = Deployment.open(deployment.config, env={})
    with pytest.raises(FailedPrecondition):
        other.sign_licence_jws(DEPT_USCC, {"a": 2})  # its seal is not bound to the new one
    deployment.create_seal(DEPT_USCC, valid_days=30)
    new_token = other.sign_licence_jws(DEPT_USCC, {"a": 2})
    assert deployment.verify(old_token.encode()).valid
    assert deployment.verify(new_token.encode()).valid

    # the re-issue retired the old key: it signs nothing more, in this process or another
    assert other.key_store.info(old.key_id).retired is not None
    for store in (deployment.key_store, Deployment.open(deployment.config, env={}).key_store):
        with pytest.raises(KeyStoreError) as retired:
            sign_jws({"a": 3}, store, old.key_id, [old.certificate], old_seal.seal_id)
        assert retired.value.reason == "KEY_RETIRED"
    # its public key stays listed, the new key is active
    keys = {k.key_id: k for k in deployment.key_store.list()}
    assert keys[old.key_id].public_key == old.certificate.public_key()
    assert keys[deployment.department(DEPT_USCC).key_id].retired is None


def test_exported_bundle_verifies_offline(deployment: Deployment, tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    deployment.export_trust(path)
    bundle = VerifierBundle.from_json(path.read_text(encoding="utf-8"))
    assert len(TrustBundle.from_json(path.read_text(encoding="utf-8")).roots) == 1
    assert [s.seal_id for s in bundle.seals] == [s.seal_id for s in deployment.seals()]
    token = deployment.sign_licence_jws(DEPT_USCC, {"a": 1})
    assert verify_document(token.encode(), bundle.trust, bundle.registry()).valid


# -- the commands --------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZHIDA_NODE__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ZHIDA_NODE__REGION_CODE", "420100")
    monkeypatch.setenv("ZHIDA_PKI_PASSPHRASE", "pki passphrase")
    monkeypatch.delenv("ZHIDA_CONFIG", raising=False)
    monkeypatch.delenv("ZHIDA_PKI_PASSPHRASE_FILE", raising=False)
    return tmp_path


def test_cli_pki_seal_and_offline_verify(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["pki", "init"]) == 0
    capsys.readouterr()
    assert main(["pki", "issue-dept-cert", "--name", DEPT_NAME, "--uscc", DEPT_USCC]) == 0
    serial = capsys.readouterr().out.split("serial ")[1].split()[0]
    assert main(["seal", "create", "--dept-uscc", DEPT_USCC, "--valid-days", "30"]) == 0
    assert main(["pki", "list"]) == 0
    assert main(["seal", "list"]) == 0
    listing = capsys.readouterr().out
    assert serial in listing
    assert "电子证照专用章" in listing
    trust = cli_env / "trust.json"
    assert main(["pki", "export-trust", str(trust)]) == 0

    deployment = Deployment.open(deployment_config(cli_env / "data"))
    licence = cli_env / "licence.pdf"
    licence.write_bytes(deployment.issue_licence_pdf(DEPT_USCC, DOC))
    capsys.readouterr()
    monkeypatch.setenv("ZHIDA_NODE__DATA_DIR", str(cli_env / "elsewhere"))  # offline: no PKI
    assert main(["verify", str(licence), "--trust", str(trust)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("valid\n")
    assert DEPT_NAME in out
    data = bytearray(licence.read_bytes())
    data[len(data) // 3] ^= 1
    licence.write_bytes(bytes(data))
    assert main(["verify", str(licence), "--trust", str(trust), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["valid"] is False

    token = cli_env / "licence.jws"
    token.write_text(deployment.sign_licence_jws(DEPT_USCC, {"a": 1}))
    monkeypatch.setenv("ZHIDA_NODE__DATA_DIR", str(cli_env / "data"))
    assert main(["pki", "revoke", serial, "--reason", "keyCompromise"]) == 0
    assert main(["pki", "export-trust", str(trust)]) == 0
    capsys.readouterr()
    assert main(["verify", str(token), "--trust", str(trust)]) == 1
    assert capsys.readouterr().out.startswith("invalid: CERT_REVOKED: ")


def test_cli_seal_revocation_reaches_the_library_verifier_through_the_bundle(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pki", "init"]) == 0
    assert main(["pki", "issue-dept-cert", "--name", DEPT_NAME, "--uscc", DEPT_USCC]) == 0
    assert main(["seal", "create", "--dept-uscc", DEPT_USCC, "--valid-days", "30"]) == 0
    deployment = Deployment.open(deployment_config(cli_env / "data"))
    token = deployment.sign_licence_jws(DEPT_USCC, {"证照编号": "R-1"}).encode()
    seal_id = deployment.seal_for(DEPT_USCC).seal_id
    trust = cli_env / "trust.json"
    assert main(["pki", "export-trust", str(trust)]) == 0
    before = VerifierBundle.from_json(trust.read_text(encoding="utf-8"))
    assert verify_document(token, before.trust, before.registry()).valid

    assert main(["seal", "revoke", seal_id, "--reason", "印章遗失"]) == 0
    assert main(["pki", "export-trust", str(trust)]) == 0
    after = VerifierBundle.from_json(trust.read_text(encoding="utf-8"))
    result = verify_document(token, after.trust, after.registry())
    assert not result.valid
    assert result.reason == "SEAL_REVOKED"
    assert seal_id in result.message
    capsys.readouterr()
    assert main(["seal", "revoke", seal_id, "--reason", "again"]) == 2  # once only
    assert "already revoked" in capsys.readouterr().err


def test_cli_clear_dev_keys_get_a_banner_and_help_shows_the_real_way(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit):
        main(["pki", "init", "--help"])
    helptext = capsys.readouterr().out
    for needed in ("ZHIDA_PKI_PASSPHRASE_FILE", "ZHIDA_AUTH__DEV_KEYS=false", "--passphrase-file"):
        assert needed in helptext
    assert main(["pki", "init"]) == 0  # a passphrase is set: no banner
    assert "UNENCRYPTED" not in capsys.readouterr().err
    monkeypatch.delenv("ZHIDA_PKI_PASSPHRASE")
    monkeypatch.setenv("ZHIDA_NODE__DATA_DIR", str(cli_env / "dev"))
    assert main(["pki", "init"]) == 0  # auth.dev_keys defaults to true
    err = capsys.readouterr().err
    assert "PRIVATE KEYS WERE WRITTEN UNENCRYPTED" in err
    assert "ZHIDA_AUTH__DEV_KEYS=false" in err
    monkeypatch.setenv("ZHIDA_AUTH__DEV_KEYS", "false")
    monkeypatch.setenv("ZHIDA_NODE__DATA_DIR", str(cli_env / "prod"))
    assert main(["pki", "init"]) == 2  # no passphrase, no dev keys: refused
    assert "passphrase" in capsys.readouterr().err
    assert not list((cli_env / "prod").glob("keys/pki/*.key.pem"))


def test_cli_wrong_passphrase_is_one_clear_line(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["pki", "init"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("ZHIDA_PKI_PASSPHRASE", "not the passphrase")
    code = main(["pki", "issue-dept-cert", "--name", DEPT_NAME, "--uscc", DEPT_USCC])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1
    assert "wrong passphrase" in err
