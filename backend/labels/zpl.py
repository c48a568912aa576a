"""ZPL II output for Zebra-style thermal roll printers (pure: template + rows in, ZPL out).

The printer's own fonts have no Chinese, so everything that is the same on every label (header,
operator, credit code, product, lot, harvest year, logo, PIN box) is rasterised once at the
template's dpi with the label font and sent once as a stored graphic (``~DG`` into the printer's
RAM); each label then recalls it (``^XG``) — the ZPL counterpart of the PDF's form XObject — and
adds its own parts: the QR through the printer's ``^BQ`` command (model 2, the template's error
level, magnification = the PDF's module size in dots, capped at ZPL's 10) and the code, serial
and PIN in the printer's scalable font 0 (``^A0``), all ASCII. The graphic is deleted at the end
(``^ID``). Only roll templates (one label per page) print as ZPL.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import BinaryIO

from ..errors import AppError
from . import fonts, qr as qrmod
from .render import BatchInfo, LabelRow, PdfRenderer, RenderResult
from .templates import ImageElement, PinElement, Template

GRAPHIC = "R:CPSTATIC.GRF"
MAX_MAGNIFICATION = 10


def _dots(mm: float, dpi: int) -> int:
    return int(round(mm / 25.4 * dpi))


def static_bitmap(template: Template, batch: BatchInfo):
    """The label's fixed parts as a 1-bit PIL image at the template's dpi (1 = black)."""
    from PIL import Image, ImageDraw, ImageFont

    renderer = PdfRenderer(template, batch)  # validates the batch texts and lays them out
    dpi = template.dpi
    w, h = _dots(template.label_w, dpi), _dots(template.label_h, dpi)
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    font = renderer.font
    px = dpi / 72.0
    for el, size, lines in renderer.static_texts:
        pil_font = ImageFont.truetype(str(font.path), max(1, round(size * px)), index=0)
        leading = size * fonts.LEADING
        block = (font.ascent - font.descent) * size + (len(lines) - 1) * leading
        pad = max(0.0, (el.box.h * 72 / 25.4 - block) / 2)
        baseline = el.box.y / 25.4 * 72 + pad + font.ascent * size  # pt from the label top
        for line in lines:
            x_pt = el.box.x / 25.4 * 72
            width = font.width(line, size)
            if el.align == "center":
                x_pt += (el.box.w / 25.4 * 72 - width) / 2
            elif el.align == "right":
                x_pt += el.box.w / 25.4 * 72 - width
            draw.text((x_pt * px, baseline * px), line, font=pil_font, fill=0, anchor="ls",
                      stroke_width=1 if el.bold and size * px >= 24 else 0, stroke_fill=0)
            baseline += leading
    for el in template.elements:
        box = (_dots(el.box.x, dpi), _dots(el.box.y, dpi), _dots(el.box.right, dpi) - 1, _dots(el.box.bottom, dpi) - 1)
        if isinstance(el, ImageElement):
            with Image.open(el.path) as logo:
                logo = logo.convert("RGBA")
                bg = Image.new("RGBA", logo.size, (255, 255, 255, 255))
                bg.alpha_composite(logo)
                logo = bg.convert("L")
                logo.thumbnail((box[2] - box[0] + 1, box[3] - box[1] + 1))
                logo = logo.convert("1").convert("L")  # dithered for a 1-bit printer
                img.paste(logo, (box[0] + (box[2] - box[0] + 1 - logo.width) // 2,
                                 box[1] + (box[3] - box[1] + 1 - logo.height) // 2))
        elif isinstance(el, PinElement):
            draw.rounded_rectangle(box, radius=_dots(1.2, dpi), outline=0, width=max(1, dpi // 200))
    return img.point(lambda v: 0 if v < 128 else 255, mode="1")


def _graphic_hex(img) -> tuple[int, int, str]:
    """(total bytes, bytes per row, hex) of a 1-bit image, 1 bits black, as ~DG wants."""
    from PIL import ImageOps

    inverted = ImageOps.invert(img.convert("L")).convert("1")  # PIL packs white as 1
    row = (img.width + 7) // 8
    data = inverted.tobytes()
    return len(data), row, data.hex().upper()


def render_zpl(template: Template, batch: BatchInfo, rows: Iterable[LabelRow], out: BinaryIO, *,
               progress: Callable[[int], None] | None = None) -> RenderResult:
    """Write a ZPL job for `rows` to `out` (binary, UTF-8); returns labels, bytes and SHA-256."""
    if template.kind != "roll":
        raise AppError("labels.template_invalid",
                       f"Template {template.slug!r} is a sheet; ZPL is for roll (thermal) templates.",
                       {"template": ["ZPL needs a roll template"]})
    dpi = template.dpi
    qr_el = template.qr
    sha = hashlib.sha256()
    result = RenderResult()

    def write(text: str) -> None:
        data = text.encode("utf-8")
        out.write(data)
        sha.update(data)
        result.bytes += len(data)

    total, per_row, hexdata = _graphic_hex(static_bitmap(template, batch))
    write(f"~DG{GRAPHIC},{total},{per_row},{hexdata}\n")
    pw, ll = _dots(template.label_w, dpi), _dots(template.label_h, dpi)
    texts = template.texts(("code", "serial"))
    pin = template.pin
    font = fonts.load()
    for row in rows:
        try:
            symbol = qrmod.encode(row.url, qr_el.error, qr_el.max_version)
        except ValueError:
            raise AppError("labels.qr_too_dense", f"{row.url!r} is too long for template {template.slug!r}'s QR.",
                           {"url": ["too long"]}) from None
        k = min(MAX_MAGNIFICATION, qr_el.module_dots(dpi, symbol.version))
        side = symbol.size * k
        qx = _dots(qr_el.box.x, dpi) + (_dots(qr_el.box.w, dpi) - side) // 2
        qy = _dots(qr_el.box.y, dpi) + (_dots(qr_el.box.h, dpi) - side) // 2
        parts = [f"^XA^PW{pw}^LL{ll}^LH0,0^CI28",
                 f"^FO0,0^XG{GRAPHIC},1,1^FS",
                 f"^FO{qx},{qy}^BQN,2,{k}^FD{qr_el.error}A,{row.url}^FS"]
        for el in texts:
            value = el.prefix + (row.code if el.field == "code" else row.serial)
            if not value.isascii():
                raise AppError("labels.text_unprintable",
                               f"ZPL prints per-label text in the printer's font, which has no {value!r}.",
                               {el.field: ["not ASCII"]})
            size = el.size
            while size > el.min_size and font.width(value, size) > el.box.w * 72 / 25.4:
                size -= 0.25
            h = max(10, round(size * dpi / 72))
            just = {"left": "L", "center": "C", "right": "R"}[el.align]
            y = _dots(el.box.y, dpi) + max(0, (_dots(el.box.h, dpi) - h) // 2)
            parts.append(f"^FO{_dots(el.box.x, dpi)},{y}^A0N,{h},{h}^FB{_dots(el.box.w, dpi)},1,0,{just}^FD{_zpl_text(value)}^FS")
        if pin is not None:
            if not row.pin:
                raise AppError("labels.rows_invalid", f"Label {row.serial} has no PIN for the scratch-off box.",
                               {"pin": ["missing"]})
            h = round(pin.size * dpi / 72)
            y = _dots(pin.box.y + pin.box.h / 2, dpi) - h // 2
            parts.append(f"^FO{_dots(pin.box.x, dpi)},{y}^A0N,{h},{h}^FB{_dots(pin.box.w, dpi)},1,0,C^FD{_zpl_text(row.pin)}^FS")
        elif row.pin:
            raise AppError("labels.rows_invalid", f"Label {row.serial} has a PIN but the template has no box to hide it.",
                           {"pin": ["no PIN box"]})
        parts.append("^PQ1^XZ\n")
        write("\n".join(parts))
        result.labels += 1
        result.pages += 1
        result.qr_version, result.module_dots = symbol.version, k
        if progress:
            progress(1)
    if result.labels == 0:
        raise AppError("labels.rows_invalid", "There are no labels to render.", {"rows": ["empty"]})
    write(f"^XA^ID{GRAPHIC}^FS^XZ\n")
    result.sha256 = sha.hexdigest()
    return result


def _zpl_text(value: str) -> str:
    """Field data without ZPL's command characters (^ and ~ start commands)."""
    return value.replace("^", " ").replace("~", " ")

