"""Geofence and time flags (issue 5 item 4) and the links other domains call (item 5)."""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from backend import geo
from backend.fieldwork import service
from backend.timeutil import SHANGHAI, as_utc, utcnow
from tests.factories import checkin_json

URL = "/api/v1/fieldwork/checkins"
LAT, LON = 22.52, 113.03
M_PER_DEG_LAT = 111_195  # on the mean sphere geo.py uses
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(LAT))


@pytest.fixture
def inspector(make):
    return make.auth(make.token("inspector"))


@pytest.fixture
def admin(make):
    return make.auth(make.token("admin"))


def north(metres: float) -> float:
    return LAT + metres / M_PER_DEG_LAT


def flags_of(client, admin, body) -> set[str]:
    return {f["code"] for f in client.get(f"{URL}/{body['uuid']}", headers=admin).json["flags"]}


# --- the geometry helpers -------------------------------------------------------------------------
def test_haversine_matches_known_distances():
    assert geo.haversine_m(113.0, 22.0, 113.0, 23.0) == pytest.approx(111_195, rel=1e-3)
    assert geo.haversine_m(LON, LAT, LON, LAT) == 0


def test_distance_to_a_polygon_is_zero_inside_and_metres_outside():
    square = {"type": "Polygon", "coordinates": [[[113.0, 22.5], [113.01, 22.5], [113.01, 22.51], [113.0, 22.51], [113.0, 22.5]]]}
    assert geo.distance_to_geometry_m(square, 113.005, 22.505) == 0
    assert geo.distance_to_geometry_m(square, 113.005, 22.52) == pytest.approx(1112, rel=0.01)


# --- geofence -------------------------------------------------------------------------------------
@pytest.mark.parametrize("metres, accuracy, flagged", [
    (0, 5, False), (250, 10, False), (350, 10, True), (350, 100, False), (9000, 30, True),
], ids=["on the point", "within the radius", "beyond the radius", "beyond but within accuracy", "9 km away"])
def test_off_site_against_a_plots_point_takes_accuracy_into_account(client, make, inspector, admin, metres, accuracy, flagged):
    plot = make.plot(lon=LON, lat=LAT)
    body = checkin_json(plot, lat=north(metres), accuracy_m=accuracy)
    assert client.post(URL, json=body, headers=inspector).status_code == 201
    out = client.get(f"{URL}/{body['uuid']}", headers=admin).json
    assert out["distance_m"] == pytest.approx(metres, abs=5)
    assert ("off_site" in {f["code"] for f in out["flags"]}) is flagged


def test_off_site_against_a_plots_polygon(client, make, inspector, admin):
    half_lat, half_lon = 129 / M_PER_DEG_LAT, 129 / M_PER_DEG_LON  # a ~258 m square: ~100 亩
    ring = [[LON - half_lon, LAT - half_lat], [LON + half_lon, LAT - half_lat], [LON + half_lon, LAT + half_lat],
            [LON - half_lon, LAT + half_lat], [LON - half_lon, LAT - half_lat]]
    plot = make.plot(lon=LON, lat=LAT, area_mu=Decimal("100.00"), boundary={"type": "Polygon", "coordinates": [ring]})
    inside_corner = checkin_json(plot, lat=north(120), lon=LON + 120 / M_PER_DEG_LON, accuracy_m=5)
    just_outside = checkin_json(plot, lat=north(129 + 40), accuracy_m=5)
    far_outside = checkin_json(plot, lat=north(129 + 120), accuracy_m=10)
    r = client.post(URL + "/batch", json={"items": [inside_corner, just_outside, far_outside]}, headers=inspector)
    assert r.json["created"] == 3
    inside = client.get(f"{URL}/{inside_corner['uuid']}", headers=admin).json
    assert inside["distance_m"] == 0 and inside["flags"] == []
    assert flags_of(client, admin, just_outside) == set()
    far = client.get(f"{URL}/{far_outside['uuid']}", headers=admin).json
    assert far["distance_m"] == pytest.approx(120, abs=5)
    assert [f["code"] for f in far["flags"]] == ["off_site"] and "boundary" in far["flags"][0]["message"]


def test_a_target_without_a_location_and_a_coarse_fix_are_flagged(client, make, inspector, admin):
    operator = make.operator()  # registered without lon/lat
    body = checkin_json(operator=operator, accuracy_m=800)
    client.post(URL, json=body, headers=inspector)
    assert flags_of(client, admin, body) == {"target_location_unknown", "poor_accuracy"}
    located = make.operator(lon=113.05, lat=22.55)
    near = checkin_json(operator=located, lon=113.0501, lat=22.5501)
    client.post(URL, json=near, headers=inspector)
    assert flags_of(client, admin, near) == set()


# --- time -----------------------------------------------------------------------------------------
def at(delta: timedelta) -> str:
    return (utcnow() + delta).astimezone(SHANGHAI).isoformat(timespec="seconds")


@pytest.mark.parametrize("delta, flag", [
    (timedelta(hours=-1), None),
    (timedelta(minutes=2), None),
    (timedelta(hours=2), "captured_in_future"),
    (timedelta(days=-5), "late_sync"),
], ids=["an hour ago", "slightly ahead", "two hours ahead", "five days ago"])
def test_captured_at_far_from_received_at_is_flagged(client, make, inspector, admin, delta, flag):
    body = checkin_json(make.plot(), captured_at=at(delta))
    assert client.post(URL, json=body, headers=inspector).status_code == 201
    assert flags_of(client, admin, body) == ({flag} if flag else set())


def test_a_flagged_check_in_resent_keeps_its_first_answer(client, make, inspector, admin):
    body = checkin_json(make.plot(), captured_at=at(timedelta(days=-5)))
    first = client.post(URL, json=body, headers=inspector).json
    again = client.post(URL, json=body, headers=inspector)
    assert again.status_code == 200 and again.json["received_at"] == first["received_at"]


# --- links: label codes reported as counterfeit -----------------------------------------------------
def test_counterfeit_codes_are_suspicious_for_scans(client, session, make, inspector, admin):
    shop = make.operator()
    body = checkin_json(operator=shop, kind="shop", result="fail", findings=[
        {"kind": "counterfeit_labels", "note": "假标", "codes": ["ab12cd34", " XY99ZZ "]},
        {"kind": "label_misuse", "codes": ["MISUSED1"]},
    ])
    r = client.post(URL, json=body, headers=inspector)
    assert r.status_code == 201
    assert r.json["findings"][0]["codes"] == ["AB12CD34", "XY99ZZ"]
    assert service.suspicious_codes(session, ["AB12CD34", "xy99zz", "misused1", "GENUINE0"]) == {"AB12CD34", "XY99ZZ", "MISUSED1"}
    assert service.suspicious_codes(session, []) == set()
    # A rejected report no longer counts.
    client.post(f"{URL}/{body['uuid']}/review", json={"review_state": "rejected"}, headers=admin)
    assert service.suspicious_codes(session, ["AB12CD34"]) == set()


def test_a_corrected_report_counts_only_in_its_latest_version(client, session, make, inspector):
    shop = make.operator()
    v1 = checkin_json(operator=shop, kind="shop", findings=[{"kind": "counterfeit_labels", "codes": ["TYPO0001"]}])
    v2 = checkin_json(operator=shop, kind="shop", replaces=v1["uuid"],
                      findings=[{"kind": "counterfeit_labels", "codes": ["RIGHT001"]}])
    client.post(URL + "/batch", json={"items": [v1, v2]}, headers=inspector)
    assert service.suspicious_codes(session, ["TYPO0001", "RIGHT001"]) == {"RIGHT001"}


def test_codes_belong_only_on_code_findings(client, make, inspector):
    body = checkin_json(make.plot(), findings=[{"kind": "storage_problem", "codes": ["ABC"]}])
    r = client.post(URL, json=body, headers=inspector)
    assert r.status_code == 422 and "codes" in r.json["errors"]["findings"]["0"]


# --- links: plots found not planted ----------------------------------------------------------------
def test_plots_found_not_planted_are_reported_with_the_earliest_visit(client, session, make, inspector, admin):
    plot, other, planted = make.plot(), make.plot(), make.plot()
    early, late = at(timedelta(hours=-30)), at(timedelta(hours=-2))
    not_planted = {"kind": "plot_not_planted", "note": "地块荒废,未种植"}
    items = [
        checkin_json(plot, captured_at=late, result="fail", answers={"planted": False}, findings=[not_planted]),
        checkin_json(plot, captured_at=early, result="fail", answers={"planted": False}, findings=[not_planted]),
        checkin_json(planted),
        # Found from a neighbouring plot: the finding names the plot.
        checkin_json(planted, findings=[{"kind": "plot_not_planted", "plot_id": other.id}]),
    ]
    assert client.post(URL + "/batch", json={"items": items}, headers=inspector).json["created"] == 4
    found = service.unplanted_plots(session, [plot.id, other.id, planted.id, 2_000_000_000])
    assert set(found) == {plot.id, other.id}
    assert found[plot.id] == as_utc(datetime.fromisoformat(early))
    assert found[plot.id].tzinfo is not None
    client.post(f"{URL}/{items[3]['uuid']}/review", json={"review_state": "rejected"}, headers=admin)
    assert set(service.unplanted_plots(session, [other.id])) == set()


def test_a_not_planted_finding_must_name_a_plot(client, make, inspector):
    body = checkin_json(operator=make.operator(), findings=[{"kind": "plot_not_planted"}])
    r = client.post(URL, json=body, headers=inspector)
    assert r.status_code == 422 and "plot_id" in r.json["errors"]["findings"]["0"]
    body = checkin_json(make.plot(), findings=[{"kind": "plot_not_planted", "plot_id": 2_000_000_000}])
    assert client.post(URL, json=body, headers=inspector).status_code == 422
