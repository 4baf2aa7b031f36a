"""A licence as a one-page A4 PDF that a person recognises.

:func:`render_licence_pdf` draws a :class:`LicenceDocument`: a double red
frame, the title (营业执照, 食品经营许可证, …) in large characters, the licence
number, a two-column field table (the licence type's layout: a list of
(label, value) pairs, long values wrapped), the issuing department and date at
the bottom right with the seal image stamped over them as a real seal would be,
a QR code bottom left carrying the licence identifier and how to verify it,
and, for annotated copies, a light diagonal watermark line repeated across
the page ("仅供 <matter> 使用 <requester> <date>").

Rendering uses ReportLab with the installed CJK TrueType font embedded as a
subset (:func:`signing.seal_image.find_cjk_font`; ``.ttc`` collections such as
wqy-microhei are supported). It is kept cheap because the vault renders on
every issue: the font is parsed once per process, each seal picture becomes a
PDF image object once and is reused by every later document (ReportLab would
re-encode the PNG per page), the QR code uses a fixed mask and is drawn as
merged runs, and streams are not ASCII85-armoured.

Example::

    doc = LicenceDocument(
        title="食品经营许可证",
        licence_id="JY14201020000001",
        fields=[("经营者名称", "武汉市江岸区某某餐饮有限公司"), ("经营项目", "热食类食品制售")],
        issuer_name="武汉市江岸区市场监督管理局",
        issue_date=date(2025, 1, 2),
    )
    pdf = render_licence_pdf(doc, seal_png=seal.picture.data)
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import segno
from reportlab import rl_config
from reportlab.lib.colors import Color
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfdoc, pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.pdfgen.canvas import Canvas

from signing.errors import FontNotFound
from signing.seal_image import FONT_PACKAGES, SEAL_RED, FontSpec, find_cjk_font
from zhida.errors import InvalidArgument

__all__ = ["DEFAULT_VERIFY_HINT", "LicenceDocument", "qr_text", "render_licence_pdf"]

# Pure-Python ASCII85 armour costs ~10 ms per image; binary streams are standard.
rl_config.useA85 = 0

DEFAULT_VERIFY_HINT = "核验：zhida verify <本文件>"
_FONT_NAME = "ZhidaCJK"
_MM = 72 / 25.4
_PAGE_W, _PAGE_H = A4
_MARGIN = 18 * _MM
_INK = Color(0.12, 0.12, 0.12)
_FRAME = Color(SEAL_RED[0] / 255, SEAL_RED[1] / 255, SEAL_RED[2] / 255)
_RULE = Color(0.55, 0.55, 0.55)
_SEAL_MM = 42
_QR_MM = 26
_LABEL_W = 42 * _MM
_BODY_PT = 12.0
_LINE_PT = 18.0
_MAX_FIELDS = 40


@dataclass(frozen=True, slots=True)
class LicenceDocument:
    """What the page shows. ``fields`` is the licence type's layout, in order."""

    title: str
    licence_id: str
    fields: Sequence[tuple[str, str]]
    issuer_name: str
    issue_date: date | str
    subtitle: str | None = None
    """A line under the title, e.g. ``（副本）``."""
    verify_url: str | None = None
    """If set, the QR code carries ``<verify_url>?id=<licence_id>`` instead of plain text."""
    verify_hint: str = DEFAULT_VERIFY_HINT
    watermark: str | None = None
    """Annotated copies: e.g. ``仅供 不动产登记 使用 武汉市自然资源局 2025-03-01``."""


def qr_text(doc: LicenceDocument) -> str:
    """What the QR code says: the licence identifier and how to verify it."""
    if doc.verify_url:
        separator = "&" if "?" in doc.verify_url else "?"
        return f"{doc.verify_url}{separator}id={doc.licence_id}"
    return f"ZHIDA-LICENCE:{doc.licence_id};VERIFY:zhida verify"


# -- resources cached per process ---------------------------------------------------

_LOCK = threading.Lock()


@functools.cache
def _font() -> str:
    """Register the CJK font with ReportLab once; its name."""
    spec = find_cjk_font()
    candidates = [spec, *_fallback_fonts(spec)]
    errors = []
    for candidate in candidates:
        try:
            font = TTFont(_FONT_NAME, candidate.path, subfontIndex=candidate.index)
        except (TTFError, OSError) as exc:  # e.g. CFF-outline (OpenType) collections
            errors.append(f"{candidate.path}: {exc}")
            continue
        pdfmetrics.registerFont(font)
        return _FONT_NAME
    raise FontNotFound(
        "no TrueType-outline CJK font to embed in PDFs "
        f"({'; '.join(errors)}); apt-get install -y {FONT_PACKAGES}"
    )


def _fallback_fonts(chosen: FontSpec) -> list[FontSpec]:
    from signing.seal_image import _from_known_files  # the same search, other files

    return [spec for _, spec in _from_known_files() if spec.path != chosen.path]


@dataclass(frozen=True, slots=True)
class _CachedImage:
    name: str
    xobject: Any  # pdfdoc.PDFImageXObject, its soft mask taken out
    smask: Any | None
    width: int
    height: int


_IMAGES: dict[bytes, _CachedImage] = {}


def _image(png: bytes) -> _CachedImage:
    """The PDF image object of ``png``, built once per distinct picture."""
    digest = hashlib.sha256(png).digest()
    cached = _IMAGES.get(digest)
    if cached is None:
        reader = ImageReader(io.BytesIO(png))
        name = "zimg" + digest[:12].hex()
        xobject = pdfdoc.PDFImageXObject(name, reader, mask="auto")
        smask = getattr(xobject, "_smask", None)
        if smask is not None:
            del xobject._smask
        cached = _CachedImage(name, xobject, smask, *reader.getSize())
        with _LOCK:
            if len(_IMAGES) > 256:  # seals are few; bound it anyway
                _IMAGES.clear()
            _IMAGES[digest] = cached
    return cached


def _draw_image(c: Canvas, image: _CachedImage, x: float, y: float, w: float, h: float) -> None:
    """``Canvas.drawImage`` with a prebuilt image object (ReportLab internals, v4/v5)."""
    doc = c._doc
    xobject = copy.copy(image.xobject)  # per document: its /SMask reference differs
    reg_name = doc.getXObjectName(image.name)
    c._setXObjects(xobject)
    doc.Reference(xobject, reg_name)
    doc.addForm(image.name, xobject)
    if image.smask is not None:
        smask = copy.copy(image.smask)
        mask_name = doc.getXObjectName(smask.name)
        c._setXObjects(smask)
        xobject.smask = doc.Reference(smask, mask_name)
    c.saveState()
    c.translate(x, y)
    c.scale(w, h)
    c._code.append(f"/{reg_name} Do")
    c.restoreState()
    c._formsinuse.append(image.name)
    c._currentPageHasImages = 1


# -- drawing ------------------------------------------------------------------------


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """Break ``text`` into lines no wider than ``width`` (any character may break: CJK)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        line_w = 0.0
        for char in paragraph:
            char_w = pdfmetrics.stringWidth(char, font, size)
            if line and line_w + char_w > width:
                lines.append(line)
                line, line_w = "", 0.0
            line += char
            line_w += char_w
        lines.append(line)
    return lines


def _date_text(value: date | str) -> str:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return f"{value.year}年{value.month:02d}月{value.day:02d}日"
    return value


def _frame(c: Canvas) -> None:
    c.setStrokeColor(_FRAME)
    c.setLineWidth(2.2)
    c.rect(_MARGIN - 8, _MARGIN - 8, _PAGE_W - 2 * _MARGIN + 16, _PAGE_H - 2 * _MARGIN + 16)
    c.setLineWidth(0.8)
    c.rect(_MARGIN - 3, _MARGIN - 3, _PAGE_W - 2 * _MARGIN + 6, _PAGE_H - 2 * _MARGIN + 6)


def _title(c: Canvas, font: str, doc: LicenceDocument) -> float:
    top = _PAGE_H - _MARGIN - 18 * _MM
    size = 30.0 if len(doc.title) <= 10 else 22.0
    text = c.beginText()
    text.setTextRenderMode(2)  # fill + thin stroke: a bold face from a regular one
    c.setLineWidth(0.6)
    c.setStrokeColor(_INK)
    c.setFillColor(_INK)
    text.setFont(font, size)
    # letter-spaced like printed certificates
    spacing = size * 0.35 if len(doc.title) <= 8 else 0.0
    width = pdfmetrics.stringWidth(doc.title, font, size) + spacing * (len(doc.title) - 1)
    text.setCharSpace(spacing)
    text.setTextOrigin((_PAGE_W - width) / 2, top)
    text.textOut(doc.title)
    # Tc and Tr belong to the graphics state and outlive the text object: reset them
    text.setCharSpace(0)
    text.setTextRenderMode(0)
    c.drawText(text)
    y = top - 12 * _MM
    if doc.subtitle:
        c.setFont(font, 14)
        c.drawCentredString(_PAGE_W / 2, top - 9 * _MM, doc.subtitle)
        y -= 4 * _MM
    c.setFont(font, 10.5)
    c.drawRightString(_PAGE_W - _MARGIN - 6 * _MM, y, f"编号：{doc.licence_id}")
    return float(y - 6 * _MM)


def _table(c: Canvas, font: str, doc: LicenceDocument, top: float, bottom: float) -> None:
    left = _MARGIN + 6 * _MM
    right = _PAGE_W - _MARGIN - 6 * _MM
    value_w = right - left - _LABEL_W - 6 * _MM
    c.setStrokeColor(_RULE)
    c.setLineWidth(0.5)
    c.setFillColor(_INK)
    y = top
    c.line(left, y, right, y)
    c.setFont(font, _BODY_PT)
    for label, value in doc.fields:
        labels = _wrap(label, font, _BODY_PT, _LABEL_W - 5 * _MM)
        lines = _wrap(value, font, _BODY_PT, value_w)
        height = max(len(labels), len(lines)) * _LINE_PT + 8
        if y - height < bottom:  # the page is full: cut this value short and stop
            lines = [*lines[: max(0, int((y - bottom - 8) // _LINE_PT) - 1)], "……"]
            height = max(len(labels), len(lines)) * _LINE_PT + 8
            if y - height < bottom:
                break
        for i, line in enumerate(labels):
            c.drawString(left + 3 * _MM, y - (i + 1) * _LINE_PT + 2, line)
        for i, line in enumerate(lines):
            c.drawString(left + _LABEL_W + 3 * _MM, y - (i + 1) * _LINE_PT + 2, line)
        y -= height
        c.line(left, y, right, y)
    c.line(left, top, left, y)
    c.line(left + _LABEL_W, top, left + _LABEL_W, y)
    c.line(right, top, right, y)


def _qr(c: Canvas, font: str, doc: LicenceDocument) -> None:
    # A fixed mask skips segno's mask scoring (8 ms per code); any mask is valid.
    code = segno.make_qr(qr_text(doc), error="m", mask=0, boost_error=False)
    matrix = code.matrix
    n = len(matrix)
    size = _QR_MM * _MM
    cell = size / (n + 2)  # a quiet zone of one module around
    x0, y0 = _MARGIN + 8 * _MM, _MARGIN + 16 * _MM
    c.setFillColor(Color(1, 1, 1))
    c.rect(x0, y0, size, size, stroke=0, fill=1)
    c.setFillColor(_INK)
    # One rectangle per horizontal run of dark modules, in module units under a
    # scaling matrix: integer operands, written straight into the page content
    # (ReportLab's path API formats every float and costs ~7 ms per code).
    runs: list[str] = []
    for r, row in enumerate(matrix):
        y = n - r
        col = 0
        while col < n:
            if row[col]:
                start = col
                while col < n and row[col]:
                    col += 1
                runs.append(f"{start + 1} {y} {col - start} 1 re")
            else:
                col += 1
    c.saveState()
    c.translate(x0, y0)
    c.scale(cell, cell)
    c._code.append("\n".join(runs) + "\nf")
    c.restoreState()
    c.setFont(font, 8)
    c.drawString(x0, y0 - 5 * _MM, doc.verify_hint)
    c.drawString(x0, y0 - 9 * _MM, f"证照标识：{doc.licence_id}")


def _issuer(c: Canvas, font: str, doc: LicenceDocument, seal_png: bytes | None) -> None:
    right = _PAGE_W - _MARGIN - 14 * _MM
    base = _MARGIN + 30 * _MM
    c.setFillColor(_INK)
    c.setFont(font, 13)
    name_w = pdfmetrics.stringWidth(doc.issuer_name, font, 13)
    c.drawRightString(right, base + 8 * _MM, doc.issuer_name)
    c.drawRightString(right, base, _date_text(doc.issue_date))
    c.setFont(font, 11)
    c.drawRightString(right - name_w - 2 * _MM, base + 8 * _MM, "发证机关：")
    if seal_png is not None:
        # the seal stamped over the issuer's name and date, centred on the name
        size = _SEAL_MM * _MM
        cx = right - name_w / 2
        cy = base + 6 * _MM
        _draw_image(c, _image(seal_png), cx - size / 2, cy - size / 2, size, size)


def _watermark(c: Canvas, font: str, text: str) -> None:
    c.saveState()
    c.setFillColor(Color(0.35, 0.35, 0.35), alpha=0.22)
    c.setFont(font, 16)
    c.translate(_PAGE_W / 2, _PAGE_H / 2)
    c.rotate(30)
    for offset in (-220, 0, 220):
        c.drawCentredString(0, offset, text)
    c.restoreState()


def render_licence_pdf(doc: LicenceDocument, seal_png: bytes | None = None) -> bytes:
    """The licence page as PDF bytes; ``seal_png`` is the seal picture (RGBA PNG).

    Raises InvalidArgument for an empty title, issuer or licence id, or more
    than 40 fields; FontNotFound when no embeddable CJK font is installed.
    """
    if not (doc.title.strip() and doc.issuer_name.strip() and doc.licence_id.strip()):
        raise InvalidArgument(
            "a licence document needs a title, an issuer and a licence id",
            reason="INVALID_LICENCE_DOCUMENT",
        )
    if len(doc.fields) > _MAX_FIELDS:
        raise InvalidArgument(
            f"at most {_MAX_FIELDS} fields fit on the page", reason="INVALID_LICENCE_DOCUMENT"
        )
    font = _font()
    out = io.BytesIO()
    c = Canvas(out, pagesize=A4, pageCompression=1)
    c.setTitle(f"{doc.title} {doc.licence_id}")
    c.setAuthor(doc.issuer_name)
    c.setSubject(doc.title)
    c.setCreator("zhida")
    _frame(c)
    top = _title(c, font, doc)
    _table(c, font, doc, top, _MARGIN + 62 * _MM)
    _qr(c, font, doc)
    _issuer(c, font, doc, seal_png)
    if doc.watermark:
        _watermark(c, font, doc.watermark)
    c.showPage()
    c.save()
    return out.getvalue()
