"""An independent verifier accepts zhida's licence PDFs: poppler's pdfsig (NSS).

pdfsig must report the signature valid and, with the deployment root in an
NSS database made by certutil, the certificate trusted; a tampered copy must
not validate. `make sysdeps` installs poppler-utils and libnss3-tools; without
them this test fails (it does not skip).
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from signing.pdf_layout import LicenceDocument
from tests.unit.signing.conftest import DEPT_NAME, DEPT_USCC, make_deployment

pytestmark = pytest.mark.integration


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: run `make sysdeps` "
            "(apt-get install poppler-utils libnss3-tools)"
        )
    return path


def _pdfsig(nss: Path, pdf: Path) -> str:
    result = subprocess.run(
        [_tool("pdfsig"), "-nssdir", f"sql:{nss}", str(pdf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout + result.stderr


def test_pdfsig_accepts_the_signature_and_trusts_the_root(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "node")
    document = LicenceDocument(
        "营业执照", "91420100MA4K00000A", [("名称", "某某有限公司")], DEPT_NAME, date.today()
    )
    pdf = tmp_path / "licence.pdf"
    pdf.write_bytes(deployment.issue_licence_pdf(DEPT_USCC, document))

    nss = tmp_path / "nss"
    nss.mkdir()
    root = tmp_path / "root.pem"
    root.write_bytes(deployment.root_certificate.public_bytes(Encoding.PEM))
    certutil = _tool("certutil")
    subprocess.run([certutil, "-N", "-d", f"sql:{nss}", "--empty-password"], check=True)
    subprocess.run(
        [certutil, "-A", "-d", f"sql:{nss}", "-n", "zhida-root", "-t", "CT,C,C", "-a", "-i",
         str(root)],
        check=True,
    )  # fmt: skip

    report = _pdfsig(nss, pdf)
    assert "Signature Validation: Signature is Valid." in report, report
    assert "Certificate Validation: Certificate is Trusted." in report, report
    assert "Total document signed" in report, report
    assert "ETSI.CAdES.detached" in report, report

    data = bytearray(pdf.read_bytes())
    data[len(data) // 4] ^= 0x01
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(bytes(data))
    assert "Signature is Valid." not in _pdfsig(nss, tampered)
