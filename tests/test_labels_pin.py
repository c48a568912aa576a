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


# --- verification ----------------------------------------------------------------------------------------
def pin_labels(session, make, n=2, state="activated", template="roll-40x40"):
    """`n` labels of a new batch on `template`, in `state`: [(code, pin)]."""
    batch = label_batch(session, make.operator(), n, template=template)
    values = {"state": state, "activated_at": utcnow() if state == "activated" else None}
    session.execute(update(Label).where(Label.batch_id == batch.id).values(**values))
    session.commit()
    key = key_for(batch.key_id)
    return [(code, codes.make_pin(batch.key_id, key, batch.id, serial)) for serial, code in session.execute(
        select(Label.serial, Label.code).where(Label.batch_id == batch.id).order_by(Label.serial))]


def wrong(pin: str) -> str:
    return f"{(int(pin) + 1) % 10**8:08d}"


def label_row(session, code):
    session.expire_all()
    return session.scalar(select(Label).where(Label.code == code))


def test_the_first_correct_pin_is_genuine_and_recorded_and_later_ones_warn(client, session, make):
    (code, pin), _ = pin_labels(session, make)
    client.get(f"/V/{code}", headers=UA)  # the scan: the page sets the device cookie
    r = client.post(f"/v/{code}/pin", data={"pin": pin}, headers=UA)  # the page's form
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert 'data-verdict="first"' in page and "首次验证" in page and "<script" not in page
    row = label_row(session, code)
    assert row.pin_verified_at is not None and row.pin_device and len(row.pin_device) == 32 and row.pin_repeats == 0
    first_at = row.pin_verified_at
    # the same phone again: already verified, by you
    r = client.post(f"/v/{code}/pin", json={"pin": pin}, headers=JSON)
    assert r.status_code == 200 and r.json["verdict"] == "repeat" and r.json["same_device"] is True
    assert r.json["genuine"] is True and "您已于" in r.json["warning"]
    # another phone: this may be a copy
    other = client.application.test_client()
    r = other.post(f"/v/{code}/pin", json={"pin": pin}, headers={"Accept": "application/json", "User-Agent": "other/2"})
    assert r.status_code == 200 and r.json["verdict"] == "repeat" and r.json["same_device"] is False
    assert r.json["genuine"] is False and "可能是仿冒品" in r.json["warning"]
    shown = first_at.astimezone(__import__("backend.timeutil", fromlist=["SHANGHAI"]).SHANGHAI).strftime("%Y-%m-%d %H:%M")
    assert shown in r.json["warning"] and r.json["verified_at"].startswith(shown[:10])
    row = label_row(session, code)
    assert row.pin_verified_at == first_at and row.pin_repeats == 2


def test_a_json_body_answers_json_without_an_accept_header(client, session, make):
    (code, pin), _ = pin_labels(session, make)
    r = client.post(f"/v/{code.lower()}/pin", json={"pin": pin})
    assert r.status_code == 200 and r.is_json and r.json["verdict"] == "first" and r.json["code"] == code
    assert r.json["label"]["serial"] and r.json["label"]["operator"]["credit_code"]


def test_wrong_pins_count_down_then_lock_the_code_even_for_the_right_pin(client, session, make, monkeypatch):
    monkeypatch.setenv("PIN_MAX_ATTEMPTS", "3")
    (code, pin), (other, other_pin) = pin_labels(session, make)
    lefts = []
    for _ in range(3):
        r = client.post(f"/v/{code}/pin", json={"pin": wrong(pin)}, headers=JSON)
        assert r.status_code == 422 and r.json["reason"] == "scans.pin_mismatch" and "pin" in r.json["errors"]
        lefts.append(r.json["attempts_left"])
    assert lefts == [2, 1, 0]
    r = client.post(f"/v/{code}/pin", json={"pin": pin}, headers=JSON)
    assert r.status_code == 429 and r.json["verdict"] == "locked" and r.json["reason"] == "scans.pin_locked"
    assert 0 < int(r.headers["Retry-After"]) <= 3600 and r.json["retry_after"] == int(r.headers["Retry-After"])
    assert label_row(session, code).pin_verified_at is None
    page = client.post(f"/v/{code}/pin", data={"pin": pin}, headers=UA)
    assert page.status_code == 429 and "错误次数过多" in page.get_data(as_text=True)
    # the lock is per code: the other label of the batch still verifies
    r = client.post(f"/v/{other}/pin", json={"pin": other_pin}, headers=JSON)
    assert r.status_code == 200 and r.json["verdict"] == "first"


def test_the_lock_ends_with_its_window_and_a_correct_pin_clears_the_count(client, session, make, monkeypatch):
    import time

    monkeypatch.setenv("PIN_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("PIN_LOCK_SECONDS", "1")
    (code, pin), (other, other_pin) = pin_labels(session, make)
    for _ in range(2):
        client.post(f"/v/{code}/pin", json={"pin": wrong(pin)}, headers=JSON)
    assert client.post(f"/v/{code}/pin", json={"pin": pin}, headers=JSON).status_code == 429
    time.sleep(2.1)
    assert client.post(f"/v/{code}/pin", json={"pin": pin}, headers=JSON).json["verdict"] == "first"
    # one wrong, then right: the count starts again (two more wrong ones are allowed, not one)
    monkeypatch.setenv("PIN_LOCK_SECONDS", "3600")
    client.post(f"/v/{other}/pin", json={"pin": wrong(other_pin)}, headers=JSON)
    assert client.post(f"/v/{other}/pin", json={"pin": other_pin}, headers=JSON).status_code == 200
    assert client.post(f"/v/{other}/pin", json={"pin": wrong(other_pin)}, headers=JSON).json["attempts_left"] == 1


def test_labels_without_pin_unknown_and_mistyped_codes_answer_clearly(client, session, make):
    (plain, _), = pin_labels(session, make, 1, template="a4-3x8-70x37")
    r = client.post(f"/v/{plain}/pin", json={"pin": "01234567"}, headers=JSON)
    assert r.status_code == 404 and r.json["reason"] == "scans.pin_absent" and r.json["verdict"] == "no_pin"
    unknown = codes.make_code("1", key_for("1"), 999_999, 1)
    r = client.post(f"/v/{unknown}/pin", json={"pin": "01234567"}, headers=JSON)
    assert r.status_code == 404 and r.json["reason"] == "scans.code_unknown" and r.json["verdict"] == "unknown"
    typo = unknown[:-1] + ("0" if unknown[-1] != "0" else "1")
    r = client.post(f"/v/{typo}/pin", json={"pin": "01234567"}, headers=JSON)
    assert r.status_code == 422 and r.json["verdict"] == "check_code" and "code" in r.json["errors"]
    r = client.post("/v/" + "A" * 5000 + "/pin", json={"pin": "01234567"}, headers=JSON)
    assert r.status_code == 422 and r.json["verdict"] == "check_code"


@pytest.mark.parametrize("state, verdict", [("voided", "voided"), ("stolen", "stolen"), ("lost", "lost"),
                                            ("issued", "inactive"), ("printed", "inactive")])
def test_voided_stolen_or_inactive_labels_get_the_resolvers_warning_and_no_check(client, session, make, state, verdict):
    from backend.scans import rules

    (code, pin), = pin_labels(session, make, 1, state=state)
    r = client.post(f"/v/{code}/pin", json={"pin": pin}, headers=JSON)
    assert r.status_code == 409 and r.json["reason"] == "scans.pin_label_state" and r.json["verdict"] == verdict
    assert r.json["title"] == rules.TITLES[verdict] and r.json["warning"] == rules.warning(verdict, 0, None, [])
    assert label_row(session, code).pin_verified_at is None


@pytest.mark.parametrize("body, kind, status", [
    ({"pin": "9" * 100_000}, "form", 422),  # huge
    ({"pin": "9" * 100_000}, "json", 422),
    ({"pin": "１２３"}, "json", 422),  # full-width, too short
    ({"pin": "١٢٣٤٥٦٧٨"}, "json", 422),  # Arabic-Indic digits
    ({"pin": "'; DROP TABLE labels; --"}, "form", 422),
    ({"pin": "1' OR '1'='1"}, "json", 422),
    ({"pin": ""}, "form", 422),
    ({}, "form", 422),
    ({}, "json", 422),
    ({"pin": 12345678}, "json", 422),
    ({"pin": None}, "json", 422),
    ({"pin": ["01234567"]}, "json", 422),
    (["01234567"], "json", 422),
    ("{not json", "raw-json", 400),
    ("pin=01234567", "text", 415),
])
def test_hostile_input_is_a_clear_4xx_and_costs_no_attempt(client, session, make, body, kind, status):
    (code, pin), = pin_labels(session, make, 1)
    if kind == "form":
        r = client.post(f"/v/{code}/pin", data=body, headers=JSON)
    elif kind == "json":
        r = client.post(f"/v/{code}/pin", json=body, headers=JSON)
    elif kind == "raw-json":
        r = client.post(f"/v/{code}/pin", data=body, content_type="application/json", headers=JSON)
    else:
        r = client.post(f"/v/{code}/pin", data=body, content_type="text/plain", headers=JSON)
    assert r.status_code == status and r.is_json, r.get_data(as_text=True)[:300]
    if status == 422:
        assert r.json["reason"] == "scans.pin_malformed" and r.json["verdict"] == "bad_pin" and "pin" in r.json["errors"]
    assert label_row(session, code).pin_verified_at is None
    r = client.post(f"/v/{code}/pin", json={"pin": wrong(pin)}, headers=JSON)
    assert r.json["attempts_left"] == 4  # the malformed input took none of the client's five
    # the label is still intact, and its right PIN (typed full-width, as a Chinese IME does) is the first
    full_width = pin.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert client.post(f"/v/{code}/pin", json={"pin": full_width}, headers=JSON).json["verdict"] == "first"


def test_without_redis_there_is_no_attempt_counter_so_no_check(session, make):
    import redis as redis_lib

    from backend.scans import pins, service
    from backend.scans.settings import thresholds

    (code, pin), = pin_labels(session, make, 1)
    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    res = pins.verify(session, dead, code, pin, service.Client("c" * 32, "d" * 32), thresholds())
    assert res.status == 503 and res.verdict == "unavailable" and res.reason == "scans.pin_unavailable"
    assert label_row(session, code).pin_verified_at is None


def test_the_resolver_page_offers_the_pin_form_only_for_labels_with_a_pin(client, session, make):
    (code, pin), = pin_labels(session, make, 1)
    (plain, _), = pin_labels(session, make, 1, template="a4-3x8-70x37")
    page = client.get(f"/V/{code}", headers=UA).get_data(as_text=True)
    assert f'action="/v/{code}/pin"' in page and "刮开涂层" in page and 'name="pin"' in page
    assert 'id="pin-verified"' not in page
    assert client.get(f"/v/{code}?format=json").json["label"]["pin"] == {"verified_at": None}
    plain_page = client.get(f"/v/{plain}", headers=UA).get_data(as_text=True)
    assert "/pin" not in plain_page and client.get(f"/v/{plain}?format=json").json["label"]["pin"] is None
    client.post(f"/v/{code}/pin", data={"pin": pin}, headers=UA)
    page = client.get(f"/v/{code}", headers=UA).get_data(as_text=True)
    assert 'id="pin-verified"' in page and "被验证过" in page
    assert client.get(f"/v/{code}?format=json").json["label"]["pin"]["verified_at"]
    # a voided label's page offers no form
    session.execute(update(Label).where(Label.code == code).values(state="voided"))
    session.commit()
    assert f'action="/v/{code}/pin"' not in client.get(f"/v/{code}", headers=UA).get_data(as_text=True)


def test_the_openapi_document_describes_the_form_and_the_json_body(client):
    doc = client.get("/api/openapi.json").json
    op = doc["paths"]["/v/{code}/pin"]["post"]
    assert op["x-roles"] == ["public"] and op["security"] == []
    assert set(op["requestBody"]["content"]) == {"application/x-www-form-urlencoded", "application/json"}
    assert {"200", "404", "409", "422", "429", "503"} <= set(op["responses"])
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/PinResultOut")


@pytest.mark.real_servers
def test_concurrent_first_verifications_give_one_first_and_the_rest_already(app, committed_db, make):
    session = committed_db.session
    (code, pin), = pin_labels(session, make, 1)
    session.remove()
    n = 8
    barrier = threading.Barrier(n)
    answers, errors = [], []

    def verify(i):
        try:
            with app.app_context():
                c = app.test_client()
                barrier.wait(timeout=30)
                # eight phones, each its own client (one client's attempts are limited as a whole)
                r = c.post(f"/v/{code}/pin", json={"pin": pin}, headers={"Accept": "application/json",
                                                                         "User-Agent": f"phone-{i}"},
                           environ_base={"REMOTE_ADDR": f"198.51.100.{i + 1}"})
                answers.append((r.status_code, r.json["verdict"], r.json["verified_at"]))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=verify, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(v for _, v, _ in answers) == ["first"] + ["repeat"] * (n - 1), answers
    assert {s for s, _, _ in answers} == {200} and len({at for _, _, at in answers}) == 1
    with app.app_context():
        row = committed_db.session.scalar(select(Label).where(Label.code == code))
        assert row.pin_verified_at is not None and row.pin_repeats == n - 1
        assert committed_db.session.scalar(select(LabelBatch.template).where(LabelBatch.id == row.batch_id)) == "roll-40x40"


def test_whether_a_template_has_a_pin_is_cached_but_follows_the_file(tmp_path, monkeypatch):
    import os
    import shutil

    from backend.labels.service import pins

    for name in ("roll-40x40.toml", "assets"):
        src = tpl.templates_dir() / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    monkeypatch.setenv("LABEL_TEMPLATES_DIR", str(tmp_path))
    monkeypatch.setattr(pins, "_has_pin", {})
    assert pins.template_has_pin("roll-40x40") is True
    text = (tmp_path / "roll-40x40.toml").read_text()
    without = re.sub(r'\[\[elements\]\]\s*\ntype = "pin"[^\[]*', "", text)
    assert without != text
    (tmp_path / "roll-40x40.toml").write_text(without)
    os.utime(tmp_path / "roll-40x40.toml", ns=(1, 10**18))  # a different mtime, whatever the clock
    assert pins.template_has_pin("roll-40x40") is True  # within RECHECK_S: the cached answer
    monkeypatch.setattr(pins, "RECHECK_S", 0.0)
    assert pins.template_has_pin("roll-40x40") is False  # looked again: the box is gone
    (tmp_path / "roll-40x40.toml").unlink()
    assert pins.template_has_pin("roll-40x40") is False and pins.template_has_pin("no-such") is False


# --- the resolver's warnings, the label view cache and the per-client limit -------------------------------
def _operator_of(session, code):
    from backend.registry.models import Operator

    return session.scalar(select(Operator).join(LabelBatch, LabelBatch.operator_id == Operator.id)
                          .join(Label, Label.batch_id == LabelBatch.id).where(Label.code == code))


def test_a_code_inspectors_reported_as_counterfeit_answers_the_warning_not_genuine(client, session, make):
    from backend.extensions import redis
    from backend.fieldwork import service as fieldwork
    from backend.scans import pins
    from tests.factories import actor_of, checkin_json

    (code, pin), = pin_labels(session, make, 1)
    assert client.get(f"/v/{code}", headers=JSON).json["verdict"] == "genuine"  # its view is now cached
    inspector = actor_of(session, make.token("inspector"))
    fieldwork.receive_checkins(session, inspector, [checkin_json(
        operator=_operator_of(session, code), kind="shop", result="fail",
        findings=[{"kind": "counterfeit_labels", "codes": [code.lower()], "note": "假标"}])])
    session.commit()
    r = client.post(f"/v/{code}/pin", json={"pin": pin}, headers=JSON)
    assert r.status_code == 409 and r.json["verdict"] == "warn" and r.json["reason"] == "scans.pin_label_flagged"
    assert r.json["genuine"] is False and r.json["title"] == "谨防假冒"
    assert "稽查人员举报" in r.json["warning"] and "可放心购买" not in r.json["warning"]
    assert r.json["label"]["serial"] and "code" in r.json["errors"]
    page = client.post(f"/v/{code}/pin", data={"pin": pin}, headers=UA)
    assert page.status_code == 409 and 'data-verdict="warn"' in page.get_data(as_text=True)
    assert "首次验证" not in page.get_data(as_text=True)
    # nothing recorded, no attempt taken, and the resolver says the same
    assert label_row(session, code).pin_verified_at is None
    assert redis.client.get(pins.tries_key(code)) is None
    assert client.get(f"/v/{code}", headers=JSON).json["verdict"] == "warn"
    assert f'action="/v/{code}/pin"' not in client.get(f"/v/{code}", headers=UA).get_data(as_text=True)  # no form


def test_a_code_with_an_open_fraud_alert_answers_the_warning(client, session, make, monkeypatch):
    from backend.extensions import db, redis
    from backend.scans import pins, service

    monkeypatch.setenv("SCAN_ALERT_DEVICES", "2")
    (code, pin), (other, other_pin) = pin_labels(session, make)
    for phone in ("phone-a", "phone-b"):  # two devices: a cloned label, alert too_many_devices
        client.get(f"/v/{code}", headers={"Accept": "application/json", "User-Agent": phone})
    service.drain_all(db.session, redis.client)
    r = client.post(f"/v/{code}/pin", json={"pin": pin}, headers=JSON)
    assert r.status_code == 409 and r.json["verdict"] == "warn" and pins.FLAGGED in r.json["warning"]
    assert label_row(session, code).pin_verified_at is None
    # the other label of the batch has no alert: its PIN is checked as usual
    assert client.post(f"/v/{other}/pin", json={"pin": other_pin}, headers=JSON).json["verdict"] == "first"


class LabelReads:
    """Counts the statements that read (SELECT … FROM) the labels table."""

    def __init__(self):
        self.n = 0

    def __call__(self, conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT") and "FROM labels" in statement:
            self.n += 1

    def __enter__(self):
        from sqlalchemy import event

        from backend.extensions import db

        event.listen(db.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc):
        from sqlalchemy import event

        from backend.extensions import db

        event.remove(db.engine, "before_cursor_execute", self)


def test_verifying_a_pin_reads_the_label_once_and_refreshes_only_its_own_cached_view(client, session, make):
    from backend.extensions import redis
    from backend.scans import viewcache

    (code, pin), (other, _), (cold, cold_pin) = pin_labels(session, make, 3)
    for c in (code, other, code, other):  # (a code's second scan caches its view: viewcache)
        assert client.get(f"/v/{c}", headers=JSON).json["label"]["pin"] == {"verified_at": None}
    everything, others = redis.client.get(viewcache.GEN), redis.client.get(viewcache.gen_key(other))
    with LabelReads() as reads:  # a cached view: the check reads no labels row before its UPDATE
        assert client.post(f"/v/{code}/pin", json={"pin": pin}, headers=JSON).json["verdict"] == "first"
    assert reads.n == 0
    with LabelReads() as reads:  # no cached view: one query (the resolver's), not two
        assert client.post(f"/v/{cold}/pin", json={"pin": cold_pin}, headers=JSON).json["verdict"] == "first"
    assert reads.n == 1
    assert redis.client.get(viewcache.GEN) == everything  # no label view but the two verified went stale
    assert redis.client.get(viewcache.gen_key(other)) == others
    with LabelReads() as reads:
        assert client.get(f"/v/{other}", headers=JSON).json["label"]["pin"] == {"verified_at": None}
    assert reads.n == 0  # still served from the cache
    shown = client.get(f"/v/{code}", headers=JSON).json["label"]["pin"]["verified_at"]
    assert shown  # its own view was refreshed at once
    # a repeat changes only the (unshown) repeat count: no view goes stale, not even its own
    own = redis.client.get(viewcache.gen_key(code))
    with LabelReads() as reads:
        r = client.post(f"/v/{code}/pin", json={"pin": pin}, headers=JSON)
    assert r.json["verdict"] == "repeat" and reads.n == 1  # the repeat count read back, no label lookup
    assert redis.client.get(viewcache.gen_key(code)) == own and redis.client.get(viewcache.GEN) == everything
    assert label_row(session, code).pin_repeats == 1


def _post(client, code, pin, ip):
    return client.post(f"/v/{code}/pin", json={"pin": pin}, headers=JSON, environ_base={"REMOTE_ADDR": ip})


def test_one_client_is_locked_before_it_can_lock_a_code_for_everyone(client, session, make, monkeypatch):
    from backend.extensions import redis
    from backend.scans import pins

    monkeypatch.setenv("PIN_CLIENT_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("PIN_MAX_ATTEMPTS", "5")
    (a, a_pin), (b, b_pin), (c, c_pin) = pin_labels(session, make, 3)
    lefts = [_post(client, a, wrong(a_pin), "198.51.100.1").json["attempts_left"],
             _post(client, b, wrong(b_pin), "198.51.100.1").json["attempts_left"],  # the client's, over codes
             _post(client, a, wrong(a_pin), "198.51.100.1").json["attempts_left"]]
    assert lefts == [2, 1, 0]
    r = _post(client, a, a_pin, "198.51.100.1")  # even the right PIN: this client is locked
    assert r.status_code == 429 and r.json["reason"] == "scans.pin_client_locked" and r.json["verdict"] == "locked"
    assert 0 < int(r.headers["Retry-After"]) <= 3600 and "您输入错误验证码的次数过多" in r.json["warning"]
    assert _post(client, c, c_pin, "198.51.100.1").status_code == 429
    assert int(redis.client.get(pins.tries_key(a))) == 2 and redis.client.get(pins.tries_key(c)) is None
    # another client: code a is not locked (2 of its 5 used), and its right PIN is the first
    r = _post(client, a, wrong(a_pin), "198.51.100.2")
    assert r.status_code == 422 and r.json["attempts_left"] == 2  # code a: 5 - 3; this client: 3 - 1
    assert _post(client, a, a_pin, "198.51.100.2").json["verdict"] == "first"
    # the per-code limit still holds across clients: b had 1 wrong PIN, 4 more from two clients lock it
    for i, ip in enumerate(["198.51.100.3", "198.51.100.3", "198.51.100.4", "198.51.100.4"]):
        assert _post(client, b, wrong(b_pin), ip).status_code == 422, i
    r = _post(client, b, b_pin, "198.51.100.5")
    assert r.status_code == 429 and r.json["reason"] == "scans.pin_locked" and "此标签" in r.json["warning"]
    # …and a client refused by the code's lock compared nothing: its own counter is untouched
    assert redis.client.get(pins.client_tries_key(_client_hash(client, "198.51.100.5"))) is None
    assert int(redis.client.get(pins.client_tries_key(_client_hash(client, "198.51.100.3")))) == 2


def _client_hash(client, ip):
    from backend.scans import routes

    with client.application.test_request_context(environ_base={"REMOTE_ADDR": ip}):
        from backend.scans.settings import thresholds

        return routes.who({}, thresholds()).client


def test_correct_pins_do_not_count_toward_the_clients_limit(client, session, make, monkeypatch):
    monkeypatch.setenv("PIN_CLIENT_MAX_ATTEMPTS", "2")
    labels = pin_labels(session, make, 4)
    (a, a_pin) = labels[0]
    assert _post(client, a, wrong(a_pin), "198.51.100.9").json["attempts_left"] == 1
    for code, pin in labels:  # a shop assistant checking a shelf
        assert _post(client, code, pin, "198.51.100.9").json["verdict"] == "first"
    assert _post(client, a, wrong(a_pin), "198.51.100.9").json["attempts_left"] == 0
    assert _post(client, a, a_pin, "198.51.100.9").status_code == 429
