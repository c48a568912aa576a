"""Inspection tasks and the offline pack (issue 5 item 6), the GeoJSON map (item 7)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from backend.timeutil import SHANGHAI, utcnow
from tests.factories import checkin_json, user_of

TASKS = "/api/v1/fieldwork/tasks"
CHECKINS = "/api/v1/fieldwork/checkins"


@pytest.fixture
def admin(make):
    return make.auth(make.token("admin"))


@pytest.fixture
def inspector_token(make):
    return make.token("inspector")


@pytest.fixture
def inspector(make, inspector_token):
    return make.auth(inspector_token)


def task_body(assignee_id: int, plot=None, operator=None, **kw) -> dict:
    target = {"target_kind": "plot", "plot_id": plot.id} if plot else {"target_kind": "warehouse", "operator_id": operator.id,
                                                                         "premises": "二号仓"}
    return {"assignee_id": assignee_id, **target, "due_date": "2030-06-30", "instructions": "核查种植情况", **kw}


def test_admin_assigns_a_task_and_the_inspector_downloads_its_offline_pack(client, session, make, admin, inspector, inspector_token):
    plot, operator = make.plot(), make.operator(lon=113.05, lat=22.55)
    me = user_of(session, inspector_token)
    r1 = client.post(TASKS, json=task_body(me.id, plot=plot), headers=admin)
    r2 = client.post(TASKS, json=task_body(me.id, operator=operator), headers=admin)
    assert (r1.status_code, r2.status_code) == (201, 201)
    assert r1.json["state"] == "open" and r1.json["plot_id"] == plot.id
    other = make.auth(make.token("inspector"))
    assert client.get(TASKS, headers=other).json == []
    assert {t["id"] for t in client.get(TASKS, headers=inspector).json} == {r1.json["id"], r2.json["id"]}
    pack = client.get("/api/v1/fieldwork/offline-pack", headers=inspector).json
    assert {t["id"] for t in pack["tasks"]} == {r1.json["id"], r2.json["id"]}
    assert pack["plots"][0]["id"] == plot.id and pack["plots"][0]["lat"] == plot.lat and pack["plots"][0]["town"]
    assert pack["operators"][0]["id"] == operator.id and pack["operators"][0]["lon"] == 113.05
    assert {c["name"] for c in pack["checklists"]} == {"plot", "operator", "warehouse", "shop"}


def test_a_check_in_completes_its_task(client, session, make, admin, inspector, inspector_token):
    plot = make.plot()
    me = user_of(session, inspector_token)
    task = client.post(TASKS, json=task_body(me.id, plot=plot), headers=admin).json
    body = checkin_json(plot, task_id=task["id"])
    r = client.post(CHECKINS, json=body, headers=inspector)
    assert r.status_code == 201 and r.json["task_id"] == task["id"]
    [done] = client.get(TASKS, headers=admin).json
    assert done["state"] == "done" and done["done_at"]
    assert client.get("/api/v1/fieldwork/offline-pack", headers=inspector).json["tasks"] == []


def test_a_check_in_cannot_name_a_task_for_another_target_or_inspector_or_a_cancelled_one(client, session, make, admin, inspector, inspector_token):
    plot, elsewhere = make.plot(), make.plot()
    me = user_of(session, inspector_token)
    mine = client.post(TASKS, json=task_body(me.id, plot=plot), headers=admin).json
    other_user = user_of(session, make.token("inspector"))
    theirs = client.post(TASKS, json=task_body(other_user.id, plot=plot), headers=admin).json
    r = client.post(CHECKINS, json=checkin_json(elsewhere, task_id=mine["id"]), headers=inspector)
    assert r.status_code == 422 and "another target" in r.json["errors"]["task_id"][0]
    r = client.post(CHECKINS, json=checkin_json(plot, task_id=theirs["id"]), headers=inspector)
    assert r.status_code == 422 and "task_id" in r.json["errors"]
    cancelled = client.post(f"{TASKS}/{mine['id']}/cancel", headers=admin)
    assert cancelled.status_code == 200 and cancelled.json["state"] == "cancelled"
    r = client.post(CHECKINS, json=checkin_json(plot, task_id=mine["id"]), headers=inspector)
    assert r.status_code == 422 and "cancelled" in r.json["errors"]["task_id"][0]


def test_tasks_go_to_active_inspectors_and_existing_targets(client, session, make, admin):
    plot = make.plot()
    operator_user = user_of(session, make.token("operator"))
    r = client.post(TASKS, json=task_body(operator_user.id, plot=plot), headers=admin)
    assert r.status_code == 422 and r.json["reason"] == "fieldwork.task_invalid"
    inspector_user = user_of(session, make.token("inspector"))
    r = client.post(TASKS, json=task_body(inspector_user.id, plot=plot, plot_id=2_000_000_000), headers=admin)
    assert r.status_code == 422 and r.json["reason"] == "fieldwork.unknown_target"
    r = client.post(TASKS, json=task_body(inspector_user.id, plot=plot, due_date="not a date"), headers=admin)
    assert r.status_code == 422


# --- the map --------------------------------------------------------------------------------------
def test_check_ins_as_geojson_filtered_by_town_result_and_date(client, make, admin, inspector):
    town_a, town_b = make.town(), make.town()
    plot_a = make.plot(make.grower(make.village(town_a)))
    shop_b = make.operator(town_b, lon=113.1, lat=22.6)
    old = (utcnow() - timedelta(days=10)).astimezone(SHANGHAI).isoformat(timespec="seconds")
    items = [checkin_json(plot_a, result="fail"), checkin_json(operator=shop_b, kind="shop"),
             checkin_json(plot_a, captured_at=old)]
    client.post(CHECKINS + "/batch", json={"items": items}, headers=inspector)
    r = client.get("/api/v1/fieldwork/map", headers=admin)
    assert r.status_code == 200 and r.json["type"] == "FeatureCollection"
    assert {f["id"] for f in r.json["features"]} >= {i["uuid"] for i in items}
    feature = next(f for f in r.json["features"] if f["id"] == items[1]["uuid"])
    assert feature["geometry"] == {"type": "Point", "coordinates": [113.1, 22.6]}
    assert feature["properties"]["town_id"] == town_b.id and feature["properties"]["target_kind"] == "shop"

    def ids(**query):
        return {f["id"] for f in client.get("/api/v1/fieldwork/map", query_string=query, headers=admin).json["features"]}

    assert ids(town_id=town_a.id) == {items[0]["uuid"], items[2]["uuid"]}
    assert ids(town_id=town_a.id, result="fail") == {items[0]["uuid"]}
    since = (utcnow() - timedelta(days=1)).isoformat()
    assert ids(town_id=town_a.id, since=since) == {items[0]["uuid"]}
    assert client.get("/api/v1/fieldwork/map", query_string={"town_id": "x"}, headers=admin).status_code == 422


@pytest.mark.parametrize("key, value", [("since", "0001-01-01T00:00:00+08:00"), ("until", "9999-12-31T23:00:00-10:00"),
                                        ("until", "0001-01-01T00:30:00+08:00"), ("since", "9999-12-31T23:00:00-10:00")])
def test_map_date_filters_out_of_range_are_422_naming_the_filter(client, admin, key, value):
    r = client.get("/api/v1/fieldwork/map", query_string={key: value}, headers=admin)
    assert r.status_code == 422, r.json
    assert key in r.json["errors"]["query"]


def test_the_offline_pack_takes_as_many_queries_for_23_tasks_as_for_3(client, session, make, admin, inspector, inspector_token):
    """Each plot has its own grower, village and town: loaded lazily they would cost 3 queries a plot."""
    from sqlalchemy import event

    from backend.extensions import db

    me = user_of(session, inspector_token)

    def pack_queries(n_plots: int, n_operators: int) -> int:
        for _ in range(n_plots):
            assert client.post(TASKS, json=task_body(me.id, plot=make.plot()), headers=admin).status_code == 201
        for _ in range(n_operators):
            operator = make.operator(make.town(), lon=113.05, lat=22.55)
            assert client.post(TASKS, json=task_body(me.id, operator=operator), headers=admin).status_code == 201
        assert client.get("/api/v1/fieldwork/offline-pack", headers=inspector).status_code == 200  # token's first use writes
        session.expire_all()
        statements = []

        def count(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            r = client.get("/api/v1/fieldwork/offline-pack", headers=inspector)
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        assert r.status_code == 200
        assert all(p["village"] and p["town"] and p["grower"] for p in r.json["plots"])
        assert all(o["town"] for o in r.json["operators"])
        return len(statements)

    few = pack_queries(2, 1)  # 3 tasks
    many = pack_queries(18, 2)  # 23 tasks
    assert many == few, (few, many)
