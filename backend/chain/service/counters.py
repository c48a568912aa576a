"""Counters for the dashboards: cumulative trade volume (kg, count, value) and sales, grouped.

Counted in SQL over current rows only, so corrections are reflected at once. Operators get
their own figures; staff get everyone's.
"""
from __future__ import annotations

from datetime import date

from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ...http import Actor
from ...registry.models import Village
from .. import rules
from ..models import FruitTrade, Lot, LotSource, Sale
from .common import current_trade
from .lots import current_lot
from .stock import current_sale

__all__ = ["trade_counters", "sale_counters", "inventory", "TRADE_GROUPS", "SALE_GROUPS"]

TRADE_GROUPS = {
    "town": Village.town_id,
    "village": FruitTrade.village_id,
    "operator": FruitTrade.operator_id,
    "plot": FruitTrade.plot_id,
    "grower": FruitTrade.grower_id,
    "season": FruitTrade.season,
    "stage": FruitTrade.stage,
}
SALE_GROUPS = {
    "vintage_year": Sale.vintage_year,
    "buyer_kind": Sale.buyer_kind,
    "seller": Sale.seller_operator_id,
    "buyer": Sale.buyer_operator_id,
    "destination": Sale.destination,
}
CNY = Decimal("0.01")


def _cny(value) -> str:
    return str(Decimal(str(value or 0)).quantize(CNY, ROUND_HALF_UP))


def trade_counters(session: Session, actor: Actor, group_by: str, filters: dict) -> list[dict]:
    key = TRADE_GROUPS[group_by]
    stmt = (select(key.label("key"), func.sum(FruitTrade.weight_kg), func.count(FruitTrade.id),
                   func.sum(FruitTrade.weight_kg * FruitTrade.price_per_kg))
            .join(Village, Village.id == FruitTrade.village_id).where(current_trade()).group_by(key).order_by(key))
    if actor.role not in ("admin", "inspector"):
        stmt = stmt.where(FruitTrade.operator_id == actor.operator_id)
    for name in ("season", "stage", "operator_id", "village_id"):
        if filters.get(name) is not None:
            stmt = stmt.where(getattr(FruitTrade, name) == filters[name])
    if filters.get("town_id") is not None:
        stmt = stmt.where(Village.town_id == filters["town_id"])
    return [{"key": k, "kg": rules.kg(kg), "count": n, "value_cny": _cny(value)}
            for k, kg, n, value in session.execute(stmt)]


def sale_counters(session: Session, actor: Actor, group_by: str, filters: dict) -> list[dict]:
    """kg and count of sales (vintage years sold, purchases between operators, exports …)."""
    key = SALE_GROUPS[group_by]
    stmt = (select(key.label("key"), func.sum(Sale.kg), func.count(Sale.id),
                   func.sum(Sale.kg * func.coalesce(Sale.price_per_kg, 0)))
            .where(current_sale()).group_by(key).order_by(key))
    if actor.role not in ("admin", "inspector"):
        stmt = stmt.where((Sale.seller_operator_id == actor.operator_id) | (Sale.buyer_operator_id == actor.operator_id))
    for name in ("vintage_year", "buyer_kind"):
        if filters.get(name) is not None:
            stmt = stmt.where(getattr(Sale, name) == filters[name])
    if filters.get("year") is not None:
        stmt = stmt.where(Sale.sale_date.between(date(filters["year"], 1, 1), date(filters["year"], 12, 31)))
    return [{"key": k, "kg": rules.kg(kg), "count": n, "value_cny": _cny(value)}
            for k, kg, n, value in session.execute(stmt)]


def inventory(session: Session, actor: Actor, filters: dict) -> list[dict]:
    """Peel in stock per operator, vintage (season) and stage: current lots' kg_left, summed in SQL."""
    taken = (select(LotSource.source_lot_id.label("lot_id"), func.sum(LotSource.kg).label("kg"))
             .where(current_lot(LotSource.lot_id)).group_by(LotSource.source_lot_id).subquery())
    sold = (select(Sale.lot_id.label("lot_id"), func.sum(Sale.kg).label("kg"))
            .where(Sale.buyer_kind != "operator", current_sale()).group_by(Sale.lot_id).subquery())
    left = Lot.output_kg - func.coalesce(taken.c.kg, 0) - func.coalesce(sold.c.kg, 0)
    per_lot = (select(Lot.operator_id, Lot.season, Lot.stage, left.label("left"))
               .outerjoin(taken, taken.c.lot_id == Lot.id).outerjoin(sold, sold.c.lot_id == Lot.id)
               .where(current_lot()))
    if actor.role not in ("admin", "inspector"):
        per_lot = per_lot.where(Lot.operator_id == actor.operator_id)
    for name in ("operator_id", "season", "stage", "warehouse_id"):
        if filters.get(name) is not None:
            per_lot = per_lot.where(getattr(Lot, name) == filters[name])
    per_lot = per_lot.subquery()
    stmt = (select(per_lot.c.operator_id, per_lot.c.season, per_lot.c.stage, func.count(), func.sum(per_lot.c.left))
            .where(per_lot.c.left > 0)
            .group_by(per_lot.c.operator_id, per_lot.c.season, per_lot.c.stage)
            .order_by(per_lot.c.operator_id, per_lot.c.season, per_lot.c.stage))
    return [{"operator_id": o, "season": season, "stage": stage, "lots": n, "kg": rules.kg(kg)}
            for o, season, stage, n, kg in session.execute(stmt)]
