"""Regressions from the review: decimal places, literal search, list query counts, readiness."""
from __future__ import annotations

import sqlalchemy as sa

from backend.extensions import db


def test_a_quantity_finer_than_its_places_is_refused_not_rounded(client, make):
    h = make.auth(make.token("admin"))
    grower = make.grower()
    base = {"grower_id": grower.id, "village_id": grower.village_id, "tree_count": 10, "lon": 113.03, "lat": 22.52}
    r = client.post("/api/v1/registry/plots", json={**base, "code": "P-FINE", "area_mu": "1.005"}, headers=h)
    assert r.status_code == 422 and "area_mu" in r.json["errors"]["json"]
    r = client.post("/api/v1/registry/plots", json={**base, "code": "P-OK", "area_mu": "1.50", "verified_yield_kg": "1500.000"}, headers=h)
    assert r.status_code == 201, r.json
    assert r.json["area_mu"] == "1.50"


def test_search_text_is_literal_even_with_backslash_percent_and_underscore(client, make):
    h = make.auth(make.token("admin"))
    make.operator(name="陈皮\\老店")
    make.operator(name="陈皮_新店")
    make.operator(name="陈皮X新店")
    names = lambda q: sorted(o["name"] for o in client.get("/api/v1/registry/operators", query_string={"q": q}, headers=h).json)  # noqa: E731
    assert names("陈皮\\") == ["陈皮\\老店"]
    assert names("皮_新") == ["陈皮_新店"]
    assert names("%") == []


def _queries(client, url, headers) -> int:
    count = []
    listener = lambda *a: count.append(1)  # noqa: E731
    engine = db.session.get_bind()
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        assert client.get(url, headers=headers).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    return len(count)


def test_listing_plots_and_growers_does_not_query_once_per_row(client, make):
    h = make.auth(make.token("admin"))
    village = make.village()
    growers = [make.grower(village=village) for _ in range(3)]
    for g in growers:
        make.plot(grower=g)
    client.get("/api/v1/auth/me", headers=h)  # the token's first use writes last_used_at: not counted
    few = {u: _queries(client, f"{u}?page_size=3", h) for u in ("/api/v1/registry/plots", "/api/v1/registry/growers")}
    for _ in range(12):
        make.plot(grower=make.grower(village=make.village()))
    many = {u: _queries(client, f"{u}?page_size=15", h) for u in few}
    assert many == few, f"queries grew with the page: {few} -> {many}"


def test_readyz_does_not_tell_the_public_why(app, client, monkeypatch):
    import redis as redis_lib

    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    monkeypatch.setitem(app.extensions["chenpi_redis"], "client", dead)
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json["errors"] == {"redis": ["unreachable"]}
    assert "127.0.0.1" not in r.get_data(as_text=True)


def test_a_mistyped_code_page_speaks_chinese_only(client):
    page = client.get("/v/1ABC-DEFG-HJK", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "请核对编码" in page
    assert "check character" not in page  # the English detail is for the JSON clients
