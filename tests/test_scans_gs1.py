"""GS1 Digital Link: a label application carries the product's GTIN onto its batch, and the
label then also resolves at /01/{gtin}/21/{code} (optionally /01/{gtin}/10/{lot}/21/{code}),
exactly like /v/{code}; another product's GTIN is 查无此码, a wrong check digit 'check the code'."""
from __future__ import annotations

import uuid
from datetime import date

import pytest
from sqlalchemy import select, update

from backend.extensions import db, redis
from backend.labels.models import Label, LabelBatch
from backend.scans import counters, service
from backend.scans.models import ScanAlert, ScanEvent
from backend.scans.routes import _hash
from backend.timeutil import utcnow

API = "/api/v1/labels"
JSON = {"Accept": "application/json"}
GTIN13 = "6901234567892"    # an EAN-13 with its check digit
GTIN14 = "0" + GTIN13       # the same GTIN in the 14-digit form GS1 Digital Link uses
OTHER = "4006381333931"     # a valid GTIN of another product
LICENCE = {"licence_status": "active", "licence_no": "GI-0001", "licence_valid_from": date(2020, 1, 1),
           "licence_valid_until": date(2099, 12, 31)}


@pytest.fixture
def people(make):
    op = make.operator(**LICENCE)
    return {"admin": make.auth(make.token("admin")), "op": make.auth(make.token("operator", op))}


def issued_with_gtin(client, session, people, gtin=GTIN13, n=3) -> tuple[dict, list[str]]:
    r = client.post(f"{API}/applications", json={"product": "新会陈皮 三年陈 250 g", "quantity": n, "gtin": gtin},
                    headers=people["op"])
    assert r.status_code == 201, r.json
    batch = client.post(f"{API}/applications/{r.json['id']}/approve", json={}, headers=people["admin"])
    assert batch.status_code == 201, batch.json
    session.execute(update(Label).where(Label.batch_id == batch.json["id"]).values(state="activated",
                                                                                  activated_at=utcnow()))
    session.commit()
    return batch.json, list(session.scalars(select(Label.code).where(Label.batch_id == batch.json["id"])
                                            .order_by(Label.serial)))


def test_an_application_keeps_the_gtin_in_14_digits_and_its_batch_carries_it(client, session, people):
    r = client.post(f"{API}/applications", json={"product": "新会陈皮", "quantity": 5, "gtin": "690-1234 567892"},
                    headers=people["op"])
    assert r.status_code == 201 and r.json["gtin"] == GTIN14, r.json
    batch = client.post(f"{API}/applications/{r.json['id']}/approve", json={}, headers=people["admin"]).json
    assert batch["gtin"] == GTIN14 and session.get(LabelBatch, batch["id"]).gtin == GTIN14
    assert client.post(f"{API}/applications", json={"product": "x", "quantity": 5}, headers=people["op"]).json["gtin"] is None


@pytest.mark.parametrize("bad,says", [("6901234567891", "check digit"), ("69012345678", "this one has 11"),
                                      ("69O1234567892", "digits only"), ("1" * 41, "at most 14"),
                                      (12345678, "not a valid string")])
def test_an_application_with_a_bad_gtin_is_refused_naming_the_field(client, people, bad, says):
    r = client.post(f"{API}/applications", json={"product": "新会陈皮", "quantity": 5, "gtin": bad}, headers=people["op"])
    assert r.status_code == 422 and says in " ".join(r.json["errors"]["json"]["gtin"]).lower(), r.json


def test_a_retry_with_another_gtin_is_a_conflict(client, people):
    body = {"client_uuid": str(uuid.uuid4()), "product": "新会陈皮", "quantity": 5, "gtin": GTIN13}
    first = client.post(f"{API}/applications", json=body, headers=people["op"])
    assert client.post(f"{API}/applications", json={**body, "gtin": GTIN14}, headers=people["op"]).json["id"] == first.json["id"]
    clash = client.post(f"{API}/applications", json={**body, "gtin": OTHER}, headers=people["op"])
    assert clash.status_code == 409 and clash.json["reason"] == "labels.uuid_conflict"


def test_the_digital_link_resolves_like_the_label_url_and_counts_the_same(client, session, people):
    _, codes_ = issued_with_gtin(client, session, people)
    code = codes_[0]
    first = client.get(f"/01/{GTIN14}/21/{code}", headers=JSON)
    assert first.status_code == 200 and first.json["verdict"] == "genuine" and first.json["code"] == code
    # the 13-digit form, a lower-case serial, the lot qualifier and unknown query strings: the same label
    second = client.get(f"/01/{GTIN13}/10/LOT-2023/21/{code.lower()}", headers=JSON,
                        query_string={"linkType": "gs1:pip", "utm_source": "wechat"})
    assert second.status_code == 200 and second.json["verdict"] == "repeat" and second.json["scan"]["count"] == 2
    plain = client.get(f"/v/{code}", headers=JSON).json
    assert plain["scan"]["count"] == 3 and plain["label"] == second.json["label"]
    assert plain["scan"]["first_at"] == first.json["scan"]["first_at"]
    page = client.get(f"/01/{GTIN14}/21/{code}", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.mimetype == "text/html" and 'data-verdict="repeat"' in page.get_data(as_text=True)
    service.drain_all(db.session, redis.client)
    assert session.scalar(select(ScanEvent.label_id).where(ScanEvent.code == code).limit(1)) is not None


def test_another_products_gtin_is_no_such_code_and_counted_as_a_counterfeit_attempt(client, session, people, make):
    _, codes_ = issued_with_gtin(client, session, people)
    from tests.scans_support import activated_codes

    [no_gtin] = activated_codes(make, session, 1, lot=False)  # a batch without any GTIN
    before = counters.read_stats(redis.client, None)["fake"].get("total", 0)
    for gtin, code in ((OTHER, codes_[0]), (GTIN14, no_gtin)):
        r = client.get(f"/01/{gtin}/21/{code}", headers=JSON)
        assert r.status_code == 404 and r.json["verdict"] == "unknown" and r.json["label"] is None, r.json
        assert "查无此码" in r.json["warning"]
    assert counters.read_stats(redis.client, None)["fake"]["total"] == before + 2
    service.drain_all(db.session, redis.client)
    rows = session.execute(select(ScanEvent.code, ScanEvent.label_id, ScanEvent.verdict)).all()
    assert sorted(rows) == sorted([(codes_[0], None, "unknown"), (no_gtin, None, "unknown")])
    # the genuine link still says genuine: the forged link did not use up its first scan's verdict
    assert client.get(f"/01/{GTIN14}/21/{codes_[1]}", headers=JSON).json["verdict"] == "genuine"


@pytest.mark.parametrize("gtin", ["06901234567891", "6901234567891", "123", "0690123456789X", "9" * 200])
def test_a_bad_gtin_in_the_link_says_check_the_code_without_counting(client, session, people, gtin):
    _, codes_ = issued_with_gtin(client, session, people, n=1)
    r = client.get(f"/01/{gtin}/21/{codes_[0]}", headers=JSON)
    assert r.status_code == 422 and r.json["verdict"] == "check_code" and "GTIN" in r.json["problem"], r.json
    assert counters.code_counters(redis.client, codes_[0])["count"] == 0


def test_a_mistyped_serial_in_the_link_says_check_the_code(client, session, people):
    _, codes_ = issued_with_gtin(client, session, people, n=1)
    code = codes_[0]
    typo = code[:5] + ("A" if code[5] != "A" else "B") + code[6:]
    r = client.get(f"/01/{GTIN14}/21/{typo}", headers=JSON)
    assert r.status_code == 422 and r.json["verdict"] == "check_code"


def test_the_digital_link_is_documented_like_the_resolver(client):
    doc = client.get("/api/openapi.json").json
    for path in ("/01/{gtin}/21/{serial}", "/01/{gtin}/10/{lot}/21/{serial}"):
        op = doc["paths"][path]["get"]
        assert set(op["responses"]) >= {"200", "404", "422", "429"}
        assert set(op["responses"]["200"]["content"]) == {"text/html", "application/json"}
        names = [p["name"] for p in op["parameters"] if p["in"] == "path"]
        assert sorted(names) == sorted(["gtin", "serial"] + (["lot"] if "/10/" in path else []))
        assert len(names) == len(set(names))


@pytest.mark.real_servers
def test_another_products_gtin_never_counts_on_the_genuine_code(client, session, people, monkeypatch):
    """A forger printing genuine codes on another product's packaging (or a crawler pairing
    codes with random GTINs) must not push the genuine label toward 谨防假冒 or its alerts: the
    scan counts per client and pattern only, live in Redis, in the drain and in a rebuild."""
    monkeypatch.setenv("SCAN_WARN_AFTER", "3")
    monkeypatch.setenv("SCAN_ALERT_SCANS", "4")
    monkeypatch.setenv("SCAN_ALERT_DEVICES", "3")
    monkeypatch.setenv("SCAN_FAKE_BURST", "1000")
    _, codes_ = issued_with_gtin(client, session, people, n=2)
    code = codes_[0]
    first = client.get(f"/01/{GTIN14}/21/{code}", headers={**JSON, "User-Agent": "owner"}).json
    assert first["verdict"] == "genuine"
    before = counters.code_counters(redis.client, code)
    last_before = redis.client.get(counters.code_key(code, "last"))
    fake_before = counters.read_stats(redis.client, None)["fake"]
    for i in range(8):  # 8 scans from 8 devices, one with a far-away location
        r = client.get(f"/01/{OTHER}/21/{code}", headers={**JSON, "User-Agent": f"forger-{i}"},
                       query_string={"lat": 39.9, "lon": 116.4} if i == 3 else {})
        assert r.status_code == 404 and r.json["verdict"] == "unknown" and r.json["label"] is None
        assert r.json["scan"]["count"] == 1 and r.json["alerts"] == []  # like any never-issued code's first scan
    assert counters.code_counters(redis.client, code) == before == {"count": 1, "first": before["first"], "devices": 1}
    assert redis.client.get(counters.code_key(code, "last")) == last_before
    fake = counters.read_stats(redis.client, None)["fake"]
    assert fake["total"] == fake_before.get("total", 0) + 8
    assert fake["p:" + counters.fake_pattern(code)] == fake_before.get("p:" + counters.fake_pattern(code), 0) + 8
    with client.application.test_request_context():
        forger = _hash("client", "127.0.0.1")  # the test client's address
    assert int(redis.client.get(counters.client_key(forger, "fakes"))) == 8

    service.drain_all(db.session, redis.client)
    session.expire_all()
    rows = session.execute(select(ScanEvent.wrong_gtin, ScanEvent.label_id, ScanEvent.verdict)
                           .where(ScanEvent.code == code).order_by(ScanEvent.id)).all()
    assert rows[0] == (None, rows[0][1], "genuine") and rows[0][1] is not None
    assert rows[1:] == [("0" + OTHER, None, "unknown")] * 8
    assert session.scalars(select(ScanAlert).where(ScanAlert.code == code)).all() == []  # no too_many_*, no travel

    # the owner's next scan is the second one: repeat, not 谨防假冒
    again = client.get(f"/v/{code}", headers={**JSON, "User-Agent": "owner"}).json
    assert again["verdict"] == "repeat" and again["scan"]["count"] == 2 and again["scan"]["devices"] == 1
    assert again["scan"]["first_at"] == first["scan"]["first_at"] and again["alerts"] == []
    service.drain_all(db.session, redis.client)
    live = counters.code_counters(redis.client, code)
    service.rebuild_counters(session, redis.client)
    assert counters.code_counters(redis.client, code) == live == {"count": 2, "first": live["first"], "devices": 1}
    assert counters.read_stats(redis.client, None)["fake"]["total"] >= 8


@pytest.mark.real_servers
def test_another_products_gtin_with_redis_down_counts_nothing_of_the_code(client, session, people):
    _, codes_ = issued_with_gtin(client, session, people, n=1)
    code = codes_[0]
    who = service.Client(client="c" * 32, device="d" * 32)
    assert service.resolve(session, None, code, who, gtin="0" + GTIN13).verdict == "genuine"
    session.commit()
    for _ in range(3):
        res = service.resolve(session, None, code, service.Client(client="e" * 32, device=uuid.uuid4().hex),
                              gtin="0" + OTHER)
        session.commit()
        assert res.verdict == "unknown" and res.count == 1 and res.reasons == []
    res = service.resolve(session, None, code, who, gtin="0" + GTIN13)
    assert res.verdict == "repeat" and res.count == 2 and res.devices == 1
