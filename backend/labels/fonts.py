"""The label font: an embedded, subset TrueType CJK font (see fonts/README.md), and text fitting."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..config import setting
from ..errors import AppError


FONT_DIR = Path(__file__).with_name("fonts")
SHIPPED_FONT = FONT_DIR / "WenQuanYiMicroHei-GB2312.ttf"
LEADING = 1.15  # line pitch ÷ font size
_NO_START = set(")]}）】』」〕》〉、。，．：；！？…·%％")
_NO_END = set("([{（【『「〔《〈")


def font_path() -> Path:
    """LABEL_FONT (a TrueType .ttf/.ttc; face 0 of a collection) or the shipped GB 2312 subset."""
    return Path(setting("LABEL_FONT") or SHIPPED_FONT)


@dataclass(frozen=True)
class LabelFont:
    name: str  # the reportlab font name
    path: Path
    cmap: frozenset[int]
    ascent: float  # per 1 pt of font size
    descent: float  # negative

    def missing(self, text: str) -> str:
        """The characters of `text` this font has no glyph for (spaces always print)."""
        return "".join(sorted({ch for ch in text if ord(ch) not in self.cmap and not ch.isspace()}))

    def width(self, text: str, size: float) -> float:
        from reportlab.pdfbase.pdfmetrics import stringWidth

        return stringWidth(text, self.name, size)


@lru_cache(maxsize=4)
def load(path: str | os.PathLike | None = None) -> LabelFont:
    """Register the font with reportlab once per process and describe it."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFError, TTFont

    p = Path(path) if path else font_path()
    name = "ChenpiLabel-" + p.stem
    try:
        font = TTFont(name, str(p), subfontIndex=0)
    except (TTFError, OSError) as exc:
        raise AppError("labels.template_invalid",
                       f"The label font {p} cannot be used: {exc} (reportlab embeds TrueType outlines "
                       "only, not CFF .otf).") from None
    pdfmetrics.registerFont(font)
    face = font.face
    return LabelFont(name, p, frozenset(face.charToGlyph), face.ascent / 1000.0, face.descent / 1000.0)


def check_printable(font: LabelFont, text: str, field: str) -> None:
    missing = font.missing(text)
    if missing:
        raise AppError("labels.text_unprintable",
                       f"The label font has no glyph for {missing!r} in {field}; set LABEL_FONT to a "
                       "fuller TrueType font.",
                       {field: [f"no glyph for {missing!r}"]})


def wrap(font: LabelFont, text: str, size: float, width: float, max_lines: int,
         prefer_spaces: bool = True) -> list[str] | None:
    """Break `text` into at most `max_lines` lines no wider than `width` (pt), or None.

    Chinese breaks between any two characters, a Latin word is kept whole where it fits, and
    with `prefer_spaces` a line ends at its last space ("新会陈皮 / 地理标志证明商标").
    """
    lines: list[str] = []
    rest = text.strip()
    while rest:
        if len(lines) == max_lines:
            return None
        if font.width(rest, size) <= width:
            lines.append(rest)
            break
        # longest prefix that fits
        lo, hi = 1, len(rest)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if font.width(rest[:mid], size) <= width:
                lo = mid
            else:
                hi = mid - 1
        cut = lo
        if font.width(rest[:1], size) > width:
            return None
        # prefer a break at a space (words, or "新会陈皮 地理标志证明商标"), unless it wastes the line
        space = rest.rfind(" ", 0, cut + 1)
        in_word = rest[cut - 1].isascii() and rest[cut:cut + 1].isascii() and rest[cut:cut + 1].strip()
        if space > 0 and (in_word or prefer_spaces):
            cut = space
        # no line starts with closing punctuation, nor ends with opening punctuation
        while 1 < cut < len(rest) and (rest[cut] in _NO_START or rest[cut - 1] in _NO_END):
            cut -= 1
        lines.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return lines


def fit(font: LabelFont, text: str, size: float, min_size: float, width: float, height: float,
        max_lines: int, leading: float = LEADING) -> tuple[float, list[str]] | None:
    """The largest size in [min_size, size] (0.25 pt steps) at which `text` fits a box of
    `width` × `height` pt in at most `max_lines` lines, and those lines; None if it never fits."""
    s = size
    while s >= min_size - 1e-9:
        room = int((height - s) / (s * leading) + 1e-9) + 1 if height >= s - 1e-9 else 0
        n = min(max_lines, room)
        if n >= 1:
            lines = wrap(font, text, s, width, n) or wrap(font, text, s, width, n, prefer_spaces=False)
            if lines is not None:
                return s, lines
        s -= 0.25
    return None
