"""Storage and circulation of peel lots: moves, splits, merges, sales with a declared vintage
(and the buyer's purchase), and the trace back to trades, plots, growers, villages and towns."""
from __future__ import annotations

import threading
import time
import uuid
from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from backend.chain import service as chain
from backend.chain.models import Lot, LotSource, Sale

API = "/api/v1/chain"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def uid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def op(make):
    """Operator A with two warehouses and a lot of 80 kg of 2025 微红 peel from two plots in two
    towns (1,000 kg + 600 kg of fruit)."""

    class Ctx:
        pass

    ctx = Ctx()
    ctx.operator = make.operator()
    ctx.token = make.token("operator", ctx.operator)
    ctx.h = bearer(ctx.token)
    ctx.w1, ctx.w2 = make.warehouse(ctx.operator), make.warehouse(ctx.operator)
    ctx.plot1 = make.plot()
    ctx.plot2 = make.plot()
    ctx.t1 = make.trade(ctx.operator, ctx.plot1, trade_date=date(2025, 10, 20))
    ctx.t2 = make.trade(ctx.operator, ctx.plot2, trade_date=date(2025, 11, 2), weight_kg=Decimal("600"))
    ctx.lot = make.lot(ctx.operator, [ctx.t1, ctx.t2], warehouse_id=ctx.w1.id, output_kg=Decimal("80"))
    return ctx


def get_lot(client, op, lot_id, h=None):
    return client.get(f"{API}/lots/{lot_id}", headers=h or op.h).json


def sale_body(**kw) -> dict:
    return {"client_uuid": uid(), "sale_date": "2025-12-20", "kg": "10", "vintage_year": 2025,
            "buyer_kind": "retail", "destination": "广州 零售店", **kw}


# --- moves -------------------------------------------------------------------------------------
def test_a_lot_moves_between_its_operators_warehouses_and_the_log_keeps_each_move(client, make, op):
    body = {"client_uuid": uid(), "warehouse_id": op.w2.id, "moved_on": "2025-12-10"}
    r = client.post(f"{API}/lots/{op.lot.id}/moves", json=body, headers=op.h)
    assert r.status_code == 201 and (r.json["from_warehouse_id"], r.json["to_warehouse_id"]) == (op.w1.id, op.w2.id)
    assert client.post(f"{API}/lots/{op.lot.id}/moves", json=body, headers=op.h).status_code == 200
    assert get_lot(client, op, op.lot.id)["warehouse_id"] == op.w2.id
    assert [m["to_warehouse_id"] for m in client.get(f"{API}/lots/{op.lot.id}/moves", headers=op.h).json] == [op.w2.id]
    bad = [
        ({"warehouse_id": op.w2.id}, "warehouse_id"),  # already there
        ({"warehouse_id": make.warehouse().id}, "warehouse_id"),  # another operator's
        ({"warehouse_id": op.w1.id, "moved_on": "2025-11-01"}, "moved_on"),  # before the lot was made
        ({"warehouse_id": op.w1.id, "moved_on": "2999-01-01"}, "moved_on"),
    ]
    for change, field in bad:
        r = client.post(f"{API}/lots/{op.lot.id}/moves", json={**body, "client_uuid": uid(), **change}, headers=op.h)
        assert r.status_code == 422 and field in r.json["errors"], (change, r.json)
    assert client.post(f"{API}/lots/{op.lot.id}/moves", json={**body, "client_uuid": uid()},
                       headers=bearer(make.token("operator"))).status_code == 404


# --- splits and merges -------------------------------------------------------------------------
def test_splitting_a_lot_makes_sub_lots_and_the_lot_keeps_the_rest(client, session, op):
    body = {"client_uuid": uid(), "split_on": "2025-12-15",
            "parts": [{"code": "S-1", "kg": "20"}, {"code": "S-2", "kg": "15.5", "warehouse_id": op.w2.id}]}
    r = client.post(f"{API}/lots/{op.lot.id}/split", json=body, headers=op.h)
    assert r.status_code == 201, r.json
    a, b = r.json
    assert (a["kind"], a["kg_left"], a["warehouse_id"], a["season"]) == ("split", "20.000", op.w1.id, 2025)
    assert b["warehouse_id"] == op.w2.id and b["sources"] == [{"source_lot_id": op.lot.id, "kg": "15.500"}]
    assert a["harvest_date"] == "2025-11-02" and a["age"] == get_lot(client, op, op.lot.id)["age"]
    assert get_lot(client, op, op.lot.id)["kg_left"] == "44.500"
    again = client.post(f"{API}/lots/{op.lot.id}/split", json=body, headers=op.h)
    assert again.status_code == 200 and [x["id"] for x in again.json] == [a["id"], b["id"]]
    over = client.post(f"{API}/lots/{op.lot.id}/split", json={**body, "client_uuid": uid(),
                       "parts": [{"code": "S-3", "kg": "44.501"}]}, headers=op.h)
    assert over.status_code == 422 and over.json["reason"] == "chain.lot_exhausted" and "parts" in over.json["errors"]
    dup = client.post(f"{API}/lots/{op.lot.id}/split", json={**body, "client_uuid": uid(),
                      "parts": [{"code": "S-1", "kg": "1"}]}, headers=op.h)
    assert dup.status_code == 409 and "parts.0.code" in dup.json["errors"]
    # the parent cannot be voided while sub-lots draw on it
    void = client.post(f"{API}/lots/{op.lot.id}/void", json={"client_uuid": uid(), "reason": "x"}, headers=op.h)
    assert void.status_code == 409 and void.json["reason"] == "chain.lot_in_use"
    # voiding a sub-lot gives its kg back
    assert client.post(f"{API}/lots/{a['id']}/void", json={"client_uuid": uid(), "reason": "分装录错"}, headers=op.h).status_code == 201
    assert get_lot(client, op, op.lot.id)["kg_left"] == "64.500"


def test_merging_lots_takes_kg_from_each_and_keeps_the_youngest_vintage(client, make, op):
    old_trade = make.trade(op.operator, trade_date=date(2022, 11, 1))
    old_lot = make.lot(op.operator, [old_trade], warehouse_id=op.w1.id, production_date=date(2022, 12, 1))
    body = {"client_uuid": uid(), "code": "M-1", "warehouse_id": op.w2.id, "merged_on": "2025-12-20",
            "sources": [{"lot_id": old_lot.id, "kg": "30"}, {"lot_id": op.lot.id, "kg": "10"}]}
    r = client.post(f"{API}/merges", json=body, headers=op.h)
    assert r.status_code == 201, r.json
    assert (r.json["kind"], r.json["output_kg"], r.json["season"], r.json["harvest_date"]) == ("merge", "40.000", 2025, "2025-11-02")
    assert get_lot(client, op, old_lot.id)["kg_left"] == "20.000"
    da_hong = make.lot(op.operator, [make.trade(op.operator, trade_date=date(2025, 12, 1), stage="da_hong")],
                       warehouse_id=op.w1.id, production_date=date(2025, 12, 10))
    theirs = make.lot()
    bad = [
        ({"sources": [{"lot_id": op.lot.id, "kg": "1"}, {"lot_id": da_hong.id, "kg": "1"}]}, "sources.1.lot_id"),
        ({"sources": [{"lot_id": op.lot.id, "kg": "1"}, {"lot_id": theirs.id, "kg": "1"}]}, "sources.1.lot_id"),
        ({"sources": [{"lot_id": op.lot.id, "kg": "1"}, {"lot_id": op.lot.id, "kg": "1"}]}, "sources.1.lot_id"),
        ({"sources": [{"lot_id": op.lot.id, "kg": "71"}, {"lot_id": old_lot.id, "kg": "1"}]}, "sources.0.kg"),
        ({"sources": [{"lot_id": op.lot.id, "kg": "1"}]}, "sources"),
        ({"code": "M-1"}, "code"),
        ({"merged_on": "2025-11-30"}, "merged_on"),  # before op.lot was made
    ]
    for change, field in bad:
        r = client.post(f"{API}/merges", json={**body, "client_uuid": uid(), "code": "M-2", **change}, headers=op.h)
        errors = r.json.get("errors", {})
        assert 400 <= r.status_code < 500 and (field in errors or field in errors.get("json", {})), (change, r.json)


# --- sales -------------------------------------------------------------------------------------
def test_a_retail_sale_draws_on_the_lot_and_declares_a_vintage(client, session, op):
    r = client.post(f"{API}/lots/{op.lot.id}/sales", json=sale_body(price_per_kg="320"), headers=op.h)
    assert r.status_code == 201, r.json
    assert (r.json["kg"], r.json["vintage_year"], r.json["received_lot_id"]) == ("10.000", 2025, None)
    assert get_lot(client, op, op.lot.id)["kg_left"] == "70.000"
    # a younger vintage than the lot (once that harvest is in) is an understatement, and allowed
    assert client.post(f"{API}/lots/{op.lot.id}/sales", json=sale_body(vintage_year=2026, sale_date="2026-11-20"),
                       headers=op.h).status_code == 201
    assert [s["lot_id"] for s in client.get(f"{API}/sales", headers=op.h).json] == [op.lot.id, op.lot.id]


def test_sales_claiming_more_age_or_more_kg_than_the_lot_has_are_refused(client, session, make, op):
    cases = [
        (sale_body(vintage_year=2018), "vintage_year", "chain.vintage_overclaimed"),
        (sale_body(vintage_year=2026), "vintage_year", "chain.rule_violation"),  # a harvest not in yet
        (sale_body(vintage_year=2100), "vintage_year", None),
        (sale_body(claimed_age_years=3), "claimed_age_years", "chain.vintage_overclaimed"),
        (sale_body(kg="80.001"), "kg", "chain.lot_exhausted"),
        (sale_body(kg="0"), "kg", None),
        (sale_body(kg="-1"), "kg", None),
        (sale_body(sale_date="2025-11-30"), "sale_date", None),  # before the lot was made
        (sale_body(sale_date="2999-01-01"), "sale_date", None),
        (sale_body(destination=None), "destination", None),
        (sale_body(destination="上海\x00"), "destination", None),
        (sale_body(buyer_kind="operator", destination=None), "buyer_operator_id", None),
        (sale_body(buyer_kind="operator", destination=None, buyer_operator_id=op.operator.id), "buyer_operator_id", None),
        (sale_body(buyer_kind="operator", destination=None, buyer_operator_id=2_000_000_000), "buyer_operator_id", None),
        (sale_body(buyer_operator_id=make.operator().id), "buyer_operator_id", None),
        (sale_body(vintage_year="2025"), "vintage_year", None),
        (sale_body(buyer_kind="smuggler"), "buyer_kind", None),
    ]
    for body, field, reason in cases:
        body = {k: v for k, v in body.items() if v is not None}
        r = client.post(f"{API}/lots/{op.lot.id}/sales", json=body, headers=op.h)
        errors = r.json.get("errors", {})
        assert r.status_code == 422 and (field in errors or field in errors.get("json", {})), (body, r.json)
        if reason:
            assert r.json["reason"] == reason
    assert session.scalar(select(func.count()).select_from(Sale)) == 0
    # a lot harvested more than three years before the sale may claim it
    old = make.lot(op.operator, [make.trade(op.operator, trade_date=date(2021, 11, 1))], warehouse_id=op.w1.id,
                   production_date=date(2021, 12, 1))
    r = client.post(f"{API}/lots/{old.id}/sales", json=sale_body(vintage_year=2021, claimed_age_years=4), headers=op.h)
    assert r.status_code == 201
    r = client.post(f"{API}/lots/{old.id}/sales", json=sale_body(vintage_year=2021, claimed_age_years=5), headers=op.h)
    assert r.status_code == 422 and "4 full years" in r.json["errors"]["claimed_age_years"][0]


def test_a_sale_to_an_operator_becomes_the_buyers_lot(client, session, make, op):
    buyer = make.operator()
    bh = bearer(make.token("operator", buyer))
    body = sale_body(buyer_kind="operator", buyer_operator_id=buyer.id, destination=None, kg="25")
    body.pop("destination")
    r = client.post(f"{API}/lots/{op.lot.id}/sales", json=body, headers=op.h)
    assert r.status_code == 201, r.json
    assert client.post(f"{API}/lots/{op.lot.id}/sales", json=body, headers=op.h).json == r.json
    received = r.json["received_lot_id"]
    lot = get_lot(client, op, received, bh)
    assert (lot["kind"], lot["operator_id"], lot["warehouse_id"], lot["kg_left"]) == ("purchase", buyer.id, None, "25.000")
    assert (lot["season"], lot["harvest_date"]) == (2025, "2025-11-02")
    assert get_lot(client, op, op.lot.id)["kg_left"] == "55.000"
    # both sides see the sale; the seller does not see the buyer's lot, nor the buyer the seller's
    assert [s["id"] for s in client.get(f"{API}/sales", headers=bh).json] == [r.json["id"]]
    assert client.get(f"{API}/sales/{r.json['id']}", headers=bh).status_code == 200
    assert client.get(f"{API}/lots/{received}", headers=op.h).status_code == 404
    assert client.get(f"{API}/lots/{op.lot.id}", headers=bh).status_code == 404
    assert client.get(f"{API}/sales/{r.json['id']}", headers=bearer(make.token("operator"))).status_code == 404
    # the buyer stores it, sells on with the true vintage, and cannot void a purchase
    w = make.warehouse(buyer)
    assert client.post(f"{API}/lots/{received}/moves", json={"client_uuid": uid(), "warehouse_id": w.id,
                                                              "moved_on": "2025-12-21"}, headers=bh).status_code == 201
    assert client.post(f"{API}/lots/{received}/sales", json=sale_body(sale_date="2025-12-22", vintage_year=2024),
                       headers=bh).json["reason"] == "chain.vintage_overclaimed"
    assert client.post(f"{API}/lots/{received}/sales", json=sale_body(sale_date="2025-12-22"), headers=bh).status_code == 201
    r = client.post(f"{API}/lots/{received}/void", json={"client_uuid": uid(), "reason": "x"}, headers=bh)
    assert r.status_code == 409 and r.json["reason"] == "chain.lot_in_use"


# --- trace -------------------------------------------------------------------------------------
def test_trace_from_a_lot_back_to_trades_plots_growers_villages_and_towns(client, make, op):
    r = client.get(f"{API}/lots/{op.lot.id}/trace", headers=op.h)
    assert r.status_code == 200, r.json
    t = r.json
    assert (t["output_kg"], t["fruit_kg"]) == ("80.000", "1600.000")
    assert [(x["trade_id"], x["fruit_kg"], x["share"]) for x in t["trades"]] == [
        (op.t1.id, "1000.000", "0.625000"), (op.t2.id, "600.000", "0.375000")]
    assert [(p["plot_id"], p["code"], p["share"]) for p in t["plots"]] == [
        (op.plot1.id, op.plot1.code, "0.625000"), (op.plot2.id, op.plot2.code, "0.375000")]
    assert t["growers"] == [] and all(x["grower_id"] is None for x in t["trades"])  # households: staff only
    staff = client.get(f"{API}/lots/{op.lot.id}/trace", headers=bearer(make.token("inspector"))).json
    assert [g["grower_id"] for g in staff["growers"]] == [op.plot1.grower_id, op.plot2.grower_id]
    assert [v["village_id"] for v in t["villages"]] == [op.plot1.village_id, op.plot2.village_id]
    assert len(t["towns"]) == 2 and all(x["name"] for x in t["towns"])
    assert t["lineage"] == [{"lot_id": op.lot.id, "kind": "production", "code": op.lot.code,
                             "operator_id": op.operator.id, "sources": []}]


def test_trace_follows_splits_merges_and_purchases_in_proportion(client, make, op):
    buyer = make.operator()
    bh = bearer(make.token("operator", buyer))
    split = client.post(f"{API}/lots/{op.lot.id}/split", json={"client_uuid": uid(), "split_on": "2025-12-15",
                        "parts": [{"code": "S-1", "kg": "40"}]}, headers=op.h).json[0]
    t = client.get(f"{API}/lots/{split['id']}/trace", headers=op.h).json
    assert [(x["fruit_kg"], x["share"]) for x in t["trades"]] == [("500.000", "0.625000"), ("300.000", "0.375000")]
    other = make.lot(op.operator, [make.trade(op.operator, make.plot(), trade_date=date(2025, 11, 10))],
                     warehouse_id=op.w1.id, output_kg=Decimal("50"))  # 1,000 kg of fruit
    merged = client.post(f"{API}/merges", json={"client_uuid": uid(), "code": "M", "warehouse_id": op.w1.id,
                         "merged_on": "2025-12-20", "sources": [{"lot_id": split["id"], "kg": "20"},
                                                                {"lot_id": other.id, "kg": "20"}]}, headers=op.h).json
    sale = client.post(f"{API}/lots/{merged['id']}/sales", json={**sale_body(kg="10", buyer_kind="operator",
                       buyer_operator_id=buyer.id), "destination": None}, headers=op.h).json
    t = client.get(f"{API}/lots/{sale['received_lot_id']}/trace", headers=bh).json
    # the split owes 500 kg of t1 and 300 of t2; 20 of its 40 kg → 250 + 150; 20 of the other lot's 50 kg
    # → 400 of its trade; the sale takes 10 of the merge's 40 kg: a quarter of each
    assert [(x["fruit_kg"], x["share"]) for x in t["trades"]] == [
        ("100.000", "0.500000"), ("62.500", "0.312500"), ("37.500", "0.187500")]
    assert t["fruit_kg"] == "200.000"
    # the buyer learns where the fruit grew, not the seller's trade or lot ids
    assert all(x["trade_id"] is None and x["plot_id"] for x in t["trades"])
    assert [lin["kind"] for lin in t["lineage"]] == ["purchase", "merge", "production", "split", "production"]
    assert all(lin["lot_id"] is None for lin in t["lineage"][1:]) and t["lineage"][0]["lot_id"] == sale["received_lot_id"]
    staff = client.get(f"{API}/lots/{sale['received_lot_id']}/trace", headers=bearer(make.token("inspector"))).json
    assert {x["trade_id"] for x in staff["trades"]} == {op.t1.id, op.t2.id, other.inputs[0].trade_id}


# --- concurrency and speed (PostgreSQL) ----------------------------------------------------------
@pytest.mark.real_servers
def test_parallel_sales_cannot_oversell_a_lot(app, committed_db):
    """Six sellers' clerks each sell 20 kg of the same 80 kg lot at once: exactly four succeed."""
    if committed_db.engine.dialect.name != "postgresql":
        pytest.skip("row locks are a PostgreSQL matter; SQLite has one writer at a time")
    from tests.factories import Factory

    make = Factory(committed_db.session)
    operator = make.operator()
    tokens = [make.token("operator", operator) for _ in range(6)]
    lot_id = make.lot(operator, [make.trade(operator, weight_kg=Decimal("2000"))], output_kg=Decimal("80")).id
    committed_db.session.remove()
    barrier = threading.Barrier(6)
    answers = []

    def sell(token):
        with app.app_context():
            client = app.test_client()
            barrier.wait()
            r = client.post(f"{API}/lots/{lot_id}/sales", json=sale_body(kg="20"), headers=bearer(token))
            answers.append((r.status_code, r.json.get("reason")))

    threads = [threading.Thread(target=sell, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(answers, key=str) == sorted([(201, None)] * 4 + [(422, "chain.lot_exhausted")] * 2, key=str)
    with app.app_context():
        assert committed_db.session.scalar(select(func.sum(Sale.kg)).where(Sale.lot_id == lot_id)) == Decimal("80.000")


@pytest.mark.real_servers
def test_trace_of_a_lot_from_500_trades_answers_in_under_50_ms(session, make):
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("the latency target is for PostgreSQL")
    from backend.chain.models import FruitTrade, LotInput
    from backend.http import Actor

    operator = make.operator()
    actor = make.chain_actor()
    plots = [make.plot() for _ in range(20)]
    trades = [FruitTrade(client_uuid=uid(), content_hash="x", plot_id=p.id, grower_id=p.grower_id, village_id=p.village_id,
                         operator_id=operator.id, trade_date=date(2025, 11, 1), stage="wei_hong", season=2025,
                         weight_kg=Decimal("100"), price_per_kg=Decimal("8"), recorded_by=actor.user_id)
              for n in range(500) for p in [plots[n % 20]]]
    session.add_all(trades)
    session.flush()
    warehouse = make.warehouse(operator)
    lot = Lot(client_uuid=uid(), content_hash="x", operator_id=operator.id, code="BIG", warehouse_id=warehouse.id,
              stage="wei_hong", season=2025, harvest_date=date(2025, 11, 1), production_date=date(2025, 12, 1),
              input_kg=Decimal("50000"), output_kg=Decimal("2500"), recorded_by=actor.user_id)
    session.add(lot)
    session.flush()
    session.add_all(LotInput(lot_id=lot.id, trade_id=t.id, kg=Decimal("100")) for t in trades)
    session.commit()
    admin = Actor(actor.user_id, actor.name, "admin")
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731 - (conn, cursor, statement, …)
    sa.event.listen(session.get_bind(), "before_cursor_execute", listener)
    try:
        result = chain.trace_lot(session, admin, lot.id)
    finally:
        sa.event.remove(session.get_bind(), "before_cursor_execute", listener)
    assert len(result["trades"]) == 500 and len(result["plots"]) == 20 and result["fruit_kg"] == "50000.000"
    # Latency is measured by bench/bench_chain.py; here: a fixed number of queries, not one per trade.
    assert len(statements) <= 12, f"trace ran {len(statements)} queries"


# --- counters ----------------------------------------------------------------------------------
def test_counters_add_up_current_trades_and_sales(client, make, op):
    staff = bearer(make.token("admin"))
    other_op = make.operator()
    make.trade(other_op, op.plot1, weight_kg=Decimal("400"), price_per_kg=Decimal("10"))
    voided = make.trade(op.operator, op.plot1, weight_kg=Decimal("999"))
    assert client.post(f"{API}/trades/{voided.id}/corrections", json={"client_uuid": uid(), "reason": "重复"},
                       headers=op.h).status_code == 201
    by_op = {r["key"]: r for r in client.get(f"{API}/counters/trades", query_string={"group_by": "operator"},
                                              headers=staff).json}
    assert by_op[op.operator.id] == {"key": op.operator.id, "kg": "1600.000", "count": 2, "value_cny": "13600.00"}
    assert by_op[other_op.id]["value_cny"] == "4000.00"
    mine = client.get(f"{API}/counters/trades", query_string={"group_by": "plot"}, headers=op.h).json
    assert {(r["key"], r["kg"]) for r in mine} == {(op.plot1.id, "1000.000"), (op.plot2.id, "600.000")}
    by_stage = client.get(f"{API}/counters/trades", query_string={"group_by": "stage", "season": 2025}, headers=staff).json
    assert any(r["key"] == "wei_hong" for r in by_stage)
    assert client.get(f"{API}/counters/trades", query_string={"group_by": "colour"}, headers=staff).status_code == 422
    client.post(f"{API}/lots/{op.lot.id}/sales", json=sale_body(kg="5", price_per_kg="300"), headers=op.h)
    older = make.lot(op.operator, [make.trade(op.operator, trade_date=date(2024, 11, 1))], warehouse_id=op.w1.id,
                     production_date=date(2024, 12, 1))
    client.post(f"{API}/lots/{older.id}/sales", json=sale_body(kg="2", vintage_year=2024), headers=op.h)
    client.post(f"{API}/lots/{op.lot.id}/sales", json=sale_body(kg="3", sale_date="2026-11-20", vintage_year=2026),
                headers=op.h)  # another year's sale
    sold = client.get(f"{API}/counters/sales", query_string={"group_by": "vintage_year", "year": 2025}, headers=op.h).json
    assert [(r["key"], r["kg"], r["count"]) for r in sold] == [(2024, "2.000", 1), (2025, "5.000", 1)]
    assert client.get(f"{API}/counters/sales", query_string={"group_by": "vintage_year"},
                      headers=bearer(make.token("operator"))).json == []


def test_trace_forward_from_a_plot_and_a_grower_reaches_every_lot_and_sale(client, make, op):
    staff = bearer(make.token("inspector"))
    buyer = make.operator()
    [part] = client.post(f"{API}/lots/{op.lot.id}/split", json={"client_uuid": uid(), "split_on": "2025-12-15",
                         "parts": [{"code": "S-1", "kg": "40"}]}, headers=op.h).json
    sale = client.post(f"{API}/lots/{part['id']}/sales", json={**sale_body(kg="8", buyer_kind="operator",
                       buyer_operator_id=buyer.id), "destination": None}, headers=op.h).json
    r = client.get(f"{API}/plots/{op.plot1.id}/forward", headers=staff)
    assert r.status_code == 200, r.json
    f = r.json
    assert (f["fruit_kg"], [t["trade_id"] for t in f["trades"]]) == ("1000.000", [op.t1.id])
    # plot1 gave 1,000 kg of the lot's fruit; half the lot went into the split; 8 of its 40 kg were sold on
    assert [(x["lot_id"], x["kind"], x["fruit_kg"]) for x in f["lots"]] == [
        (op.lot.id, "production", "1000.000"), (part["id"], "split", "500.000"),
        (sale["received_lot_id"], "purchase", "100.000")]
    assert [(x["sale_id"], x["fruit_kg"]) for x in f["sales"]] == [(sale["id"], "100.000")]
    g = client.get(f"{API}/growers/{op.plot2.grower_id}/forward", headers=staff).json
    assert g["fruit_kg"] == "600.000" and g["lots"][0]["fruit_kg"] == "600.000"
    assert client.get(f"{API}/plots/{op.plot1.id}/forward", headers=op.h).status_code == 403
    assert client.get(f"{API}/plots/2000000000/forward", headers=staff).status_code == 404


def test_inventory_by_operator_and_vintage_follows_splits_and_sales(client, make, op):
    old = make.lot(op.operator, [make.trade(op.operator, trade_date=date(2022, 11, 1))], warehouse_id=op.w1.id,
                   production_date=date(2022, 12, 1))  # 50 kg of 2022 peel
    client.post(f"{API}/lots/{op.lot.id}/split", json={"client_uuid": uid(), "split_on": "2025-12-15",
                "parts": [{"code": "S-1", "kg": "30"}]}, headers=op.h)
    client.post(f"{API}/lots/{op.lot.id}/sales", json=sale_body(kg="15"), headers=op.h)
    client.post(f"{API}/lots/{old.id}/sales", json=sale_body(kg="50", vintage_year=2022), headers=op.h)
    rows = client.get(f"{API}/inventory", headers=op.h).json
    # 2025: 80 − 30 split − 15 sold = 35 in the lot, plus the 30 kg sub-lot; the 2022 lot is sold out
    assert rows == [{"operator_id": op.operator.id, "season": 2025, "stage": "wei_hong", "lots": 2, "kg": "65.000"}]
    assert client.get(f"{API}/inventory", headers=bearer(make.token("operator"))).json == []
    staff = client.get(f"{API}/inventory", query_string={"operator_id": op.operator.id}, headers=bearer(make.token("inspector"))).json
    assert staff == rows


def test_voiding_a_sale_returns_its_kg_and_a_purchase_goes_with_it(client, make, op):
    buyer = make.operator()
    bh = bearer(make.token("operator", buyer))
    retail = client.post(f"{API}/lots/{op.lot.id}/sales", json=sale_body(kg="10"), headers=op.h).json
    body = {"client_uuid": uid(), "reason": "退货"}
    r = client.post(f"{API}/sales/{retail['id']}/void", json=body, headers=op.h)
    assert r.status_code == 201 and r.json["status"] == "voided" and r.json["voided_by"]["reason"] == "退货"
    assert client.post(f"{API}/sales/{retail['id']}/void", json=body, headers=op.h).status_code == 200
    again = client.post(f"{API}/sales/{retail['id']}/void", json={**body, "client_uuid": uid()}, headers=op.h)
    assert again.status_code == 409 and again.json["reason"] == "chain.already_corrected"
    assert get_lot(client, op, op.lot.id)["kg_left"] == "80.000"
    assert client.get(f"{API}/sales", headers=op.h).json == []
    assert [s["status"] for s in client.get(f"{API}/sales", query_string={"history": "true"}, headers=op.h).json] == ["voided"]
    # a sale to an operator: the buyer cannot void it; the seller can while the buyer's lot is untouched
    sold = client.post(f"{API}/lots/{op.lot.id}/sales", json={**sale_body(kg="20", buyer_kind="operator",
                       buyer_operator_id=buyer.id), "destination": None}, headers=op.h).json
    assert client.post(f"{API}/sales/{sold['id']}/void", json={"client_uuid": uid(), "reason": "x"}, headers=bh).status_code == 403
    assert client.post(f"{API}/sales/{sold['id']}/void", json={"client_uuid": uid(), "reason": "x"},
                       headers=bearer(make.token("operator"))).status_code == 404
    client.post(f"{API}/lots/{sold['received_lot_id']}/sales", json=sale_body(kg="1"), headers=bh)
    blocked = client.post(f"{API}/sales/{sold['id']}/void", json={"client_uuid": uid(), "reason": "x"}, headers=op.h)
    assert blocked.status_code == 409 and blocked.json["reason"] == "chain.lot_in_use"
    resale = client.get(f"{API}/sales", headers=bh).json[-1]
    assert client.post(f"{API}/sales/{resale['id']}/void", json={"client_uuid": uid(), "reason": "x"}, headers=bh).status_code == 201
    assert client.post(f"{API}/sales/{sold['id']}/void", json={"client_uuid": uid(), "reason": "x"}, headers=op.h).status_code == 201
    assert get_lot(client, op, op.lot.id)["kg_left"] == "80.000"
    assert get_lot(client, op, sold["received_lot_id"], bh)["status"] == "voided"
    assert client.get(f"{API}/counters/sales", query_string={"group_by": "buyer_kind"}, headers=op.h).json == []


# --- idempotency: retries after the state changed, reused UUIDs, concurrent retries --------------
def test_a_retried_move_split_or_sale_answers_as_before_after_the_lot_is_voided(client, make, op):
    lot = make.lot(op.operator, warehouse_id=op.w1.id)
    move = {"client_uuid": uid(), "warehouse_id": op.w2.id, "moved_on": "2025-12-05"}
    first = client.post(f"{API}/lots/{lot.id}/moves", json=move, headers=op.h)
    assert first.status_code == 201
    split = {"client_uuid": uid(), "split_on": "2025-12-10", "parts": [{"code": "RETRY-P", "kg": "5"}]}
    [part] = client.post(f"{API}/lots/{lot.id}/split", json=split, headers=op.h).json
    sale = sale_body(kg="2")
    sold = client.post(f"{API}/lots/{part['id']}/sales", json=sale, headers=op.h).json
    r = client.post(f"{API}/sales/{sold['id']}/void", json={"client_uuid": uid(), "reason": "录错"}, headers=op.h)
    assert r.status_code == 201, r.json
    for lot_id in (part["id"], lot.id):
        r = client.post(f"{API}/lots/{lot_id}/void", json={"client_uuid": uid(), "reason": "录错"}, headers=op.h)
        assert r.status_code == 201, r.json

    again = client.post(f"{API}/lots/{lot.id}/moves", json=move, headers=op.h)
    assert again.status_code == 200 and again.json["id"] == first.json["id"]
    again = client.post(f"{API}/lots/{lot.id}/split", json=split, headers=op.h)
    assert again.status_code == 200 and [p["id"] for p in again.json] == [part["id"]]
    again = client.post(f"{API}/lots/{part['id']}/sales", json=sale, headers=op.h)
    assert again.status_code == 200 and again.json["id"] == sold["id"]
    # new content under those UUIDs is still a conflict, and new work on the voided lot is refused
    assert client.post(f"{API}/lots/{lot.id}/moves", json={**move, "moved_on": "2025-12-06"},
                       headers=op.h).json["reason"] == "chain.uuid_conflict"
    assert client.post(f"{API}/lots/{lot.id}/moves", json={**move, "client_uuid": uid()},
                       headers=op.h).json["reason"] == "chain.already_corrected"


def test_a_split_s_uuid_cannot_be_reused_for_a_merge_or_the_other_way(client, make, op):
    other = make.lot(op.operator, warehouse_id=op.w1.id)
    used = uid()
    r = client.post(f"{API}/lots/{op.lot.id}/split", json={"client_uuid": used, "split_on": "2025-12-10",
                    "parts": [{"code": "SPLIT-U", "kg": "5"}]}, headers=op.h)
    assert r.status_code == 201
    merge = {"client_uuid": used, "code": "MERGE-U", "warehouse_id": op.w1.id, "merged_on": "2025-12-10",
             "sources": [{"lot_id": op.lot.id, "kg": "5"}, {"lot_id": other.id, "kg": "5"}]}
    r = client.post(f"{API}/merges", json=merge, headers=op.h)
    assert r.status_code == 409 and r.json["reason"] == "chain.uuid_conflict"
    merged = client.post(f"{API}/merges", json={**merge, "client_uuid": uid()}, headers=op.h).json
    r = client.post(f"{API}/lots/{op.lot.id}/split", json={"client_uuid": merged["client_uuid"], "split_on": "2025-12-10",
                    "parts": [{"code": "SPLIT-V", "kg": "5"}]}, headers=op.h)
    assert r.status_code == 409 and r.json["reason"] == "chain.uuid_conflict"


@pytest.mark.real_servers
@pytest.mark.parametrize("what", ["split", "merge", "void_lot", "void_sale"])
def test_four_identical_requests_at_once_make_one_row(app, committed_db, what):
    """A phone retrying on a timeout: the same UUID and body four times at once → one 201, three 200."""
    if committed_db.engine.dialect.name != "postgresql":
        pytest.skip("row locks are a PostgreSQL matter; SQLite has one writer at a time")
    from tests.factories import Factory

    make = Factory(committed_db.session)
    operator = make.operator()
    tokens = [make.token("operator", operator) for _ in range(4)]
    lot = make.lot(operator, [make.trade(operator, weight_kg=Decimal("2000"))], output_kg=Decimal("80"))
    lot2 = make.lot(operator, [make.trade(operator, weight_kg=Decimal("2000"))], output_kg=Decimal("80"))
    sale_id = make.sale(lot).id
    ids = {"lot": lot.id, "lot2": lot2.id, "warehouse": lot.warehouse_id, "operator": operator.id}
    committed_db.session.remove()
    u = uid()
    url, body = {
        "split": (f"{API}/lots/{ids['lot']}/split",
                  {"client_uuid": u, "split_on": "2025-12-10", "parts": [{"code": "P1", "kg": "5"}]}),
        "merge": (f"{API}/merges", {"client_uuid": u, "code": "M1", "warehouse_id": ids["warehouse"],
                                    "merged_on": "2025-12-10", "sources": [{"lot_id": ids["lot"], "kg": "5"},
                                                                           {"lot_id": ids["lot2"], "kg": "5"}]}),
        "void_lot": (f"{API}/lots/{ids['lot2']}/void", {"client_uuid": u, "reason": "录错"}),
        "void_sale": (f"{API}/sales/{sale_id}/void", {"client_uuid": u, "reason": "录错"}),
    }[what]
    barrier = threading.Barrier(4)
    answers = []

    def post(token):
        with app.app_context():
            client = app.test_client()
            barrier.wait()
            r = client.post(url, json=body, headers=bearer(token))
            answers.append((r.status_code, r.json.get("reason") if isinstance(r.json, dict) else None))

    threads = [threading.Thread(target=post, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(answers, key=str) == sorted([(201, None)] + [(200, None)] * 3, key=str), answers
    with app.app_context():
        from backend.chain.models import LotCorrection, SaleCorrection

        count = {"split": select(func.count()).select_from(Lot).where(Lot.code == "P1", Lot.operator_id == ids["operator"]),
                 "merge": select(func.count()).select_from(Lot).where(Lot.client_uuid == u),
                 "void_lot": select(func.count()).select_from(LotCorrection).where(LotCorrection.client_uuid == u),
                 "void_sale": select(func.count()).select_from(SaleCorrection).where(SaleCorrection.client_uuid == u)}
        assert committed_db.session.scalar(count[what]) == 1
