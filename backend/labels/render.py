"""Label PDFs: template + label rows in, PDF out (pure: no database, no Flask).

How a PDF is drawn, through reportlab's public canvas API:
- Per render, the parts that are the same on every label (logo, header, the batch's operator,
  credit code, product, lot and harvest year, the PIN box, the QR's finder/timing/alignment/
  format modules) are drawn once into a form XObject ("label"); on sheets a second form ("sheet")
  places it in every slot with the crop marks, so a full page costs one `Do` plus the labels'
  own parts.
- Per label: the QR's data modules as ONE path of run-length rectangles in module units (one
  `cm` scales them; coordinates are small integers), the code, the serial and the PIN.
- QR modules are a whole number of printer dots (the template's dpi), so every module prints
  the same width wherever the label sits.
- Text is set in the embedded, subset TrueType CJK font (fonts.py); bold is fill + stroke.
- Memory stays flat: the document is made in chunks of `CHUNK_LABELS` labels (whole pages), each
  a small reportlab PDF, copied into the output by `pdfjoin.PdfJoiner` as soon as it is made.
- Deterministic: reportlab's invariant mode, a fixed mask, fixed chunking from the start of the
  range: the same rows give the same bytes, and chunk files rendered by several workers
  (`render_chunk`) joined in order (`join_chunks`) give the same bytes as one process.
"""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from reportlab import rl_config
from reportlab.lib.colors import Color
from reportlab.pdfgen import canvas as rl_canvas

from ..errors import AppError
from . import fonts, qr as qrmod
from .pdfjoin import PdfJoiner
from .templates import (BATCH_FIELDS, PT_PER_MM, STATIC_FIELDS, ImageElement, PinElement, QrElement, Template,
                        TextElement)

rl_config.useA85 = 0  # binary (Flate) streams: ASCII85 would add 25 % to every page
MM = PT_PER_MM
#: labels per reportlab document before it is flushed into the output (rounded to whole pages)
CHUNK_LABELS = 2400
_GREY = Color(0.6, 0.6, 0.6)
BOLD_STROKE = 0.035  # stroke width per pt of font size for bold


@dataclass(frozen=True)
class BatchInfo:
    """What is printed the same on every label of a render (a batch, or a range of one)."""

    operator_name: str
    credit_code: str
    product: str = ""
    lot: str = ""
    harvest_year: str | int = ""
    title: str = ""  # the PDF's title, e.g. "批次 000123"

    def value(self, field: str) -> str:
        v = getattr(self, field)
        return "" if v is None else str(v).strip()


@dataclass(frozen=True)
class LabelRow:
    """One label: its code (printed), printed serial, QR content, and PIN if the template has a box."""

    code: str
    serial: str
    url: str
    pin: str | None = None


@dataclass
class RenderResult:
    labels: int = 0
    pages: int = 0
    bytes: int = 0
    sha256: str = ""
    qr_version: int = 0
    module_dots: int = 0


def _rows_error(field: str, message: str) -> AppError:
    return AppError("labels.rows_invalid", message, {field: [message]})


class _HashingWriter:
    def __init__(self, out: BinaryIO):
        self.out = out
        self.sha = hashlib.sha256()
        self.n = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.sha.update(data)
        self.n += len(data)
        return len(data)


class PdfRenderer:
    """Renders labels of one template and one batch. Reusable for several chunks."""

    def __init__(self, template: Template, batch: BatchInfo, *, outline: bool = False, font_path=None):
        self.t = template
        self.batch = batch
        self.outline = outline
        self.font = fonts.load(font_path)
        self.page_size = (template.page_w * MM, template.page_h * MM)
        self.slots = [(x * MM, (template.page_h - y - template.label_h) * MM) for x, y in template.slots()]
        # batch-level and static texts, laid out once
        self.static_texts: list[tuple[TextElement, float, list[str]]] = []
        for el in template.texts(BATCH_FIELDS + STATIC_FIELDS):
            value = el.text if el.field in STATIC_FIELDS else batch.value(el.field)
            if not value:
                if el.field in ("operator_name", "credit_code"):
                    raise _rows_error(el.field, f"{el.field} is required on a GI certification-mark label.")
                continue
            self.static_texts.append((el, *self._layout(el, el.prefix + value)))
        self.label_texts = self.t.texts(("code", "serial"))
        self.qr_el: QrElement = template.qr
        self.pin_el: PinElement | None = template.pin
        self.version = 0
        self.module_pt = 0.0
        self.module_dots = 0
        self.qr_origin = (0.0, 0.0)
        self._function_cells: bytes = b""
        self._data_region: bytes = b""

    # -- layout -------------------------------------------------------------------------------
    def _layout(self, el: TextElement, value: str) -> tuple[float, list[str]]:
        fonts.check_printable(self.font, value, el.field)
        got = fonts.fit(self.font, value, el.size, el.min_size, el.box.w * MM, el.box.h * MM, el.lines)
        if got is None:
            raise AppError("labels.text_unprintable",
                           f"{el.field} {value!r} does not fit its {el.box.w:g}×{el.box.h:g} mm box on template "
                           f"{self.t.slug!r} even at {el.min_size:g} pt.",
                           {el.field: [f"too long for the template ({el.lines} line(s) of {el.box.w:g} mm)"]})
        return got

    def _set_qr_version(self, version: int) -> None:
        el, t = self.qr_el, self.t
        dots = el.module_dots(t.dpi, version)
        if dots < 1:
            raise AppError("labels.qr_too_dense", f"A version-{version} QR does not fit template {t.slug!r}.")
        self.version = version
        self.module_dots = dots
        self.module_pt = dots * 72.0 / t.dpi
        n = qrmod.modules(version)
        side = n * self.module_pt
        # centred in its box; y of the symbol's bottom edge, in label coordinates (pt, y up)
        x = el.box.x * MM + (el.box.w * MM - side) / 2
        y = (t.label_h - el.box.y - el.box.h) * MM + (el.box.h * MM - side) / 2
        self.qr_origin = (x, y)
        self._function_cells = qrmod.function_part(self._probe)
        self._data_region = qrmod.data_region(version)

    def _symbol(self, row: LabelRow) -> qrmod.Symbol:
        try:
            return qrmod.encode(row.url, self.qr_el.error, self.qr_el.max_version)
        except ValueError:
            raise AppError("labels.qr_too_dense",
                           f"{row.url!r} needs a QR version above {self.qr_el.max_version}, the most template "
                           f"{self.t.slug!r} allows: shorten PUBLIC_BASE_URL or use a larger QR.",
                           {"url": [f"too long for a version-{self.qr_el.max_version} QR"]}) from None

    # -- drawing ------------------------------------------------------------------------------
    def _text(self, c, el: TextElement, size: float, lines: list[str], dx: float = 0.0, dy: float = 0.0) -> None:
        font = self.font
        leading = size * fonts.LEADING
        block = (font.ascent - font.descent) * size + (len(lines) - 1) * leading
        top = (self.t.label_h - el.box.y) * MM + dy
        pad = max(0.0, (el.box.h * MM - block) / 2)
        y = top - pad - font.ascent * size
        c.setFont(font.name, size)
        if el.bold:
            c.setLineWidth(size * BOLD_STROKE)
        mode = 2 if el.bold else None
        x0 = el.box.x * MM + dx
        w = el.box.w * MM
        for line in lines:
            if el.align == "left":
                c.drawString(x0, y, line, mode=mode)
            elif el.align == "center":
                c.drawCentredString(x0 + w / 2, y, line, mode=mode)
            else:
                c.drawRightString(x0 + w, y, line, mode=mode)
            y -= leading

    def _qr_path(self, c, symbol: qrmod.Symbol, region: bytes | None, dx: float, dy: float) -> None:
        n = symbol.size
        m = self.module_pt
        c.saveState()
        c.transform(m, 0, 0, m, dx + self.qr_origin[0], dy + self.qr_origin[1])
        p = c.beginPath()
        top = n - 1
        for col, row, length in symbol.runs(region):
            p.rect(col, top - row, length, 1)
        c.drawPath(p, stroke=0, fill=1)
        c.restoreState()

    def _define_forms(self, c) -> None:
        t = self.t
        lw, lh = t.label_w * MM, t.label_h * MM
        c.beginForm("label", lowerx=0, lowery=0, upperx=lw, uppery=lh)
        if self.outline:
            c.setStrokeColor(_GREY)
            c.setLineWidth(0.3)
            c.roundRect(0, 0, lw, lh, 1.5 * MM, stroke=1, fill=0)
            c.setStrokeColor(Color(0, 0, 0))
        for el in t.elements:
            if isinstance(el, ImageElement):
                c.drawImage(str(el.path), el.box.x * MM, (t.label_h - el.box.y - el.box.h) * MM, el.box.w * MM,
                            el.box.h * MM, mask="auto", preserveAspectRatio=True, anchor="c")
            elif isinstance(el, PinElement):
                c.saveState()
                c.setLineWidth(0.4)
                c.setDash(1.5, 1.5)
                c.roundRect(el.box.x * MM, (t.label_h - el.box.y - el.box.h) * MM, el.box.w * MM, el.box.h * MM,
                            1.2 * MM, stroke=1, fill=0)
                c.restoreState()
                c.setFont(self.font.name, 4.2)
                c.drawCentredString((el.box.x + el.box.w / 2) * MM, (t.label_h - el.box.y) * MM - 5.2,
                                    "刮开涂层 查验码")
        for el, size, lines in self.static_texts:
            self._text(c, el, size, lines)
        self._qr_path(c, self._probe, qrmod.function_region(self.version), 0, 0)
        c.endForm()
        if t.kind == "sheet":
            c.beginForm("sheet", lowerx=0, lowery=0, upperx=self.page_size[0], uppery=self.page_size[1])
            for x, y in self.slots:
                c.saveState()
                c.translate(x, y)
                c.doForm("label")
                c.restoreState()
            self._crop_marks(c)
            c.endForm()

    def _crop_marks(self, c) -> None:
        t = self.t
        if not t.crop_marks:
            return
        from .templates import CROP_MARK_MM, CROP_MARK_OFFSET_MM

        c.setLineWidth(0.25)
        off, ln = CROP_MARK_OFFSET_MM * MM, CROP_MARK_MM * MM
        xs = sorted({x for x, _ in self.slots} | {x + t.label_w * MM for x, _ in self.slots})
        ys = sorted({y for _, y in self.slots} | {y + t.label_h * MM for _, y in self.slots})
        left, right, bottom, top = xs[0], xs[-1], ys[0], ys[-1]
        lines = []
        for x in xs:
            lines.append((x, top + off, x, top + off + ln))
            lines.append((x, bottom - off, x, bottom - off - ln))
        for y in ys:
            lines.append((left - off, y, left - off - ln, y))
            lines.append((right + off, y, right + off + ln, y))
        c.lines(lines)

    def _label_dynamic(self, c, row: LabelRow, symbol: qrmod.Symbol, dx: float, dy: float) -> None:
        if symbol.version != self.version:
            raise AppError("labels.qr_too_dense",
                           f"The QR contents of one render must need the same QR version ({self.version}); "
                           f"{row.url!r} needs version {symbol.version}.",
                           {"url": ["a different length from the other labels' URLs"]})
        if qrmod.function_part(symbol) != self._function_cells:  # impossible with one version and mask
            raise RuntimeError("QR function patterns differ within one version and mask")
        self._qr_path(c, symbol, self._data_region, dx, dy)
        for el in self.label_texts:
            value = el.prefix + (row.code if el.field == "code" else row.serial)
            size, lines = self._layout(el, value)
            self._text(c, el, size, lines, dx, dy)
        if self.pin_el is not None:
            el = self.pin_el
            if not row.pin:
                raise _rows_error("pin", f"Template {self.t.slug!r} has a scratch-off PIN box; label {row.serial} has no PIN.")
            fonts.check_printable(self.font, row.pin, "pin")
            c.setFont(self.font.name, el.size)
            c.drawCentredString(dx + (el.box.x + el.box.w / 2) * MM,
                                dy + (self.t.label_h - el.box.y - el.box.h / 2) * MM - el.size * 0.35, row.pin)
        elif row.pin:
            raise _rows_error("pin", f"Label {row.serial} has a PIN but template {self.t.slug!r} has no PIN box to hide it.")

    # -- documents ------------------------------------------------------------------------------
    def render_chunk(self, rows: Iterable[LabelRow], out: BinaryIO | str | os.PathLike,
                     progress: Callable[[int], None] | None = None) -> RenderResult:
        """One self-contained reportlab PDF of `rows` (whole pages). Keep it to a few thousand
        labels: reportlab holds the document in memory until it is saved."""
        it = iter(rows)
        first = next(it, None)
        result = RenderResult()
        if first is None:
            raise _rows_error("rows", "There are no labels to render.")
        symbol = self._symbol(first)
        self._probe = symbol
        if symbol.version != self.version:
            self._set_qr_version(symbol.version)
        target = str(out) if isinstance(out, (str, os.PathLike)) else out
        c = rl_canvas.Canvas(target, pagesize=self.page_size, invariant=1, pageCompression=1, pdfVersion=(1, 4))
        c.setCreator("chenpi-trace")
        c.setProducer("chenpi-trace labels")
        if self.batch.title:
            c.setTitle(self.batch.title)
        self._define_forms(c)
        per_page = self.t.per_page
        pending: tuple[LabelRow, qrmod.Symbol] | None = (first, symbol)
        while pending is not None:
            page_rows = [pending]
            pending = None
            for row in islice(it, per_page - 1):
                page_rows.append((row, self._symbol(row)))
            if len(page_rows) == per_page and self.t.kind == "sheet":
                c.doForm("sheet")
            elif self.t.kind == "roll":
                c.doForm("label")
            else:
                for i in range(len(page_rows)):
                    x, y = self.slots[i]
                    c.saveState()
                    c.translate(x, y)
                    c.doForm("label")
                    c.restoreState()
                self._crop_marks(c)
            for i, (row, sym) in enumerate(page_rows):
                x, y = self.slots[i]
                self._label_dynamic(c, row, sym, x, y)
            c.showPage()
            result.pages += 1
            result.labels += len(page_rows)
            if progress:
                progress(len(page_rows))
            nxt = next(it, None)
            if nxt is not None:
                pending = (nxt, self._symbol(nxt))
        c.save()
        result.qr_version, result.module_dots = self.version, self.module_dots
        return result


def _batches(rows: Iterable[LabelRow], size: int) -> Iterator[list[LabelRow]]:
    it = iter(rows)
    while True:
        chunk = list(islice(it, size))
        if not chunk:
            return
        yield chunk


def chunk_labels(template: Template, chunk_labels: int = CHUNK_LABELS) -> int:
    """Labels per chunk for `template`: whole pages, about `chunk_labels`."""
    return max(1, chunk_labels // template.per_page) * template.per_page


def render_pdf(template: Template, batch: BatchInfo, rows: Iterable[LabelRow], out: BinaryIO | str | os.PathLike, *,
               outline: bool = False, progress: Callable[[int], None] | None = None,
               chunk: int = CHUNK_LABELS) -> RenderResult:
    """Render every row into one PDF at `out` (path or binary file), streaming chunk by chunk.

    Returns labels, pages, bytes and the SHA-256 of what was written.
    """
    renderer = PdfRenderer(template, batch, outline=outline)
    total = RenderResult()
    with _output(out) as f:
        writer = _HashingWriter(f)
        joiner = PdfJoiner(writer, title=pdf_title(template, batch))
        for part in _batches(rows, chunk_labels(template, chunk)):
            buf = io.BytesIO()
            r = renderer.render_chunk(part, buf, progress)
            joiner.add(buf.getvalue())
            del buf
            total.labels += r.labels
            total.pages += r.pages
            total.qr_version, total.module_dots = r.qr_version, r.module_dots
        if total.labels == 0:
            raise _rows_error("rows", "There are no labels to render.")
        joiner.close()
    total.bytes, total.sha256 = writer.n, writer.sha.hexdigest()
    return total


@contextmanager
def _output(out: BinaryIO | str | os.PathLike):
    """A binary file to write; for a path, written as PATH.part and renamed only when complete,
    so a crashed or failed render never leaves a truncated PDF under the real name."""
    if not isinstance(out, (str, os.PathLike)):
        yield out
        return
    final = Path(out)
    part = final.with_name(final.name + ".part")
    try:
        with open(part, "wb") as f:
            yield f
        os.replace(part, final)
    finally:
        if part.exists():
            part.unlink()


def pdf_title(template: Template, batch: BatchInfo) -> str:
    return batch.title or template.name


def plan_chunks(first: int, last: int, template: Template, chunk: int = CHUNK_LABELS) -> list[tuple[int, int]]:
    """Split serials first..last (inclusive) into the chunks `render_pdf` would make: give each
    to `render_chunk` (on any worker) and `join_chunks` the files in order for the same bytes."""
    size = chunk_labels(template, chunk)
    return [(a, min(a + size - 1, last)) for a in range(first, last + 1, size)]


def render_chunk(template: Template, batch: BatchInfo, rows: Iterable[LabelRow], out: BinaryIO | str | os.PathLike, *,
                 outline: bool = False, progress: Callable[[int], None] | None = None) -> RenderResult:
    """Render one chunk (a range of serials from `plan_chunks`) as its own PDF file."""
    return PdfRenderer(template, batch, outline=outline).render_chunk(rows, out, progress)


def join_chunks(parts: Iterable[str | os.PathLike | bytes], out: BinaryIO | str | os.PathLike, title: str = "") -> RenderResult:
    """Join chunk PDFs (paths or bytes, in serial order) into one PDF, streaming. With
    `title=pdf_title(template, batch)` the bytes equal `render_pdf`'s for the same rows."""
    pages = 0
    with _output(out) as f:
        writer = _HashingWriter(f)
        joiner = PdfJoiner(writer, title=title)
        for part in parts:
            pages += joiner.add(part if isinstance(part, bytes) else Path(part).read_bytes())
        joiner.close()
    return RenderResult(pages=pages, bytes=writer.n, sha256=writer.sha.hexdigest())
