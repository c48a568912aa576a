"""Label rendering: every template's QR codes decode to their label's URL (pure; no database).

Pages are rasterised at 300 dpi with pypdfium2 and every QR is decoded with zxing-cpp; the text
layer must carry each label's code and serial in the same slot; the CJK font must be embedded.
"""
from __future__ import annotations

import io
import re
import zlib

import pypdfium2 as pdfium
import pytest
import zxingcpp

from backend.errors import AppError
from backend.labels import codes, render, samples, templates as tpl, zpl
from backend.labels.render import BatchInfo, LabelRow

BASE = "https://trace.example.cn"
TEMPLATES = tpl.available()
MM = 72 / 25.4


def sample(t: tpl.Template, count: int, **kw) -> list[LabelRow]:
    return list(samples.sample_rows(BASE, count, pins=t.pin is not None, **kw))


def count_for(t: tpl.Template) -> int:
    """A full page and a part page on sheets (both drawing paths); three labels on rolls."""
    return t.per_page + 2 if t.kind == "sheet" else 3


def pdf_bytes(t, rows, batch=None, **kw) -> bytes:
    buf = io.BytesIO()
    render.render_pdf(t, batch or samples.sample_batch(), rows, buf, **kw)
    return buf.getvalue()


def decode_page(page, dpi=300):
    img = page.render(scale=dpi / 72, grayscale=True).to_pil()
    return img, zxingcpp.read_barcodes(img, formats=zxingcpp.BarcodeFormat.QRCode)


def slot_of(t: tpl.Template, x_px: float, y_px: float, dpi=300) -> int:
    x_mm, y_mm = x_px / dpi * 25.4, y_px / dpi * 25.4
    for i, (sx, sy) in enumerate(t.slots()):
        if sx <= x_mm <= sx + t.label_w and sy <= y_mm <= sy + t.label_h:
            return i
    raise AssertionError(f"a QR at {x_mm:.1f}, {y_mm:.1f} mm is on no label")


@pytest.mark.parametrize("slug", TEMPLATES)
def test_every_qr_decodes_to_its_labels_url_and_the_text_matches(slug):
    t = tpl.load(slug)
    rows = sample(t, count_for(t))
    pdf = pdfium.PdfDocument(pdf_bytes(t, rows))
    assert len(pdf) == -(-len(rows) // t.per_page)
    seen = 0
    for p, page in enumerate(pdf):
        on_page = rows[p * t.per_page:(p + 1) * t.per_page]
        _, found = decode_page(page)
        assert len(found) == len(on_page), f"page {p}: {len(found)} QR codes decoded of {len(on_page)}"
        text = page.get_textpage()
        for res in found:
            c = res.position.top_left
            centre = ((res.position.top_left.x + res.position.bottom_right.x) / 2,
                      (res.position.top_left.y + res.position.bottom_right.y) / 2)
            i = slot_of(t, *centre)
            assert i < len(on_page), f"a QR on the empty slot {i}"
            row = on_page[i]
            assert res.text == row.url, (i, c)
            assert res.text == codes.qr_url(BASE, row.code)
            # the printed code and serial are in the same label's text
            sx, sy = t.slots()[i]
            words = text.get_text_bounded(sx * MM, (t.page_h - sy - t.label_h) * MM, (sx + t.label_w) * MM,
                                          (t.page_h - sy) * MM)
            flat = re.sub(r"\s+", "", words)
            assert row.code in flat and row.serial in flat, (row, words)
            assert "新会陈皮地理标志证明商标" in flat and "91440705MA51C0K8XT" in flat
            seen += 1
    assert seen == len(rows)


@pytest.mark.parametrize("slug", TEMPLATES)
def test_qr_codes_still_decode_at_low_resolution(slug):
    t = tpl.load(slug)
    rows = sample(t, 2)
    found = [r.text for page in pdfium.PdfDocument(pdf_bytes(t, rows)) for r in decode_page(page, dpi=72)[1]]
    assert sorted(found) == sorted(r.url for r in rows)


def _fonts(pdf: bytes) -> list[bytes]:
    return re.findall(rb"<<[^<>]*/Type /Font\b[^<>]*>>", pdf) + re.findall(rb"<<[^<>]*/Type /FontDescriptor[^<>]*>>", pdf)


@pytest.mark.parametrize("slug", TEMPLATES)
def test_the_cjk_font_is_embedded_as_a_truetype_subset(slug):
    t = tpl.load(slug)
    pdf = pdf_bytes(t, sample(t, 2))
    assert b"STSong" not in pdf and b"/CIDFontType0" not in pdf
    descriptors = re.findall(rb"/Type /FontDescriptor", pdf)
    assert descriptors and len(re.findall(rb"/FontFile2 \d+ 0 R", pdf)) == len(descriptors)
    names = set(re.findall(rb"/BaseFont /([A-Za-z0-9+\-]+)", pdf))
    assert any(re.fullmatch(rb"[A-Z]{6}\+WenQuanYiMicroHei", n) for n in names)  # a subset
    assert names <= {n for n in names if b"+WenQuanYi" in n} | {b"Helvetica"}  # Helvetica: base-14, unused
    # the embedded subsets are small: only the glyphs used
    assert len(pdf) < 200_000


def test_rendering_is_deterministic_and_chunks_from_two_workers_join_to_the_same_bytes():
    t = tpl.load("a4-4x10-48x25")
    rows = sample(t, 130)
    one = pdf_bytes(t, rows, chunk=40)
    assert one == pdf_bytes(t, rows, chunk=40)
    plan = render.plan_chunks(1, 130, t, chunk=40)
    assert plan == [(1, 40), (41, 80), (81, 120), (121, 130)]
    parts = []
    for first, last in plan:  # as separate workers would, each from its own serial range
        buf = io.BytesIO()
        render.render_chunk(t, samples.sample_batch(), sample(t, last - first + 1, first=first), buf)
        parts.append(buf.getvalue())
    joined = io.BytesIO()
    result = render.join_chunks(parts, joined, title=render.pdf_title(t, samples.sample_batch()))
    assert joined.getvalue() == one and result.pages == 4
    doc = pdfium.PdfDocument(one)
    assert len(doc) == 4
    _, found = decode_page(doc[3])
    assert sorted(r.text for r in found) == sorted(r.url for r in rows[120:])


def test_a_render_reports_its_sha256_and_size(tmp_path):
    import hashlib

    t = tpl.load("roll-50x30")
    out = tmp_path / "x.pdf"
    result = render.render_pdf(t, samples.sample_batch(), sample(t, 5), out)
    data = out.read_bytes()
    assert result.sha256 == hashlib.sha256(data).hexdigest() and result.bytes == len(data)
    assert (result.labels, result.pages, result.qr_version) == (5, 5, 2)
    assert result.module_dots == t.qr.module_dots(t.dpi, 2) >= 3


def test_the_qr_path_is_drawn_once_per_label_and_the_static_parts_once_per_page():
    t = tpl.load("a4-3x8-70x37")
    pdf = pdf_bytes(t, sample(t, 48), chunk=48)
    streams = [zlib.decompress(m) for m in re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.S) if m[:1] == b"x"]
    pages = [s for s in streams if b"/FormXob.sheet Do" in s]
    assert len(pages) == 2
    for s in pages:
        assert s.count(b"/FormXob.sheet Do") == 1
        assert s.count(b" cm\n") >= 24 and s.count(b"f*\n") + s.count(b"f\n") == 24  # one fill per QR
        assert "新会".encode() not in s  # the header lives in the form
    # per label, far below the 500-byte budget even in such a short document
    assert len(pdf) / 48 < 1500


def test_memory_model_flushes_chunks_into_the_output():
    t = tpl.load("roll-50x30")
    rows = sample(t, 25)
    pdf = pdf_bytes(t, rows, chunk=10)
    doc = pdfium.PdfDocument(pdf)
    assert len(doc) == 25
    assert pdf.count(b"/Type /Pages") == 1 + 3  # the root over three chunk page trees
    _, found = decode_page(doc[24])
    assert [r.text for r in found] == [rows[24].url]


# --- bad input --------------------------------------------------------------------------------------
def reason(exc) -> str:
    return exc.value.reason


def test_the_gi_fields_are_required():
    t = tpl.load("roll-50x30")
    with pytest.raises(AppError) as err:
        pdf_bytes(t, sample(t, 1), batch=BatchInfo(operator_name="", credit_code="91440705MA51C0K8XT"))
    assert reason(err) == "labels.rows_invalid" and "operator_name" in err.value.errors


def test_a_character_the_font_lacks_is_refused_by_name():
    t = tpl.load("roll-50x30")
    batch = BatchInfo(operator_name="新会区李堃陈皮行", credit_code="91440705MA51C0K8XT")
    with pytest.raises(AppError) as err:
        pdf_bytes(t, sample(t, 1), batch=batch)
    assert reason(err) == "labels.text_unprintable" and "堃" in err.value.message


def test_text_too_long_for_its_box_is_refused():
    t = tpl.load("roll-40x40")
    batch = BatchInfo(operator_name="江门市新会区" * 12 + "陈皮有限公司", credit_code="91440705MA51C0K8XT")
    with pytest.raises(AppError) as err:
        pdf_bytes(t, sample(t, 1), batch=batch)
    assert reason(err) == "labels.text_unprintable" and "does not fit" in err.value.message


def test_a_url_too_long_for_the_template_is_refused():
    t = tpl.load("roll-40x40")
    base = "https://" + "VERYLONGHOSTNAME" * 4 + ".EXAMPLE.CN"
    with pytest.raises(AppError) as err:
        pdf_bytes(t, list(samples.sample_rows(base, 1, pins=True)))
    assert reason(err) == "labels.qr_too_dense"


def test_pins_must_match_the_template():
    with pytest.raises(AppError) as err:
        pdf_bytes(tpl.load("roll-40x40"), list(samples.sample_rows(BASE, 1, pins=False)))
    assert reason(err) == "labels.rows_invalid" and "no PIN" in err.value.message
    with pytest.raises(AppError) as err:
        pdf_bytes(tpl.load("roll-50x30"), list(samples.sample_rows(BASE, 1, pins=True)))
    assert reason(err) == "labels.rows_invalid" and "no PIN box" in err.value.message


def test_no_rows_is_an_error():
    with pytest.raises(AppError) as err:
        pdf_bytes(tpl.load("roll-50x30"), [])
    assert reason(err) == "labels.rows_invalid"


def test_a_failed_render_leaves_no_file_behind(tmp_path):
    t = tpl.load("roll-50x30")
    rows = sample(t, 3) + [LabelRow(code="X", serial="000000-000004", url="HTTPS://" + "X" * 400)]
    out = tmp_path / "batch.pdf"
    with pytest.raises(AppError):
        render.render_pdf(t, samples.sample_batch(), rows, out, chunk=2)
    assert list(tmp_path.iterdir()) == []


# --- ZPL ----------------------------------------------------------------------------------------------
def emulate_zpl(job: str, dpi: int):
    """A tiny ZPL interpreter for what render_zpl writes: the stored graphic and ^BQ symbols."""
    import segno
    from PIL import Image, ImageDraw

    m = re.search(r"~DG([^,]+),(\d+),(\d+),([0-9A-F]+)", job)
    total, per_row, data = int(m.group(2)), int(m.group(3)), bytes.fromhex(m.group(4))
    assert len(data) == total
    graphic = Image.frombytes("1", (per_row * 8, total // per_row), bytes(b ^ 0xFF for b in data))
    labels = []
    for fmt in re.findall(r"\^XA\^PW.*?\^XZ", job, re.S):
        pw, ll = map(int, re.search(r"\^PW(\d+)\^LL(\d+)", fmt).groups())
        img = Image.new("L", (pw, ll), 255)
        img.paste(graphic.convert("L").crop((0, 0, pw, ll)), (0, 0))
        x, y, k, ec, url = re.search(r"\^FO(\d+),(\d+)\^BQN,2,(\d+)\^FD([LMQH])A,([^\^]+)\^FS", fmt).groups()
        x, y, k = int(x), int(y), int(k)
        qr = segno.make_qr(url, error=ec, boost_error=False)
        # the quiet zone must be blank in the stored graphic
        n = len(qr.matrix)
        quiet = img.crop((x - 4 * k, y - 4 * k, x + (n + 4) * k, y + (n + 4) * k))
        assert min(quiet.getdata()) == 255, "the static graphic reaches into the QR's quiet zone"
        draw = ImageDraw.Draw(img)
        for r, row in enumerate(qr.matrix):
            for c, v in enumerate(row):
                if v:
                    draw.rectangle((x + c * k, y + r * k, x + (c + 1) * k - 1, y + (r + 1) * k - 1), fill=0)
        texts = re.findall(r"\^FD([^\^]*)\^FS", fmt)
        labels.append((img, url, texts, k))
    return labels


@pytest.mark.parametrize("slug", [s for s in TEMPLATES if tpl.load(s).kind == "roll"])
def test_zpl_for_roll_printers_carries_each_labels_url_code_and_serial(slug):
    t = tpl.load(slug)
    rows = sample(t, 3)
    buf = io.BytesIO()
    result = zpl.render_zpl(t, samples.sample_batch(), rows, buf)
    job = buf.getvalue().decode("utf-8")
    assert result.labels == 3 and job.count("^XZ") == 4  # 3 labels + deleting the stored graphic
    assert job.startswith("~DGR:CPSTATIC.GRF,") and job.rstrip().endswith("^XA^IDR:CPSTATIC.GRF^FS^XZ")
    labels = emulate_zpl(job, t.dpi)
    for (img, url, texts, k), row in zip(labels, rows):
        assert url == row.url and k == t.qr.module_dots(t.dpi, 2)
        assert row.code in texts and row.serial in texts
        if t.pin:
            assert row.pin in texts
        found = zxingcpp.read_barcodes(img, formats=zxingcpp.BarcodeFormat.QRCode)
        assert [f.text for f in found] == [row.url]


def test_zpl_refuses_sheet_templates():
    with pytest.raises(AppError) as err:
        zpl.render_zpl(tpl.load("a4-3x8-70x37"), samples.sample_batch(), sample(tpl.load("a4-3x8-70x37"), 1), io.BytesIO())
    assert reason(err) == "labels.template_invalid"


# --- the preview command --------------------------------------------------------------------------
def test_chenpi_labels_preview_renders_sample_labels_under_the_public_base_url(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from backend.cli import main

    monkeypatch.setenv("PUBLIC_BASE_URL", "https://suyuan.example.cn")
    out = tmp_path / "preview.pdf"
    r = CliRunner().invoke(main, ["labels", "preview", "roll-50x30", "--count", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "2 sample label(s)" in r.output
    page = pdfium.PdfDocument(out.read_bytes())[0]
    _, found = decode_page(page)
    assert found[0].text.startswith("HTTPS://SUYUAN.EXAMPLE.CN/V/0")  # key id 0: a preview code
    with pytest.raises(codes.CodeError):
        codes.parse(found[0].text.rsplit("/", 1)[1])
    r = CliRunner().invoke(main, ["labels", "preview", "nope", "--out", str(out)])
    assert r.exit_code != 0 and "No label template 'nope'" in r.output
    r = CliRunner().invoke(main, ["labels", "templates"])
    assert r.exit_code == 0 and "roll-40x40" in r.output
