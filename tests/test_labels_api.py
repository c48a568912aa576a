"""Label applications (申领), approval and issue, range operations: the API on both backends."""
from __future__ import annotations

import uuid
from datetime import date

import pytest
from sqlalchemy import func, select

from backend.labels.models import Label, LabelApplication, LabelBatch

API = "/api/v1/labels"


LICENCE = {"licence_status": "active", "licence_no": "GI-0001", "licence_valid_from": date(2020, 1, 1),
           "licence_valid_until": date(2099, 12, 31)}


@pytest.fixture
def licensed(make):
    return make.operator(**LICENCE)


@pytest.fixture
def people(make, licensed):
    return {"admin": make.auth(make.token("admin")), "op": make.auth(make.token("operator", licensed)),
            "agent": make.auth(make.token("agent", licensed)), "other": make.auth(make.token("operator", make.operator(**LICENCE)))}


def apply(client, headers, **kw):
    return client.post(f"{API}/applications", json={"product": "新会陈皮 (大红皮) 250 g", "quantity": 100, **kw},
                       headers=headers)


def issue(client, people, quantity=30, approve=None):
    r = apply(client, people["op"], quantity=quantity)
    assert r.status_code == 201, r.json
    r = client.post(f"{API}/applications/{r.json['id']}/approve", json={"quantity": approve}, headers=people["admin"])
    assert r.status_code == 201, r.json
    return r.json


def test_apply_approve_fewer_and_the_batch_is_issued(client, session, people):
    r = apply(client, people["op"], quantity=50)
    assert r.status_code == 201 and r.json["status"] == "applied" and r.json["template"] == "a4-3x8-70x37"
    app_id = r.json["id"]
    r = client.post(f"{API}/applications/{app_id}/approve", json={"quantity": 40}, headers=people["admin"])
    assert r.status_code == 201, r.json
    assert (r.json["first_serial"], r.json["last_serial"], r.json["quantity"]) == (1, 40, 40)
    assert r.json["counts"] == {"issued": 40}
    got = client.get(f"{API}/applications/{app_id}", headers=people["op"]).json
    assert got["status"] == "approved" and got["approved_quantity"] == 40 and got["batch_id"] == r.json["id"]
    labels = client.get(f"{API}/batches/{r.json['id']}/labels", headers=people["op"])
    assert labels.status_code == 200 and len(labels.json) == 10 and labels.json[0]["serial_text"].endswith("-000001")


def test_applying_without_an_active_in_date_licence_is_refused(client, make, session):
    for kw in ({"licence_status": "none"}, {"licence_status": "suspended"},
               {**LICENCE, "licence_valid_from": date(2019, 1, 1), "licence_valid_until": date(2020, 1, 1)}):
        op = make.operator(**kw)
        r = apply(client, make.auth(make.token("operator", op)))
        assert r.status_code == 422 and r.json["reason"] == "labels.licence_required", r.json
    assert session.scalar(select(func.count()).select_from(LabelApplication)) == 0


def test_approving_more_than_applied_or_twice_is_refused(client, session, people):
    app_id = apply(client, people["op"], quantity=10).json["id"]
    r = client.post(f"{API}/applications/{app_id}/approve", json={"quantity": 11}, headers=people["admin"])
    assert r.status_code == 422 and r.json["reason"] == "labels.over_approval"
    assert session.scalar(select(func.count()).select_from(LabelBatch)) == 0
    assert client.post(f"{API}/applications/{app_id}/approve", json={}, headers=people["admin"]).status_code == 201
    r = client.post(f"{API}/applications/{app_id}/reject", json={"reason": "x"}, headers=people["admin"])
    assert r.status_code == 409 and r.json["reason"] == "labels.already_decided"


def test_reject_with_a_reason(client, people):
    app_id = apply(client, people["op"]).json["id"]
    assert client.post(f"{API}/applications/{app_id}/reject", json={}, headers=people["admin"]).status_code == 422
    r = client.post(f"{API}/applications/{app_id}/reject", json={"reason": "产品名称不符"}, headers=people["admin"])
    assert r.status_code == 200 and r.json["status"] == "rejected" and r.json["reason"] == "产品名称不符"


def test_limits_per_application_and_per_operator_year(client, app, session, people):
    cfg = app.config["CHENPI"]
    old = (cfg.LABEL_MAX_PER_APPLICATION, cfg.LABEL_MAX_PER_OPERATOR_YEAR)
    cfg.LABEL_MAX_PER_APPLICATION, cfg.LABEL_MAX_PER_OPERATOR_YEAR = 100, 150
    try:
        r = apply(client, people["op"], quantity=101)
        assert r.status_code == 422 and r.json["reason"] == "labels.limit_exceeded"
        issue(client, people, quantity=100)
        app_id = apply(client, people["op"], quantity=60).json["id"]
        r = client.post(f"{API}/applications/{app_id}/approve", json={}, headers=people["admin"])
        assert r.status_code == 422 and r.json["reason"] == "labels.limit_exceeded"
        assert client.post(f"{API}/applications/{app_id}/approve", json={"quantity": 50},
                           headers=people["admin"]).status_code == 201
    finally:
        cfg.LABEL_MAX_PER_APPLICATION, cfg.LABEL_MAX_PER_OPERATOR_YEAR = old


def test_a_lot_of_another_operator_or_an_unknown_template_is_refused(client, make, people):
    other_lot = make.lot(make.operator())
    r = apply(client, people["op"], lot_id=other_lot.id)
    assert r.status_code == 422 and r.json["reason"] == "labels.invalid_reference" and "lot_id" in r.json["errors"]
    r = apply(client, people["op"], template="no-such-template")
    assert r.status_code == 422 and "template" in str(r.json["errors"])
    r = apply(client, people["op"], template="../../etc/passwd")
    assert r.status_code == 422 and "template" in str(r.json["errors"])


def test_a_template_the_texts_do_not_fit_is_refused_at_application(client, people):
    r = apply(client, people["op"], product="陈" * 200, template="roll-40x40")
    assert r.status_code == 422 and r.json["reason"].startswith("labels."), r.json


def test_the_same_client_uuid_answers_as_before_and_409s_with_other_content(client, session, people):
    u = str(uuid.uuid4())
    first = apply(client, people["op"], client_uuid=u)
    again = apply(client, people["op"], client_uuid=u)
    assert first.status_code == 201 and again.status_code == 200 and again.json["id"] == first.json["id"]
    r = apply(client, people["op"], client_uuid=u, quantity=7)
    assert r.status_code == 409 and r.json["reason"] == "labels.uuid_conflict"


def test_range_operations_follow_the_state_machine(client, session, people):
    batch = issue(client, people, 30)
    url = f"{API}/batches/{batch['id']}"
    r = client.post(f"{url}/activate", json={"first": 1, "last": 5, "pack_g": 250}, headers=people["op"])
    assert r.status_code == 409 and r.json["reason"] == "labels.state_conflict"  # not printed yet
    session.execute(Label.__table__.update().where(Label.batch_id == batch["id"], Label.serial <= 20)
                    .values(state="printed", print_count=1))
    r = client.post(f"{url}/activate", json={"first": 1, "last": 10, "pack_g": 250}, headers=people["op"])
    assert r.status_code == 200 and r.json["changed"] == 10
    # 11–25 straddles printed and issued: activation refuses the whole range, nothing changes
    r = client.post(f"{url}/activate", json={"first": 11, "last": 25, "pack_g": 250}, headers=people["op"])
    assert r.status_code == 409 and "5 issued" in r.json["errors"]["state"][0]
    r = client.post(f"{url}/report", json={"first": 21, "last": 22, "state": "stolen"}, headers=people["op"])
    assert r.status_code == 200
    r = client.post(f"{url}/void", json={"first": 20, "last": 21, "reason": "损坏"}, headers=people["op"])
    assert r.status_code == 409  # 21 is stolen
    r = client.post(f"{url}/void", json={"first": 29, "last": 31, "reason": "x"}, headers=people["op"])
    assert r.status_code == 422 and r.json["reason"] == "labels.range_invalid"
    counts = client.get(url, headers=people["op"]).json["counts"]
    assert counts == {"activated": 10, "printed": 10, "issued": 8, "stolen": 2}
    activated = session.scalars(select(Label).where(Label.batch_id == batch["id"], Label.state == "activated")).all()
    assert all(l.pack_g == 250 and l.activated_at is not None for l in activated)


def test_only_printed_labels_can_be_activated(client, session, make, licensed, people):
    from tests.factories import label_batch

    issued = label_batch(session, licensed, 6)
    r = client.post(f"{API}/batches/{issued.id}/activate", json={"first": 1, "last": 6, "pack_g": 100}, headers=people["op"])
    assert r.status_code == 409 and r.json["reason"] == "labels.state_conflict"
    assert "6 not printed (6 issued)" in r.json["errors"]["state"][0], r.json
    assert client.get(f"{API}/batches/{issued.id}", headers=people["op"]).json["counts"] == {"issued": 6}
    printed = label_batch(session, licensed, 6, printed=True)
    session.execute(Label.__table__.update().where(Label.batch_id == printed.id, Label.serial == 6)
                    .values(state="voided"))
    session.commit()  # (a refused request rolls the session back)
    r = client.post(f"{API}/batches/{printed.id}/activate", json={"first": 1, "last": 6, "pack_g": 100}, headers=people["op"])
    assert r.status_code == 409 and "1 not printed (1 voided)" in r.json["errors"]["state"][0], r.json
    r = client.post(f"{API}/batches/{printed.id}/activate", json={"first": 1, "last": 5, "pack_g": 100},
                    headers=people["op"])
    assert r.status_code == 200 and r.json["changed"] == 5
    assert client.get(f"{API}/batches/{printed.id}", headers=people["op"]).json["counts"] == {"activated": 5,
                                                                                             "voided": 1}


def test_another_operators_batch_is_not_found(client, people):
    batch = issue(client, people, 5)
    url = f"{API}/batches/{batch['id']}"
    assert client.get(url, headers=people["other"]).status_code == 404
    r = client.post(f"{url}/void", json={"reason": "x"}, headers=people["other"])
    assert r.status_code == 404 and r.json["reason"] == "labels.not_found"
    assert client.get(url, headers=people["agent"]).status_code == 200


def test_voiding_the_batch(client, people):
    batch = issue(client, people, 5)
    url = f"{API}/batches/{batch['id']}"
    r = client.post(f"{url}/void-batch", json={"reason": "印刷错误"}, headers=people["op"])
    assert r.status_code == 200 and r.json["status"] == "voided" and r.json["counts"] == {"voided": 5}
    r = client.post(f"{url}/void-batch", json={"reason": "again"}, headers=people["op"])
    assert r.status_code == 409 and r.json["reason"] == "labels.batch_voided"
