"""The vault on the signing deployment facade: sealed PDFs, annotated copies, PDF verification."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from licence_vault.deployment_signer import DeploymentPdf, DeploymentSigner, open_deployment
from licence_vault.model import LicenceStatus
from licence_vault.signer import NO_VALID_SEAL
from licence_vault.sql import SqlLicenceStore
from licence_vault.status_list import verify_status_list_token
from licence_vault.types import BUSINESS_LICENCE, FOOD_BUSINESS_PERMIT
from licence_vault.vault import Actor, Vault
from signing.deployment import Deployment
from tests.unit.licence_vault.conftest import STATUS_BASE, Clock
from tests.unit.licence_vault.support import (
    JIANGAN_SAMR,
    PORTAL,
    RESTAURANT,
    WUHAN_SAMR,
    business_licence,
    food_permit,
)
from zhida.blobstore import FilesystemBlobStore
from zhida.config import Config, load_config
from zhida.db import Database
from zhida.errors import FailedPrecondition

DEPARTMENTS = {"武汉市江岸区市场监督管理局": JIANGAN_SAMR, "武汉市市场监督管理局": WUHAN_SAMR}
MATTER = "YJS-KBCYD"


def _config(directory: Path) -> Config:
    return load_config(
        None,
        env={"ZHIDA_NODE__DATA_DIR": str(directory), "ZHIDA_NODE__REGION_CODE": "420102"},
    )


@pytest.fixture(scope="session")
def deployment_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("deployment")
    open_deployment(_config(directory), DEPARTMENTS)
    return directory


@pytest.fixture
def deployment(deployment_template: Path, tmp_path: Path) -> Deployment:
    directory = tmp_path / "node"
    shutil.copytree(deployment_template, directory)
    return open_deployment(_config(directory), DEPARTMENTS)


@pytest.fixture
def pdf_vault(
    deployment: Deployment, sqlite_db: Database, blobs: FilesystemBlobStore, clock: Clock
) -> Vault:
    return Vault(
        SqlLicenceStore(sqlite_db),
        blobs,
        DeploymentSigner(deployment),
        pdf=DeploymentPdf(deployment),
        status_base_uri=STATUS_BASE,
        clock=clock,
    )


def test_a_development_node_gets_a_pki_with_seals_once(deployment_template: Path) -> None:
    again = open_deployment(_config(deployment_template), DEPARTMENTS)  # opens, makes nothing
    assert {d.uscc for d in again.departments()} == set(DEPARTMENTS.values())
    assert len(again.seals()) == len(DEPARTMENTS)


def test_a_production_node_without_a_pki_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZHIDA_PKI_PASSPHRASE", "correct horse")
    config = load_config(
        None, env={"ZHIDA_NODE__DATA_DIR": str(tmp_path), "ZHIDA_AUTH__DEV_KEYS": "false"}
    )
    with pytest.raises(FailedPrecondition) as err:
        open_deployment(config)
    assert err.value.reason == "PKI_NOT_INITIALISED"


def test_issue_seals_a_pdf_and_fetch_makes_annotated_copies(pdf_vault: Vault, clock: Clock) -> None:
    vault = pdf_vault
    issuer = Actor(JIANGAN_SAMR, "clerk")
    lic = vault.issue(issuer, food_permit()).licence
    vault.issue(issuer, business_licence())
    original = vault.read_pdf(lic)
    assert original is not None
    assert original.startswith(b"%PDF")
    verdict = vault.verify_pdf(original)
    assert verdict.valid, verdict
    assert verdict.licence_id == lic.licence_id
    assert verdict.issuer_code == JIANGAN_SAMR

    portal = Actor(PORTAL, "portal")
    consent = vault.grant_consent(
        RESTAURANT, PORTAL, [BUSINESS_LICENCE.code, FOOD_BUSINESS_PERMIT.code], MATTER,
        clock.now + timedelta(hours=1),
    )  # fmt: skip
    fetched = vault.fetch(portal, RESTAURANT, [FOOD_BUSINESS_PERMIT.code], MATTER,
                          consent.consent_id, with_pdf=True)  # fmt: skip
    (item,) = fetched.items
    assert item.pdf is not None
    assert item.pdf != original
    assert item.use.pdf_digest is not None
    copy_verdict = vault.verify_pdf(item.pdf)
    assert copy_verdict.valid, copy_verdict

    # the copy may be used until the consent ends
    clock.advance(hours=2)
    assert vault.verify_pdf(item.pdf).reason == "ANNOTATION_EXPIRED"
    assert vault.verify_pdf(original).valid
    # revoked: both the original and the copy now fail, naming the status
    vault.revoke(issuer, lic.licence_id, "依法吊销")
    assert vault.verify_pdf(original).reason == "REVOKED"
    assert vault.verify_pdf(original).status is LicenceStatus.REVOKED
    # a tampered PDF fails its signature check
    tampered = original.replace(b"/Producer", b"/Producex", 1)
    assert tampered != original
    assert not vault.verify_pdf(tampered).valid


def test_a_pdf_the_vault_did_not_make_is_not_vouched_for(
    pdf_vault: Vault, deployment: Deployment
) -> None:
    signed = deployment.sign_pdf(JIANGAN_SAMR, _blank_pdf())
    verdict = pdf_vault.verify_pdf(signed)
    assert verdict.reason == "UNKNOWN_DOCUMENT"


def test_status_lists_and_seal_revocation_through_the_facade(
    pdf_vault: Vault, deployment: Deployment
) -> None:
    vault = pdf_vault
    issuer = Actor(JIANGAN_SAMR, "clerk")
    lic = vault.issue(issuer, business_licence()).licence
    token = vault.status_list_token(JIANGAN_SAMR)
    signer = vault.signer
    lst = verify_status_list_token(
        token, signer.chain_verifier(), uri=lic.status_uri, issuer_code=JIANGAN_SAMR
    )
    assert lst.status(lic.status_idx) == 0
    seal = deployment.seal_for(JIANGAN_SAMR)
    deployment.revoke_seal(seal.seal_id, "印章遗失")
    with pytest.raises(FailedPrecondition) as err:
        vault.issue(issuer, business_licence("after-revocation"))
    assert err.value.reason == NO_VALID_SEAL
    assert err.value.metadata["failure"] == "NO_USABLE_SEAL"


def _blank_pdf() -> bytes:
    import io

    from reportlab.pdfgen.canvas import Canvas

    out = io.BytesIO()
    canvas = Canvas(out)
    canvas.drawString(100, 700, "not a licence")
    canvas.save()
    return out.getvalue()
