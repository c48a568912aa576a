"""Warehouses and peel lots (批次): an operator turns fruit it bought into dried peel.

Mass balance: a lot may use at most what each of its trades has left (bought minus what current
lots already use); the trades' rows are locked while that is summed, so two lots made at once
cannot use the same fruit twice. Output above CHAIN_MAX_PEEL_RATIO of the input is refused.
The lot's harvest date is the latest trade date of its fruit; its age is computed, never stored.
"""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from ...config import current_config
from ...errors import AppError
from ...http import Actor
from ...pagination import paginate
from .. import rules
from ..models import FruitTrade, Lot, LotCorrection, LotInput, Warehouse
from .common import _bad_ref, _lock, _not_found, _replay, _rule, current_trade, resolve_operator

__all__ = ["create_warehouse", "get_warehouse", "list_warehouses", "update_warehouse", "create_lot", "get_lot",
           "list_lots", "void_lot", "trade_usage", "current_lot"]


def current_lot(lot_id_column=Lot.id):
    """SQL condition: the lot has not been voided."""
    return ~exists(select(LotCorrection.id).where(LotCorrection.lot_id == lot_id_column))


# --- warehouses --------------------------------------------------------------------------------
def _unique_name(session: Session, operator_id: int, name: str, exclude: int | None = None) -> None:
    stmt = select(Warehouse.id).where(Warehouse.operator_id == operator_id, Warehouse.name == name)
    if exclude is not None:
        stmt = stmt.where(Warehouse.id != exclude)
    if session.scalar(stmt) is not None:
        raise AppError("chain.duplicate", errors={"name": [f"You already have a warehouse named {name!r}."]})


def create_warehouse(session: Session, actor: Actor, values: dict) -> Warehouse:
    operator_id = resolve_operator(session, actor, values.get("operator_id"))
    _unique_name(session, operator_id, values["name"])
    warehouse = Warehouse(operator_id=operator_id, name=values["name"], address=values.get("address"))
    session.add(warehouse)
    session.flush()
    return warehouse


def get_warehouse(session: Session, actor: Actor, warehouse_id: int) -> Warehouse:
    warehouse = session.get(Warehouse, warehouse_id)
    if warehouse is None or not actor.sees_operator(warehouse.operator_id):
        raise _not_found("warehouse", warehouse_id)
    return warehouse


def update_warehouse(session: Session, actor: Actor, warehouse_id: int, values: dict) -> Warehouse:
    warehouse = get_warehouse(session, actor, warehouse_id)
    if values.get("name") is not None:
        _unique_name(session, warehouse.operator_id, values["name"], warehouse.id)
        warehouse.name = values["name"]
    if "address" in values:
        warehouse.address = values["address"]
    session.flush()
    return warehouse


def list_warehouses(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = select(Warehouse).order_by(Warehouse.id)
    if actor.role not in ("admin", "inspector"):
        stmt = stmt.where(Warehouse.operator_id == actor.operator_id)
    if filters.get("operator_id") is not None:
        stmt = stmt.where(Warehouse.operator_id == filters["operator_id"])
    return paginate(session, stmt, page, page_size)


# --- lots --------------------------------------------------------------------------------------
def trade_usage(session: Session, trade_ids) -> dict[int, Decimal]:
    """kg of each trade already in current lots."""
    rows = session.execute(
        select(LotInput.trade_id, func.sum(LotInput.kg)).where(LotInput.trade_id.in_(list(trade_ids)),
                                                               current_lot(LotInput.lot_id))
        .group_by(LotInput.trade_id)
    )
    return {trade_id: rules.kg(used) for trade_id, used in rows}


def _lot_content(values: dict, operator_id: int) -> dict:
    return {"operator_id": operator_id, "code": values["code"], "warehouse_id": values["warehouse_id"],
            "stage": values["stage"], "production_date": values["production_date"], "output_kg": values["output_kg"],
            "inputs": [[i["trade_id"], i["kg"]] for i in values["inputs"]]}


def _check_inputs(session: Session, operator_id: int, values: dict) -> list[FruitTrade]:
    """The trades of a lot's inputs, checked one by one (errors name inputs.N.field)."""
    seen: dict[int, int] = {}
    trades = []
    ids = [i["trade_id"] for i in values["inputs"]]
    by_id = {t.id: t for t in session.scalars(select(FruitTrade).where(FruitTrade.id.in_(ids), current_trade()))}
    for n, item in enumerate(values["inputs"]):
        field = f"inputs.{n}.trade_id"
        if item["trade_id"] in seen:
            raise _rule(field, f"Trade {item['trade_id']} is listed twice (also inputs.{seen[item['trade_id']]}); give its kg once.")
        seen[item["trade_id"]] = n
        trade = by_id.get(item["trade_id"])
        if trade is None or trade.operator_id != operator_id:
            # Another operator's trade, a corrected one and a missing one look the same.
            raise _bad_ref(field, "current trade of yours", item["trade_id"])
        if trade.stage != values["stage"]:
            raise _rule(field, f"Trade {trade.id} is {trade.stage} fruit; this lot is {values['stage']}.")
        if trades and trade.season != trades[0].season:
            raise _rule(field, f"Trade {trade.id} is from season {trade.season}; the lot's fruit is from {trades[0].season}.")
        trades.append(trade)
    return trades


def create_lot(session: Session, actor: Actor, values: dict) -> tuple[Lot, bool]:
    """Make a lot from fruit the operator bought; returns (lot, created)."""
    operator_id = resolve_operator(session, actor, values.get("operator_id"))
    client_uuid = str(values["client_uuid"])
    digest = rules.content_hash(_lot_content(values, operator_id))
    owner = lambda lot: lot.operator_id  # noqa: E731
    if (earlier := _replay(session, Lot, client_uuid, digest, actor, owner)) is not None:
        return earlier, False
    from .stock import uuid_used_by_split

    if uuid_used_by_split(session, client_uuid):
        raise AppError("chain.uuid_conflict", errors={"client_uuid": ["Already used with different content."]})
    warehouse = session.get(Warehouse, values["warehouse_id"])
    if warehouse is None or warehouse.operator_id != operator_id:
        raise _bad_ref("warehouse_id", "warehouse of yours", values["warehouse_id"])
    if session.scalar(select(Lot.id).where(Lot.operator_id == operator_id, Lot.code == values["code"])) is not None:
        raise AppError("chain.duplicate", errors={"code": [f"You already have a lot {values['code']!r}."]})
    trades = _check_inputs(session, operator_id, values)
    harvest = max(t.trade_date for t in trades)
    produced = values["production_date"]
    if produced > rules.today():
        raise _rule("production_date", "Cannot be in the future.")
    if produced < harvest:
        raise _rule("production_date", f"Cannot be before the latest harvest of its fruit ({harvest.isoformat()}).")
    input_kg = sum((i["kg"] for i in values["inputs"]), Decimal(0))
    ratio = current_config().CHAIN_MAX_PEEL_RATIO
    if values["output_kg"] > input_kg * ratio:
        raise _rule("output_kg", f"{values['output_kg']} kg of peel from {input_kg} kg of fruit is more than "
                                 f"{format((ratio * 100).normalize(), 'f')} % of it (fresh fruit gives about 5 %).",
                    "chain.output_implausible")
    _lock(session, FruitTrade, [t.id for t in trades])
    if (earlier := _replay(session, Lot, client_uuid, digest, actor, owner)) is not None:
        return earlier, False
    still_current = set(session.scalars(select(FruitTrade.id).where(FruitTrade.id.in_([t.id for t in trades]), current_trade())))
    for n, trade in enumerate(trades):
        if trade.id not in still_current:  # corrected while we waited for the lock
            raise _bad_ref(f"inputs.{n}.trade_id", "current trade of yours", trade.id)
    used = trade_usage(session, [t.id for t in trades])
    for n, (item, trade) in enumerate(zip(values["inputs"], trades)):
        left = rules.kg(trade.weight_kg) - used.get(trade.id, Decimal(0))
        if item["kg"] > left:
            raise _rule(f"inputs.{n}.kg", f"Trade {trade.id} has {left} kg left of {rules.kg(trade.weight_kg)} kg bought.",
                        "chain.fruit_exhausted")
    lot = Lot(client_uuid=client_uuid, content_hash=digest, operator_id=operator_id, code=values["code"],
              warehouse_id=warehouse.id, stage=values["stage"], season=trades[0].season, harvest_date=harvest,
              production_date=produced, input_kg=input_kg, output_kg=values["output_kg"], recorded_by=actor.user_id)
    session.add(lot)
    session.flush()
    session.add_all(LotInput(lot_id=lot.id, trade_id=i["trade_id"], kg=i["kg"]) for i in values["inputs"])
    session.flush()
    session.expire(lot, ["inputs"])
    return lot, True


def get_lot(session: Session, actor: Actor, lot_id: int) -> Lot:
    lot = session.get(Lot, lot_id)
    if lot is None or not actor.sees_operator(lot.operator_id):
        raise _not_found("lot", lot_id)
    return lot


def list_lots(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = select(Lot).order_by(Lot.id)
    if actor.role not in ("admin", "inspector"):
        stmt = stmt.where(Lot.operator_id == actor.operator_id)
    for key in ("operator_id", "kind", "warehouse_id", "season", "stage"):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(Lot, key) == filters[key])
    if not filters.get("history"):
        stmt = stmt.where(current_lot())
    return paginate(session, stmt, page, page_size)


def void_lot(session: Session, actor: Actor, lot_id: int, values: dict) -> tuple[Lot, bool]:
    """Void a lot (append-only: a correction row); its fruit (or peel) is free again.

    Refused while other lots or sales draw on it, and for purchased lots."""
    lot = get_lot(session, actor, lot_id)
    client_uuid = str(values["client_uuid"])
    digest = rules.content_hash({"lot_id": lot.id, "reason": values["reason"]})
    owner = lambda c: session.get(Lot, c.lot_id).operator_id  # noqa: E731
    if (earlier := _replay(session, LotCorrection, client_uuid, digest, actor, owner)) is not None:
        return session.get(Lot, earlier.lot_id), False
    _lock(session, Lot, [lot.id])
    if (earlier := _replay(session, LotCorrection, client_uuid, digest, actor, owner)) is not None:
        return session.get(Lot, earlier.lot_id), False
    _lock(session, FruitTrade, [i.trade_id for i in lot.inputs])
    session.refresh(lot)
    if lot.correction is not None:
        raise AppError("chain.already_corrected", errors={"lot_id": [f"Lot {lot.id} is already voided."]})
    if lot.kind == "purchase":
        raise AppError("chain.lot_in_use", errors={"lot_id": [
            "A purchased lot is the seller's sale seen from the buyer; it cannot be voided here."]})
    from .stock import lot_usage

    if lot_usage(session, lot.id):
        raise AppError("chain.lot_in_use", errors={"lot_id": [
            f"Lot {lot.id} has been split, merged or sold from; void those lots first (sales stay)."]})
    session.add(LotCorrection(client_uuid=client_uuid, content_hash=digest, lot_id=lot.id, reason=values["reason"],
                              user_id=actor.user_id))
    session.flush()
    session.refresh(lot)
    return lot, True
