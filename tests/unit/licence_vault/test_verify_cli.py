"""``zhida verify`` on licences: validity period always, status from the cached list, bad input."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from licence_vault.offline import CachedNode
from licence_vault.vault import Actor, Vault
from signing.deployment import Deployment
from tests.unit.licence_vault.conftest import Clock
from tests.unit.licence_vault.support import JIANGAN_SAMR, PORTAL, RESTAURANT, food_permit
from zhida.cli import verify as verify_cli
from zhida.cli.main import main
from zhida.licence.v1 import licence_vault_service_pb2 as pb

MATTER = "YJS-KBCYD"
ISSUER = Actor(JIANGAN_SAMR, "clerk")


class StatusStub:
    """A node's GetStatusList, to fill a cache the way `zhida licence verify` does."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def GetStatusList(self, request: Any, **_: Any) -> pb.GetStatusListResponse:
        token = self.vault.status_list_token(self.vault.issuer_for_uri(request.uri))
        return pb.GetStatusListResponse(token=token, uri=request.uri)


@pytest.fixture
def files(tmp_path: Path, deployment: Deployment) -> Path:
    """A directory with the deployment's trust bundle (``trust.json``) and an empty cache."""
    (tmp_path / "trust.json").write_text(deployment.verifier_bundle(refresh_crls=False).to_json())
    (tmp_path / "cache").mkdir()
    return tmp_path


def _verify(
    files: Path, document: str | bytes, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    path = files / ("licence.pdf" if isinstance(document, bytes) else "licence.jws")
    if isinstance(document, bytes):
        path.write_bytes(document)
    else:
        path.write_text(document, encoding="ascii")
    args = ["verify", str(path), "--trust", str(files / "trust.json")]
    code = main([*args, "--status-cache", str(files / "cache"), *extra])
    return code, capsys.readouterr().out


def _lapsed(vault: Vault) -> tuple[str, bytes]:
    """A licence (JWS, sealed PDF) whose validity ended in 2020: a historical import."""
    request = food_permit("lapsed", issue_date=date(2019, 1, 1), valid_until=date(2020, 12, 31))
    result = vault.issue(ISSUER, request)
    pdf = vault.read_pdf(result.licence)
    assert pdf is not None
    return result.jws, pdf


def test_an_expired_licence_is_invalid_even_without_a_status_list(
    pdf_vault: Vault, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jws, pdf = _lapsed(pdf_vault)
    for document in (jws, pdf):
        code, out = _verify(files, document, capsys)  # the cache holds no list
        assert code == 1
        assert out == "invalid: EXPIRED: expired on 2020-12-31\n"
    code, out = _verify(files, jws, capsys, "--json")
    assert code == 1
    assert json.loads(out)["reason"] == "EXPIRED"


def test_a_revoked_pdf_and_its_annotated_copy_are_invalid_by_the_cached_list(
    pdf_vault: Vault, files: Path, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    vault = pdf_vault
    licence = vault.issue(ISSUER, food_permit()).licence
    original = vault.read_pdf(licence)
    assert original is not None
    consent = vault.grant_consent(
        RESTAURANT, PORTAL, [licence.type_code], MATTER, clock.now + timedelta(days=30)
    )
    fetched = vault.fetch(Actor(PORTAL, "portal"), RESTAURANT, [licence.type_code], MATTER,
                          consent.consent_id, with_pdf=True)  # fmt: skip
    copy = fetched.items[0].pdf
    assert copy is not None
    code, out = _verify(files, original, capsys)  # no list cached: valid, with a note
    assert code == 0
    assert "status:    not checked: no cached status list" in out
    node = CachedNode(files / "cache", StatusStub(vault), ())
    node.status_list(licence.status_uri, refresh=True)
    for document in (original, copy):
        code, out = _verify(files, document, capsys)
        assert code == 0, out
        assert "status:    valid (from the issuer's cached, signed status list)" in out
    vault.revoke(ISSUER, licence.licence_id, "依法吊销")
    node.status_list(licence.status_uri, refresh=True)
    for document in (original, copy):
        code, out = _verify(files, document, capsys)
        assert code == 1
        assert out.startswith("invalid: REVOKED: "), out


def test_an_annotated_copy_is_invalid_offline_once_its_use_has_ended(
    pdf_vault: Vault,
    files: Path,
    clock: Clock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vault = pdf_vault
    licence = vault.issue(ISSUER, food_permit()).licence
    consent = vault.grant_consent(
        RESTAURANT, PORTAL, [licence.type_code], MATTER, clock.now + timedelta(days=1)
    )
    fetched = vault.fetch(Actor(PORTAL, "portal"), RESTAURANT, [licence.type_code], MATTER,
                          consent.consent_id, with_pdf=True)  # fmt: skip
    (item,) = fetched.items
    assert item.pdf is not None
    original = vault.read_pdf(licence)
    assert original is not None
    code, out = _verify(files, item.pdf, capsys)
    assert code == 0, out  # within its use: valid (no list cached: a note says so)
    # the day after the consent ended (the copy's use ends with it), by the verifier's clock
    later = consent.valid_until + timedelta(seconds=1)
    monkeypatch.setattr(verify_cli, "_now", lambda: later)
    code, out = _verify(files, item.pdf, capsys)
    assert code == 1
    until = item.use.use_until.isoformat()
    why = f"this copy ({item.use.watermark}) could be used until {until}"
    assert out == f"invalid: ANNOTATION_EXPIRED: {why}\n"
    clock.now = later  # the vault says the same of the copy, online
    online = vault.verify_pdf(item.pdf)
    assert (online.reason, online.message) == ("ANNOTATION_EXPIRED", why)
    code, out = _verify(files, original, capsys)  # the original has no use period
    assert code == 0, out


def test_an_unreadable_file_or_bundle_is_invalid_not_a_usage_error(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = str(files / "trust.json")
    assert main(["verify", str(tmp_path / "missing.jws"), "--trust", trust]) == 1
    out = capsys.readouterr().out
    assert out.startswith("invalid: MALFORMED: cannot read "), out
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    licence = tmp_path / "x.jws"
    licence.write_text("a.b.c")
    for bundle in (garbage, tmp_path / "missing.json"):
        assert main(["verify", str(licence), "--trust", str(bundle), "--json"]) == 1
        doc = json.loads(capsys.readouterr().out)
        assert (doc["valid"], doc["reason"]) == (False, "MALFORMED")
    assert main(["verify", str(licence), "--trust", trust]) == 1  # not a licence at all
    assert capsys.readouterr().out.startswith("invalid: ")
    with pytest.raises(SystemExit) as usage:  # a wrong command line stays exit 2
        main(["verify"])
    assert usage.value.code == 2
