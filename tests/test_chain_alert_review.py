"""Trade-chain plausibility alerts are reviewed by the association's staff: acknowledged (seen,
still open), then resolved with a note of what was found; filtered by state; operators neither
see nor touch them."""
from __future__ import annotations

import uuid

import pytest

ALERTS = "/api/v1/chain/alerts"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def user_id(token: str) -> int:
    from backend.extensions import db
    from tests.factories import user_of

    return user_of(db.session, token).id


@pytest.fixture
def alert(client, make):
    """An over_quota alert (a plot with a 15,000 kg verified quota sold 16,000 kg), with the
    operator's, an admin's and an inspector's tokens."""
    operator, plot = make.operator(), make.plot()
    token = make.token("operator", operator)
    for kg in ("10000", "6000"):
        r = client.post("/api/v1/chain/trades", headers=bearer(token), json={
            "client_uuid": str(uuid.uuid4()), "plot_id": plot.id, "trade_date": "2025-11-01", "stage": "wei_hong",
            "weight_kg": kg, "price_per_kg": "8.5"})
        assert r.status_code == 201, r.json
    admin, inspector = make.token("admin"), make.token("inspector")
    [listed] = client.get(ALERTS, query_string={"plot_id": plot.id}, headers=bearer(admin)).json
    return {"id": listed["id"], "operator": token, "admin": admin, "inspector": inspector}


def test_an_alert_is_acknowledged_then_resolved_with_a_note(client, alert):
    url = f"{ALERTS}/{alert['id']}"
    got = client.get(url, headers=bearer(alert["inspector"])).json
    assert (got["state"], got["note"], got["acknowledged_at"], got["resolved_at"]) == ("open", None, None, None)
    r = client.post(f"{url}/acknowledge", json={"note": "核查中：去村里看看"}, headers=bearer(alert["inspector"]))
    assert r.status_code == 200 and r.json["state"] == "acknowledged" and r.json["note"] == "核查中：去村里看看"
    acked_at, acked_by = r.json["acknowledged_at"], r.json["acknowledged_by"]
    assert acked_at and acked_by == user_id(alert["inspector"])
    again = client.post(f"{url}/acknowledge", json={}, headers=bearer(alert["admin"])).json
    assert (again["acknowledged_at"], again["acknowledged_by"], again["note"]) == (acked_at, acked_by, "核查中：去村里看看")
    r = client.post(f"{url}/resolve", json={"note": "实地核实：该地块今年扩种，产量属实"}, headers=bearer(alert["admin"]))
    assert r.status_code == 200 and r.json["state"] == "resolved" and r.json["resolved_at"]
    assert r.json["resolved_by"] == user_id(alert["admin"])
    for path, body in (("acknowledge", {}), ("resolve", {"note": "again"})):
        r = client.post(f"{url}/{path}", json=body, headers=bearer(alert["admin"]))
        assert r.status_code == 409 and r.json["reason"] == "chain.alert_resolved"
    states = {state: [a["id"] for a in client.get(ALERTS, query_string={"state": state},
                                                  headers=bearer(alert["admin"])).json]
              for state in ("open", "resolved")}
    assert alert["id"] in states["resolved"] and alert["id"] not in states["open"]


def test_operators_cannot_read_acknowledge_or_resolve_alerts(client, alert):
    url = f"{ALERTS}/{alert['id']}"
    assert client.get(url, headers=bearer(alert["operator"])).status_code == 403
    for path, body in (("acknowledge", {}), ("resolve", {"note": "没问题"})):
        assert client.post(f"{url}/{path}", json=body, headers=bearer(alert["operator"])).status_code == 403
    assert client.get(url, headers=bearer(alert["admin"])).json["state"] == "open"


@pytest.mark.parametrize("path, body, field", [
    ("resolve", {}, "note"), ("resolve", {"note": ""}, "note"), ("resolve", {"note": 5}, "note"),
    ("resolve", {"note": "x" * 2001}, "note"), ("resolve", {"note": "ok", "extra": 1}, "extra"),
    ("acknowledge", {"note": 5}, "note"), ("acknowledge", {"note": "x" * 2001}, "note"),
    ("acknowledge", {"note": "bad\x00byte"}, "note")])
def test_a_review_without_a_good_note_is_422_naming_the_field(client, alert, path, body, field):
    r = client.post(f"{ALERTS}/{alert['id']}/{path}", json=body, headers=bearer(alert["admin"]))
    assert r.status_code == 422 and field in r.json["errors"]["json"], r.json
    assert client.get(f"{ALERTS}/{alert['id']}", headers=bearer(alert["admin"])).json["state"] == "open"


def test_unknown_alerts_and_bad_filters_are_clear_4xx(client, alert):
    for alert_id in (99_999_999, 2_147_483_648):
        assert client.get(f"{ALERTS}/{alert_id}", headers=bearer(alert["admin"])).status_code == 404
        r = client.post(f"{ALERTS}/{alert_id}/resolve", json={"note": "x"}, headers=bearer(alert["admin"]))
        assert r.status_code == 404
    r = client.get(ALERTS, query_string={"state": "closed"}, headers=bearer(alert["admin"]))
    assert r.status_code == 422 and "state" in r.json["errors"]["query"]


@pytest.mark.real_servers
def test_reviews_at_once_never_reopen_or_resolve_twice(app, committed_db, make):
    """Many staff acknowledge and resolve one alert at the same moment (row lock): exactly one
    resolve wins, and the alert ends resolved by it."""
    import threading

    from backend.chain.models import Alert

    session = committed_db.session
    operator, plot = make.operator(), make.plot()
    alert = Alert(kind="over_quota", plot_id=plot.id, operator_id=operator.id, evidence={"quota_kg": "1"})
    session.add(alert)
    session.commit()
    alert_id = alert.id
    tokens = [make.token("admin") for _ in range(4)] + [make.token("inspector") for _ in range(4)]
    session.commit()
    for t in tokens:  # first use writes last_used_at; do it before the race
        assert app.test_client().get("/api/v1/auth/me", headers=bearer(t)).status_code == 200
    barrier, answers = threading.Barrier(len(tokens)), []

    def review(i):
        client = app.test_client()
        barrier.wait()
        path, body = ("resolve", {"note": f"resolved by {i}"}) if i % 2 else ("acknowledge", {"note": f"seen by {i}"})
        r = client.post(f"{ALERTS}/{alert_id}/{path}", json=body, headers=bearer(tokens[i]))
        answers.append((path, r.status_code, r.json.get("note") if r.status_code == 200 else r.json["reason"]))

    threads = [threading.Thread(target=review, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    resolved = [a for a in answers if a[0] == "resolve" and a[1] == 200]
    assert len(answers) == len(tokens) and len(resolved) == 1, answers
    assert all(a[1] in (200, 409) for a in answers), answers
    final = app.test_client().get(f"{ALERTS}/{alert_id}", headers=bearer(tokens[0])).json
    assert final["state"] == "resolved" and final["note"] == resolved[0][2]
