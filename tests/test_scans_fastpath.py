"""The resolver's lean WSGI path (backend/scans/fastpath.py) against the Flask route it stands in
for: the same answers, stream entries, rows and counters; hand-overs to the route that count
nothing twice; input it must leave to Flask. Real servers only: fakeredis never takes the lean path,
so every test asserts which path answered (a comparison both sides of which ran the route proves nothing)."""
from __future__ import annotations

import copy
import json
import logging
import re
import socket
from email.utils import parsedate_to_datetime

import pytest
import redis as redis_lib
from flask import request
from sqlalchemy import select

from backend.extensions import redis
from backend.labels import codes
from backend.labels.models import Label
from backend.scans import counters, fastpath, routes, script, service, viewcache
from backend.scans.models import ScanEvent
from backend.scans.settings import thresholds
from tests.factories import actor_of, checkin_json
from tests.scans_support import activated_codes

pytestmark = pytest.mark.real_servers

JSON = "application/json"
HTML = "text/html,application/xhtml+xml,*/*;q=0.8"
UA = "Mozilla/5.0 (iPhone) MicroMessenger/8.0"
COOKIE = "0123456789abcdef0123456789abcdef"
SAFE_ID, UNSAFE_ID = "trace-42.a_b", "bad id <x>"
FAKE_KEY = b"not the real key, sixteen+"  # codes well-formed under key id 1, never issued
HEX32 = re.compile(r"[0-9a-f]{32}")
TIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2})?")
LEAN, FLASK = ("lean", None), ("flask", None)


# --- fixtures and helpers --------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _one_rate_window(monkeypatch):
    """One rate-limit window per test (no minute boundary mid-test makes a count flaky), and a
    limit no test reaches unless it sets its own."""
    real = counters.rate_key
    monkeypatch.setattr(counters, "rate_key", lambda client, minute: real(client, 0))
    monkeypatch.setenv("SCAN_RATE_PER_MIN", "100000")
    monkeypatch.setenv("SCAN_CRAWLER_RATE_PER_MIN", "100000")
    monkeypatch.setenv("SCAN_FAKE_BURST", "100000")  # (both paths' never-issued codes come from one client)
    monkeypatch.delenv("SCAN_FAST_PATH", raising=False)


@pytest.fixture
def web(app):
    """A test client without a cookie jar: each request sends exactly the cookie it names."""
    return app.test_client(use_cookies=False)


@pytest.fixture
def paths(monkeypatch):
    """What answered each request: ("lean", None) when ResolverFastPath.answer returned the answer,
    ("flask", kind) when the route ran (kind: what the lean path handed it, or None)."""
    seen: list[tuple[str, str | None]] = []
    real_answer, real_resolve = fastpath.ResolverFastPath.answer, routes.resolve_code

    def answer(self, environ, path):
        got = real_answer(self, environ, path)
        if got is not None:
            seen.append(LEAN)
        return got

    def resolve_code(*args, **kwargs):
        handed = request.environ.get(routes.HANDED)
        seen.append(("flask", handed[0] if handed else None))
        return real_resolve(*args, **kwargs)

    monkeypatch.setattr(fastpath.ResolverFastPath, "answer", answer)
    monkeypatch.setattr(routes, "resolve_code", resolve_code)
    return seen


def get(web, paths, path, *, accept=JSON, cookie=None, rid=None, https=False, remote="127.0.0.1",
        method="GET", headers=None):
    """(response, what answered it)."""
    h = {"Accept": accept, "User-Agent": UA, "Accept-Language": "zh-CN,zh;q=0.9"}
    if cookie is not None:
        h["Cookie"] = f"cpd={cookie}"
    if rid is not None:
        h["X-Request-ID"] = rid
    h.update(headers or {})
    h = {k: v for k, v in h.items() if v is not None}  # (None: the request has no such header)
    before = len(paths)
    r = web.open(path, method=method, headers=h, environ_base={"REMOTE_ADDR": remote},
                 base_url="https://trace.example.cn" if https else "http://localhost")
    return r, paths[before:]


def lean_off(monkeypatch, off: bool = True) -> None:
    if off:
        monkeypatch.setenv("SCAN_FAST_PATH", "0")
    else:
        monkeypatch.delenv("SCAN_FAST_PATH", raising=False)


def prime(session, *codes_) -> None:
    """Cache each code's current label view (and its lot's origin) as two scans would, counting
    no scan: the next scan of the code is the lean path's."""
    r = redis.client
    for code in codes_:
        def read(code=code):
            return service.read_label(session, code)

        viewcache.through(r, code, read)  # (learns the batch, operator and lot)
        viewcache.through(r, code, read)  # (stores the current entry)
        (label, _, _), store = viewcache.lookup(r, code, read)
        assert store is None, f"the view of {code} is not current"
        if label is not None and label.lot_id is not None:
            key, value, ttl = service._origin_store(label.lot_id, service.lot_origin(session, label.lot_id))
            r.set(key, value, ex=ttl)


def fakes(n: int, batch: int) -> list[str]:
    return [codes.make_code("1", FAKE_KEY, batch, i) for i in range(1, n + 1)]


def client_hash(app, remote="127.0.0.1") -> str:
    return routes.client_of(thresholds(), app.config["SECRET_KEY"], remote, None, "", "", "").client


def rate_count(app, remote="127.0.0.1") -> int:
    return int(redis.client.get(counters.rate_key(client_hash(app, remote), 0)) or 0)


def stream() -> list[dict]:
    return [json.loads(f[b"e"]) for _, f in redis.client.xrange(counters.STREAM)]


def serial_of(session, code) -> str | None:
    label = service.read_label(session, code)[0]
    return label.serial if label else None


def body_shape(r, code, serial) -> object:
    """The body without what names the code or the moment of the scan."""
    if r.mimetype == "application/json":
        b = copy.deepcopy(r.json)
        assert b.pop("code") == code and b.pop("code_display") == codes.display(code)
        if b.get("label"):
            assert b["label"].pop("serial") == serial
        if b.get("scan"):
            assert TIME.fullmatch(b["scan"].pop("first_at"))
        b["warning"] = TIME.sub("<t>", b["warning"] or "")
        return b
    text = r.get_data(as_text=True)
    assert codes.display(code) in text and (serial is None or serial in text)
    for s in (codes.display(code), code, serial):
        if s:
            text = text.replace(s, "<code>")
    return TIME.sub("<t>", text)


def header_shape(r, rid) -> list[tuple[str, str]]:
    """Header names and values, the generated ones checked and masked."""
    out = []
    for name, value in r.headers.items():
        name = name.lower()
        if name == "x-request-id":
            if rid and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", rid):
                assert value == rid
            else:
                assert HEX32.fullmatch(value) and value != rid
                value = "<generated>"
        elif name == "set-cookie":
            attrs = [a.strip() for a in value.split(";")]
            cookie_name, _, token = attrs[0].partition("=")
            assert cookie_name == routes.DEVICE_COOKIE and HEX32.fullmatch(token), value
            masked = []
            for a in attrs[1:]:
                if a.lower().startswith("expires="):
                    parsedate_to_datetime(a.partition("=")[2])  # (a date; its second differs)
                    a = "Expires=<date>"
                masked.append(a)
            value = "; ".join(["cpd=<token>", *masked])
        out.append((name, value))
    return sorted(out)


def assert_same(lean, flask, lean_code, flask_code, rid, session) -> None:
    assert lean.status_code == flask.status_code
    assert header_shape(lean, rid) == header_shape(flask, rid)
    assert body_shape(lean, lean_code, serial_of(session, lean_code)) == \
        body_shape(flask, flask_code, serial_of(session, flask_code))


# --- 1. the same answers ---------------------------------------------------------------------------
# (Accept, device cookie, X-Request-ID, https): each variant scans a fresh code on each path
VARIANTS = [(accept, cookie, rid, False) for accept in (JSON, HTML) for cookie in (None, COOKIE)
            for rid in (SAFE_ID, UNSAFE_ID)] + [(HTML, None, SAFE_ID, True), (JSON, None, None, False)]
# scenario: (label state or None for never issued, scans of each code, verdict, status)
SCENARIOS = {
    "genuine": ("activated", 1, "genuine", 200),
    "repeat": ("activated", 2, "repeat", 200),
    "voided": ("voided", 1, "voided", 200),
    "stolen": ("stolen", 1, "stolen", 200),
    "not_activated": ("printed", 1, "inactive", 200),
    "never_issued": (None, 1, "unknown", 404),
    "reported": ("reported", 1, "warn", 200),
    "flagged": ("flagged", 1, "warn", 200),  # an open alert on the code (scan:{CODE}:flag)
}


def _codes_for(scenario, n, make, session) -> list[str]:
    state = SCENARIOS[scenario][0]
    if state is None:
        return fakes(n, 900 + list(SCENARIOS).index(scenario))
    if state == "flagged":
        found = activated_codes(make, session, n)
        for code in found:
            counters.set_flag(redis.client, code, "too_many_scans")
        return found
    if state != "reported":
        return activated_codes(make, session, n, state=state)
    from backend.fieldwork import service as fieldwork

    operator = make.operator()
    found = activated_codes(make, session, n, operator)
    fieldwork.receive_checkins(session, actor_of(session, make.token("inspector")), [checkin_json(
        operator=operator, kind="shop", result="fail",
        findings=[{"kind": "counterfeit_labels", "codes": found, "note": "假标"}])])
    session.commit()
    return found


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_lean_path_answers_as_the_flask_route_does(scenario, web, paths, make, session, monkeypatch):
    _, scans, verdict, status = SCENARIOS[scenario]
    all_codes = _codes_for(scenario, 2 * len(VARIANTS), make, session)
    lean_codes, flask_codes = all_codes[::2], all_codes[1::2]
    prime(session, *lean_codes)  # (the route's codes are not: it reads the database, as on a first scan)
    for lean_code, flask_code, (accept, cookie, rid, https) in zip(lean_codes, flask_codes, VARIANTS):
        prefix = "/v/" if accept == JSON else "/V/"
        for n in range(1, scans + 1):
            lean_off(monkeypatch, False)
            lean, by = get(web, paths, prefix + lean_code, accept=accept, cookie=cookie, rid=rid, https=https)
            assert by == [LEAN], (scenario, accept, cookie, rid)
            lean_off(monkeypatch)
            flask, by = get(web, paths, prefix + flask_code, accept=accept, cookie=cookie, rid=rid, https=https)
            assert by == [FLASK]
            assert_same(lean, flask, lean_code, flask_code, rid, session)
            assert lean.status_code == status
            if accept == JSON:
                assert lean.json["verdict"] == (verdict if n == scans else "genuine")
                assert lean.json["scan"]["count"] == n
            else:
                assert f'data-verdict="{verdict if n == scans else "genuine"}"' in lean.get_data(as_text=True)
                assert ("Set-Cookie" in lean.headers) == (cookie is None)
                if https:
                    assert "Secure" in lean.headers["Set-Cookie"]
    if scenario == "reported":
        assert lean.json["alerts"] == ["reported_code"]
    if scenario == "flagged":
        assert "异常查询记录" in lean.json["warning"]


def test_a_request_without_accept_user_agent_or_language_is_answered_as_the_route_does(web, paths, make, session,
                                                                                       monkeypatch):
    lean_code, flask_code = activated_codes(make, session, 2)
    prime(session, lean_code)
    bare = {"Accept": None, "User-Agent": None, "Accept-Language": None}
    lean, by = get(web, paths, "/v/" + lean_code, headers=bare)
    assert by == [LEAN] and lean.mimetype == "text/html" and "Set-Cookie" in lean.headers
    lean_off(monkeypatch)
    flask, by = get(web, paths, "/v/" + flask_code, headers=bare)
    assert by == [FLASK]
    assert_same(lean, flask, lean_code, flask_code, None, session)


def test_a_lowercase_or_display_form_code_is_answered_as_its_canonical_form(web, paths, make, session, monkeypatch):
    upper, lower, display, flask_lower = activated_codes(make, session, 4)
    prime(session, upper, lower, display)
    a, by_a = get(web, paths, "/V/" + upper)
    b, by_b = get(web, paths, "/v/" + lower.lower())
    c, by_c = get(web, paths, "/v/" + codes.display(display).lower())
    lean_off(monkeypatch)
    d, by_d = get(web, paths, "/v/" + flask_lower.lower())
    assert (by_a, by_b, by_c, by_d) == ([LEAN], [LEAN], [LEAN], [FLASK])
    assert b.json["code"] == lower and c.json["code"] == display
    for r, code in ((b, lower), (c, display), (d, flask_lower)):
        assert_same(a, r, upper, code, None, session)
    assert counters.code_counters(redis.client, lower)["count"] == 1


# --- 2. what the lean path records -----------------------------------------------------------------
REGION = "X-Client-Region"


def test_lean_path_scans_record_the_same_events_and_count_in_the_stats(web, paths, make, session, monkeypatch, app):
    from backend.fieldwork import service as fieldwork

    monkeypatch.setenv("SCAN_REGION_HEADER", REGION)
    operator = make.operator()
    batch = activated_codes(make, session, 8, operator)
    lean_codes, flask_codes = batch[:4], batch[4:]
    fieldwork.receive_checkins(session, actor_of(session, make.token("inspector")), [checkin_json(
        operator=operator, kind="shop", result="fail",
        findings=[{"kind": "counterfeit_labels", "codes": [lean_codes[3], flask_codes[3]], "note": "假标"}])])
    session.commit()
    label = service.read_label(session, batch[0])[0]
    town = service.lot_origin(session, label.lot_id)["town_id"]
    assert town is not None
    [lean_fake, flask_fake] = fakes(2, 950)
    prime(session, *lean_codes, lean_fake)
    label_ids = dict(session.execute(select(Label.code, Label.id).where(Label.code.in_(batch))).all())

    def scan_all(codes_, fake, off):
        """Six scans: from Xinhui; a device cookie, then the same code from Beijing seconds later
        (impossible travel by region); no region; a reported code; a never-issued code."""
        lean_off(monkeypatch, off)
        out = []
        for code, cookie, region in ((codes_[0], None, "440705"), (codes_[1], COOKIE, "440705"),
                                     (codes_[1], COOKIE, "北京"), (codes_[2], None, None), (codes_[3], None, None),
                                     (fake, None, "440705")):
            r, by = get(web, paths, "/v/" + code, cookie=cookie, headers={REGION: region})
            assert r.status_code in (200, 404) and by == ([FLASK] if off else [LEAN])
            out.append((code, r))
        return out

    lean_answers = scan_all(lean_codes, lean_fake, off=False)
    stats, mine = counters.read_stats(redis.client, None), counters.read_stats(redis.client, operator.id)
    assert stats["operators"] == {str(operator.id): 5} and stats["towns"] == {str(town): 5}
    assert stats["fake"]["total"] == 1 and stats["total"] == 6 and mine["total"] == 5
    flask_answers = scan_all(flask_codes, flask_fake, off=True)
    stats, mine = counters.read_stats(redis.client, None), counters.read_stats(redis.client, operator.id)
    assert stats["operators"] == {str(operator.id): 10} and stats["towns"] == {str(town): 10}
    assert stats["fake"]["total"] == 2 and stats["total"] == 12 and mine["total"] == 10
    for (lean_code, lean), (flask_code, flask) in zip(lean_answers, flask_answers):
        assert_same(lean, flask, lean_code, flask_code, None, session)
    assert [r.json["verdict"] for _, r in lean_answers] == ["genuine", "genuine", "warn", "genuine", "warn", "unknown"]
    assert lean_answers[2][1].json["alerts"] == ["impossible_travel"]
    assert lean_answers[4][1].json["alerts"] == ["reported_code"]

    # the stream entries the script built in Lua are the ones the route built in Python
    entries = stream()
    assert len(entries) == 12

    def without_code(e):
        return {k: v for k, v in e.items() if k not in ("id", "at", "code", "label_id")}

    lean_entries, flask_entries = entries[:6], entries[6:]
    for le, fe in zip(lean_entries, flask_entries):
        assert set(le) == set(fe)
        assert without_code(le) == without_code(fe)
        assert le["label_id"] == label_ids.get(le["code"]) and fe["label_id"] == label_ids.get(fe["code"])
    assert [e["town_id"] for e in lean_entries] == [town] * 5 + [None]
    assert [e["region"] for e in lean_entries] == ["440705", "440705", "110000", None, None, "440705"]
    assert [e["reported"] for e in lean_entries] == [False, False, False, False, True, False]

    assert service.drain_all(session, redis.client) == 12
    rows = session.scalars(select(ScanEvent).order_by(ScanEvent.id)).all()
    assert len(rows) == 12

    def row(e):
        return (e.operator_id, e.town_id, e.verdict, e.device, e.client, e.region, e.lat, e.lon, e.wrong_gtin,
                e.source)

    by_code = {}
    for e in rows:
        by_code.setdefault(e.code, []).append(e)
        assert e.label_id == label_ids.get(e.code)
    for lean_code, flask_code in [*zip(lean_codes, flask_codes), (lean_fake, flask_fake)]:
        assert [row(e) for e in by_code[lean_code]] == [row(e) for e in by_code[flask_code]]
    assert [e.verdict for e in by_code[lean_codes[1]]] == ["genuine", "warn"]
    assert by_code[lean_codes[3]][0].verdict == "warn"
    assert by_code[lean_codes[0]][0].client == client_hash(app)
    assert {e.town_id for e in rows if e.label_id} == {town}


# --- 3. hand-over: what the script could not answer goes to the route, counted once ------------------
def test_a_stale_view_is_handed_to_the_route_which_counts_the_rate_limit_once(web, paths, make, session, app):
    [code] = activated_codes(make, session, 1)
    prime(session, code)
    r, by = get(web, paths, "/v/" + code)
    assert by == [LEAN] and r.json["verdict"] == "genuine"
    assert rate_count(app) == 1

    redis.client.incr(viewcache.gen_key(code))  # a change of the label nobody cached yet
    r, by = get(web, paths, "/v/" + code)
    assert by == [("flask", "miss")]
    assert r.status_code == 200 and r.json["verdict"] == "repeat" and r.json["scan"]["count"] == 2
    assert rate_count(app) == 2  # the script counted it; the route did not again
    assert counters.code_counters(redis.client, code)["count"] == 2 and len(stream()) == 2

    # a committed change shows at once, through the route, and the next scan is the lean path's again
    session.scalar(select(Label).where(Label.code == code)).state = "stolen"
    session.commit()
    r, by = get(web, paths, "/v/" + code)
    assert by == [("flask", "miss")] and r.json["verdict"] == "stolen"
    r, by = get(web, paths, "/v/" + code)
    assert by == [LEAN] and r.json["verdict"] == "stolen" and r.json["scan"]["count"] == 4

    # the lot's origin expired: handed over, answered with it, and stored again
    lot_id = service.read_label(session, code)[0].lot_id
    redis.client.delete(viewcache.origin_key(lot_id))
    r, by = get(web, paths, "/v/" + code)
    assert by == [("flask", "miss")] and r.json["label"]["origin"]["towns"]
    assert redis.client.exists(viewcache.origin_key(lot_id))
    assert rate_count(app) == 5
    assert counters.code_counters(redis.client, code)["count"] == 5 and len(stream()) == 5
    assert stream()[-1]["town_id"] is not None


def test_a_handed_over_scan_leaves_room_for_exactly_the_limit(web, paths, make, session, monkeypatch):
    monkeypatch.setenv("SCAN_RATE_PER_MIN", "3")
    [code] = activated_codes(make, session, 1)
    prime(session, code)
    answers = []
    for i in range(4):
        if i == 1:
            redis.client.incr(viewcache.gen_key(code))
        answers.append(get(web, paths, "/v/" + code))
    assert [by for _, by in answers] == [[LEAN], [("flask", "miss")], [LEAN], [("flask", "limited")]]
    assert [r.status_code for r, _ in answers] == [200, 200, 200, 429]


# --- 4. the rate limit ------------------------------------------------------------------------------
def test_the_rate_limit_through_the_lean_path_refuses_as_the_route_does(web, paths, make, session, monkeypatch, app):
    monkeypatch.setenv("SCAN_RATE_PER_MIN", "2")
    [code, other] = activated_codes(make, session, 2)
    prime(session, code)
    answers = [get(web, paths, "/v/" + code, accept=accept) for accept in (JSON, JSON, JSON, HTML)]
    assert [r.status_code for r, _ in answers] == [200, 200, 429, 429]
    assert [by for _, by in answers] == [[LEAN], [LEAN], [("flask", "limited")], [("flask", "limited")]]
    assert counters.read_stats(redis.client, None)["throttled"] == {"client": 2}
    assert rate_count(app) == 4
    assert counters.code_counters(redis.client, code)["count"] == 2 and len(stream()) == 2

    # the same refusals as the route alone gives another client
    lean_off(monkeypatch)
    alone = [get(web, paths, "/v/" + other, accept=accept, remote="10.9.8.7") for accept in (JSON, JSON, JSON, HTML)]
    assert [by for _, by in alone] == [[FLASK]] * 4
    for (lean, _), (flask, _) in zip(answers[2:], alone[2:]):
        assert lean.status_code == flask.status_code == 429
        assert 1 <= int(lean.headers["Retry-After"]) <= 61
        assert {k.lower() for k in lean.headers.keys()} == {k.lower() for k in flask.headers.keys()}
        for name in ("Content-Type", "Cache-Control", "Vary", "Content-Security-Policy"):
            assert lean.headers.get(name) == flask.headers.get(name)
        digits = re.compile(r"\d+ 秒")
        if lean.mimetype == JSON:
            assert lean.json["reason"] == "scans.rate_limited" and lean.json["code"] == 429
            assert {**lean.json, "warning": digits.sub("", lean.json["warning"])} == \
                {**flask.json, "warning": digits.sub("", flask.json["warning"])}
        else:
            assert digits.sub("", lean.get_data(as_text=True)) == digits.sub("", flask.get_data(as_text=True))
    assert counters.read_stats(redis.client, None)["throttled"] == {"client": 4}


# --- 5. input the lean path leaves to Flask --------------------------------------------------------
def test_ugly_requests_stay_on_flask_and_never_fail(web, paths, make, session):
    codes_ = activated_codes(make, session, 3)
    prime(session, *codes_)
    code = codes_[0]
    cases = [
        ("GET", f"/v/{code}?format=json", 200),
        ("GET", f"/v/{code}?lat=22.5&lon=113.0", 200),
        ("GET", f"/v/{code}?lat=1e7", 422),
        ("GET", f"/v/{code}/", None),
        ("GET", f"/v/{code[:5]}%2F{code[5:]}", None),
        ("GET", "/v/%00", 422),
        ("GET", f"/v/{code}%00", 422),
        ("GET", "/v/..%2F..%2Fetc%2Fpasswd", None),
        ("GET", "/v/码码码", 422),
        ("GET", "/v/" + "".join(chr(0xFF00 + ord(c) - 0x20) for c in code), 200),  # full-width: NFKC
        ("GET", "/v/" + "A" * 10_240, 422),
        ("GET", "/v/" + code * 7, 422),
        ("HEAD", f"/v/{code}", 200),
        ("POST", f"/v/{code}", 405),
        ("PUT", f"/V/{code}", 405),
        ("DELETE", f"/v/{code}", 405),
        ("GET", "/v/", None),
    ]
    for method, path, status in cases:
        r, by = get(web, paths, path, method=method)
        assert r.status_code < 500, (method, path[:80], r.status_code)
        assert LEAN not in by, (method, path[:80])
        if status is not None:
            assert r.status_code == status, (method, path[:80], r.status_code)
        if r.status_code == 200 and method == "GET":
            assert r.json["code"] == code
    # nothing above ran the lean path's script: the route's one scan (or none) each
    assert counters.code_counters(redis.client, code)["count"] == 3  # ?format, ?lat, full-width (HEAD counts none)


HOSTILE = {
    "huge_cookie": {"Cookie": "cpd=" + "z" * 4000 + "; " + "; ".join(f"k{i}={'v' * 200}" for i in range(40))},
    "bad_cookie": {"Cookie": 'cpd="\\x00\\";;;=; cpd=' + COOKIE},
    "huge_user_agent": {"User-Agent": "Mozilla/5.0 " + "x" * 65_536},
    "garbage_xff": {"X-Forwarded-For": "not-an-ip, 999.1.1.1, ;;, ::zz, " + "1." * 2000},
    "garbage_accept": {"Accept": "*/*;q=abc, ,;;, text/html;level=" + "9" * 500},
    "garbage_region": {REGION: "\u0000\ufffd" + "北京" * 500},
    "huge_request_id": {"X-Request-ID": "a" * 5000},
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_headers_are_answered_as_the_route_answers_them(kind, web, paths, make, session, monkeypatch, app):
    monkeypatch.setenv("SCAN_TRUSTED_PROXIES", "1")
    monkeypatch.setenv("SCAN_REGION_HEADER", REGION)
    lean_code, flask_code = activated_codes(make, session, 2)
    prime(session, lean_code)
    headers = HOSTILE[kind]
    remote = "203.0.113.7" if kind == "garbage_xff" else "127.0.0.1"  # (an untrusted peer names no address)
    lean, by = get(web, paths, "/v/" + lean_code, headers=headers, remote=remote, accept=headers.get("Accept", JSON))
    assert by == [LEAN] and lean.status_code == 200
    lean_off(monkeypatch)
    flask, by = get(web, paths, "/v/" + flask_code, headers=headers, remote=remote, accept=headers.get("Accept", JSON))
    assert by == [FLASK]
    assert_same(lean, flask, lean_code, flask_code, headers.get("X-Request-ID"), session)
    le, fe = stream()
    assert (le["client"], le["device"], le["region"]) == (fe["client"], fe["device"], fe["region"])
    assert le["client"] == client_hash(app, remote)


def test_an_untrusted_peer_cannot_name_its_address_for_the_rate_limit(web, paths, make, session, monkeypatch, app):
    monkeypatch.setenv("SCAN_TRUSTED_PROXIES", "1")
    monkeypatch.setenv("SCAN_RATE_PER_MIN", "2")
    [code] = activated_codes(make, session, 1)
    prime(session, code)
    answers = [get(web, paths, "/v/" + code, remote="203.0.113.7", headers={"X-Forwarded-For": f"198.51.100.{i}"})
               for i in range(3)]
    assert [by for _, by in answers] == [[LEAN], [LEAN], [("flask", "limited")]]
    assert answers[2][0].status_code == 429
    assert rate_count(app, "203.0.113.7") == 3


# --- 6. Redis going away ----------------------------------------------------------------------------
def test_a_lost_round_trip_hands_the_scan_to_the_route_counted_once(web, paths, make, session, monkeypatch, app):
    [code] = activated_codes(make, session, 1)
    prime(session, code)
    real, calls = script.run_scan, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the lean path's round trip: the connection drops
            raise redis_lib.exceptions.ConnectionError("Connection reset by peer")
        return real(*args, **kwargs)

    monkeypatch.setattr(script, "run_scan", flaky)
    r, by = get(web, paths, "/v/" + code)
    assert by == [FLASK] and len(calls) == 2
    assert r.status_code == 200 and r.json["verdict"] == "genuine" and r.json["scan"]["count"] == 1
    assert rate_count(app) == 1 and len(stream()) == 1
    assert counters.code_counters(redis.client, code)["count"] == 1


def test_redis_down_answers_from_the_database_and_records_the_scan_once(web, paths, make, session, monkeypatch, app):
    [code] = activated_codes(make, session, 1)
    prime(session, code)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # (closed again: nothing listens there)
    dead = redis_lib.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, socket_timeout=0.2)
    live = app.extensions["chenpi_redis"]["client"]
    monkeypatch.setitem(app.extensions["chenpi_redis"], "client", dead)
    r, by = get(web, paths, "/v/" + code)
    app.extensions["chenpi_redis"]["client"] = live
    assert by == [FLASK]
    assert r.status_code == 200 and r.json["verdict"] == "genuine" and r.json["scan"]["count"] == 1
    rows = session.scalars(select(ScanEvent).where(ScanEvent.code == code)).all()
    assert [(e.source, e.verdict) for e in rows] == [("direct", "genuine")]
    assert len(stream()) == 0 and counters.code_counters(redis.client, code)["count"] == 0


def test_a_redis_error_other_than_a_lost_connection_answers_as_the_route_does(web, paths, make, session, monkeypatch):
    """The reference for the test below: the route answers the app's 500 JSON (READONLY after a
    failover, OOM under maxmemory, a script killed: redis ResponseError, not REDIS_DOWN)."""
    [code] = activated_codes(make, session, 1)
    prime(session, code)

    def read_only(*args, **kwargs):
        raise redis_lib.exceptions.ReadOnlyError("You can't write against a read only replica.")

    monkeypatch.setattr(script, "run_scan", read_only)
    lean_off(monkeypatch)
    r, by = get(web, paths, "/v/" + code, rid=SAFE_ID)
    assert by == [FLASK]
    assert r.status_code == 500 and r.json["reason"] == "server.error" and r.headers["X-Request-ID"] == SAFE_ID


def test_a_redis_error_other_than_a_lost_connection_is_not_left_to_the_wsgi_server(web, paths, make, session,
                                                                                   monkeypatch):
    [code] = activated_codes(make, session, 1)
    prime(session, code)

    def read_only(*args, **kwargs):
        raise redis_lib.exceptions.ReadOnlyError("You can't write against a read only replica.")

    monkeypatch.setattr(script, "run_scan", read_only)
    r, by = get(web, paths, "/v/" + code, rid=SAFE_ID)
    assert r.status_code == 500 and r.json["reason"] == "server.error" and r.headers["X-Request-ID"] == SAFE_ID


def _broken_page(monkeypatch):
    from backend.scans import page

    def render(body):
        raise RuntimeError("the template broke")

    monkeypatch.setattr(page, "render", render)


def test_an_error_after_the_count_answers_500_json_counted_once(web, paths, make, session, monkeypatch, caplog, app):
    lean_code, flask_code = activated_codes(make, session, 2)
    prime(session, lean_code)
    _broken_page(monkeypatch)
    caplog.set_level(logging.INFO, logger="chenpi.request")
    lean, by = get(web, paths, "/v/" + lean_code, accept=HTML, rid=SAFE_ID)
    assert by == [LEAN]
    lean_off(monkeypatch)
    flask, by = get(web, paths, "/v/" + flask_code, accept=HTML, rid=SAFE_ID)
    assert by == [FLASK]
    assert lean.status_code == flask.status_code == 500
    assert lean.json == flask.json and lean.json["reason"] == "server.error"
    assert lean.headers["X-Request-ID"] == flask.headers["X-Request-ID"] == SAFE_ID
    assert {k.lower() for k in lean.headers.keys()} == {k.lower() for k in flask.headers.keys()}
    assert counters.code_counters(redis.client, lean_code)["count"] == 1 and len(stream()) == 2
    assert [rec.getMessage().split(" ")[2] for rec in caplog.records if rec.name == "chenpi.request"] == ["500", "500"]


def test_an_error_after_the_count_answers_the_route_s_exact_500_body(web, paths, make, session, monkeypatch):
    lean_code, flask_code = activated_codes(make, session, 2)
    prime(session, lean_code)
    _broken_page(monkeypatch)
    lean, _ = get(web, paths, "/v/" + lean_code, accept=HTML, rid=SAFE_ID)
    lean_off(monkeypatch)
    flask, _ = get(web, paths, "/v/" + flask_code, accept=HTML, rid=SAFE_ID)
    assert sorted(lean.headers.items()) == sorted(flask.headers.items())
    assert lean.get_data() == flask.get_data()


def test_an_error_after_the_count_is_logged_with_the_request_id(web, paths, make, session, monkeypatch, caplog):
    [code] = activated_codes(make, session, 1)
    prime(session, code)
    _broken_page(monkeypatch)
    caplog.set_level(logging.INFO)
    r, by = get(web, paths, "/v/" + code, accept=HTML, rid=SAFE_ID)
    assert by == [LEAN] and r.status_code == 500
    [error] = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert getattr(error, "request_id", None) == SAFE_ID


# --- 7. the log line ---------------------------------------------------------------------------------
@pytest.mark.parametrize("rid", [SAFE_ID, UNSAFE_ID, None])
def test_a_lean_path_scan_logs_one_line_with_the_request_id_it_answers(rid, web, paths, make, session, caplog):
    [code] = activated_codes(make, session, 1)
    prime(session, code)
    caplog.set_level(logging.INFO, logger="chenpi.request")
    caplog.clear()
    r, by = get(web, paths, "/V/" + code, rid=rid)
    assert by == [LEAN] and r.status_code == 200
    lines = [rec for rec in caplog.records if rec.name == "chenpi.request"]
    assert len(lines) == 1
    assert lines[0].request_id == r.headers["X-Request-ID"]
    assert lines[0].getMessage().startswith(f"GET /V/{code} 200 ")
    if rid == SAFE_ID:
        assert r.headers["X-Request-ID"] == SAFE_ID


def test_a_handed_over_scan_logs_one_line(web, paths, make, session, caplog):
    [code] = activated_codes(make, session, 1)
    prime(session, code)
    redis.client.incr(viewcache.gen_key(code))
    caplog.set_level(logging.INFO, logger="chenpi.request")
    caplog.clear()
    r, by = get(web, paths, "/v/" + code, rid=SAFE_ID)
    assert by == [("flask", "miss")] and r.headers["X-Request-ID"] == SAFE_ID
    lines = [rec for rec in caplog.records if rec.name == "chenpi.request"]
    assert len(lines) == 1 and lines[0].getMessage().startswith(f"GET /v/{code} 200 ")
