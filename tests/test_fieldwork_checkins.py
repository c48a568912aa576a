"""Check-ins through the API: one at a time and in offline batches, idempotent on the phone's UUID."""
from __future__ import annotations

import math
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from backend.fieldwork.models import Checkin, Finding, FindingCode
from backend.timeutil import utcnow
from tests.factories import checkin_json

URL = "/api/v1/fieldwork/checkins"
BATCH = URL + "/batch"


@pytest.fixture
def inspector(make):
    return make.auth(make.token("inspector"))


@pytest.fixture
def admin(make):
    return make.auth(make.token("admin"))


@pytest.fixture
def plot(make):
    return make.plot()


def count(session, model=Checkin) -> int:
    return session.scalar(select(func.count()).select_from(model))


# --- one check-in ------------------------------------------------------------------------------
def test_an_inspector_sends_a_check_in_and_reads_it_back(client, session, inspector, admin, plot):
    body = checkin_json(plot, findings=[{"kind": "storage_problem", "note": "仓库漏水"}], note="第一次巡查",
                        photos_expected=2)
    r = client.post(URL, json=body, headers=inspector)
    assert r.status_code == 201, r.json
    out = r.json
    assert out["uuid"] == body["uuid"] and out["target_kind"] == "plot" and out["plot_id"] == plot.id
    assert out["captured_at"].endswith("+08:00") and out["received_at"].endswith("+08:00")
    assert out["checklist"] == "plot" and out["checklist_version"] == 1 and out["answers"]["planted"] is True
    assert out["findings"] == [{"kind": "storage_problem", "note": "仓库漏水", "plot_id": None, "codes": []}]
    assert out["photos_expected"] == 2 and out["photos_arrived"] == 0
    assert out["review_state"] == "new" and out["altitude_m"] == 12.5
    assert out["flags"] is None and out["distance_m"] is None, "flags are for admins"
    as_admin = client.get(f"{URL}/{body['uuid']}", headers=admin).json
    assert as_admin["flags"] == [] and as_admin["distance_m"] == 0.0
    assert client.get(f"{URL}/{body['uuid']}", headers=inspector).json["uuid"] == body["uuid"]


def test_a_resend_with_the_same_content_answers_the_same_check_in(client, session, inspector, plot):
    body = checkin_json(plot)
    first = client.post(URL, json=body, headers=inspector)
    # The same instant written in UTC instead of +08:00 is the same content.
    again = dict(body, captured_at=body["captured_at"])
    second = client.post(URL, json=again, headers=inspector)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json["id"] == first.json["id"] and second.json["received_at"] == first.json["received_at"]
    assert count(session) == 1


def test_the_same_uuid_with_different_content_is_a_409_and_changes_nothing(client, session, inspector, plot):
    body = checkin_json(plot)
    client.post(URL, json=body, headers=inspector)
    r = client.post(URL, json=dict(body, result="fail"), headers=inspector)
    assert r.status_code == 409 and r.json["reason"] == "fieldwork.conflict"
    assert "replaces" in r.json["errors"]["uuid"][0]
    session.expire_all()
    assert session.scalar(select(Checkin.result)) == "pass" and count(session) == 1


def test_an_edit_is_a_new_version_naming_the_one_it_replaces(client, session, inspector, admin, plot):
    v1 = checkin_json(plot)
    client.post(URL, json=v1, headers=inspector)
    v2 = checkin_json(plot, result="follow_up", replaces=v1["uuid"])
    r = client.post(URL, json=v2, headers=inspector)
    assert r.status_code == 201 and r.json["replaces"] == v1["uuid"]
    assert client.get(f"{URL}/{v1['uuid']}", headers=admin).json["replaced_by"] == v2["uuid"]
    listed = client.get(URL, headers=admin).json
    assert [c["uuid"] for c in listed] == [v2["uuid"]], "replaced versions are hidden by default"
    both = client.get(URL, query_string={"include_replaced": "true"}, headers=admin).json
    assert {c["uuid"] for c in both} == {v1["uuid"], v2["uuid"]}
    # A second edit of v1 (a fork) is refused; an edit of v2 is fine.
    fork = client.post(URL, json=checkin_json(plot, replaces=v1["uuid"]), headers=inspector)
    assert fork.status_code == 409 and fork.json["reason"] == "fieldwork.already_replaced"
    assert client.post(URL, json=checkin_json(plot, replaces=v2["uuid"]), headers=inspector).status_code == 201


def test_an_inspector_cannot_replace_someone_elses_check_in(client, make, inspector, plot):
    other = make.auth(make.token("inspector"))
    v1 = checkin_json(plot)
    client.post(URL, json=v1, headers=other)
    r = client.post(URL, json=checkin_json(plot, replaces=v1["uuid"]), headers=inspector)
    assert r.status_code == 422 and "replaces" in r.json["errors"]


def test_operator_premises_targets_warehouse_and_shop_with_a_description(client, make, inspector, admin):
    operator = make.operator(lon=113.05, lat=22.55)
    for kind in ("operator", "warehouse", "shop"):
        body = checkin_json(operator=operator, kind=kind, premises=f"{kind} 一号")
        r = client.post(URL, json=body, headers=inspector)
        assert r.status_code == 201, r.json
        assert r.json["operator_id"] == operator.id and r.json["premises"] == f"{kind} 一号"
        assert r.json["checklist"] == kind


def test_checklist_templates_are_listed_and_versioned(client, inspector):
    r = client.get("/api/v1/fieldwork/checklists", headers=inspector)
    assert r.status_code == 200
    assert {(t["name"], t["version"], t["current"]) for t in r.json} >= {
        ("plot", 1, True), ("operator", 1, True), ("warehouse", 1, True), ("shop", 1, True)}


# --- bad input, one at a time --------------------------------------------------------------------
BAD = {
    "latitude 91": ({"lat": 91}, "lat"),
    "longitude -181": ({"lon": -181}, "lon"),
    "NaN latitude": ({"lat": math.nan}, "lat"),
    "NaN as a string": ({"lon": "NaN"}, "lon"),
    "infinite accuracy": ({"accuracy_m": math.inf}, "accuracy_m"),
    "negative accuracy": ({"accuracy_m": -3}, "accuracy_m"),
    "captured in 2099": ({"captured_at": "2099-01-01T08:00:00+08:00"}, "captured_at"),
    "captured without an offset": ({"captured_at": "2026-11-27T08:00:00"}, "captured_at"),
    "captured in 1999": ({"captured_at": "1999-01-01T08:00:00+08:00"}, "captured_at"),
    "captured at the end of year 9999 west of UTC": ({"captured_at": "9999-12-31T23:00:00-10:00"}, "captured_at"),
    "captured at the start of year 1 east of UTC": ({"captured_at": "0001-01-01T00:30:00+08:00"}, "captured_at"),
    "not a uuid": ({"uuid": "abc"}, "uuid"),
    "unknown result": ({"result": "maybe"}, "result"),
    "unknown target kind": ({"target_kind": "moon"}, "target_kind"),
    "plot target without plot_id": ({"plot_id": None}, "plot_id"),
    "unknown checklist version": ({"checklist_version": 99}, "checklist_version"),
    "answers missing a required item": ({"answers": {"tree_count_estimate": 3}}, "answers"),
    "answers with an unknown item": ({"answers": {"planted": True, "colour": "red"}}, "answers"),
    "answers of the wrong type": ({"answers": {"planted": "yes"}}, "answers"),
    "a huge integer answer": ({"answers": {"planted": True, "tree_count_estimate": 10**400}}, "answers"),
    "a huge negative integer answer": ({"answers": {"planted": True, "tree_count_estimate": -10**400}}, "answers"),
    "counterfeit finding without codes": ({"findings": [{"kind": "counterfeit_labels"}]}, "findings"),
    "too many photos expected": ({"photos_expected": 51}, "photos_expected"),
    "altitude NaN": ({"altitude_m": math.nan}, "altitude_m"),
    "control characters in the note": ({"note": "a\x00b"}, "note"),
}


@pytest.mark.parametrize("change, field", BAD.values(), ids=BAD.keys())
def test_bad_check_ins_are_422_naming_the_field_and_store_nothing(client, session, inspector, plot, change, field):
    r = client.post(URL, json=checkin_json(plot, **change), headers=inspector)
    assert r.status_code == 422, r.json
    errors = r.json["errors"].get("json", r.json["errors"])
    assert field in errors, r.json
    assert count(session) == 0 and count(session, Finding) == 0


def test_an_unknown_target_is_422_unknown_target(client, session, make, inspector):
    r = client.post(URL, json=checkin_json(make.plot(), plot_id=2_000_000_000), headers=inspector)
    assert r.status_code == 422 and r.json["reason"] == "fieldwork.unknown_target"
    assert "plot_id" in r.json["errors"]
    r = client.post(URL, json=checkin_json(operator=make.operator(), operator_id=2_000_000_000), headers=inspector)
    assert r.status_code == 422 and "operator_id" in r.json["errors"]
    assert count(session) == 0


def test_raw_nan_in_the_json_body_is_refused(client, inspector, plot):
    text = (f'{{"uuid": "{uuid.uuid4()}", "target_kind": "plot", "plot_id": {plot.id}, '
            f'"captured_at": "2026-11-27T08:00:00+08:00", "lat": NaN, "lon": 113.03, "accuracy_m": 5, '
            f'"checklist_version": 1, "answers": {{"planted": true}}, "result": "pass"}}')
    r = client.post(URL, data=text, content_type="application/json", headers=inspector)
    assert r.status_code in (400, 422) and r.status_code != 500


# --- offline batches -----------------------------------------------------------------------------
def test_a_batch_answers_each_item_and_a_bad_item_never_blocks_good_ones(client, session, make, inspector, plot):
    good = [checkin_json(plot) for _ in range(3)]
    bad_lat = checkin_json(plot, lat=91)
    unknown = checkin_json(plot, plot_id=2_000_000_000)
    r = client.post(BATCH, json={"items": [good[0], bad_lat, good[1], unknown, "not an object", good[2]]}, headers=inspector)
    assert r.status_code == 200, r.json
    items = r.json["items"]
    assert [i["status"] for i in items] == ["created", "invalid", "created", "invalid", "invalid", "created"]
    assert [i["code"] for i in items] == [201, 422, 201, 422, 422, 201]
    assert items[1]["errors"] == {"lat": ["Must be greater than or equal to -90 and less than or equal to 90."]}
    assert items[1]["uuid"] == bad_lat["uuid"]
    assert items[3]["reason"] == "fieldwork.unknown_target"
    assert (r.json["created"], r.json["invalid"]) == (3, 3)
    assert count(session) == 3
    assert items[0]["checkin"]["uuid"] == good[0]["uuid"] and items[0]["checkin"]["photos_arrived"] == 0


def test_a_batch_with_a_huge_number_in_one_item_stores_the_good_ones(client, session, inspector, plot):
    good = [checkin_json(plot) for _ in range(3)]
    bad = checkin_json(plot)
    bad["answers"]["tree_count_estimate"] = 10**400
    r = client.post(BATCH, json={"items": [good[0], bad, good[1], good[2]]}, headers=inspector)
    assert r.status_code == 200, r.json
    assert (r.json["created"], r.json["invalid"]) == (3, 1)
    assert r.json["items"][1]["status"] == "invalid" and "answers" in r.json["items"][1]["errors"]
    assert count(session) == 3


def test_an_item_raising_an_unexpected_error_is_invalid_alone_and_logged(client, session, inspector, plot, monkeypatch, caplog):
    from backend.fieldwork import service

    real = service.location_flags

    def explode_on_one(lon, lat, *args):
        if lat == 22.6123:
            raise RuntimeError("boom")
        return real(lon, lat, *args)

    monkeypatch.setattr(service, "location_flags", explode_on_one)
    good = [checkin_json(plot) for _ in range(3)]
    bad = checkin_json(plot, lat=22.6123)
    r = client.post(BATCH, json={"items": [good[0], good[1], bad, good[2]]}, headers=inspector)
    assert r.status_code == 200, r.json
    assert (r.json["created"], r.json["invalid"]) == (3, 1)
    item = r.json["items"][2]
    assert (item["status"], item["code"], item["uuid"], item["reason"]) == ("invalid", 422, bad["uuid"], "fieldwork.invalid")
    assert count(session) == 3
    assert any("RuntimeError" in rec.getMessage() or rec.exc_info for rec in caplog.records if rec.name == service.log.name)


def test_resending_a_whole_batch_creates_nothing_twice(client, session, inspector, plot):
    items = [checkin_json(plot) for _ in range(20)]
    first = client.post(BATCH, json={"items": items}, headers=inspector).json
    second = client.post(BATCH, json={"items": items}, headers=inspector).json
    assert first["created"] == 20 and second["existing"] == 20 and second["created"] == 0
    assert [i["checkin"]["id"] for i in first["items"]] == [i["checkin"]["id"] for i in second["items"]]
    assert count(session) == 20


def test_a_partly_synced_batch_is_completed_by_its_resend(client, session, inspector, plot):
    items = [checkin_json(plot) for _ in range(6)]
    client.post(BATCH, json={"items": items[:4]}, headers=inspector)
    r = client.post(BATCH, json={"items": items}, headers=inspector).json
    assert [i["status"] for i in r["items"]] == ["existing"] * 4 + ["created"] * 2
    assert count(session) == 6


def test_the_same_uuid_twice_in_one_batch(client, session, inspector, plot):
    a = checkin_json(plot)
    changed = dict(a, result="fail")
    r = client.post(BATCH, json={"items": [a, a, changed]}, headers=inspector).json
    assert [i["status"] for i in r["items"]] == ["created", "existing", "conflict"]
    assert r["items"][1]["checkin"]["id"] == r["items"][0]["checkin"]["id"]
    assert r["items"][2]["code"] == 409 and r["items"][2]["reason"] == "fieldwork.conflict"
    assert count(session) == 1


def test_a_version_and_its_replacement_in_one_batch(client, session, inspector, plot):
    v1 = checkin_json(plot)
    v2 = checkin_json(plot, replaces=v1["uuid"], result="fail")
    fork = checkin_json(plot, replaces=v1["uuid"])
    r = client.post(BATCH, json={"items": [v1, v2, fork]}, headers=inspector).json
    assert [i["status"] for i in r["items"]] == ["created", "created", "conflict"]
    assert r["items"][2]["reason"] == "fieldwork.already_replaced"
    assert count(session) == 2


def test_a_batch_of_501_is_refused_whole(client, session, inspector, plot):
    items = [checkin_json(plot) for _ in range(501)]
    r = client.post(BATCH, json={"items": items}, headers=inspector)
    assert r.status_code == 413 and r.json["reason"] == "fieldwork.batch_too_large"
    assert "500" in r.json["message"]
    assert count(session) == 0


def test_a_batch_of_500_goes_through_with_findings_and_codes(client, session, inspector, plot):
    items = [checkin_json(plot, findings=[{"kind": "counterfeit_labels", "codes": [f"X{n}A", f"X{n}B"]}])
             for n in range(500)]
    r = client.post(BATCH, json={"items": items}, headers=inspector)
    assert r.status_code == 200 and r.json["created"] == 500
    assert count(session) == 500 and count(session, FindingCode) == 1000


def test_a_batch_that_is_not_a_list_is_422(client, inspector):
    for body in ({"items": "x"}, {}, {"items": {"a": 1}}):
        r = client.post(BATCH, json=body, headers=inspector)
        assert r.status_code == 422


def test_another_inspectors_uuid_is_a_conflict_not_a_copy(client, session, make, inspector, plot):
    other = make.auth(make.token("inspector"))
    body = checkin_json(plot)
    client.post(URL, json=body, headers=other)
    r = client.post(URL, json=body, headers=inspector)
    assert r.status_code == 409
    assert count(session) == 1


# --- who sees what ------------------------------------------------------------------------------
def test_inspectors_see_only_their_own_check_ins(client, make, inspector, plot):
    other = make.auth(make.token("inspector"))
    mine, theirs = checkin_json(plot), checkin_json(plot)
    client.post(URL, json=mine, headers=inspector)
    client.post(URL, json=theirs, headers=other)
    assert [c["uuid"] for c in client.get(URL, headers=inspector).json] == [mine["uuid"]]
    r = client.get(f"{URL}/{theirs['uuid']}", headers=inspector)
    assert r.status_code == 404 and r.json["reason"] == "fieldwork.not_found"


def test_operators_see_approved_check_ins_at_their_own_premises_only(client, make, inspector, admin, plot):
    op_a, op_b = make.operator(), make.operator()
    operator_a = make.auth(make.token("operator", op_a))
    at_a, at_b, at_plot = checkin_json(operator=op_a), checkin_json(operator=op_b), checkin_json(plot)
    for body in (at_a, at_b, at_plot):
        client.post(URL, json=body, headers=inspector)
    assert client.get(URL, headers=operator_a).json == []
    assert client.get(f"{URL}/{at_a['uuid']}", headers=operator_a).status_code == 404, "not yet approved"
    for body in (at_a, at_b, at_plot):
        r = client.post(f"{URL}/{body['uuid']}/review", json={"review_state": "approved"}, headers=admin)
        assert r.status_code == 200 and r.json["review_state"] == "approved"
    assert [c["uuid"] for c in client.get(URL, headers=operator_a).json] == [at_a["uuid"]]
    assert client.get(f"{URL}/{at_a['uuid']}", headers=operator_a).json["flags"] is None
    assert client.get(f"{URL}/{at_b['uuid']}", headers=operator_a).status_code == 404


def test_only_admins_review_and_agents_and_anonymous_see_nothing(client, make, inspector, plot):
    body = checkin_json(plot)
    client.post(URL, json=body, headers=inspector)
    r = client.post(f"{URL}/{body['uuid']}/review", json={"review_state": "approved"}, headers=inspector)
    assert r.status_code == 403
    assert client.get(URL).status_code == 401
    assert client.get(URL, headers=make.auth(make.token("agent"))).status_code == 403


def test_admins_filter_check_ins(client, make, inspector, admin, plot):
    a = checkin_json(plot, result="fail")
    b = checkin_json(plot, lat=22.60)  # ~9 km away: flagged off-site
    client.post(BATCH, json={"items": [a, b]}, headers=inspector)
    assert [c["uuid"] for c in client.get(URL, query_string={"result": "fail"}, headers=admin).json] == [a["uuid"]]
    assert [c["uuid"] for c in client.get(URL, query_string={"flagged": "true"}, headers=admin).json] == [b["uuid"]]
    assert len(client.get(URL, query_string={"plot_id": plot.id}, headers=admin).json) == 2
    assert client.get(URL, query_string={"plot_id": plot.id + 1}, headers=admin).json == []
    since = (utcnow() + timedelta(days=1)).isoformat()
    assert client.get(URL, query_string={"since": since}, headers=admin).json == []


@pytest.mark.parametrize("key, value", [("since", "0001-01-01T00:00:00+08:00"), ("until", "9999-12-31T23:00:00-10:00"),
                                        ("since", "1999-12-31T08:00:00+08:00"), ("until", "2101-01-01T08:00:00+08:00")])
def test_list_filters_out_of_range_are_422_naming_the_filter(client, admin, key, value):
    r = client.get(URL, query_string={key: value}, headers=admin)
    assert r.status_code == 422, r.json
    assert key in r.json["errors"]["query"]
