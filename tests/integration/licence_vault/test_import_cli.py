"""``zhida licence import`` and ``zhida licence verify`` against a real node."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.fixtures.node import NodeHandle
from tests.unit.licence_vault.support import JIANGAN_SAMR
from tests.unit.licence_vault.test_importer import COLUMNS, _rows
from zhida.auth.principal import Role
from zhida.licence.v1 import licence_vault_service_pb2 as pb
from zhida.licence.v1 import licence_vault_service_pb2_grpc as rpc

pytestmark = pytest.mark.integration


def test_import_then_again_issues_nothing_twice(node: NodeHandle, tmp_path: Path) -> None:
    path = tmp_path / "legacy.csv"
    rows = _rows(30)
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    args = ("licence", "import", str(path), "--address", node.address, "--org", JIANGAN_SAMR,
            "--batch-size", "8", "--skip-pdf")  # fmt: skip
    first = node.cli(*args)
    assert first.returncode == 1, first.stderr  # three rows are bad
    assert "issued 27" in first.stderr
    assert "failed 3" in first.stderr
    report = path.with_name("legacy.csv.errors.csv").read_text(encoding="utf-8")
    assert "INVALID_HOLDER_ID" in report
    assert "UNKNOWN_LICENCE_TYPE" in report

    resumed = node.cli(*args)  # the state says everything is done
    assert "skipped (done earlier) 30" in resumed.stderr
    restarted = node.cli(*args, "--restart")  # from scratch: found, not issued again
    assert "issued 0, already issued 27" in restarted.stderr

    # one of the imported licences, exported and verified offline with a cached status list
    stub = rpc.LicenceVaultServiceStub(node.channel())
    holder = rows[0]["holder_code"]
    mine = stub.ListMyLicences(
        pb.ListMyLicencesRequest(), metadata=node.auth(role=Role.HOLDER, org=holder, subject=holder)
    )
    (licence,) = mine.licences
    assert licence.pdf_sha256 == ""  # --skip-pdf: the JWS only
    got = stub.GetLicence(
        pb.GetLicenceRequest(licence_id=licence.licence_id),
        metadata=node.auth(role=Role.ISSUER, org=JIANGAN_SAMR),
    )
    token_file = tmp_path / "licence.jws"
    token_file.write_text(got.jws, encoding="ascii")
    cache = tmp_path / "cache"
    verify = ("licence", "verify", str(token_file), "--address", node.address,
              "--cache", str(cache))  # fmt: skip
    no_cache = ("verify", str(token_file), "--status-cache", str(tmp_path / "none"))
    unchecked = node.cli(*no_cache)
    assert unchecked.returncode == 0, unchecked.stdout + unchecked.stderr
    assert "status:    not checked: no cached status list" in unchecked.stdout
    assert node.cli(*no_cache, "--require-status").returncode == 1
    ok = node.cli(*verify)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "valid" in ok.stdout
    # `zhida verify` (offline: PKI files and the cached list only) agrees
    offline = ("verify", str(token_file), "--status-cache", str(cache))
    checked = node.cli(*offline)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "status:    valid (from the issuer's cached, signed status list)" in checked.stdout
    stub.RevokeLicence(
        pb.RevokeLicenceRequest(licence_id=licence.licence_id, reason="补录错误"),
        metadata=node.auth(role=Role.ISSUER, org=JIANGAN_SAMR),
    )
    cached = node.cli(*verify)  # the cached list (ttl not over) still says valid
    assert cached.returncode == 0
    refreshed = node.cli(*verify, "--refresh")
    assert refreshed.returncode == 1
    assert "REVOKED" in refreshed.stdout
    revoked = node.cli(*offline)  # the refreshed list is in the cache now
    assert revoked.returncode == 1
    assert revoked.stdout.startswith("invalid: REVOKED"), revoked.stdout
    as_json = node.cli(*offline, "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["reason"] == "REVOKED"
