"""The picture of an electronic seal: a round red seal drawn with Pillow.

:func:`render_seal_image` draws what a Chinese official seal looks like: a red
ring, the department's name along the upper arc (each character upright,
pointing outward, slightly condensed), a five-pointed star in the centre and,
optionally, the seal's purpose (e.g. 电子证照专用章) in a line below the star,
on a transparent background. It draws at 4× and downsamples for smooth edges.

It needs a font with Chinese glyphs. :func:`find_cjk_font` looks, in order, at
the ``ZHIDA_CJK_FONT`` environment variable (``path`` or ``path:index``),
``fc-list :lang=zh``, and the usual font directories, preferring Song/Ming
(serif) faces as real seals use, then Simplified-Chinese faces. With none
installed it raises :class:`signing.errors.FontNotFound` naming the Debian
package to install (``fonts-wqy-microhei``, or ``fonts-noto-cjk``).

Example::

    png = render_seal_image("武汉市江岸区市场监督管理局", purpose="电子证照专用章")
    Path("seal.png").write_bytes(png)
"""

from __future__ import annotations

import functools
import io
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from signing.errors import FontNotFound
from zhida.errors import InvalidArgument

__all__ = ["FontSpec", "find_cjk_font", "render_seal_image"]

FONT_ENV = "ZHIDA_CJK_FONT"
FONT_PACKAGES = "fonts-wqy-microhei (or fonts-noto-cjk)"
SEAL_RED = (218, 28, 36)
_SUPERSAMPLE = 4
_CONDENSE = 0.78  # seal characters are narrower than they are tall
_EMBOLDEN = 0.025  # stroke added around glyphs: seal engraving is heavier than print
_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
_KNOWN_FILES = (
    "NotoSerifCJK-Regular.ttc",
    "NotoSerifCJK-Bold.ttc",
    "uming.ttc",
    "NotoSansCJK-Regular.ttc",
    "wqy-zenhei.ttc",
    "wqy-microhei.ttc",
    "simsun.ttc",
    "simhei.ttf",
)


@dataclass(frozen=True, slots=True)
class FontSpec:
    """A font file and the face index inside a ``.ttc`` collection."""

    path: str
    index: int = 0
    family: str = ""


def _score(family: str, style: str) -> int:
    text = f"{family} {style}".lower()
    score = 0
    if any(w in text for w in ("serif", "song", "ming", "fangsong", "宋")):
        score += 4
    if any(w in text for w in (" sc", "cn", "gb", "简")):
        score += 2
    if "mono" in text:
        score -= 3
    if "regular" in text or "book" in text or "medium" in text:
        score += 1
    return score


def _from_fc_list() -> list[tuple[int, FontSpec]]:
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return []
    try:
        result = subprocess.run(
            [fc_list, ":lang=zh", "--format", "%{file}\t%{index}\t%{family}\t%{style}\n"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in result.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 4 or not parts[0].lower().endswith((".ttf", ".ttc", ".otf", ".otc")):
            continue
        path, index, family, style = parts
        spec = FontSpec(path, int(index) if index.isdigit() else 0, family.split(",")[0])
        found.append((_score(family, style), spec))
    return found


def _from_known_files() -> list[tuple[int, FontSpec]]:
    found = []
    for directory in _FONT_DIRS:
        root = Path(directory).expanduser()
        if not root.is_dir():
            continue
        for rank, name in enumerate(_KNOWN_FILES):
            for path in root.rglob(name):
                # Noto CJK collections hold JP, KR, SC, TC, HK faces: index 2 is SC.
                index = 2 if name.startswith("Noto") else 0
                found.append((-rank, FontSpec(str(path), index, name)))
    return found


@functools.cache
def find_cjk_font() -> FontSpec:
    """The best installed font with Chinese glyphs; FontNotFound if there is none."""
    override = os.environ.get(FONT_ENV)
    if override:
        path, _, index = override.partition(":")
        if not Path(path).is_file():
            raise FontNotFound(f"{FONT_ENV}={override!r} names no font file")
        return FontSpec(path, int(index) if index.isdigit() else 0, Path(path).name)
    candidates = _from_fc_list() or _from_known_files()
    for _, spec in sorted(candidates, key=lambda c: (-c[0], c[1].path, c[1].index)):
        if _has_cjk_glyphs(spec):
            return spec
    raise FontNotFound(
        "no font with Chinese glyphs is installed; seal images need one: "
        f"apt-get install -y {FONT_PACKAGES}, or set {FONT_ENV}=/path/to/font.ttc"
    )


def _has_cjk_glyphs(spec: FontSpec) -> bool:
    try:
        font = ImageFont.truetype(spec.path, 48, index=spec.index)
    except OSError:
        return False
    # A font without a glyph draws the same .notdef box (or nothing) for every
    # missing character. Licences also carry codes and dates, so digits and Latin
    # letters are required too: DroidSansFallback, often installed, has none.
    return all(bytes(font.getmask(a)) != bytes(font.getmask(b)) for a, b in ("国印", "17", "AZ"))


def _glyph(font: ImageFont.FreeTypeFont, char: str, size: int) -> Image.Image:
    """One character as an ``L`` mask, centred on a square, condensed horizontally."""
    box = int(size * 1.6)
    mask = Image.new("L", (box, box), 0)
    ImageDraw.Draw(mask).text(
        (box / 2, box / 2),
        char,
        fill=255,
        font=font,
        anchor="mm",
        stroke_width=max(1, round(size * _EMBOLDEN)),
        stroke_fill=255,
    )
    return mask.resize((max(1, int(box * _CONDENSE)), box), Image.Resampling.LANCZOS)


def _paste_centered(canvas: Image.Image, glyph: Image.Image, x: float, y: float) -> None:
    canvas.paste(255, (round(x - glyph.width / 2), round(y - glyph.height / 2)), glyph)


def _star(draw: ImageDraw.ImageDraw, cx: float, cy: float, radius: float) -> None:
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.382
        angle = math.radians(-90 + 36 * k)
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    draw.polygon(points, fill=255)


def render_seal_image(
    department_name: str,
    purpose: str | None = None,
    *,
    size_px: int = 496,
    diameter_mm: int = 42,
) -> bytes:
    """PNG bytes of a round red seal for ``department_name``, transparent outside the ink.

    ``size_px`` is the image's width and height; the PNG's DPI says it prints
    ``diameter_mm`` wide (496 px at 42 mm = 300 dpi).
    """
    name = "".join(department_name.split())
    if not name:
        raise InvalidArgument("department name is empty", reason="INVALID_DEPARTMENT_NAME")
    if not 64 <= size_px <= 4096:
        raise InvalidArgument("size_px must be between 64 and 4096", reason="INVALID_SIZE")
    spec = find_cjk_font()
    width = size_px * _SUPERSAMPLE
    centre = width / 2
    outer = width / 2 * 0.97
    ring = outer * 0.065
    mask = Image.new("L", (width, width), 0)
    draw = ImageDraw.Draw(mask)
    draw.ellipse(
        (centre - outer, centre - outer, centre + outer, centre + outer),
        outline=255,
        width=round(ring),
    )

    # The name: upright characters along the upper arc, centred on the top.
    count = len(name)
    step = math.radians(min(32.0, 250.0 / count))
    char_height = outer * 0.25
    text_radius = outer - ring - outer * 0.05 - char_height / 2
    arc = text_radius * step
    size = int(min(char_height, arc * 0.95 / _CONDENSE))
    font = ImageFont.truetype(spec.path, size, index=spec.index)
    text_radius = outer - ring - outer * 0.05 - size / 2
    for i, char in enumerate(name):
        theta = (i - (count - 1) / 2) * step  # 0 at the top, clockwise
        glyph = _glyph(font, char, size).rotate(
            -math.degrees(theta), resample=Image.Resampling.BICUBIC, expand=True
        )
        x = centre + text_radius * math.sin(theta)
        y = centre - text_radius * math.cos(theta)
        _paste_centered(mask, glyph, x, y)

    _star(draw, centre, centre, outer * 0.30)

    if purpose:
        line = "".join(purpose.split())
        available = outer * 1.1
        psize = int(min(outer * 0.15, available / (len(line) * _CONDENSE)))
        pfont = ImageFont.truetype(spec.path, psize, index=spec.index)
        y = centre + outer * 0.55
        pitch = psize * _CONDENSE * 1.02
        for i, char in enumerate(line):
            x = centre + (i - (len(line) - 1) / 2) * pitch
            _paste_centered(mask, _glyph(pfont, char, psize), x, y)

    alpha = mask.resize((size_px, size_px), Image.Resampling.LANCZOS)
    image = Image.new("RGBA", (size_px, size_px), (*SEAL_RED, 0))
    image.putalpha(alpha)
    dpi = size_px / (diameter_mm / 25.4)
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(dpi, dpi), optimize=True)
    return out.getvalue()
