"""Warehouses and peel lots (批次): mass balance, the peel ratio, age, voiding, tenancy, and two
lots made at once from the same fruit."""
from __future__ import annotations

import threading
import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from backend.chain import rules
from backend.chain.models import Lot, LotInput, Warehouse

LOTS = "/api/v1/chain/lots"
WAREHOUSES = "/api/v1/chain/warehouses"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def op(make):
    """Operator A: its token, a warehouse and two 1,000 kg 微红 trades of season 2025."""

    class Ctx:
        pass

    ctx = Ctx()
    ctx.operator = make.operator()
    ctx.token = make.token("operator", ctx.operator)
    ctx.warehouse = make.warehouse(ctx.operator)
    ctx.t1 = make.trade(ctx.operator, trade_date=date(2025, 10, 20))
    ctx.t2 = make.trade(ctx.operator, trade_date=date(2025, 11, 2))
    return ctx


def lot_body(op, **kw) -> dict:
    return {"client_uuid": str(uuid.uuid4()), "code": "xh-2025-001", "warehouse_id": op.warehouse.id,
            "stage": "wei_hong", "production_date": "2025-12-01", "output_kg": "80",
            "inputs": [{"trade_id": op.t1.id, "kg": "1000"}, {"trade_id": op.t2.id, "kg": "600"}], **kw}


# --- warehouses --------------------------------------------------------------------------------
def test_warehouses_belong_to_their_operator(client, session, make, op):
    h = bearer(op.token)
    r = client.post(WAREHOUSES, json={"name": "二号仓", "address": "会城"}, headers=h)
    assert r.status_code == 201 and r.json["operator_id"] == op.operator.id
    dup = client.post(WAREHOUSES, json={"name": "二号仓"}, headers=h)
    assert dup.status_code == 409 and "name" in dup.json["errors"]
    other = make.token("operator")
    assert client.post(WAREHOUSES, json={"name": "二号仓"}, headers=bearer(other)).status_code == 201  # names are per operator
    assert client.get(f"{WAREHOUSES}/{r.json['id']}", headers=bearer(other)).status_code == 404
    assert client.patch(f"{WAREHOUSES}/{r.json['id']}", json={"name": "x"}, headers=bearer(other)).status_code == 404
    assert client.post(WAREHOUSES, json={"name": "x", "operator_id": op.operator.id}, headers=bearer(other)).status_code == 403
    assert client.post(WAREHOUSES, json={"name": "坏\x00名"}, headers=h).status_code == 422
    patched = client.patch(f"{WAREHOUSES}/{r.json['id']}", json={"name": "三号仓"}, headers=h)
    assert patched.status_code == 200 and patched.json["name"] == "三号仓"
    assert {w["id"] for w in client.get(WAREHOUSES, headers=h).json} == {op.warehouse.id, r.json["id"]}


# --- making lots -------------------------------------------------------------------------------
def test_an_operator_makes_a_lot_from_its_fruit(client, op):
    r = client.post(LOTS, json=lot_body(op), headers=bearer(op.token))
    assert r.status_code == 201, r.json
    lot = r.json
    assert lot["code"] == "XH-2025-001" and lot["operator_id"] == op.operator.id
    assert (lot["input_kg"], lot["output_kg"], lot["peel_ratio"]) == ("1600.000", "80.000", "0.0500")
    assert (lot["stage"], lot["season"], lot["harvest_date"]) == ("wei_hong", 2025, "2025-11-02")
    assert lot["inputs"] == [{"trade_id": op.t1.id, "kg": "1000.000"}, {"trade_id": op.t2.id, "kg": "600.000"}]
    assert lot["status"] == "current" and lot["voided_by"] is None
    expected = rules.age(date(2025, 11, 2))
    assert lot["age"] == expected and lot["age"]["grade"] == ("陈皮" if expected["years"] >= 3 else "柑皮")
    assert client.get(f"{LOTS}/{lot['id']}", headers=bearer(op.token)).json == lot


def test_age_is_computed_from_the_harvest_date():
    assert rules.age(date(2022, 12, 1), on=date(2025, 11, 30)) == {"years": 2, "days": 1095, "grade": "柑皮"}
    assert rules.age(date(2022, 12, 1), on=date(2025, 12, 1))["grade"] == "陈皮"
    assert rules.age(date(2024, 2, 29), on=date(2025, 2, 28))["years"] == 0


def test_a_retried_lot_answers_the_same_and_other_content_conflicts(client, session, op):
    body = lot_body(op)
    first = client.post(LOTS, json=body, headers=bearer(op.token))
    again = client.post(LOTS, json={**body, "output_kg": "80.000"}, headers=bearer(op.token))
    assert (first.status_code, again.status_code) == (201, 200) and again.json == first.json
    other = client.post(LOTS, json={**body, "output_kg": "79"}, headers=bearer(op.token))
    assert other.status_code == 409 and other.json["reason"] == "chain.uuid_conflict"
    assert count(session, Lot) == 1 and count(session, LotInput) == 2


def test_fruit_cannot_be_used_twice(client, session, op):
    h = bearer(op.token)
    assert client.post(LOTS, json=lot_body(op), headers=h).status_code == 201
    # t2 has 400 kg left
    r = client.post(LOTS, json=lot_body(op, code="B", output_kg="20", inputs=[{"trade_id": op.t2.id, "kg": "401"}]),
                    headers=h)
    assert r.status_code == 422 and r.json["reason"] == "chain.fruit_exhausted"
    assert "inputs.0.kg" in r.json["errors"] and "400.000 kg left" in r.json["errors"]["inputs.0.kg"][0]
    r = client.post(LOTS, json=lot_body(op, code="B", output_kg="20", inputs=[{"trade_id": op.t2.id, "kg": "400"}]),
                    headers=h)
    assert r.status_code == 201
    assert count(session, Lot) == 2


def test_output_above_the_configured_ratio_is_refused(app, client, session, op, monkeypatch):
    h = bearer(op.token)
    r = client.post(LOTS, json=lot_body(op, output_kg="112.001"), headers=h)  # 7 % of 1,600 is 112
    assert r.status_code == 422 and r.json["reason"] == "chain.output_implausible"
    assert "7 %" in r.json["errors"]["output_kg"][0]
    monkeypatch.setattr(app.config["CHENPI"], "CHAIN_MAX_PEEL_RATIO", Decimal("0.06"))
    assert client.post(LOTS, json=lot_body(op, output_kg="100"), headers=h).status_code == 422
    assert client.post(LOTS, json=lot_body(op, output_kg="96"), headers=h).status_code == 201


def test_bad_lots_are_refused_naming_the_field_and_nothing_is_written(client, session, make, op):
    foreign = make.trade(make.operator())
    da_hong = make.trade(op.operator, trade_date=date(2025, 12, 1), stage="da_hong")
    older = make.trade(op.operator, trade_date=date(2024, 11, 1))
    their_warehouse = make.warehouse(make.operator())
    future = (rules.today() + timedelta(days=1)).isoformat()
    one = lambda trade, kg="100": [{"trade_id": trade.id, "kg": kg}]  # noqa: E731
    cases = [
        ({"output_kg": "0"}, "output_kg"),
        ({"output_kg": "-1"}, "output_kg"),
        ({"output_kg": "1e30"}, "output_kg"),
        ({"inputs": []}, "inputs"),
        ({"inputs": [{"trade_id": op.t1.id, "kg": "0"}]}, "inputs"),
        ({"inputs": [{"trade_id": op.t1.id, "kg": "-3"}]}, "inputs"),
        ({"inputs": one(foreign), "output_kg": "5"}, "inputs.0.trade_id"),
        ({"inputs": one(op.t1) + [{"trade_id": 2_000_000_000, "kg": "1"}], "output_kg": "5"}, "inputs.1.trade_id"),
        ({"inputs": one(op.t1) + one(op.t1), "output_kg": "5"}, "inputs.1.trade_id"),
        ({"inputs": one(op.t1, "1000.001"), "output_kg": "5"}, "inputs.0.kg"),
        ({"inputs": one(op.t1) + one(da_hong), "output_kg": "5"}, "inputs.1.trade_id"),
        ({"inputs": one(op.t1) + one(older), "output_kg": "5"}, "inputs.1.trade_id"),
        ({"warehouse_id": their_warehouse.id}, "warehouse_id"),
        ({"warehouse_id": 2_000_000_000}, "warehouse_id"),
        ({"production_date": future}, "production_date"),
        ({"production_date": "2025-11-01"}, "production_date"),  # before t2 was bought
        ({"code": "坏\x1b码"}, "code"),
        ({"code": ""}, "code"),
        ({"stage": "xiao_qing"}, "stage"),
        ({"operator_id": foreign.operator_id}, "operator_id"),
    ]
    for change, field in cases:
        r = client.post(LOTS, json=lot_body(op, **change), headers=bearer(op.token))
        assert 400 <= r.status_code < 500, (change, r.json)
        errors = r.json.get("errors", {})
        assert field in errors or field in errors.get("json", {}), (change, field, r.json)
    assert count(session, Lot) == 0 and count(session, LotInput) == 0


def test_a_duplicate_lot_code_is_a_conflict(client, op):
    h = bearer(op.token)
    assert client.post(LOTS, json=lot_body(op, inputs=[{"trade_id": op.t1.id, "kg": "100"}], output_kg="5"), headers=h).status_code == 201
    r = client.post(LOTS, json=lot_body(op, inputs=[{"trade_id": op.t2.id, "kg": "100"}], output_kg="5"), headers=h)
    assert r.status_code == 409 and "code" in r.json["errors"]


def test_lots_are_private_to_their_operator(client, make, op):
    lot = make.lot(op.operator, [op.t1], warehouse_id=op.warehouse.id)
    other = make.lot()
    assert [x["id"] for x in client.get(LOTS, headers=bearer(op.token)).json] == [lot.id]
    stranger = bearer(make.token("operator"))
    assert client.get(f"{LOTS}/{lot.id}", headers=stranger).status_code == 404
    assert client.post(f"{LOTS}/{lot.id}/void", json={"client_uuid": str(uuid.uuid4()), "reason": "x"},
                       headers=stranger).status_code == 404
    for role in ("admin", "inspector"):
        ids = {x["id"] for x in client.get(LOTS, headers=bearer(make.token(role))).json}
        assert {lot.id, other.id} <= ids


def test_lots_can_be_listed_by_kind(client, make, op):
    lot = make.lot(op.operator, [op.t1], warehouse_id=op.warehouse.id, output_kg=Decimal("50"))
    h = bearer(op.token)
    [part] = client.post(f"{LOTS}/{lot.id}/split", json={"client_uuid": str(uuid.uuid4()), "split_on": "2025-12-10",
                         "parts": [{"code": "KIND-S", "kg": "5"}]}, headers=h).json
    kinds = {kind: [x["id"] for x in client.get(LOTS, query_string={"kind": kind}, headers=h).json]
             for kind in ("production", "split", "purchase")}
    assert kinds == {"production": [lot.id], "split": [part["id"]], "purchase": []}


# --- voiding and its effect on trades ------------------------------------------------------------
def test_voiding_a_lot_frees_its_fruit_and_trades_in_lots_cannot_be_corrected(client, session, op):
    h = bearer(op.token)
    lot = client.post(LOTS, json=lot_body(op), headers=h).json
    fix = client.post(f"/api/v1/chain/trades/{op.t1.id}/corrections",
                      json={"client_uuid": str(uuid.uuid4()), "reason": "称错"}, headers=h)
    assert fix.status_code == 409 and fix.json["reason"] == "chain.trade_in_use" and str(lot["id"]) in fix.json["errors"]["trade_id"][0]
    body = {"client_uuid": str(uuid.uuid4()), "reason": "批次录错"}
    voided = client.post(f"{LOTS}/{lot['id']}/void", json=body, headers=h)
    assert voided.status_code == 201 and voided.json["status"] == "voided"
    assert voided.json["voided_by"]["reason"] == "批次录错"
    assert client.post(f"{LOTS}/{lot['id']}/void", json=body, headers=h).status_code == 200
    again = client.post(f"{LOTS}/{lot['id']}/void", json={**body, "client_uuid": str(uuid.uuid4())}, headers=h)
    assert again.status_code == 409 and again.json["reason"] == "chain.already_corrected"
    assert client.get(LOTS, headers=h).json == []
    assert [x["status"] for x in client.get(LOTS, query_string={"history": "true"}, headers=h).json] == ["voided"]
    # the fruit is free again, and the trade can now be corrected
    assert client.post(LOTS, json=lot_body(op, code="NEW"), headers=h).status_code == 201
    client.post(f"{LOTS}/{client.get(LOTS, headers=h).json[0]['id']}/void",
                json={"client_uuid": str(uuid.uuid4()), "reason": "再作废"}, headers=h)
    fix = client.post(f"/api/v1/chain/trades/{op.t1.id}/corrections",
                      json={"client_uuid": str(uuid.uuid4()), "reason": "称错"}, headers=h)
    assert fix.status_code == 201
    # a voided trade cannot go into a lot
    r = client.post(LOTS, json=lot_body(op, code="C", inputs=[{"trade_id": op.t1.id, "kg": "1"}], output_kg="0.05"), headers=h)
    assert r.status_code == 422 and "inputs.0.trade_id" in r.json["errors"]


# --- concurrency ---------------------------------------------------------------------------------
@pytest.mark.real_servers
def test_two_lots_made_at_once_cannot_use_the_same_fruit(app, committed_db):
    """Six requests each want 400 kg of the same 1,000 kg trade at the same moment: the trade's
    row lock lets exactly two through, the rest are told how much is left."""
    if committed_db.engine.dialect.name != "postgresql":
        pytest.skip("row locks are a PostgreSQL matter; SQLite has one writer at a time")
    from tests.factories import Factory

    make = Factory(committed_db.session)
    operator = make.operator()
    tokens = [make.token("operator", operator) for _ in range(6)]  # one each: a token's last-use update would serialize them
    trade_id, warehouse_id = make.trade(operator).id, make.warehouse(operator).id
    committed_db.session.remove()
    barrier = threading.Barrier(6)
    answers = []

    def produce(n):
        with app.app_context():
            client = app.test_client()
            barrier.wait()
            r = client.post(LOTS, json={"client_uuid": str(uuid.uuid4()), "code": f"P{n}", "warehouse_id": warehouse_id,
                                        "stage": "wei_hong", "production_date": "2025-12-01", "output_kg": "20",
                                        "inputs": [{"trade_id": trade_id, "kg": "400"}]}, headers=bearer(tokens[n]))
            answers.append((r.status_code, r.json.get("reason")))

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(answers, key=str) == sorted([(201, None)] * 2 + [(422, "chain.fruit_exhausted")] * 4, key=str)
    with app.app_context():
        used = committed_db.session.scalar(select(func.sum(LotInput.kg)).where(LotInput.trade_id == trade_id))
        assert used == Decimal("800.000")
