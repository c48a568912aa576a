"""Fruit trades (新会柑交易): recording, idempotency, tenancy, quota and plausibility alerts,
append-only corrections, and parallel trades on one plot."""
from __future__ import annotations

import threading
import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from backend.chain import rules
from backend.chain import service as chain
from backend.chain.models import Alert, FruitTrade, TradeCorrection

TRADES = "/api/v1/chain/trades"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def trade_body(plot, **kw) -> dict:
    return {"client_uuid": str(uuid.uuid4()), "plot_id": plot.id, "trade_date": "2025-11-01",
            "stage": "wei_hong", "weight_kg": "1000", "price_per_kg": "8.5", **kw}


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def op(make):
    """Operator A with its token, a plot (verified quota 15,000 kg) and an admin token."""

    class Ctx:
        pass

    ctx = Ctx()
    ctx.operator = make.operator()
    ctx.token = make.token("operator", ctx.operator)
    ctx.plot = make.plot()
    ctx.admin = make.token("admin")
    return ctx


def alerts_for(session, trade_id: int) -> list[Alert]:
    return list(session.scalars(select(Alert).where(Alert.trade_id == trade_id).order_by(Alert.id)))


# --- recording ---------------------------------------------------------------------------------
def test_an_operator_records_a_trade_for_itself(client, op):
    r = client.post(TRADES, json=trade_body(op.plot, price_per_kg="8.50"), headers=bearer(op.token))
    assert r.status_code == 201, r.json
    t = r.json
    assert t["operator_id"] == op.operator.id
    assert (t["plot_id"], t["grower_id"], t["village_id"]) == (op.plot.id, op.plot.grower_id, op.plot.village_id)
    assert (t["weight_kg"], t["price_per_kg"], t["amount_cny"]) == ("1000.000", "8.50", "8500.00")
    assert (t["season"], t["stage"], t["status"]) == (2025, "wei_hong", "current")
    assert t["corrected_by"] is None and t["replaces_trade_id"] is None
    got = client.get(f"{TRADES}/{t['id']}", headers=bearer(op.token))
    assert got.status_code == 200 and got.json == t


def test_january_da_hong_fruit_belongs_to_the_previous_season(client, op):
    r = client.post(TRADES, json=trade_body(op.plot, trade_date="2026-01-03", stage="da_hong"), headers=bearer(op.token))
    assert r.status_code == 201 and r.json["season"] == 2025


def test_an_admin_records_for_a_named_operator_and_must_name_one(client, session, op):
    r = client.post(TRADES, json=trade_body(op.plot, operator_id=op.operator.id), headers=bearer(op.admin))
    assert r.status_code == 201 and r.json["operator_id"] == op.operator.id
    r = client.post(TRADES, json=trade_body(op.plot), headers=bearer(op.admin))
    assert r.status_code == 422 and "operator_id" in r.json["errors"]
    r = client.post(TRADES, json=trade_body(op.plot, operator_id=2_000_000_000), headers=bearer(op.admin))
    assert r.status_code == 422 and "operator_id" in r.json["errors"]
    assert count(session, FruitTrade) == 1


def test_an_operator_cannot_record_for_another_operator(client, session, make, op):
    other = make.operator()
    r = client.post(TRADES, json=trade_body(op.plot, operator_id=other.id), headers=bearer(op.token))
    assert r.status_code == 403 and r.json["reason"] == "chain.other_operator"
    assert "operator_id" in r.json["errors"]
    assert count(session, FruitTrade) == 0
    # naming itself is fine
    r = client.post(TRADES, json=trade_body(op.plot, operator_id=op.operator.id), headers=bearer(op.token))
    assert r.status_code == 201


# --- idempotency -------------------------------------------------------------------------------
def test_a_retry_with_the_same_uuid_and_content_answers_the_same(client, session, op):
    body = trade_body(op.plot)
    first = client.post(TRADES, json=body, headers=bearer(op.token))
    again = client.post(TRADES, json={**body, "weight_kg": "1000.000", "price_per_kg": "8.50"}, headers=bearer(op.token))
    assert first.status_code == 201 and again.status_code == 200
    assert again.json == first.json
    assert count(session, FruitTrade) == 1


def test_the_same_uuid_with_other_content_is_a_conflict(client, session, make, op):
    body = trade_body(op.plot)
    assert client.post(TRADES, json=body, headers=bearer(op.token)).status_code == 201
    r = client.post(TRADES, json={**body, "weight_kg": "999"}, headers=bearer(op.token))
    assert r.status_code == 409 and r.json["reason"] == "chain.uuid_conflict" and "client_uuid" in r.json["errors"]
    # another operator reusing the UUID learns nothing about the trade
    r = client.post(TRADES, json=body, headers=bearer(make.token("operator")))
    assert r.status_code == 409 and str(op.operator.id) not in r.get_data(as_text=True)
    assert count(session, FruitTrade) == 1


# --- bad input ---------------------------------------------------------------------------------
FUTURE = (rules.today() + timedelta(days=1)).isoformat()
BAD_TRADES = {
    "zero weight": ({"weight_kg": "0"}, "weight_kg", 422),
    "negative weight": ({"weight_kg": "-5"}, "weight_kg", 422),
    "huge weight": ({"weight_kg": "1e20"}, "weight_kg", 422),
    "NaN weight": ({"weight_kg": "NaN"}, "weight_kg", 422),
    "weight as text": ({"weight_kg": "一千"}, "weight_kg", 422),
    "negative price": ({"price_per_kg": "-1"}, "price_per_kg", 422),
    "huge price": ({"price_per_kg": "99999999"}, "price_per_kg", 422),
    "future date": ({"trade_date": FUTURE}, "trade_date", 422),
    "ancient date": ({"trade_date": "1999-11-01"}, "trade_date", 422),
    "not a date": ({"trade_date": "2025-13-45"}, "trade_date", 422),
    "June fruit": ({"trade_date": "2025-06-15", "stage": "gan_qing"}, "trade_date", 422),
    "unknown stage": ({"stage": "xiao_qing"}, "stage", 422),
    "unknown plot": ({"plot_id": 2_000_000_000}, "plot_id", 422),
    "plot id too big": ({"plot_id": 2**40}, "plot_id", 422),
    "plot id as string": ({"plot_id": "1"}, "plot_id", 422),
    "unknown grower": ({"grower_id": 2_000_000_000}, "grower_id", 422),
    "bad uuid": ({"client_uuid": "not-a-uuid"}, "client_uuid", 422),
    "control chars in uuid": ({"client_uuid": "\x00" * 36}, "client_uuid", 422),
    "no uuid": ({"client_uuid": None}, "client_uuid", 422),
    "unknown field": ({"colour": "red"}, "colour", 422),
}


@pytest.mark.parametrize("change,field,status", BAD_TRADES.values(), ids=BAD_TRADES.keys())
def test_bad_trades_are_refused_naming_the_field_and_nothing_is_written(client, session, op, change, field, status):
    body = {k: v for k, v in {**trade_body(op.plot), **change}.items() if v is not None}
    r = client.post(TRADES, json=body, headers=bearer(op.token))
    assert r.status_code == status, r.json
    errors = r.json.get("errors", {})
    assert field in errors or field in errors.get("json", {}), r.json
    assert count(session, FruitTrade) == 0 and count(session, Alert) == 0


def test_fruit_outside_every_window_is_not_chenpi_material(client, op):
    r = client.post(TRADES, json=trade_body(op.plot, trade_date="2025-03-01", stage="gan_qing"), headers=bearer(op.token))
    assert r.status_code == 422 and r.json["reason"] == "chain.not_chenpi_material"


# --- tenancy -----------------------------------------------------------------------------------
def test_operators_see_only_their_own_trades(client, make, op):
    mine = make.trade(op.operator, op.plot)
    theirs = make.trade(make.operator(), op.plot)
    r = client.get(TRADES, headers=bearer(op.token))
    assert [t["id"] for t in r.json] == [mine.id]
    missing = client.get(f"{TRADES}/2000000000", headers=bearer(op.token))
    other = client.get(f"{TRADES}/{theirs.id}", headers=bearer(op.token))
    assert other.status_code == missing.status_code == 404
    assert other.json["message"] == missing.json["message"]
    # filtering on the other operator finds nothing
    assert client.get(TRADES, query_string={"operator_id": theirs.operator_id}, headers=bearer(op.token)).json == []
    for role in ("admin", "inspector"):
        ids = {t["id"] for t in client.get(TRADES, headers=bearer(make.token(role))).json}
        assert {mine.id, theirs.id} <= ids
        assert client.get(f"{TRADES}/{theirs.id}", headers=bearer(make.token(role))).status_code == 200


def test_list_filters(client, make, op):
    a = make.trade(op.operator, op.plot, trade_date=date(2025, 9, 1), stage="gan_qing")
    b = make.trade(op.operator, op.plot, trade_date=date(2024, 12, 1), stage="da_hong")
    h = bearer(op.token)
    assert [t["id"] for t in client.get(TRADES, query_string={"season": 2025}, headers=h).json] == [a.id]
    assert [t["id"] for t in client.get(TRADES, query_string={"stage": "da_hong"}, headers=h).json] == [b.id]
    assert [t["id"] for t in client.get(TRADES, query_string={"date_to": "2024-12-31"}, headers=h).json] == [b.id]
    assert client.get(TRADES, query_string={"season": "abc"}, headers=h).status_code == 422


# --- quota and plausibility alerts ---------------------------------------------------------------
def test_trades_over_the_verified_quota_raise_an_alert_with_evidence(client, session, make, op):
    h = bearer(op.token)
    first = client.post(TRADES, json=trade_body(op.plot, weight_kg="10000"), headers=h).json
    second = client.post(TRADES, json=trade_body(op.plot, weight_kg="6000"), headers=h).json
    assert alerts_for(session, first["id"]) == []
    [alert] = alerts_for(session, second["id"])
    assert alert.kind == "over_quota" and alert.plot_id == op.plot.id and alert.operator_id == op.operator.id
    assert alert.evidence["quota_kg"] == "15000.000" and alert.evidence["basis"] == "verified"
    assert alert.evidence["traded_kg_before"] == "10000.000" and alert.evidence["traded_kg_after"] == "16000.000"
    quota = client.get(f"/api/v1/chain/plots/{op.plot.id}/quota", query_string={"season": 2025},
                       headers=bearer(make.token("inspector"))).json
    assert quota == {"plot_id": op.plot.id, "season": 2025, "quota_kg": "15000.000", "basis": "verified",
                     "traded_kg": "16000.000", "remaining_kg": "-1000.000", "trade_count": 2}
    listed = client.get("/api/v1/chain/alerts", query_string={"plot_id": op.plot.id}, headers=bearer(op.admin)).json
    assert [a["kind"] for a in listed] == ["over_quota"] and listed[0]["trade_id"] == second["id"]


def test_the_quota_counts_each_season_apart(client, session, op):
    h = bearer(op.token)
    client.post(TRADES, json=trade_body(op.plot, weight_kg="14000", trade_date="2024-11-01"), headers=h)
    r = client.post(TRADES, json=trade_body(op.plot, weight_kg="14000"), headers=h)
    assert alerts_for(session, r.json["id"]) == []


def test_without_a_verified_yield_the_quota_is_area_times_the_configured_ceiling(app, client, session, make, op, monkeypatch):
    plot = make.plot(verified_yield_kg=None, area_mu=Decimal("2.00"), tree_count=100)  # 2 亩 × 4,000 kg
    h = bearer(op.token)
    ok = client.post(TRADES, json=trade_body(plot, weight_kg="8000"), headers=h).json
    assert alerts_for(session, ok["id"]) == []
    monkeypatch.setattr(app.config["CHENPI"], "CHAIN_YIELD_CEILING_KG_PER_MU", Decimal("3000"))
    over = client.post(TRADES, json=trade_body(plot, weight_kg="1"), headers=h).json
    [alert] = alerts_for(session, over["id"])
    assert alert.evidence["basis"] == "ceiling" and alert.evidence["quota_kg"] == "6000.000"


def test_a_date_outside_the_stages_window_raises_an_alert_but_is_kept(client, session, op):
    r = client.post(TRADES, json=trade_body(op.plot, stage="gan_qing", trade_date="2025-11-01"), headers=bearer(op.token))
    assert r.status_code == 201
    [alert] = alerts_for(session, r.json["id"])
    assert alert.kind == "stage_window" and alert.evidence["window"] == ["2025-08-08", "2025-10-23"]
    # a few days before the first window: kept (windows are approximate), with an alert
    r = client.post(TRADES, json=trade_body(op.plot, stage="gan_qing", trade_date="2025-08-03"), headers=bearer(op.token))
    assert r.status_code == 201 and [a.kind for a in alerts_for(session, r.json["id"])] == ["stage_window"]


def test_a_seller_or_village_that_does_not_match_the_plot_raises_alerts(client, session, make, op):
    stranger, elsewhere = make.grower(), make.village()
    r = client.post(TRADES, json=trade_body(op.plot, grower_id=stranger.id, village_id=elsewhere.id), headers=bearer(op.token))
    assert r.status_code == 201
    kinds = {a.kind: a.evidence for a in alerts_for(session, r.json["id"])}
    assert kinds["grower_mismatch"] == {"declared_grower_id": stranger.id, "plot_grower_id": op.plot.grower_id}
    assert kinds["village_mismatch"]["plot_village_id"] == op.plot.village_id
    r = client.post(TRADES, json=trade_body(op.plot, grower_id=op.plot.grower_id, village_id=op.plot.village_id),
                    headers=bearer(op.token))
    assert alerts_for(session, r.json["id"]) == []


def test_trades_on_a_plot_found_unplanted_raise_alerts(client, session, make, op):
    before = make.trade(op.operator, op.plot, trade_date=date(2025, 10, 10))
    after = make.trade(op.operator, op.plot, trade_date=date(2025, 11, 5))
    chain.record_plot_finding(session, op.plot.id, "unplanted", date(2025, 11, 1), note="橘园已改种")
    session.commit()
    assert alerts_for(session, before.id) == []
    [retro] = alerts_for(session, after.id)
    assert retro.kind == "plot_unplanted" and retro.evidence["retroactive"] and retro.evidence["note"] == "橘园已改种"
    r = client.post(TRADES, json=trade_body(op.plot, trade_date="2025-11-10"), headers=bearer(op.token))
    assert [a.kind for a in alerts_for(session, r.json["id"])] == ["plot_unplanted"]
    # replanted: later trades are fine again
    chain.record_plot_finding(session, op.plot.id, "planted", date(2025, 11, 15))
    session.commit()
    r = client.post(TRADES, json=trade_body(op.plot, trade_date="2025-11-20"), headers=bearer(op.token))
    assert alerts_for(session, r.json["id"]) == []


# --- corrections (append-only) -------------------------------------------------------------------
def correct(client, token, trade_id, **kw):
    body = {"client_uuid": str(uuid.uuid4()), "reason": "过磅单录错", **kw}
    return client.post(f"{TRADES}/{trade_id}/corrections", json=body, headers=bearer(token))


def test_voiding_a_trade_keeps_it_in_the_history_only(client, session, op):
    h = bearer(op.token)
    t = client.post(TRADES, json=trade_body(op.plot, weight_kg="15000")).json if False else \
        client.post(TRADES, json=trade_body(op.plot, weight_kg="15000"), headers=h).json
    r = correct(client, op.token, t["id"], reason="重复录入")
    assert r.status_code == 201, r.json
    assert r.json["replacement"] is None and r.json["trade"]["status"] == "voided"
    assert r.json["reason"] == "重复录入" and r.json["user_id"] and r.json["created_at"]
    assert client.get(TRADES, headers=h).json == []
    history = client.get(TRADES, query_string={"history": "true"}, headers=h).json
    assert [(x["id"], x["status"]) for x in history] == [(t["id"], "voided")]
    assert history[0]["corrected_by"]["reason"] == "重复录入"
    # the old row is untouched, and the quota no longer counts it
    row = session.get(FruitTrade, t["id"])
    assert row.weight_kg == Decimal("15000.000")
    again = client.post(TRADES, json=trade_body(op.plot, weight_kg="15000"), headers=h).json
    assert alerts_for(session, again["id"]) == []


def test_superseding_a_trade_links_old_and_new_and_the_quota_counts_only_the_new(client, session, op):
    h = bearer(op.token)
    old = client.post(TRADES, json=trade_body(op.plot, weight_kg="10000"), headers=h).json
    fixed = {k: v for k, v in trade_body(op.plot, weight_kg="12000").items() if k != "client_uuid"}
    r = correct(client, op.token, old["id"], replacement=fixed)
    assert r.status_code == 201, r.json
    new = r.json["replacement"]
    assert new["status"] == "current" and new["replaces_trade_id"] == old["id"] and new["weight_kg"] == "12000.000"
    assert r.json["trade"]["status"] == "superseded" and r.json["trade"]["corrected_by"]["replacement_id"] == new["id"]
    assert alerts_for(session, new["id"]) == []  # 12,000 ≤ 15,000: the voided 10,000 is not counted
    assert [x["id"] for x in client.get(TRADES, headers=h).json] == [new["id"]]
    assert count(session, FruitTrade) == 2 and count(session, TradeCorrection) == 1


def test_a_correction_retried_answers_the_same_and_a_second_correction_is_refused(client, session, op):
    t = client.post(TRADES, json=trade_body(op.plot), headers=bearer(op.token)).json
    body = {"client_uuid": str(uuid.uuid4()), "reason": "价格录错",
            "replacement": {k: v for k, v in trade_body(op.plot, price_per_kg="9").items() if k != "client_uuid"}}
    first = client.post(f"{TRADES}/{t['id']}/corrections", json=body, headers=bearer(op.token))
    again = client.post(f"{TRADES}/{t['id']}/corrections", json=body, headers=bearer(op.token))
    assert (first.status_code, again.status_code) == (201, 200) and first.json == again.json
    other = client.post(f"{TRADES}/{t['id']}/corrections", json={**body, "reason": "又错了"}, headers=bearer(op.token))
    assert other.status_code == 409 and other.json["reason"] == "chain.uuid_conflict"
    second = correct(client, op.token, t["id"])
    assert second.status_code == 409 and second.json["reason"] == "chain.already_corrected"
    assert count(session, TradeCorrection) == 1 and count(session, FruitTrade) == 2


def test_bad_corrections_are_refused_and_nothing_is_written(client, session, make, op):
    t = make.trade(op.operator, op.plot)
    theirs = correct(client, make.token("operator"), t.id)
    assert theirs.status_code == 404
    assert correct(client, make.token("inspector"), t.id).status_code == 403
    bad = [
        ({"reason": ""}, "reason"),
        ({"reason": "坏\x07字符"}, "reason"),
        ({"reason": "x" * 501}, "reason"),
        ({"replacement": {**trade_body(op.plot, weight_kg="0")}}, "replacement"),
        ({"replacement": {k: v for k, v in trade_body(op.plot, trade_date=FUTURE).items() if k != "client_uuid"}},
         "replacement.trade_date"),
        ({"replacement": {k: v for k, v in trade_body(op.plot, plot_id=2_000_000_000).items() if k != "client_uuid"}},
         "replacement.plot_id"),
    ]
    for change, field in bad:
        r = correct(client, op.token, t.id, **change)
        assert r.status_code == 422, (change, r.json)
        errors = r.json["errors"]
        assert field in errors or field in errors.get("json", {}), (field, r.json)
    assert count(session, TradeCorrection) == 0 and count(session, FruitTrade) == 1


# --- concurrency ---------------------------------------------------------------------------------
@pytest.mark.real_servers
def test_parallel_trades_cannot_overdraw_a_plots_quota_unnoticed(app, committed_db):
    """Eight buyers post 200 kg each at the same moment onto a plot with 1,000 kg left: each
    trade sums the plot under its row lock, so exactly the three that cross the quota alert."""
    if committed_db.engine.dialect.name != "postgresql":
        pytest.skip("row locks are a PostgreSQL matter; SQLite has one writer at a time")
    from tests.factories import Factory

    make = Factory(committed_db.session)
    plot = make.plot(verified_yield_kg=Decimal("1000"))
    tokens = [make.token("operator") for _ in range(8)]
    plot_id = plot.id
    committed_db.session.remove()
    barrier = threading.Barrier(len(tokens))
    answers = []

    def buy(token):
        with app.app_context():
            client = app.test_client()
            barrier.wait()
            r = client.post(TRADES, json={"client_uuid": str(uuid.uuid4()), "plot_id": plot_id, "trade_date": "2025-11-01",
                                          "stage": "wei_hong", "weight_kg": "200", "price_per_kg": "8"},
                            headers=bearer(token))
            answers.append(r.status_code)

    threads = [threading.Thread(target=buy, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert answers == [201] * 8
    with app.app_context():
        alerts = committed_db.session.scalars(select(Alert).where(Alert.kind == "over_quota")).all()
        assert sorted(a.evidence["traded_kg_after"] for a in alerts) == ["1200.000", "1400.000", "1600.000"]
        assert sorted(a.evidence["traded_kg_before"] for a in alerts) == ["1000.000", "1200.000", "1400.000"]


def test_trades_on_a_plot_an_inspectors_check_in_found_not_planted_raise_alerts(client, session, make, op):
    from tests.factories import checkin_json

    inspector = bearer(make.token("inspector"))
    body = checkin_json(op.plot, captured_at="2025-10-30T10:00:00+08:00", result="fail", answers={"planted": False},
                        findings=[{"kind": "plot_not_planted", "note": "地块荒废"}])
    r = client.post("/api/v1/fieldwork/checkins", json=body, headers=inspector)
    assert r.status_code == 201, r.json
    before = client.post(TRADES, json=trade_body(op.plot, trade_date="2025-10-20"), headers=bearer(op.token)).json
    after = client.post(TRADES, json=trade_body(op.plot, trade_date="2025-11-01"), headers=bearer(op.token)).json
    assert alerts_for(session, before["id"]) == []
    [alert] = alerts_for(session, after["id"])
    assert alert.kind == "plot_unplanted" and alert.evidence["source"] == "fieldwork"
    assert alert.evidence["found_on"] == "2025-10-30"
    # replanted since (recorded through the chain's hook): no alert any more
    chain.record_plot_finding(session, op.plot.id, "planted", date(2025, 11, 5))
    session.commit()
    later = client.post(TRADES, json=trade_body(op.plot, trade_date="2025-11-10"), headers=bearer(op.token)).json
    assert alerts_for(session, later["id"]) == []


def test_a_not_planted_visit_synced_after_the_trades_flags_them(client, session, make, op):
    """The inspector's phone was offline on 2 Nov; the 3 Nov trade was recorded before it synced."""
    from tests.factories import checkin_json

    inspector = bearer(make.token("inspector"))
    before = make.trade(op.operator, op.plot, trade_date=date(2025, 11, 1))
    after = make.trade(op.operator, op.plot, trade_date=date(2025, 11, 3))
    # 00:30 on 2 Nov in Shanghai is still 1 Nov in UTC: the visit's day is Shanghai's
    body = checkin_json(op.plot, captured_at="2025-11-02T00:30:00+08:00", result="fail", answers={"planted": False},
                        findings=[{"kind": "plot_not_planted", "note": "无果树"}])
    r = client.post("/api/v1/fieldwork/checkins", json=body, headers=inspector)
    assert r.status_code == 201, r.json
    assert alerts_for(session, before.id) == []
    [alert] = alerts_for(session, after.id)
    assert alert.kind == "plot_unplanted" and alert.evidence["found_on"] == "2025-11-02"
    assert alert.evidence["retroactive"] and alert.evidence["source"] == "fieldwork" and alert.evidence["note"] == "无果树"
    # the phone syncs the same check-in again, and an amended version of it: no second alert
    assert client.post("/api/v1/fieldwork/checkins", json=body, headers=inspector).status_code == 200
    amended = checkin_json(op.plot, captured_at="2025-11-02T00:40:00+08:00", result="fail", answers={"planted": False},
                           findings=[{"kind": "plot_not_planted", "note": "无果树, 已改种"}], replaces=body["uuid"])
    assert client.post("/api/v1/fieldwork/checkins", json=amended, headers=inspector).status_code == 201
    assert len(alerts_for(session, after.id)) == 1
