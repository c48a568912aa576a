"""Fraud rules on consumer scans: each rule raises one alert per code (updated, not duplicated),
the page warns at once, and alerts are listed, acknowledged and resolved by the right people."""
from __future__ import annotations

from sqlalchemy import select

from backend.extensions import db, redis
from backend.labels import codes
from backend.scans import service
from backend.scans.models import ScanAlert
from tests.factories import actor_of, checkin_json
from tests.scans_support import activated_codes

JSON = {"Accept": "application/json"}
XINHUI = {"lat": 22.52, "lon": 113.03}
BEIJING = {"lat": 39.90, "lon": 116.40}


def scan(client, code, ua="phone-1", ip="203.0.113.7", **query):
    return client.get(f"/v/{code}", headers={**JSON, "User-Agent": ua}, query_string=query,
                      environ_base={"REMOTE_ADDR": ip})


def alerts(session, **where):
    service.drain_all(db.session, redis.client)
    return session.scalars(select(ScanAlert).filter_by(**where).order_by(ScanAlert.id)).all()


def test_too_many_scans_raises_one_alert_that_later_scans_update(client, make, session, monkeypatch):
    monkeypatch.setenv("SCAN_ALERT_SCANS", "3")
    [code] = activated_codes(make, session, 1)
    for _ in range(2):
        scan(client, code)
    assert alerts(session) == []
    third = scan(client, code).json
    assert "too_many_scans" in third["alerts"] and third["verdict"] == "warn"
    scan(client, code)
    [alert] = alerts(session, rule="too_many_scans")
    assert alert.code == code and alert.count == 2 and alert.state == "open" and alert.evidence["scans"] == 4


def test_many_devices_on_one_code_is_a_cloned_label(client, make, session, monkeypatch):
    monkeypatch.setenv("SCAN_ALERT_DEVICES", "3")
    [code] = activated_codes(make, session, 1)
    assert scan(client, code, ua="a").json["verdict"] == "genuine"
    assert scan(client, code, ua="b").json["verdict"] == "repeat"
    third = scan(client, code, ua="c").json
    assert third["verdict"] == "warn" and "复制" in third["warning"]
    [alert] = alerts(session, rule="too_many_devices")
    assert alert.evidence["devices"] == 3
    # Once flagged, even a re-scan from the first phone warns.
    assert scan(client, code, ua="a").json["verdict"] == "warn"


def test_scans_too_far_apart_for_the_time_between_are_impossible_travel(client, make, session):
    [code] = activated_codes(make, session, 1)
    scan(client, code, ua="x", **XINHUI)
    far = scan(client, code, ua="y", **BEIJING).json
    assert "impossible_travel" in far["alerts"] and far["verdict"] == "warn"
    [alert] = alerts(session, rule="impossible_travel")
    assert alert.evidence["km"] > 1800


def test_nearby_scans_never_alert_for_travel(client, make, session):
    [code] = activated_codes(make, session, 1)
    scan(client, code, **XINHUI)
    r = scan(client, code, lat=22.60, lon=113.10).json
    assert r["alerts"] == [] and r["verdict"] == "repeat"


def test_a_stolen_or_unactivated_label_raises_bad_state(client, make, session):
    [stolen] = activated_codes(make, session, 1, state="stolen", lot=False)
    [printed] = activated_codes(make, session, 1, state="printed", lot=False)
    scan(client, stolen)
    scan(client, printed)
    found = {(a.code, a.rule, a.evidence["state"]) for a in alerts(session)}
    assert found == {(stolen, "bad_state", "stolen"), (printed, "bad_state", "printed")}


def test_a_code_inspectors_reported_warns_and_raises_reported_code(client, make, session):
    from backend.fieldwork import service as fieldwork

    operator = make.operator()
    [code] = activated_codes(make, session, 1, operator)
    inspector = actor_of(session, make.token("inspector"))
    body = checkin_json(operator=operator, kind="shop", result="fail",
                        findings=[{"kind": "counterfeit_labels", "codes": [code.lower()], "note": "假标"}])
    fieldwork.receive_checkins(session, inspector, [body])
    session.commit()
    r = scan(client, code).json
    assert r["verdict"] == "warn" and "举报" in r["warning"] and "reported_code" in r["alerts"]
    [alert] = alerts(session, rule="reported_code")
    assert alert.operator_id == operator.id


def test_a_burst_of_never_issued_codes_from_one_client_is_one_alert(client, session, monkeypatch):
    monkeypatch.setenv("SCAN_FAKE_BURST", "4")
    monkeypatch.setenv("SCAN_CRAWLER_RATE_PER_MIN", "100")
    fakes = [codes.make_code("1", b"a forger's own key, 16+ bytes", 1, n) for n in range(6)]
    for c in fakes:
        assert scan(client, c, ip="198.51.100.9").status_code == 404
    [alert] = alerts(session, rule="fake_burst")
    assert alert.subject.startswith("client:") and alert.count == 3 and alert.operator_id is None
    assert alert.evidence["codes_in_window"] == 6
    # Another client's single miss is not a burst.
    scan(client, codes.make_code("1", b"a forger's own key, 16+ bytes", 2, 1), ip="198.51.100.10")
    assert len(alerts(session, rule="fake_burst")) == 1


def test_alerts_are_listed_acknowledged_and_resolved_by_the_right_people(client, make, session, monkeypatch):
    monkeypatch.setenv("SCAN_ALERT_SCANS", "1")
    a, b = make.operator(), make.operator()
    [ca] = activated_codes(make, session, 1, a, lot=False)
    [cb] = activated_codes(make, session, 1, b, lot=False)
    scan(client, ca)
    scan(client, cb)
    alerts(session)
    admin, op_a = make.auth(make.token("admin")), make.auth(make.token("operator", a))
    assert {x["code"] for x in client.get("/api/v1/scans/alerts", headers=admin).json} == {ca, cb}
    mine = client.get("/api/v1/scans/alerts", headers=op_a).json
    assert [x["code"] for x in mine] == [ca]
    other = client.get("/api/v1/scans/alerts", headers=admin, query_string={"code": cb}).json[0]["id"]
    assert client.post(f"/api/v1/scans/alerts/{other}/acknowledge", json={}, headers=op_a).status_code == 404
    ack = client.post(f"/api/v1/scans/alerts/{mine[0]['id']}/acknowledge", json={"note": "查看中"}, headers=op_a)
    assert ack.status_code == 200 and ack.json["state"] == "acknowledged" and ack.json["note"] == "查看中"
    scan(client, ca)  # an acknowledged alert is still the open one: updated
    assert [x.count for x in alerts(session, code=ca)] == [2]
    assert client.post(f"/api/v1/scans/alerts/{mine[0]['id']}/resolve", json={}, headers=op_a).status_code == 422
    done = client.post(f"/api/v1/scans/alerts/{mine[0]['id']}/resolve", json={"note": "店员重复查询"}, headers=op_a)
    assert done.status_code == 200 and done.json["state"] == "resolved" and done.json["resolved_at"]
    again = client.post(f"/api/v1/scans/alerts/{mine[0]['id']}/resolve", json={"note": "x"}, headers=op_a)
    assert again.status_code == 409 and again.json["reason"] == "scans.alert_resolved"
    scan(client, ca)  # a new hit after resolving opens a new alert
    assert [x.state for x in alerts(session, code=ca)] == ["resolved", "open"]
