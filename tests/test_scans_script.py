"""The scan counters' Lua script (backend/scans/script.py) against the pipeline it replaces on a
single Redis: the same scans leave the same keys, values and stream entries, and answer the same."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from backend.extensions import redis
from backend.scans import counters, script

pytestmark = pytest.mark.real_servers

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)


def _events():
    """Issued and never-issued codes, repeats, two devices, located and unlocated scans, a town."""
    out = []
    for i, (code, issued, device, place) in enumerate([
        ("1AAAAAAAAAA", True, "d1", None), ("1AAAAAAAAAA", True, "d2", (22.5, 113.0)),
        ("1AAAAAAAAAA", True, "d1", (23.1, 113.3)), ("1BBBBBBBBBB", True, "d3", None),
        ("1CCCCCCCCCC", False, "d4", None), ("1CCCCCCCCCD", False, "d4", (22.0, 113.0)),
    ]):
        at = T0 + timedelta(minutes=i)
        lat, lon = place or (None, None)
        event = {"id": f"e{i}", "code": code, "at": at, "day": "2026-03-01",
                 "operator_id": 7 if issued else None, "town_id": 3 if code == "1AAAAAAAAAA" else None,
                 "device": device, "client": "c1", "lat": lat, "lon": lon,
                 "last": f"{at.timestamp():.3f}|{lat:.5f}|{lon:.5f}" if place else None}
        if i == 1:  # a scan that read its label view from the database stores it in the same call
            event["view"] = ("scan:{1AAAAAAAAAA}:view", "0.0\n[]", 60)
        out.append((event, issued))
    return out


def _run(r) -> tuple[list, dict]:
    answers = [counters.count_scan(r, event=e, payload=json.dumps({"id": e["id"]}), issued=issued, fake_window_s=600)
               for e, issued in _events()]
    state = {}
    for key in sorted(r.keys()):
        kind = r.type(key).decode()
        if kind == "string" and not key.endswith(b":dev"):
            state[key] = (kind, r.get(key))
        elif kind == "hash":
            state[key] = (kind, r.hgetall(key))
        elif kind == "stream":
            state[key] = (kind, [f for _, f in r.xrange(key)])
        else:  # the HyperLogLog (a string whose bytes are the sketch): compare what it counts
            state[key] = ("hll", r.pfcount(key))
        ttl = r.ttl(key)
        state[key] += (ttl > 0,)
    return answers, state


def test_the_script_and_the_pipeline_count_a_scan_the_same(monkeypatch):
    r = redis.client
    assert script.usable(r)
    with_script = _run(r)
    r.flushdb()
    monkeypatch.setattr(script, "usable", lambda _r: False)
    with_pipeline = _run(r)
    assert with_script[0] == with_pipeline[0]
    assert with_script[1] == with_pipeline[1]
    assert with_script[0][2].count == 3 and with_script[0][2].devices == 2  # the answers are real counts
    assert with_script[0][2].previous and with_script[0][5].client_fakes == 2
    assert with_script[1][b"scan:{1AAAAAAAAAA}:view"] == ("string", b"0.0\n[]", True)


def test_the_script_is_loaded_again_after_the_server_forgets_it():
    r = redis.client
    e, issued = _events()[0]
    counters.count_scan(r, event=e, payload="{}", issued=issued, fake_window_s=600)
    r.script_flush()
    again = counters.count_scan(r, event=e, payload="{}", issued=issued, fake_window_s=600)
    assert again.count == 2


def test_fakeredis_and_cluster_clients_keep_the_pipeline():
    import fakeredis

    assert not script.usable(fakeredis.FakeRedis())
    cluster = type("RedisCluster", (), {})()
    assert not script.usable(cluster)
