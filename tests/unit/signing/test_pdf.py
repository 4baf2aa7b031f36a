"""Licence PDFs: rendering, PAdES signing inside the key store, and every way to break one."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from signing.errors import Failure
from signing.keystore import FileKeyStore, KeyHandle, KeyInfo, KeyStore
from signing.pdf import SEAL_ENTRY, KeyStoreSigner, sign_pdf
from signing.pdf_layout import LicenceDocument, qr_text, render_licence_pdf
from signing.seal import SealRegistry, SealRevocations
from signing.verify import VerificationResult, verify_document
from tests.unit.signing.conftest import TINY_PNG, World, ended_signer, make_seal
from zhida.errors import InvalidArgument

DOC = LicenceDocument(
    title="食品经营许可证",
    licence_id="JY14201020000001",
    fields=[
        ("经营者名称", "武汉市江岸区某某餐饮有限公司"),
        ("统一社会信用代码", "91420102MA4K000000"),
        ("法定代表人（负责人）", "张三"),
        ("经营场所", "武汉市江岸区解放大道1000号一楼101室" * 4),  # wraps
        ("经营项目", "热食类食品制售；冷食类食品制售"),
    ],
    issuer_name="武汉市江岸区市场监督管理局",
    issue_date=date(2025, 1, 2),
    watermark="仅供 不动产登记 使用 武汉市自然资源和规划局 2025-03-01",
)


@pytest.fixture(scope="module")
def rendered() -> bytes:
    return render_licence_pdf(DOC, seal_png=TINY_PNG)


def _sign(world: World, pdf: bytes, **kw: Any) -> bytes:
    return sign_pdf(pdf, world.store, "scj-2025", world.scj_chain, seal_id=world.seal.seal_id, **kw)


def _verify(world: World, data: bytes, registry: SealRegistry | None = None, **kw: Any) -> Any:
    return verify_document(data, kw.pop("bundle", world.bundle), registry or world.registry(), **kw)


def _refused(result: VerificationResult) -> Failure:
    assert not result.valid, result
    assert result.failure is not None
    assert result.message
    return result.failure


def test_render_is_a_one_page_a4_pdf_with_embedded_cjk_font(rendered: bytes) -> None:
    reader = PdfFileReader(io.BytesIO(rendered))
    assert len(reader.root["/Pages"]["/Kids"]) == 1
    page = reader.root["/Pages"]["/Kids"][0]
    assert [round(float(v)) for v in page["/MediaBox"]] == [0, 0, 595, 842]
    fonts = [f.get_object() for f in page["/Resources"]["/Font"].values()]
    descriptors = [f["/FontDescriptor"] for f in fonts if "/FontDescriptor" in f]
    assert descriptors
    assert all("/FontFile2" in d for d in descriptors)  # embedded TrueType
    assert any(re.match(r"/?[A-Z]{6}\+", str(f["/BaseFont"])) for f in fonts)  # a subset
    assert rendered.count(b"/Subtype /Image") >= 1  # the seal picture (and its soft mask)


def test_qr_text_carries_the_licence_id_and_a_hint() -> None:
    assert qr_text(DOC) == "ZHIDA-LICENCE:JY14201020000001;VERIFY:zhida verify"
    with_url = LicenceDocument(**{**_fields(DOC), "verify_url": "https://zw.example/verify"})
    assert qr_text(with_url) == "https://zw.example/verify?id=JY14201020000001"


def _fields(doc: LicenceDocument) -> dict[str, Any]:
    return {name: getattr(doc, name) for name in doc.__slots__}


def test_render_refuses_empty_documents() -> None:
    with pytest.raises(InvalidArgument):
        render_licence_pdf(LicenceDocument("", "x", [], "y", "2025-01-01"))
    with pytest.raises(InvalidArgument):
        render_licence_pdf(LicenceDocument("t", "x", [("a", "b")] * 41, "y", "2025-01-01"))


def test_signed_pdf_verifies(world: World, rendered: bytes) -> None:
    signed = _sign(world, rendered, now=world.now)
    result = _verify(world, signed)
    assert result.valid, result.message
    assert result.kind == "pdf"
    assert result.signed_at == world.now
    assert result.department is not None
    assert result.department.uscc == world.seal.owner_uscc
    assert result.seal is not None
    assert result.seal.seal_id == world.seal.seal_id
    assert result.chain[-1] == world.root.certificate
    assert result.summary().startswith("valid: PDF signed by 武汉市江岸区市场监督管理局")
    reader = PdfFileReader(io.BytesIO(signed))
    assert str(reader.root[SEAL_ENTRY]["/SealId"]) == world.seal.seal_id
    assert reader.embedded_signatures[0].sig_object["/SubFilter"] == "/ETSI.CAdES.detached"


def test_private_key_never_leaves_the_store(world: World, rendered: bytes) -> None:
    """The signer only calls KeyStore.sign: a store whose handles cannot export still works."""

    class SignOnly(KeyStore):
        def __init__(self, inner: FileKeyStore) -> None:
            self.inner, self.calls = inner, 0

        def generate(self, key_id: str, algorithm: Any = None) -> KeyInfo:
            raise NotImplementedError

        def handle(self, key_id: str) -> KeyHandle:
            raise AssertionError("the PDF signer must not ask for a key handle")

        def list(self) -> list[KeyInfo]:
            return self.inner.list()

        def retire(self, key_id: str) -> KeyInfo:
            raise NotImplementedError

        def info(self, key_id: str) -> KeyInfo:
            return self.inner.info(key_id)

        def sign(self, key_id: str, data: bytes) -> bytes:
            self.calls += 1
            return self.inner.sign(key_id, data)

    store = SignOnly(world.store)
    signed = sign_pdf(rendered, store, "scj-2025", world.scj_chain, seal_id=world.seal.seal_id)
    assert store.calls == 1
    assert _verify(world, signed).valid


def test_signer_must_match_its_certificate(world: World) -> None:
    with pytest.raises(InvalidArgument, match="not the key"):
        KeyStoreSigner(world.store, "mzj-2025", world.scj_chain)


def test_already_signed_pdf_is_not_signed_again(world: World, rendered: bytes) -> None:
    with pytest.raises(InvalidArgument) as err:
        _sign(world, _sign(world, rendered))
    assert err.value.reason == "PDF_ALREADY_SIGNED"


def test_changed_bytes_in_the_signed_range_are_refused(world: World, rendered: bytes) -> None:
    signed = _sign(world, rendered)
    reader = PdfFileReader(io.BytesIO(signed))
    start, length1, start2, length2 = (
        int(v) for v in reader.embedded_signatures[0].sig_object["/ByteRange"]
    )
    signed_positions = [*range(start, length1), *range(start2, start2 + length2)]
    step = max(1, len(signed_positions) // 60)
    failures = set()
    for position in signed_positions[::step]:
        tampered = bytearray(signed)
        tampered[position] ^= 0x01
        failures.add(_refused(_verify(world, bytes(tampered))))
    # mostly digest mismatches; a flip in the xref or a header makes the file unreadable
    assert failures <= {Failure.BAD_SIGNATURE, Failure.MALFORMED}
    assert Failure.BAD_SIGNATURE in failures


def test_changed_bytes_in_the_signature_itself_are_refused(world: World, rendered: bytes) -> None:
    signed = _sign(world, rendered)
    reader = PdfFileReader(io.BytesIO(signed))
    _, length1, start2, _ = (int(v) for v in reader.embedded_signatures[0].sig_object["/ByteRange"])
    contents = signed[length1:start2]  # <hex CMS, zero padded>
    cms_hex_end = length1 + 1 + len(contents[1:-1].rstrip(b"0"))
    for position in range(length1 + 2, cms_hex_end, max(1, (cms_hex_end - length1) // 40)):
        tampered = bytearray(signed)
        tampered[position] = ord("0") if tampered[position] != ord("0") else ord("1")
        assert _refused(_verify(world, bytes(tampered))) in {
            Failure.BAD_SIGNATURE,  # signed attributes, signature value, signer certificate
            Failure.MALFORMED,  # the container no longer parses
            Failure.DOCUMENT_MODIFIED,  # unsigned parts: the other certificates, padding
        }
    # the zero padding after the container is outside /ByteRange and the CMS too
    padded = bytearray(signed)
    padded[start2 - 3] = ord("7")
    assert _refused(_verify(world, bytes(padded))) is Failure.DOCUMENT_MODIFIED


def test_incremental_update_after_signing_is_reported_as_modified(
    world: World, rendered: bytes
) -> None:
    signed = _sign(world, rendered)
    writer = IncrementalPdfFileWriter(io.BytesIO(signed))
    info = writer.trailer["/Info"].get_object()
    info[generic.NameObject("/Title")] = generic.TextStringObject("篡改")
    writer.update_container(info)
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    result = _verify(world, out.getvalue())
    assert _refused(result) is Failure.DOCUMENT_MODIFIED
    assert "after signing" in result.message


def test_truncated_or_unsigned_pdfs_are_refused(world: World, rendered: bytes) -> None:
    signed = _sign(world, rendered)
    assert _refused(_verify(world, rendered)) is Failure.MALFORMED  # no signature
    assert _refused(_verify(world, signed[: len(signed) // 2])) is Failure.MALFORMED
    assert _refused(_verify(world, b"%PDF-1.7 junk")) is Failure.MALFORMED


def test_expired_and_revoked_signer_certificates(world: World, rendered: bytes) -> None:
    before_cert = _sign(world, rendered, now=world.now - timedelta(days=3))
    assert _refused(_verify(world, before_cert)) is Failure.CERT_EXPIRED
    revoked_bundle = world.bundle.with_crls(*world.crls(world.scj_cert.serial_number))
    signed = _sign(world, rendered)
    assert _refused(_verify(world, signed, bundle=revoked_bundle)) is Failure.CERT_REVOKED


def test_signed_after_the_certificate_ended(world: World, rendered: bytes, tmp_path: Path) -> None:
    ended = ended_signer(world, tmp_path)
    cert = ended.certificate

    def signed_at(when: datetime) -> bytes:
        chain = ended.chain(world)
        seal_id = ended.seal.seal_id
        return sign_pdf(rendered, ended.store, ended.key_id, chain, seal_id=seal_id, now=when)

    during = _verify(
        world, signed_at(cert.not_valid_before_utc + timedelta(hours=12)), ended.registry
    )
    assert during.valid, during.message  # made while it was valid: still valid
    after = cert.not_valid_after_utc + timedelta(days=1)
    assert after < world.now
    result = _verify(world, signed_at(after), ended.registry)
    assert _refused(result) is Failure.CERT_EXPIRED


def test_future_signing_time_is_refused(world: World, rendered: bytes) -> None:
    future = _sign(world, rendered, now=world.now + timedelta(hours=2))
    assert _refused(_verify(world, future, now=world.now)) is Failure.SIGNING_TIME_INVALID


def test_seal_checks_on_pdfs(world: World, rendered: bytes) -> None:
    # the civil-affairs key signs under the market-regulation seal: not bound
    unbound = sign_pdf(
        rendered, world.store, "mzj-2025", world.mzj_chain, seal_id=world.seal.seal_id
    )
    assert _refused(_verify(world, unbound)) is Failure.SEAL_NOT_BOUND
    unknown = _sign_with_seal(world, rendered, "no-such-seal")
    assert _refused(_verify(world, unknown)) is Failure.SEAL_UNKNOWN
    signed = _sign(world, rendered)
    revocations = SealRevocations([(world.seal.seal_id, world.now, "印章遗失")])
    assert _refused(_verify(world, signed, revocations=revocations)) is Failure.SEAL_REVOKED
    # a seal whose validity starts tomorrow, used today
    late = make_seal(
        world.store,
        world.scj_cert,
        "武汉市江岸区市场监督管理局",
        world.seal.owner_uscc,
        world.now,
        valid_from=world.now + timedelta(days=1),
        valid_until=world.now + timedelta(days=2),
    )
    registry = SealRegistry([world.store.public_key("seal-maker")], seals=[late])
    early = _sign_with_seal(world, rendered, late.seal_id)
    assert _refused(_verify(world, early, registry)) is Failure.SEAL_EXPIRED


def _sign_with_seal(world: World, pdf: bytes, seal_id: str) -> bytes:
    return sign_pdf(pdf, world.store, "scj-2025", world.scj_chain, seal_id=seal_id)


def test_other_deployment_is_not_trusted(world: World, rendered: bytes, tmp_path: Path) -> None:
    from tests.unit.signing.conftest import build_world

    other = build_world(tmp_path)
    foreign = sign_pdf(
        rendered, other.store, "scj-2025", other.scj_chain, seal_id=other.seal.seal_id
    )
    assert _refused(_verify(world, foreign)) is Failure.CHAIN_INVALID


def test_signing_time_is_the_callers(world: World, rendered: bytes) -> None:
    when = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    reader = PdfFileReader(io.BytesIO(_sign(world, rendered, now=when)))
    assert reader.embedded_signatures[0].self_reported_timestamp == when


def test_rendered_text_keeps_digits_latin_and_chinese(rendered: bytes, tmp_path: Path) -> None:
    """What a person reads on the licence: codes and dates must not come out blank."""
    pdftotext = shutil.which("pdftotext")
    assert pdftotext, "pdftotext (poppler-utils) is missing: run `make sysdeps`"
    path = tmp_path / "licence.pdf"
    path.write_bytes(rendered)
    text = subprocess.run(
        [pdftotext, "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    for expected in ("JY14201020000001", "91420102MA4K000000", "2025", "食品经营许可证"):
        assert expected in text, f"{expected!r} missing from the rendered licence:\n{text}"
