"""The resolver's compiled dump (backend/scans/dump.py) answers exactly what marshmallow's
ScanResultOut().dump answers, for every kind of result."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from marshmallow import Schema, fields, post_dump
from sqlalchemy import select

from backend.extensions import db, redis
from backend.scans import schemas as s
from backend.scans import service
from backend.scans.dump import compile_dump
from tests.scans_support import activated_codes

SCHEMA = s.ScanResultOut()
FAST = compile_dump(SCHEMA)


def client_(n: int) -> service.Client:
    return service.Client(client=f"c{n}", device=f"d{n}")


def test_every_kind_of_result_dumps_the_same(make, session):
    good, stolen, inactive = (activated_codes(make, session, 1)[0], activated_codes(make, session, 1, state="stolen")[0],
                              activated_codes(make, session, 1, state="printed")[0])
    bodies = []
    for code in (good, good, stolen, inactive, "1ABCDEFGHJK"):
        bodies.append(service.resolve(db.session, redis.client, code, client_(len(bodies))).to_dict())
    for _ in range(6):  # past the warning threshold
        bodies.append(service.resolve(db.session, redis.client, good, client_(len(bodies))).to_dict())
    bodies.append(service.Result("check_code", problem="A label code has 11 characters").to_dict())
    limited = service.Result("rate_limited").to_dict()
    limited.update({"warning": "查询过于频繁", "code": 429, "status": "Too Many Requests"})
    bodies.append(limited)
    assert {b["verdict"] for b in bodies} >= {"genuine", "repeat", "warn", "stolen", "inactive", "unknown",
                                             "check_code", "rate_limited"}
    for body in bodies:
        assert FAST(body) == SCHEMA.dump(body)


def test_odd_values_dump_the_same():
    at = datetime(2026, 3, 1, 2, 3, 4, tzinfo=timezone.utc)
    for body in [
        {},
        {"verdict": "genuine", "genuine": "yes", "alerts": None, "label": None, "scan": None},
        {"code": 12345, "scan": {"count": "7", "first_at": at, "devices": 2.0}, "alerts": ["a", 3]},
        {"label": {"serial": 1, "operator": {"name": "某"}, "origin": {"towns": [], "villages": None},
                   "activated_at": at, "pin": {"verified_at": None}}, "unknown_key": 1},
    ]:
        assert FAST(body) == SCHEMA.dump(body)


def test_schemas_the_compiler_does_not_know_fall_back_to_marshmallow():
    class WithHook(Schema):
        a = fields.String()

        @post_dump
        def shout(self, data, **kw):
            return {k: v.upper() for k, v in data.items()}

    class WithDefault(Schema):
        a = fields.String(dump_default="x")

    assert compile_dump(WithHook())({"a": "b"}) == {"a": "B"}
    assert compile_dump(WithDefault())({}) == {"a": "x"}


# --- the JSON answer joined from the parts stored with the cached view (dump.answer_json) ------------
def _reference(result) -> str:
    """The answer as marshmallow and the app's JSON provider write it."""
    from flask import current_app

    return current_app.json.dumps(SCHEMA.dump(result.to_dict()), separators=(",", ":"))


def _view(**over):
    from backend.labels.service.lookup import LabelView

    values = dict(label_id=7, code="1ABCDEFGHJK", serial="000001-000007", state="activated", operator_id=3,
                  operator_name='新会"陈皮"\\ 行 <b>', credit_code="91440705MA4UXXXX1A", product="新会陈皮 (大红皮)\t2026",
                  lot_id=5, lot_code="L-2026-\u2028001", harvest_year=2019, batch_id=2,
                  activated_at=datetime(2026, 3, 1, 2, 3, 4, 567890, tzinfo=timezone.utc))
    values.update(over)
    return LabelView(**values)


ORIGINS = [{}, {"harvest_date": None, "towns": [], "villages": []},
           {"harvest_date": "2019-12-01", "towns": ["会城街道", "双水镇"], "villages": ["天禄村", 'a"b\\c'], "town_id": 4},
           {"harvest_date": "2026-11-30", "towns": ["崖门镇"], "villages": []}]


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("view", [
    {}, {"lot_id": None, "lot_code": None, "harvest_year": None}, {"state": "stolen", "activated_at": None},
    {"has_pin": True}, {"has_pin": True, "pin_verified_at": datetime(2026, 4, 1, 16, 0, tzinfo=timezone.utc)}])
def test_the_joined_answer_is_the_dumped_answer_text_for_text(view, origin):
    from backend.scans import dump
    from backend.scans.service import Result, age_of

    lab = _view(**view)
    result = Result("repeat", code=lab.code, label=lab, origin=origin, count=3, devices=2,
                    first_at=datetime(2026, 3, 2, tzinfo=timezone.utc), alerts=["too_many_scans"])
    age = age_of(origin.get("harvest_date"), lab.harvest_year)
    result.label_json = dump.label_member(json.loads(dump.view_part(lab)), json.loads(dump.origin_part(origin)),
                                             dump.age_part(age))
    assert dump.answer_json(result) == _reference(result)
    assert json.loads(dump.answer_json(result)) == json.loads(_reference(result))


@pytest.mark.real_servers
def test_a_cached_scan_joins_the_stored_parts_into_the_dumped_answer(make, session):
    """Through script.SCAN (service.scan_once) on real Redis: the label member comes from the parts
    stored with the view and the origin, and the answer is still marshmallow's dump, to the byte."""
    from sqlalchemy import update

    from backend.labels.models import Label
    from backend.scans import dump, viewcache
    from backend.scans.settings import thresholds
    from tests.factories import label_batch
    from backend.timeutil import utcnow

    pin_batch = label_batch(session, make.operator(), 2, template="roll-40x40")
    session.execute(update(Label).where(Label.batch_id == pin_batch.id).values(
        state="activated", activated_at=utcnow(), pin_verified_at=utcnow()))
    session.commit()
    wanted = {
        "with lot": activated_codes(make, session, 1)[0], "no lot": activated_codes(make, session, 1, lot=False)[0],
        "stolen": activated_codes(make, session, 1, state="stolen")[0],
        "printed": activated_codes(make, session, 1, state="printed")[0],
        "pin": session.scalar(select(Label.code).where(Label.batch_id == pin_batch.id).limit(1)),
    }
    t = thresholds()
    for name, code in wanted.items():
        for n in range(4):  # the first scans store the view and the origin; then the script counts over them
            kind, got = service.scan_once(redis.client, code, client_(n), t, lambda: service.read_label(session, code))
            if kind == "miss":
                service.resolve(db.session, redis.client, code, client_(n), t, views=got)
        assert kind == "done", name
        assert got.label_json is not None, name
        assert dump.answer_json(got) == _reference(got), name
        if name == "with lot":
            assert json.loads(got.label_json)["origin"]["towns"], "the trace's towns are in the stored part"
        if name == "pin":
            assert json.loads(got.label_json)["pin"]["verified_at"]
    # the origin's entry is keyed by its format's version: an older release's two-line entries
    # (scans:{views}:origin:LOT) are never read
    lot_id = service.read_label(session, wanted["with lot"])[0].lot_id
    assert redis.client.exists(viewcache.origin_key(lot_id)) and ":origin2:" in viewcache.origin_key(lot_id)


def test_thresholds_are_read_once_per_process_unless_reloading(monkeypatch):
    """Outside the tests the environment is read at the first scan only (it cannot change under a
    running process); RELOAD (the tests) reads it at every call."""
    from backend.scans import settings

    monkeypatch.setattr(settings, "RELOAD", False)
    monkeypatch.setattr(settings, "_read", None)
    monkeypatch.setenv("SCAN_WARN_AFTER", "7")
    first = settings.thresholds()
    monkeypatch.setenv("SCAN_WARN_AFTER", "9")
    assert first.warn_after == 7 and settings.thresholds() is first
    monkeypatch.setattr(settings, "RELOAD", True)
    assert settings.thresholds().warn_after == 9


@pytest.mark.real_servers
def test_a_current_entry_whose_answer_part_does_not_parse_is_answered_from_the_database(make, session, caplog):
    """The scan is counted (the script found the entry current) and answered from the database's
    view, logged as an error: a release's bug (viewcache._shape), never a failed scan."""
    from backend.scans import dump, viewcache
    from backend.scans.settings import thresholds

    [code] = activated_codes(make, session, 1)
    t = thresholds()

    def read():
        return service.read_label(session, code)

    for n in range(3):
        kind, got = service.scan_once(redis.client, code, client_(n), t, read)
        if kind == "miss":
            service.resolve(db.session, redis.client, code, client_(n), t, views=got)
    assert kind == "done" and got.label_json is not None
    key = viewcache.view_key(code)
    tag_, part, _answer, view_json = redis.client.get(key).decode().split("\n", 3)
    redis.client.set(key, "\n".join([tag_, part, "[not json", view_json]), keepttl=True)
    kind, got = service.scan_once(redis.client, code, client_(7), t, read)
    assert kind == "done" and got.label_json is None and got.count == 4
    assert got.label.serial == read()[0].serial and got.verdict == "repeat"
    assert json.loads(dump.answer_json(got))["label"]["serial"] == got.label.serial
    assert "does not decode" in caplog.text
    # a view JSON that does not decode: the JSON answer needs none of it, a page reads the database
    redis.client.delete(key)
    for n in range(3):
        kind, got = service.scan_once(redis.client, code, client_(20 + n), t, read)
        if kind == "miss":
            service.resolve(db.session, redis.client, code, client_(20 + n), t, views=got)
    tag_, part, answer, _view = redis.client.get(key).decode().split("\n", 3)
    redis.client.set(key, "\n".join([tag_, part, answer, "{broken"]), keepttl=True)
    kind, got = service.scan_once(redis.client, code, client_(30), t, read)
    assert kind == "done" and got.label_json is not None
    assert got.to_dict()["label"]["serial"] == read()[0].serial
