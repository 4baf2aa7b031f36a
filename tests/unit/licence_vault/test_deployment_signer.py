"""The vault on the signing deployment facade: sealed PDFs, annotated copies, PDF verification."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from licence_vault.days import licence_day
from licence_vault.deployment_signer import DeploymentSigner, open_deployment
from licence_vault.model import LicenceStatus
from licence_vault.signer import NO_VALID_SEAL
from licence_vault.status_list import StatusList, verify_status_list_token
from licence_vault.types import BUSINESS_LICENCE, FOOD_BUSINESS_PERMIT
from licence_vault.vault import Actor, Vault
from licence_vault.verify import ANNOTATION_CLAIMS, pdf_licence_claims
from signing.canonical import b64url_decode
from signing.deployment import Deployment
from signing.trust import ChainVerifier
from tests.unit.licence_vault.conftest import DEPARTMENTS, Clock, deployment_config
from tests.unit.licence_vault.support import (
    JIANGAN_SAMR,
    PORTAL,
    RESTAURANT,
    business_licence,
    food_permit,
)
from zhida.config import Config, load_config
from zhida.errors import FailedPrecondition
from zhida.regions import Level

MATTER = "YJS-KBCYD"


def test_a_development_node_gets_a_pki_with_seals_once(deployment_template: Path) -> None:
    # opens, makes nothing
    again = open_deployment(deployment_config(deployment_template), DEPARTMENTS)
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


def test_the_annotated_copy_carries_its_watermark_and_its_use_is_recorded(
    pdf_vault: Vault, clock: Clock, tmp_path: Path
) -> None:
    vault = pdf_vault
    lic = vault.issue(Actor(JIANGAN_SAMR, "clerk"), food_permit()).licence
    consent = vault.grant_consent(
        RESTAURANT, PORTAL, [FOOD_BUSINESS_PERMIT.code], MATTER, clock.now + timedelta(hours=1)
    )
    fetched = vault.fetch(Actor(PORTAL, "portal"), RESTAURANT, [FOOD_BUSINESS_PERMIT.code],
                          MATTER, consent.consent_id, with_pdf=True)  # fmt: skip
    (item,) = fetched.items
    assert item.pdf is not None
    today = licence_day(clock.now).isoformat()  # the Beijing day
    watermark = f"仅供开办餐饮店使用 {PORTAL} {today}"  # matter, requester, day
    assert item.use.watermark == watermark
    # what a reader of the page sees: the watermark (drawn at 30°, so pdftotext gives the
    # glyphs line by line: compare without whitespace), the subtitle, the licence
    copy = _pdf_text(item.pdf, tmp_path / "copy")
    assert "".join(watermark.split()) in "".join(copy.split())
    assert "（加注件）" in copy
    assert lic.licence_id in copy
    original = vault.read_pdf(lic)
    assert original is not None
    assert "仅供" not in _pdf_text(original, tmp_path / "original")
    # the 加注件 is recorded: who, for what, until when, under which consent, which bytes
    ((_cursor, use),) = vault.holder_uses(RESTAURANT)
    assert use == item.use
    assert (use.licence_id, use.requester_org, use.matter_code, use.matter_name) == (
        lic.licence_id, PORTAL, MATTER, "开办餐饮店",
    )  # fmt: skip
    assert (use.consent_id, use.use_until) == (consent.consent_id, consent.valid_until)
    assert use.pdf_digest == hashlib.sha256(item.pdf).hexdigest()
    assert vault.store.find_pdf(use.pdf_digest) == (vault.get(lic.licence_id), use)
    # and the copy carries the licence's claims under its signature, for offline checks
    claims = pdf_licence_claims(item.pdf)
    assert claims is not None
    assert (claims["证照标识"], claims["status"]) == (lic.licence_id, lic.payload["status"])
    assert claims["有效期截止日期"] == lic.payload["有效期截止日期"]
    assert claims["加注"] == watermark
    # ... and its own: which use made it and until when it may be used, also on the page
    assert claims["加注件标识"] == use.annotation_id
    assert datetime.fromisoformat(claims["加注件使用期限"]) == use.use_until
    beijing = use.use_until.astimezone(timezone(timedelta(hours=8)))
    assert f"加注件使用期限 至 {beijing:%Y-%m-%d %H:%M}（北京时间）" in copy
    original_claims = pdf_licence_claims(original)
    assert original_claims is not None
    assert not set(ANNOTATION_CLAIMS) & original_claims.keys()


def _pdf_text(pdf: bytes, stem: Path) -> str:
    """The text poppler's pdftotext extracts, in drawing order (``-raw``: the default
    layout mode scatters the rotated watermark's glyphs among the page's lines)."""
    path = stem.with_suffix(".pdf")
    path.write_bytes(pdf)
    done = subprocess.run(
        ["pdftotext", "-raw", "-enc", "UTF-8", str(path), "-"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout.decode("utf-8")


def _grandchild(tmp_path: Path) -> tuple[Deployment, Deployment, Deployment]:
    """The root holder (national), a province and a city below it: the city's CA was issued
    by the province's, which the root issued."""

    def config(region: str) -> Config:
        env = {"ZHIDA_NODE__DATA_DIR": str(tmp_path / region), "ZHIDA_NODE__REGION_CODE": region}
        return load_config(None, env=env)

    def csr(cfg: Config, level: Level) -> bytes:
        return Deployment.request_ca(cfg, level=level, env={}).public_bytes(Encoding.PEM)

    root = Deployment.init(config("100000"), env={})
    province_cfg, city_cfg = config("420000"), config("420100")
    province = Deployment.import_ca(
        province_cfg,
        root.issue_sub_ca(csr(province_cfg, Level.PROVINCE), Level.PROVINCE),
        root=root.root_certificate,
        crls=root.crls(),
        env={},
    )
    city = Deployment.import_ca(
        city_cfg,
        province.issue_sub_ca(csr(city_cfg, Level.CITY), Level.CITY),
        root=root.root_certificate,
        crls=province.verifier_bundle().trust.crls,
        env={},
    )
    return root, province, city


def test_the_holder_code_is_printed_once(pdf_vault: Vault, tmp_path: Path) -> None:
    """营业执照 lists its 统一社会信用代码 among its own fields: no second row for it."""
    lic = pdf_vault.issue(Actor(JIANGAN_SAMR, "clerk"), business_licence()).licence
    pdf = pdf_vault.read_pdf(lic)
    assert pdf is not None
    text = _pdf_text(pdf, tmp_path / "licence")
    assert text.count("统一社会信用代码") == 1
    assert lic.holder_code in text


def test_status_lists_carry_the_whole_ca_chain_below_the_root(tmp_path: Path) -> None:
    root, province, city = _grandchild(tmp_path)
    uscc = "11420100MB00000009"
    city.issue_department_cert("武汉市市场监督管理局", uscc)
    uri = "zhida://wuhan/licence/v1/status-lists/" + uscc
    token = DeploymentSigner(city).sign_status_list(uscc, uri, StatusList(16))
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert len(city.ca_chain) == 2  # the city's CA and the province's above it
    assert len(header["x5c"]) == 1 + len(city.ca_chain)
    # a relying party that trusts only the root (with each CA's CRL) finds the path in x5c
    crls = [
        crl
        for node in (province, city)
        for crl in node.crls(refresh=False)
        if crl.issuer == node.ca_certificate.subject
    ]
    trust = root.trust_bundle().with_crls(*crls)
    verified = verify_status_list_token(token, ChainVerifier(trust), uri=uri, issuer_code=uscc)
    assert verified.issuer_code == uscc
