"""The resolver's compiled dump (backend/scans/dump.py) answers exactly what marshmallow's
ScanResultOut().dump answers, for every kind of result."""
from __future__ import annotations

from datetime import datetime, timezone

from marshmallow import Schema, fields, post_dump

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
