"""Impossible travel without a phone location: the reverse proxy names the client's region in a
trusted header (SCAN_REGION_HEADER), and scans of one code from regions too far apart for the
time between them raise the alert, on the page at once and in the drain's alerts."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from backend.extensions import db, redis
from backend.scans import counters, regions, rules, service
from backend.scans.models import ScanAlert, ScanEvent
from backend.scans.settings import thresholds
from tests.scans_support import activated_codes

JSON = {"Accept": "application/json"}
HEADER = "X-Client-Region"


@pytest.fixture
def region_header(monkeypatch):
    monkeypatch.setenv("SCAN_REGION_HEADER", HEADER)


def scan(client, code, region=None, ua="phone", **query):
    headers = {**JSON, "User-Agent": ua}
    if region is not None:
        headers[HEADER] = region
    return client.get(f"/v/{code}", headers=headers, query_string=query)


def travel_alerts(session):
    service.drain_all(db.session, redis.client)
    session.expire_all()
    return session.scalars(select(ScanAlert).where(ScanAlert.rule == "impossible_travel")).all()


@pytest.mark.parametrize("value,code", [
    ("440705", "440705"), ("440705000000", "440705"), ("4407", "440700"), ("440799", "440700"),
    ("江门", "440700"), ("江门市", "440700"), ("广东省江门市新会区", "440705"), ("广东|江门", "440700"),
    ("北京", "110000"), ("北京|朝阳区", "110105"), ("吉林 长春 朝阳区", "220104"),
    ("%E6%B1%9F%E9%97%A8%E5%B8%82", "440700"),  # %-encoded 江门市
    ("江门市".encode().decode("latin-1"), "440700"),  # UTF-8 bytes as WSGI hands them over
])
def test_a_region_header_names_an_adcode_or_a_chinese_place(value, code):
    assert regions.lookup(value).code == code


@pytest.mark.parametrize("value", ["", "朝阳区", "999999", "12345", "Jiangmen", "'; DROP TABLE x", "江" * 5000])
def test_an_unknown_or_ambiguous_region_is_no_region(value):
    assert regions.lookup(value) is None


def test_every_province_capital_is_where_it_should_be():
    guangzhou, beijing = regions.by_code("440000"), regions.by_code("110000")
    assert 22.9 < guangzhou.lat < 23.3 and 113.1 < guangzhou.lon < 113.5
    assert 39.8 < beijing.lat < 40.1 and 116.2 < beijing.lon < 116.6
    assert len([c for c in regions.table().by_code if c.endswith("0000")]) >= 34


def test_scans_from_regions_too_far_apart_raise_impossible_travel(client, make, session, region_header):
    [code] = activated_codes(make, session, 1)
    assert scan(client, code, "440705", ua="a").json["alerts"] == []  # Xinhui
    far = scan(client, code, "北京", ua="b").json  # Beijing a moment later: ~1,900 km
    assert "impossible_travel" in far["alerts"] and far["verdict"] == "warn" and "复制" in far["warning"]
    [alert] = travel_alerts(session)
    assert alert.code == code and alert.evidence["km"] > 1800
    assert alert.evidence["placed_by"] == {"from": "region", "to": "region"}
    regions_ = session.scalars(select(ScanEvent.region).where(ScanEvent.code == code).order_by(ScanEvent.id)).all()
    assert regions_ == ["440705", "110000"]
    assert session.scalars(select(ScanEvent.lat).where(ScanEvent.code == code)).all() == [None, None]


def test_a_phone_location_and_a_far_region_are_compared_too(client, make, session, region_header):
    [code] = activated_codes(make, session, 1)
    scan(client, code, "北京", ua="a", lat=22.52, lon=113.03)  # the phone's location wins over the header
    far = scan(client, code, "110000", ua="b").json
    assert "impossible_travel" in far["alerts"]
    [alert] = travel_alerts(session)
    assert alert.evidence["placed_by"] == {"from": "phone", "to": "region"}


def test_neighbouring_regions_never_alert(client, make, session, region_header):
    """IP locations of mobile networks often land in the provincial capital: Guangzhou and
    Jiangmen (~70 km) a minute apart are not travel."""
    [code] = activated_codes(make, session, 1)
    scan(client, code, "江门", ua="a")
    r = scan(client, code, "广州", ua="b").json
    assert r["alerts"] == [] and r["verdict"] == "repeat"
    r = scan(client, code, "广东", ua="c").json
    assert r["alerts"] == []
    assert travel_alerts(session) == []


def test_the_header_is_ignored_unless_configured(client, make, session):
    [code] = activated_codes(make, session, 1)
    scan(client, code, "440705")
    r = scan(client, code, "北京").json
    assert r["alerts"] == []
    assert travel_alerts(session) == []
    assert session.scalars(select(ScanEvent.region).where(ScanEvent.code == code)).all() == [None, None]


def test_hostile_region_headers_are_no_region_never_an_error(client, make, session, region_header):
    [code] = activated_codes(make, session, 1)
    for value in ("%ZZ%", "\x00", "9" * 400, "<script>", "北京" * 300):
        r = scan(client, code, value)
        assert r.status_code == 200, r.json
    service.drain_all(db.session, redis.client)
    assert set(session.scalars(select(ScanEvent.region).where(ScanEvent.code == code))) <= {None, "110000"}


def test_rebuilt_counters_keep_the_region_placed_last_scan(client, make, session, region_header):
    [code] = activated_codes(make, session, 1)
    scan(client, code, "440705")
    service.drain_all(db.session, redis.client)
    live = redis.client.get(counters.code_key(code, "last"))
    assert live and live.decode().endswith("|r")
    service.rebuild_counters(session, redis.client)
    assert redis.client.get(counters.code_key(code, "last")) == live


def test_the_rule_itself_weighs_region_places_with_the_larger_minimum(monkeypatch):
    from datetime import datetime, timedelta, timezone

    t = thresholds()
    at = datetime(2026, 11, 28, 8, tzinfo=timezone.utc)
    jm, gz = regions.by_code("440700"), regions.by_code("440100")  # ~70 km apart
    before = (at - timedelta(minutes=5)).timestamp()
    # by GPS, 70 km in 5 minutes is impossible…
    assert rules.travel(rules.located(before, (jm.lat, jm.lon, False)), at, (gz.lat, gz.lon, False), t)
    # …by region it is IP-location noise
    assert rules.travel(rules.located(before, (jm.lat, jm.lon, True)), at, (gz.lat, gz.lon, False), t) is None
    monkeypatch.setenv("SCAN_REGION_TRAVEL_MIN_KM", "50")
    assert rules.travel(rules.located(before, (jm.lat, jm.lon, True)), at, (gz.lat, gz.lon, True), thresholds())


# --- the header is cheap, read after the rate limit, and only from a trusted proxy ----------------
class _NoWalk(dict):
    """A region table that refuses to be walked: a lookup must be dict hits only."""

    def values(self):
        raise AssertionError("a lookup walked every region")

    items = keys = __iter__ = values


def test_a_lookup_never_walks_the_table_and_finds_the_same_places(monkeypatch):
    t = regions.table()
    monkeypatch.setattr(t, "by_code", _NoWalk(t.by_code))
    # 朝阳区 inside 北京 / inside 长春 goes through the by-province/prefecture index
    assert regions.lookup("北京|朝阳区").code == "110105"
    assert regions.lookup("吉林 长春 朝阳区").code == "220104"
    assert regions.lookup("广东省江门市新会区").code == "440705"
    assert regions.lookup("北京|" + "某地|" * 20).code == "110000"


HUGE = {"parts": "北京|" + "某地|" * 3400, "han": "江" * 10_000, "percent": "%E6%B1%9F" * 1200,
        "digits": "9" * 10_000, "spaces": "北京" + " x" * 5000}


@pytest.mark.parametrize("kind", sorted(HUGE))
def test_a_huge_header_is_no_region_without_being_looked_at(monkeypatch, kind):
    value = HUGE[kind]
    seen = []
    real_name = regions._name
    monkeypatch.setattr(regions, "_name", lambda t, part: seen.append(part) or real_name(t, part))
    monkeypatch.setattr(regions, "unquote", lambda *a, **k: seen.append(a[0]) or "")
    assert len(value) >= 10_000
    assert regions.lookup(value) is None
    assert seen == []


def test_a_hostile_header_within_the_cap_costs_a_bounded_number_of_dict_hits(monkeypatch):
    parts = []
    real_name, real_inside = regions._name, regions._inside
    monkeypatch.setattr(regions, "_name", lambda t, part: parts.append(part) or real_name(t, part))
    monkeypatch.setattr(regions, "_inside", lambda t, name, within: parts.append(name) or real_inside(t, name, within))
    value = "北京" + "|某" * 200  # decoded past MAX_TEXT: nothing
    assert regions.lookup(value) is None and parts == []
    value = ("北京" + "|某" * 31)[:regions.MAX_TEXT]
    regions.lookup(value)
    assert 0 < len(parts) <= regions.MAX_TEXT and all(len(p) <= regions.MAX_TEXT for p in parts)


def test_a_flood_has_its_region_header_looked_up_once(client, make, session, region_header, monkeypatch):
    """The scan's one round trip needs the region before the rate limit answers: a value is looked
    up once per process, and a rate-limited flood costs a dict hit per request."""
    from backend.scans import routes

    monkeypatch.setenv("SCAN_RATE_PER_MIN", "2")
    monkeypatch.setattr(routes, "_REGION_CODES", {})
    [code] = activated_codes(make, session, 1)
    calls = []
    real = regions.lookup
    monkeypatch.setattr(regions, "lookup", lambda raw: calls.append(raw) or real(raw))
    statuses = [scan(client, code, "440705").status_code for _ in range(6)]
    assert statuses == [200, 200, 429, 429, 429, 429]
    assert calls == ["440705"]
    long_value = "广东省江门市新会区" + " " * 80  # past the cache's key size: looked up each time
    for _ in range(2):
        scan(client, code, long_value)
    assert calls == ["440705", long_value, long_value]


def test_a_region_header_from_an_untrusted_peer_is_ignored(client, make, session, region_header, monkeypatch):
    [code] = activated_codes(make, session, 1)
    direct = {"REMOTE_ADDR": "203.0.113.7"}  # a client reaching the API without the proxy
    r = client.get(f"/v/{code}", headers={**JSON, HEADER: "440705"}, environ_base=direct)
    assert r.status_code == 200
    far = client.get(f"/v/{code}", headers={**JSON, HEADER: "北京", "User-Agent": "b"}, environ_base=direct).json
    assert far["alerts"] == []
    assert travel_alerts(session) == []
    assert session.scalars(select(ScanEvent.region).where(ScanEvent.code == code)).all() == [None, None]
    # the same peer once it is listed as the proxy
    monkeypatch.setenv("SCAN_PROXY_NETWORKS", "10.0.0.0/8, 203.0.113.0/24")
    client.get(f"/v/{code}", headers={**JSON, HEADER: "440705", "User-Agent": "c"}, environ_base=direct)
    service.drain_all(db.session, redis.client)
    session.expire_all()
    assert session.scalars(select(ScanEvent.region).where(ScanEvent.code == code)
                           .order_by(ScanEvent.id)).all() == [None, None, "440705"]


@pytest.mark.parametrize("peer,networks,trusted", [
    ("127.0.0.1", "127.0.0.0/8,::1", True), ("::1", "127.0.0.0/8,::1", True),
    ("::ffff:127.0.0.1", "127.0.0.0/8", True), ("10.1.2.3", "127.0.0.0/8,::1", False),
    ("10.1.2.3", "10.0.0.0/8", True), ("10.1.2.3", "not-a-network, 10.1.2.3", True),
    ("10.1.2.3", "not-a-network", False), ("", "127.0.0.0/8", False), (None, "127.0.0.0/8", False),
    ("garbage", "0.0.0.0/0", False), ("127.0.0.1", "", False),
])
def test_trusted_proxy_networks(peer, networks, trusted):
    assert regions.from_trusted_proxy(peer, networks) is trusted


def test_x_forwarded_for_names_the_client_only_when_a_trusted_proxy_sent_it(client, make, session, monkeypatch):
    """Behind one proxy each X-Forwarded-For client has its own rate limit; a client reaching the
    API directly cannot dodge its limit by naming a new address in the header on every request."""
    monkeypatch.setenv("SCAN_TRUSTED_PROXIES", "1")
    monkeypatch.setenv("SCAN_RATE_PER_MIN", "2")
    [code] = activated_codes(make, session, 1)

    def statuses(peer: str) -> list[int]:
        return [client.get(f"/v/{code}", headers={**JSON, "X-Forwarded-For": f"198.51.100.{i}"},
                           environ_base={"REMOTE_ADDR": peer}).status_code for i in range(1, 5)]

    assert statuses("127.0.0.1") == [200, 200, 200, 200]  # through the proxy: four different clients
    assert statuses("203.0.113.7") == [200, 200, 429, 429]  # direct: one client, whatever the header says
    monkeypatch.setenv("SCAN_PROXY_NETWORKS", "203.0.113.0/24")
    redis.client.flushdb()
    assert statuses("203.0.113.7") == [200, 200, 200, 200]
