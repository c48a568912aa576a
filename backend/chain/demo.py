"""A realistic season of chain data on top of the registry (the registry demo, or real data).

For every plot: one to three fruit trades to buying operators, together 50–95 % of its quota
(about 1 % of plots sell 110–150 %: laundering, which the alerts catch), at stage-typical dates
and prices; a few trades dated just outside their stage's window. Then, per operator and stage,
lots of about 30 trades each at a 4.5–5.5 % peel ratio in one warehouse, about 80 % of the fruit
used; a third of the lots sell part of their peel at retail, declaring their true vintage.
Alerts are computed with the same rules as the service (over quota in trade order, stage
window), so the demo's alerts are exactly what live entry would have raised.

Rows go in by bulk INSERT (a season is tens of thousands of trades; the service path is for
live entry, one request at a time). Loading is idempotent: a season already there is skipped.
"""
from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ..auth.models import User
from ..config import current_config
from ..registry.models import Operator, Plot
from . import rules
from .models import Alert, FruitTrade, Lot, LotInput, Sale, Warehouse

DEMO_NS = uuid.UUID("9a1f3c4e-7d2b-4e8a-b6c5-0f1e2d3c4b5a")
STAGE_SHARE = (("gan_qing", 0.25), ("wei_hong", 0.35), ("da_hong", 0.40))
PRICE = {"gan_qing": (10, 18), "wei_hong": (5, 9), "da_hong": (3, 6)}  # CNY per kg of fresh fruit
CHUNK = 5_000
BUYER_KINDS = ("enterprise", "cooperative", "processor")


def _uuid(kind: str, season: int, n: int) -> str:
    return str(uuid.uuid5(DEMO_NS, f"{kind}/{season}/{n}"))


def _put(session: Session, model, rows: list[dict]) -> None:
    for i in range(0, len(rows), CHUNK):
        session.execute(insert(model), rows[i:i + CHUNK])


def _stage(rng: random.Random) -> str:
    x = rng.random()
    for stage, share in STAGE_SHARE:
        if x < share:
            return stage
        x -= share
    return STAGE_SHARE[-1][0]


def _date_in(rng: random.Random, stage: str, season: int, outside: bool, today: date) -> date:
    start, end = rules.stage_window(stage, season)
    if outside:  # a few days past the window: kept, with an alert
        day = end + timedelta(days=rng.randint(1, rules.WINDOW_SLACK_DAYS))
    else:
        day = start + timedelta(days=rng.randint(0, (end - start).days))
    return min(day, today)


def load_chain_demo(session: Session, season: int | None = None, seed: int = 2025, plots_limit: int | None = None,
                    laundering: float = 0.01) -> dict:
    """Load one season; returns counts. `laundering`: the share of plots selling over quota.
    The caller commits."""
    today = rules.today()
    if season is None:  # the latest season whose harvest is over
        season = rules.season_of(today)
        if today <= rules.stage_window("da_hong", season)[1]:
            season -= 1
    if session.scalar(select(FruitTrade.id).where(FruitTrade.client_uuid == _uuid("trade", season, 0))) is not None:
        return chain_counts(session, season)
    rng = random.Random(seed * 10_000 + season)
    ceiling = current_config().CHAIN_YIELD_CEILING_KG_PER_MU
    user_id = session.scalar(select(User.id).where(User.role == "admin").order_by(User.id).limit(1))
    if user_id is None:
        from ..auth import service as auth_service

        user_id = auth_service.create_user(session, "chain-demo", "admin").id
    buyers = list(session.scalars(select(Operator.id).where(Operator.kind.in_(BUYER_KINDS)).order_by(Operator.id)))
    plots = session.execute(select(Plot.id, Plot.grower_id, Plot.village_id, Plot.area_mu, Plot.verified_yield_kg)
                            .order_by(Plot.id).limit(plots_limit)).all()
    if not buyers or not plots:
        raise RuntimeError("load the registry first (chenpi demo): the chain demo needs plots and operators")

    # --- trades ----------------------------------------------------------------------------------
    trades: list[dict] = []
    for plot in plots:
        quota = Decimal(plot.verified_yield_kg) if plot.verified_yield_kg is not None else Decimal(plot.area_mu) * ceiling
        share = rng.uniform(1.1, 1.5) if rng.random() < laundering else rng.uniform(0.5, 0.95)
        parts = rng.randint(1, 3)
        cuts = sorted(rng.random() for _ in range(parts - 1))
        fractions = [b - a for a, b in zip([0.0, *cuts], [*cuts, 1.0])]
        for fraction in fractions:
            weight = (quota * Decimal(share * fraction)).quantize(rules.KG)
            if weight <= 0:
                continue
            stage = _stage(rng)
            day = _date_in(rng, stage, season, rng.random() < 0.005, today)
            low, high = PRICE[stage]
            trades.append({
                "client_uuid": _uuid("trade", season, len(trades)), "content_hash": "demo", "plot_id": plot.id,
                "grower_id": plot.grower_id, "village_id": plot.village_id, "operator_id": rng.choice(buyers),
                "trade_date": day, "stage": stage, "season": rules.season_of(day), "weight_kg": weight,
                "price_per_kg": Decimal(str(round(rng.uniform(low, high), 2))), "recorded_by": user_id,
            })
    _put(session, FruitTrade, trades)
    ids = dict(session.execute(select(FruitTrade.client_uuid, FruitTrade.id)
                               .where(FruitTrade.content_hash == "demo", FruitTrade.season == season)).all())
    for t in trades:
        t["id"] = ids[t["client_uuid"]]

    # --- alerts, by the service's rules, in trade order per plot -----------------------------------
    quotas = {p.id: (Decimal(p.verified_yield_kg), "verified") if p.verified_yield_kg is not None
              else ((Decimal(p.area_mu) * ceiling).quantize(rules.KG), "ceiling") for p in plots}
    alerts: list[dict] = []
    by_plot: dict[int, list[dict]] = defaultdict(list)
    for t in trades:
        by_plot[t["plot_id"]].append(t)
    for plot_id, rows in by_plot.items():
        quota, basis = quotas[plot_id]
        total, count = Decimal(0), 0
        for t in sorted(rows, key=lambda r: r["id"]):
            total += t["weight_kg"]
            count += 1
            if total > quota:
                alerts.append({"kind": "over_quota", "plot_id": plot_id, "trade_id": t["id"], "operator_id": t["operator_id"],
                               "evidence": {"season": t["season"], "quota_kg": str(quota), "basis": basis,
                                            "trade_kg": str(t["weight_kg"]), "traded_kg_before": str(total - t["weight_kg"]),
                                            "traded_kg_after": str(total), "trade_count": count, "demo": True}})
    for t in trades:
        if not rules.in_stage_window(t["stage"], t["trade_date"]):
            start, end = rules.stage_window(t["stage"], t["season"])
            alerts.append({"kind": "stage_window", "plot_id": t["plot_id"], "trade_id": t["id"],
                           "operator_id": t["operator_id"],
                           "evidence": {"stage": t["stage"], "trade_date": t["trade_date"].isoformat(),
                                        "window": [start.isoformat(), end.isoformat()], "demo": True}})
    _put(session, Alert, alerts)

    # --- warehouses, lots, inputs, sales -------------------------------------------------------
    by_operator: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for t in trades:
        if rng.random() < 0.8:
            by_operator[(t["operator_id"], t["stage"])].append(t)
    existing = dict(session.execute(select(Warehouse.operator_id, func.min(Warehouse.id)).group_by(Warehouse.operator_id)).all())
    new_warehouses = [{"operator_id": o, "name": "主仓", "address": None}
                      for o in sorted({o for o, _ in by_operator} - existing.keys())]
    _put(session, Warehouse, new_warehouses)
    warehouses = dict(session.execute(select(Warehouse.operator_id, func.min(Warehouse.id)).group_by(Warehouse.operator_id)).all())
    lots: list[dict] = []
    lot_trades: list[list[dict]] = []
    for (operator_id, stage), rows in sorted(by_operator.items()):
        rows.sort(key=lambda r: r["trade_date"])
        for i in range(0, len(rows), 30):
            chunk = rows[i:i + 30]
            input_kg = sum((t["weight_kg"] for t in chunk), Decimal(0))
            harvest = max(t["trade_date"] for t in chunk)
            lots.append({
                "client_uuid": _uuid("lot", season, len(lots)), "content_hash": "demo", "operator_id": operator_id,
                "code": f"{season}-{stage[:2].upper()}-{len(lots):05d}", "kind": "production",
                "warehouse_id": warehouses[operator_id], "stage": stage, "season": season, "harvest_date": harvest,
                "production_date": min(harvest + timedelta(days=rng.randint(7, 30)), today),
                "input_kg": input_kg, "output_kg": (input_kg * Decimal(str(rng.uniform(0.045, 0.055)))).quantize(rules.KG),
                "recorded_by": user_id,
            })
            lot_trades.append(chunk)
    _put(session, Lot, lots)
    lot_ids = dict(session.execute(select(Lot.client_uuid, Lot.id).where(Lot.content_hash == "demo", Lot.season == season)).all())
    inputs, sales = [], []
    for lot, chunk in zip(lots, lot_trades):
        lot_id = lot_ids[lot["client_uuid"]]
        inputs += [{"lot_id": lot_id, "trade_id": t["id"], "kg": t["weight_kg"]} for t in chunk]
        if rng.random() < 0.33 and lot["production_date"] < today:
            sales.append({
                "client_uuid": _uuid("sale", season, len(sales)), "content_hash": "demo", "lot_id": lot_id,
                "seller_operator_id": lot["operator_id"],
                "sale_date": min(lot["production_date"] + timedelta(days=rng.randint(1, 60)), today),
                "kg": (lot["output_kg"] * Decimal(str(rng.uniform(0.1, 0.4)))).quantize(rules.KG),
                "vintage_year": season, "claimed_age_years": None,
                "price_per_kg": Decimal(str(rng.randint(80, 300))), "buyer_kind": "retail", "buyer_operator_id": None,
                "destination": "江门市 零售", "received_lot_id": None, "recorded_by": user_id,
            })
    _put(session, LotInput, inputs)
    _put(session, Sale, [s for s in sales if s["kg"] > 0])
    session.flush()
    return chain_counts(session, season)


def chain_counts(session: Session, season: int) -> dict:
    count = lambda model, *where: session.scalar(select(func.count()).select_from(model).where(*where))  # noqa: E731
    return {
        "season": season,
        "trades": count(FruitTrade, FruitTrade.season == season),
        "trade_kg": int(session.scalar(select(func.coalesce(func.sum(FruitTrade.weight_kg), 0))
                                       .where(FruitTrade.season == season))),
        "lots": count(Lot, Lot.season == season),
        "alerts": count(Alert),
        "sales": count(Sale),
    }
