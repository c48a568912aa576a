"""The scratch-off PIN (the labels' optional second layer): derived like the codes, printed by the
real render job, verified once through POST /v/{code}/pin (page form or JSON), with wrong tries
limited per code, race-safe first verification, and hostile input refused with a clear 4xx."""
from __future__ import annotations

import hashlib
import hmac
import io
import re
import threading

import pypdfium2 as pdfium
import pytest
from sqlalchemy import select, update

from backend.labels import codes, jobs, samples, templates as tpl, zpl
from backend.labels.models import Label, LabelBatch
from backend.labels.service.keys import key_for
from backend.timeutil import utcnow
from tests.factories import label_batch

KEY = b"k" * 32
UA = {"User-Agent": "pin-test-phone/1"}
JSON = {"Accept": "application/json", **UA}


# --- derivation (pure) -------------------------------------------------------------------------------
def test_a_pin_is_8_digits_deterministic_and_differs_per_label_key_and_from_the_code():
    pin = codes.make_pin("1", KEY, 7, 1)
    assert re.fullmatch(r"[0-9]{8}", pin) and pin == codes.make_pin("1", KEY, 7, 1)
    pins = {codes.make_pin("1", KEY, 7, s) for s in range(1, 2001)}
    assert len(pins) >= 1990  # 2,000 draws from 10^8: a collision or two at most
    assert codes.make_pin("1", KEY, 8, 1) != pin  # another batch
    assert codes.make_pin("2", KEY, 7, 1) != pin  # another key id
    assert codes.make_pin("1", b"q" * 32, 7, 1) != pin  # another secret
    # domain separation: the code's own HMAC (what the QR shows) reduced the same way is another number
    for serial in range(1, 50):
        code_mac = hmac.new(KEY, b"chenpi-label/v1\x001\x007\x00%d" % serial, hashlib.sha256).digest()
        assert f"{int.from_bytes(code_mac[:8], 'big') % 10**8:08d}" != codes.make_pin("1", KEY, 7, serial)
        assert codes.make_pin("1", KEY, 7, serial) not in codes.make_code("1", KEY, 7, serial)


@pytest.mark.parametrize("typed, expected", [
    ("01234567", "01234567"), (" 0123-4567 ", "01234567"), ("０１２３４５６７", "01234567"), ("0123 4567", "01234567")])
def test_typed_pins_are_normalised_like_codes(typed, expected):
    assert codes.normalise_pin(typed) == expected


@pytest.mark.parametrize("typed", ["", "   ", "１２３", "1234567", "123456789", "١٢٣٤٥٦٧٨", "१२३४५६७८", "0123456a",
                                   "' OR 1=1 --", "0" * 65, None, 12345678, ["01234567"]])
def test_malformed_pins_are_refused_naming_the_field(typed):
    with pytest.raises(Exception) as err:
        codes.normalise_pin(typed)
    assert err.value.reason == "scans.pin_malformed" and "pin" in err.value.errors


# --- rendering -------------------------------------------------------------------------------------------
def _storage_bytes(key: str) -> bytes:
    from backend.storage import get_storage

    with get_storage().open(key) as f:
        return f.read()


def test_a_roll_40x40_batch_renders_through_the_render_job_with_each_labels_pin(session, make):
    from backend.http import Actor
    from backend.labels.models import RenderJob
    from backend.labels.service import request_render

    batch = label_batch(session, make.operator(), 3, template="roll-40x40")
    admin = Actor(batch.created_by, "label-admin", "admin")
    job = request_render(session, admin, batch.id, None, None)
    session.commit()
    out = jobs.render_job(job.id)
    row = session.get(RenderJob, job.id)
    assert out["status"] == "finished", row.error  # before the PINs, this template always failed
    pdf = pdfium.PdfDocument(_storage_bytes(row.storage_key))
    assert len(pdf) == 3
    key = key_for(batch.key_id)
    serial_codes = dict(session.execute(select(Label.serial, Label.code).where(Label.batch_id == batch.id)).all())
    for i, page in enumerate(pdf, start=1):
        text = re.sub(r"\s+", "", page.get_textpage().get_text_range())
        pin = codes.make_pin(batch.key_id, key, batch.id, i)
        assert pin in text and codes.display(serial_codes[i]) in text and codes.format_serial(batch.id, i) in text
        others = [codes.make_pin(batch.key_id, key, batch.id, s) for s in (1, 2, 3) if s != i]
        assert not any(o in text for o in others), "a PIN on another label's page"
    # a re-render derives the same PINs: the same bytes
    again = request_render(session, admin, batch.id, None, None)
    session.commit()
    jobs.render_job(again.id)
    assert session.get(RenderJob, again.id).sha256 == row.sha256


def test_a_template_without_pin_box_renders_no_pin(session, make):
    batch = label_batch(session, make.operator(), 2)  # a4-3x8: no box
    from backend.http import Actor
    from backend.labels.models import RenderJob
    from backend.labels.service import request_render

    job = request_render(session, Actor(batch.created_by, "a", "admin"), batch.id, None, None)
    session.commit()
    assert jobs.render_job(job.id)["status"] == "finished"
    text = pdfium.PdfDocument(_storage_bytes(session.get(RenderJob, job.id).storage_key))[0].get_textpage().get_text_range()
    assert codes.make_pin(batch.key_id, key_for(batch.key_id), batch.id, 1) not in re.sub(r"\s+", "", text)


def test_zpl_prints_the_pin_of_each_label_and_previews_keep_working():
    t = tpl.load("roll-40x40")
    rows = list(samples.sample_rows("https://trace.example.cn", 2, pins=True))
    assert [r.pin for r in rows] == [codes.make_pin(codes.PREVIEW_KEY_ID, samples.SAMPLE_KEY, 0, s) for s in (1, 2)]
    buf = io.BytesIO()
    zpl.render_zpl(t, samples.sample_batch(), rows, buf)
    text = buf.getvalue().decode()
    assert all(f"^FD{r.pin}^FS" in text for r in rows)
