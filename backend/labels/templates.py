"""Label templates: declarative TOML files in `label_templates/`, validated on load.

A template says where labels sit on a page (a grid on a sheet, or one label per page on a roll),
which printer resolution it is for, and where each element goes on a label. Lengths are in the
file's `units` (default mm) or written with a unit: ``"12mm"``, ``"1.2cm"``, ``"0.5in"``,
``"10pt"``. Positions are from the label's top-left corner, y downwards. Font sizes are in pt.

Elements:
- ``qr``: ``x, y, size`` is the QR's square *including* its quiet zone of ``quiet_zone`` modules
  (≥ 4); ``error`` L/M/Q/H; ``max_version`` the largest QR version the box must hold (the URL's
  length decides the version; version 2 holds ``HTTPS://`` + a 24-character host + ``/V/`` + code
  at level M). The module size is whole printer dots: the box's dots ÷ modules, rounded down.
- ``text``: ``field`` is one of FIELDS; ``x, y, width, height`` its box; ``size`` and
  ``min_size`` (shrunk to fit), ``lines`` (wrapped), ``align``, ``bold``, ``prefix`` (printed
  before the value, e.g. ``"统一社会信用代码 "``), ``text`` (the words of a ``header`` or
  ``text`` field).
- ``image``: a logo, ``path`` relative to the template file, fitted into its box.
- ``pin``: a box for a PIN printed under a scratch-off layer applied after printing.

Rules checked (each error names the file and the element): every element inside the label (the
QR's quiet zone inside the label, everything else inside the safe margin), no two elements
overlapping, QR modules of ≥ 3 printer dots and ≥ 0.25 mm, quiet zone ≥ 4 modules, known keys
and fields only, lengths with known units, the grid fitting the page, crop marks only with page
margins to hold them, the fields the GI mark requires present.
"""
from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..config import setting
from ..errors import AppError
from . import qr as qrmod

PT_PER_MM = 72 / 25.4
MIN_DOTS_PER_MODULE = 3
MIN_MODULE_MM = 0.25
MIN_FONT_PT = 4.0
CROP_MARK_MM = 3.0
CROP_MARK_OFFSET_MM = 1.0
HEADER_TEXT = "新会陈皮 地理标志证明商标"

#: per-label fields (vary on every label)
LABEL_FIELDS = ("code", "serial")
#: per-batch fields (the same on every label of a render; drawn once)
BATCH_FIELDS = ("operator_name", "credit_code", "product", "lot", "harvest_year")
#: fixed words
STATIC_FIELDS = ("header", "text")
FIELDS = LABEL_FIELDS + BATCH_FIELDS + STATIC_FIELDS
#: the GI certification-mark rules want these on every label
REQUIRED_FIELDS = ("header", "code", "serial", "operator_name", "credit_code")


PAGE_SIZES = {"A4": (210.0, 297.0), "A5": (148.0, 210.0), "A6": (105.0, 148.0), "LETTER": (215.9, 279.4)}
_UNITS = {"mm": 1.0, "cm": 10.0, "in": 25.4, "pt": 25.4 / 72}
_LENGTH_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")
_EPS = 1e-6


def templates_dir() -> Path:
    """LABEL_TEMPLATES_DIR or the repository's `label_templates/`."""
    env = setting("LABEL_TEMPLATES_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "label_templates"


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    def inside(self, other: "Box") -> bool:
        return (self.x >= other.x - _EPS and self.y >= other.y - _EPS
                and self.right <= other.right + _EPS and self.bottom <= other.bottom + _EPS)

    def overlaps(self, other: "Box") -> bool:
        return (min(self.right, other.right) - max(self.x, other.x) > 1e-3
                and min(self.bottom, other.bottom) - max(self.y, other.y) > 1e-3)

    def shrink(self, d: float) -> "Box":
        return Box(self.x + d, self.y + d, self.w - 2 * d, self.h - 2 * d)


@dataclass(frozen=True)
class QrElement:
    box: Box
    error: str
    quiet_zone: int
    max_version: int
    kind: str = "qr"

    def module_dots(self, dpi: int, version: int) -> int:
        """Whole printer dots per module for a symbol of `version` in this box."""
        dots = self.box.w / 25.4 * dpi
        return int(math.floor(dots / (qrmod.modules(version) + 2 * self.quiet_zone) + 1e-9))


@dataclass(frozen=True)
class TextElement:
    box: Box
    field: str
    size: float
    min_size: float
    lines: int
    align: str
    bold: bool
    prefix: str
    text: str
    kind: str = "text"


@dataclass(frozen=True)
class ImageElement:
    box: Box
    path: Path
    kind: str = "image"


@dataclass(frozen=True)
class PinElement:
    box: Box
    size: float
    kind: str = "pin"


Element = QrElement | TextElement | ImageElement | PinElement


@dataclass(frozen=True)
class Template:
    slug: str
    path: Path
    name: str
    kind: str  # sheet | roll
    page_w: float
    page_h: float
    dpi: int
    label_w: float
    label_h: float
    safe_margin: float
    rows: int
    cols: int
    margin_left: float
    margin_top: float
    gap_x: float
    gap_y: float
    crop_marks: bool
    elements: tuple[Element, ...] = field(default_factory=tuple)

    @property
    def per_page(self) -> int:
        return self.rows * self.cols

    @property
    def qr(self) -> QrElement:
        return next(e for e in self.elements if isinstance(e, QrElement))

    @property
    def pin(self) -> PinElement | None:
        return next((e for e in self.elements if isinstance(e, PinElement)), None)

    def slots(self) -> list[tuple[float, float]]:
        """Top-left corner (mm, from the page's top-left) of each label on a page, row by row."""
        return [(self.margin_left + c * (self.label_w + self.gap_x), self.margin_top + r * (self.label_h + self.gap_y))
                for r in range(self.rows) for c in range(self.cols)]

    def texts(self, fields: tuple[str, ...]) -> list[TextElement]:
        return [e for e in self.elements if isinstance(e, TextElement) and e.field in fields]


class TemplateError(AppError):
    def __init__(self, where: str, errors: dict[str, list[str]]):
        first = "; ".join(f"{k}: {v[0]}" for k, v in list(errors.items())[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        super().__init__("labels.template_invalid", f"Label template {where} is invalid: {first}{more}", errors)


class _Checker:
    """Collects errors by key path while reading a TOML table."""

    def __init__(self, units: float):
        self.errors: dict[str, list[str]] = {}
        self.units = units

    def err(self, path: str, msg: str) -> None:
        self.errors.setdefault(path, []).append(msg)

    def table(self, data, path: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(data, dict):
            self.err(path, "must be a table")
            return {}
        for k in sorted(set(data) - allowed):
            self.err(f"{path}.{k}" if path else k, f"unknown key (known: {', '.join(sorted(allowed))})")
        for k in sorted(required - set(data)):
            self.err(f"{path}.{k}" if path else k, "is required")
        return data

    def length(self, data: dict, key: str, path: str, default=None, minimum: float = 0.0,
               positive: bool = False) -> float | None:
        p = f"{path}.{key}" if path else key
        if key not in data:
            return default
        raw = data[key]
        value = None
        if isinstance(raw, bool):
            pass
        elif isinstance(raw, (int, float)):
            value = float(raw) * self.units
        elif isinstance(raw, str):
            m = _LENGTH_RE.match(raw)
            if m:
                unit = m.group(2).lower() or None
                if unit is None:
                    value = float(m.group(1)) * self.units
                elif unit in _UNITS:
                    value = float(m.group(1)) * _UNITS[unit]
                else:
                    self.err(p, f"unknown unit {m.group(2)!r} in {raw!r} (use mm, cm, in or pt)")
                    return default
        if value is None:
            self.err(p, f"{raw!r} is not a length (a number in the template's units, or e.g. \"12mm\")")
            return default
        if value < minimum - _EPS or (positive and value <= 0):
            self.err(p, f"must be {'greater than' if positive else 'at least'} {minimum:g} mm")
            return default
        return value

    def font_size(self, data: dict, key: str, path: str, default: float | None) -> float | None:
        p = f"{path}.{key}"
        raw = data.get(key, default)
        if raw is None:
            return None
        if isinstance(raw, str):
            m = _LENGTH_RE.match(raw)
            if not m or (m.group(2).lower() or "pt") not in _UNITS:
                self.err(p, f"{raw!r} is not a font size (pt, e.g. 7.5 or \"7.5pt\")")
                return default
            mm = float(m.group(1)) * _UNITS[m.group(2).lower() or "pt"]
            return mm * PT_PER_MM
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0:
            self.err(p, f"{raw!r} is not a font size in pt")
            return default
        return float(raw)

    def integer(self, data: dict, key: str, path: str, default=None, lo: int = 1, hi: int = 10**6) -> int | None:
        p = f"{path}.{key}" if path else key
        raw = data.get(key, default)
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int):
            self.err(p, f"{raw!r} is not a whole number")
            return default
        if not lo <= raw <= hi:
            self.err(p, f"must be between {lo} and {hi}")
            return default
        return raw

    def choice(self, data: dict, key: str, path: str, options: tuple[str, ...], default: str) -> str:
        raw = data.get(key, default)
        if raw not in options:
            self.err(f"{path}.{key}", f"{raw!r} is not one of {', '.join(options)}")
            return default
        return raw

    def string(self, data: dict, key: str, path: str, default: str = "") -> str:
        raw = data.get(key, default)
        if not isinstance(raw, str):
            self.err(f"{path}.{key}", f"{raw!r} is not text")
            return default
        return raw

    def boolean(self, data: dict, key: str, path: str, default: bool = False) -> bool:
        raw = data.get(key, default)
        if not isinstance(raw, bool):
            self.err(f"{path}.{key}", f"{raw!r} is not true or false")
            return default
        return raw


def load(name_or_path: str | os.PathLike) -> Template:
    """Load and validate a template by file path or by name in `templates_dir()`."""
    p = Path(name_or_path)
    if p.suffix != ".toml" and not p.exists():
        p = templates_dir() / f"{p.name}.toml"
    if not p.is_file():
        known = ", ".join(available()) or "none"
        raise AppError("labels.template_not_found", f"No label template {str(name_or_path)!r} (known: {known}).",
                       {"template": [f"no template {str(name_or_path)!r}"]})
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TemplateError(p.name, {"file": ["is not UTF-8 text"]}) from None
    return parse(text, p.stem, p)


def available() -> list[str]:
    d = templates_dir()
    return sorted(f.stem for f in d.glob("*.toml")) if d.is_dir() else []


def parse(text: str, slug: str = "template", path: Path | None = None) -> Template:
    """Validate a template's TOML text; a TemplateError lists every problem found."""
    where = path.name if path else slug
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(where, {"file": [f"is not valid TOML: {exc}"]}) from None

    units_raw = data.get("units", "mm")
    c = _Checker(_UNITS.get(units_raw, 1.0) if isinstance(units_raw, str) else 1.0)
    if units_raw not in ("mm", "cm", "in", "pt"):
        c.err("units", f"unknown unit {units_raw!r} (use mm, cm, in or pt)")
    c.table(data, "", {"name", "description", "kind", "units", "page", "printer", "label", "grid", "elements", "font"},
            {"name", "kind", "printer", "label", "elements"})
    name = c.string(data, "name", "", slug) if "name" in data else slug
    kind = c.choice(data, "kind", "", ("sheet", "roll"), "sheet") if "kind" in data else "sheet"

    printer = c.table(data.get("printer", {}), "printer", {"dpi"}, {"dpi"})
    dpi = c.integer(printer, "dpi", "printer", 300, 100, 2400) or 300

    label = c.table(data.get("label", {}), "label", {"width", "height", "safe_margin"}, {"width", "height"})
    lw = c.length(label, "width", "label", 50.0, positive=True)
    lh = c.length(label, "height", "label", 30.0, positive=True)
    safe = c.length(label, "safe_margin", "label", 1.0)

    rows = cols = 1
    ml = mt = gx = gy = 0.0
    crop = False
    if kind == "roll":
        if "grid" in data:
            c.err("grid", "a roll template prints one label per page; remove [grid] or use kind = \"sheet\"")
        page = c.table(data.get("page", {}), "page", {"width", "height"})
        pw = c.length(page, "width", "page", lw)
        ph = c.length(page, "height", "page", lh)
        if abs(pw - lw) > 0.01 or abs(ph - lh) > 0.01:
            c.err("page", f"a roll page is the label ({lw:g}×{lh:g} mm), not {pw:g}×{ph:g} mm")
        pw, ph = lw, lh
    else:
        page = c.table(data.get("page", {}), "page", {"size", "width", "height"})
        if "size" in page:
            size = page["size"]
            if not isinstance(size, str) or size.upper() not in PAGE_SIZES:
                c.err("page.size", f"{size!r} is not a known page size ({', '.join(PAGE_SIZES)}); or give width and height")
                pw, ph = PAGE_SIZES["A4"]
            else:
                pw, ph = PAGE_SIZES[size.upper()]
        else:
            pw = c.length(page, "width", "page", None, positive=True)
            ph = c.length(page, "height", "page", None, positive=True)
            if pw is None or ph is None:
                c.err("page", "a sheet needs size = \"A4\" (or width and height)")
                pw, ph = PAGE_SIZES["A4"]
        grid = c.table(data.get("grid", {}), "grid",
                       {"rows", "cols", "margin_left", "margin_top", "gap_x", "gap_y", "crop_marks"},
                       {"rows", "cols"})
        rows = c.integer(grid, "rows", "grid", 1, 1, 100) or 1
        cols = c.integer(grid, "cols", "grid", 1, 1, 100) or 1
        gx = c.length(grid, "gap_x", "grid", 0.0)
        gy = c.length(grid, "gap_y", "grid", 0.0)
        used_w = cols * lw + (cols - 1) * gx
        used_h = rows * lh + (rows - 1) * gy
        ml = c.length(grid, "margin_left", "grid", max(0.0, (pw - used_w) / 2))
        mt = c.length(grid, "margin_top", "grid", max(0.0, (ph - used_h) / 2))
        if ml + used_w > pw + 0.01:
            c.err("grid", f"{cols} columns of {lw:g} mm with gaps and margin need {ml + used_w:.1f} mm; the page is {pw:g} mm wide")
        if mt + used_h > ph + 0.01:
            c.err("grid", f"{rows} rows of {lh:g} mm with gaps and margin need {mt + used_h:.1f} mm; the page is {ph:g} mm high")
        crop = c.boolean(grid, "crop_marks", "grid", False)
        if crop:
            need = CROP_MARK_OFFSET_MM + CROP_MARK_MM
            smallest = min(ml, mt, pw - ml - used_w, ph - mt - used_h)
            if smallest < need - 0.01:
                c.err("grid.crop_marks", f"crop marks are drawn in the page margins and need {need:g} mm; "
                                         f"the smallest margin is {smallest:.1f} mm")

    label_box = Box(0, 0, lw, lh)
    safe_box = label_box.shrink(safe) if safe * 2 < min(lw, lh) else label_box
    base_dir = path.parent if path else templates_dir()
    elements: list[Element] = []
    raw_elements = data.get("elements", [])
    if not isinstance(raw_elements, list):
        c.err("elements", "must be an array of tables ([[elements]])")
        raw_elements = []
    for i, raw in enumerate(raw_elements):
        el = _element(c, raw, f"elements[{i}]", base_dir)
        if el is None:
            continue
        p = f"elements[{i}]"
        what = _describe(el)
        if isinstance(el, QrElement):
            if not el.box.inside(label_box):
                c.err(p, f"{what} (with its quiet zone) lies outside the {lw:g}×{lh:g} mm label")
            quiet = el.box.w / (qrmod.modules(el.max_version) + 2 * el.quiet_zone) * el.quiet_zone
            if not el.box.shrink(quiet).inside(safe_box):
                c.err(p, f"{what}: the symbol reaches into the label's {safe:g} mm safe margin")
            dots = el.module_dots(dpi, el.max_version)
            module_mm = dots * 25.4 / dpi
            if dots < MIN_DOTS_PER_MODULE or module_mm < MIN_MODULE_MM - 1e-9:
                n = qrmod.modules(el.max_version) + 2 * el.quiet_zone
                need = max(MIN_DOTS_PER_MODULE * 25.4 / dpi, MIN_MODULE_MM) * n
                c.err(p, f"{what}: a version-{el.max_version} QR module would be {dots} dots at {dpi} dpi "
                         f"({module_mm:.2f} mm); printers and phones need at least {MIN_DOTS_PER_MODULE} dots "
                         f"and {MIN_MODULE_MM} mm: make size at least {need:.1f} mm")
        elif not el.box.inside(safe_box):
            c.err(p, f"{what} lies outside the label's printable area "
                     f"({lw:g}×{lh:g} mm less a {safe:g} mm safe margin)")
        elements.append(el)
        el_path = p
        for j, other in enumerate(elements[:-1]):
            if other.box.overlaps(el.box):
                c.err(el_path, f"{what} overlaps {_describe(other)}")

    qrs = sum(1 for r in raw_elements if isinstance(r, dict) and r.get("type") == "qr")
    if qrs != 1 and raw_elements:
        c.err("elements", f"a template has exactly one qr element, not {qrs}")
    present = {e.field for e in elements if isinstance(e, TextElement)}
    for f in REQUIRED_FIELDS:
        if f not in present and raw_elements:
            c.err("elements", f"the field {f!r} is required on a GI certification-mark label")
    if sum(isinstance(e, PinElement) for e in elements) > 1:
        c.err("elements", "at most one pin element")

    if not c.errors:
        _check_static_text(c, elements)
    if c.errors:
        raise TemplateError(where, c.errors)
    return Template(slug=slug, path=path or Path(f"{slug}.toml"), name=name, kind=kind, page_w=pw, page_h=ph,
                    dpi=dpi, label_w=lw, label_h=lh, safe_margin=safe, rows=rows, cols=cols, margin_left=ml,
                    margin_top=mt, gap_x=gx, gap_y=gy, crop_marks=crop, elements=tuple(elements))


def _describe(el: Element) -> str:
    if isinstance(el, TextElement):
        return f"text {el.field!r}"
    return el.kind


_BOX_KEYS = {"type", "x", "y", "width", "height"}


def _box(c: _Checker, raw: dict, p: str, square: bool = False) -> Box | None:
    x = c.length(raw, "x", p, None)
    y = c.length(raw, "y", p, None)
    if square:
        w = h = c.length(raw, "size", p, None, positive=True)
    else:
        w = c.length(raw, "width", p, None, positive=True)
        h = c.length(raw, "height", p, None, positive=True)
    if None in (x, y, w, h):
        return None
    return Box(x, y, w, h)


def _element(c: _Checker, raw, p: str, base_dir: Path) -> Element | None:
    if not isinstance(raw, dict):
        c.err(p, "must be a table")
        return None
    kind = raw.get("type")
    if kind == "qr":
        c.table(raw, p, {"type", "x", "y", "size", "error", "quiet_zone", "max_version"}, {"x", "y", "size"})
        box = _box(c, raw, p, square=True)
        error = c.choice(raw, "error", p, qrmod.ERROR_LEVELS, "M")
        quiet = c.integer(raw, "quiet_zone", p, 4, 0, 40)
        if quiet is not None and quiet < 4:
            c.err(f"{p}.quiet_zone", f"a QR needs a quiet zone of at least 4 modules, not {quiet}")
            quiet = 4
        version = c.integer(raw, "max_version", p, 3, 1, qrmod.MAX_VERSION)
        return QrElement(box, error, quiet, version) if box else None
    if kind == "text":
        c.table(raw, p, _BOX_KEYS | {"field", "size", "min_size", "lines", "align", "bold", "prefix", "text"},
                {"field", "x", "y", "width", "height", "size"})
        fld = raw.get("field")
        if fld not in FIELDS:
            c.err(f"{p}.field", f"unknown field {fld!r} (known: {', '.join(FIELDS)})")
            return None
        box = _box(c, raw, p)
        size = c.font_size(raw, "size", p, 8.0)
        min_size = c.font_size(raw, "min_size", p, size)
        if size and min_size and min_size > size:
            c.err(f"{p}.min_size", f"min_size {min_size:g} pt is larger than size {size:g} pt")
            min_size = size
        if min_size is not None and min_size < MIN_FONT_PT:
            c.err(f"{p}.min_size" if "min_size" in raw else f"{p}.size",
                  f"text below {MIN_FONT_PT:g} pt is not legible on a label")
        lines = c.integer(raw, "lines", p, 1, 1, 20)
        align = c.choice(raw, "align", p, ("left", "center", "right"), "left")
        bold = c.boolean(raw, "bold", p, False)
        prefix = c.string(raw, "prefix", p, "")
        text = c.string(raw, "text", p, HEADER_TEXT if fld == "header" else "")
        if fld == "text" and not text.strip():
            c.err(f"{p}.text", "a text field needs its words in text = \"…\"")
        if "text" in raw and fld not in STATIC_FIELDS:
            c.err(f"{p}.text", f"field {fld!r} takes its value from the label data; text is for header and text fields")
        if box and min_size and box.h * PT_PER_MM < min_size - 1e-6:
            c.err(p, f"text {fld!r}: a {box.h:g} mm high box cannot hold a line of {min_size:g} pt "
                     f"({min_size / PT_PER_MM:.1f} mm)")
            return None
        if box is None or size is None:
            return None
        return TextElement(box, fld, size, min_size or size, lines or 1, align, bold, prefix, text)
    if kind == "image":
        c.table(raw, p, _BOX_KEYS | {"path"}, {"x", "y", "width", "height", "path"})
        box = _box(c, raw, p)
        rel = c.string(raw, "path", p, "")
        img = (base_dir / rel).resolve()
        if not rel or not img.is_file():
            c.err(f"{p}.path", f"no image file {rel!r} next to the template")
            return None
        try:
            from PIL import Image

            with Image.open(img) as im:
                im.verify()
        except Exception as exc:  # noqa: BLE001
            c.err(f"{p}.path", f"{rel!r} is not a readable image ({type(exc).__name__})")
            return None
        return ImageElement(box, img) if box else None
    if kind == "pin":
        c.table(raw, p, _BOX_KEYS | {"size"}, {"x", "y", "width", "height"})
        box = _box(c, raw, p)
        size = c.font_size(raw, "size", p, 8.0)
        return PinElement(box, size or 8.0) if box else None
    c.err(f"{p}.type", f"unknown element type {kind!r} (known: qr, text, image, pin)")
    return None


def _check_static_text(c: _Checker, elements: list[Element]) -> None:
    """Header and fixed text must be printable with the label font and fit their boxes."""
    from . import fonts

    font = fonts.load()
    for i, el in enumerate(elements):
        if not isinstance(el, TextElement) or el.field not in STATIC_FIELDS:
            continue
        value = el.prefix + el.text
        missing = font.missing(value)
        if missing:
            c.err(f"elements[{i}].text", f"the label font has no glyph for {missing!r}")
            continue
        if fonts.fit(font, value, el.size, el.min_size, el.box.w * PT_PER_MM, el.box.h * PT_PER_MM, el.lines) is None:
            c.err(f"elements[{i}]", f"text {el.field!r} {value!r} does not fit its {el.box.w:g}×{el.box.h:g} mm box "
                                    f"even at {el.min_size:g} pt in {el.lines} line(s)")
