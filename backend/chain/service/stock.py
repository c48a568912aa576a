"""Storage and circulation of peel lots: what a lot holds, moves between warehouses, splits,
merges, and sales (to another operator, which creates the buyer's lot, or retail/export).

A lot holds its output_kg minus the kg current child lots took from it and minus retail/export
sales. Every writer drawing on a lot locks the lot row first, so concurrent splits, merges and
sales cannot oversell it.
"""
from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from ...errors import AppError
from ...http import Actor
from ...pagination import paginate
from ...registry.models import Operator
from .. import rules
from ..models import Lot, LotCorrection, LotMove, LotSource, Sale, SaleCorrection, Warehouse
from .common import _bad_ref, _lock, _not_found, _replay, _rule, resolve_operator
from .lots import current_lot, get_lot

DERIVED_NS = uuid.UUID("0b7c9a52-2f0e-4d1b-8f7e-3c5a9d2e6b41")  # client UUIDs of lots a split or sale makes

__all__ = ["lot_usage", "kg_left", "annotate", "move_lot", "split_lot", "merge_lots", "sell", "get_sale",
           "list_sales", "list_moves", "void_sale", "current_sale"]


def current_sale(sale_id_column=Sale.id):
    """SQL condition: the sale has not been voided."""
    return ~exists(select(SaleCorrection.id).where(SaleCorrection.sale_id == sale_id_column))


def lot_usage(session: Session, lot_id: int) -> Decimal:
    """kg drawn from a lot by current child lots and by retail/export sales."""
    return kg_drawn(session, [lot_id]).get(lot_id, Decimal(0))


def kg_drawn(session: Session, lot_ids) -> dict[int, Decimal]:
    ids = list(lot_ids)
    drawn: dict[int, Decimal] = {}
    if not ids:
        return drawn
    for lot_id, kg in session.execute(
        select(LotSource.source_lot_id, func.sum(LotSource.kg))
        .where(LotSource.source_lot_id.in_(ids), current_lot(LotSource.lot_id)).group_by(LotSource.source_lot_id)
    ):
        drawn[lot_id] = drawn.get(lot_id, Decimal(0)) + rules.kg(kg)
    for lot_id, kg in session.execute(
        select(Sale.lot_id, func.sum(Sale.kg)).where(Sale.lot_id.in_(ids), Sale.buyer_kind != "operator", current_sale())
        .group_by(Sale.lot_id)
    ):
        drawn[lot_id] = drawn.get(lot_id, Decimal(0)) + rules.kg(kg)
    return drawn


def kg_left(session: Session, lots) -> dict[int, Decimal]:
    drawn = kg_drawn(session, [lot.id for lot in lots])
    return {lot.id: rules.kg(lot.output_kg) - drawn.get(lot.id, Decimal(0)) for lot in lots}


def annotate(session: Session, lots):
    """Set each lot's kg_left (what it holds now) for the output schema; returns the lots."""
    many = lots if isinstance(lots, list) else [lots]
    for lot in many:
        lot.kg_left = Decimal(0) if lot.correction is not None else None
    left = kg_left(session, [lot for lot in many if lot.correction is None])
    for lot in many:
        if lot.id in left:
            lot.kg_left = left[lot.id]
    return lots


def _check_day(field: str, day: date, not_before: date, what: str) -> None:
    if day > rules.today():
        raise _rule(field, "Cannot be in the future.")
    if day < not_before:
        raise _rule(field, f"Cannot be before {what} ({not_before.isoformat()}).")


def _own_lot(session: Session, actor: Actor, lot_id: int) -> Lot:
    """A lot the actor may change (voided or not: a retry is answered before that is checked); 404 otherwise."""
    lot = session.get(Lot, lot_id)
    if lot is None or not actor.sees_operator(lot.operator_id) or actor.role == "inspector":
        raise _not_found("lot", lot_id)
    return lot


def _current(lot: Lot) -> Lot:
    """409 if the lot has been voided."""
    if lot.correction is not None:
        raise AppError("chain.already_corrected", errors={"lot_id": [f"Lot {lot.id} is voided."]})
    return lot


def _split_uuids(client_uuid: str, parts: int) -> list[str]:
    """The client UUIDs of the lots a split makes (the split's own UUID is recognised through them)."""
    return [str(uuid.uuid5(DERIVED_NS, f"split/{client_uuid}/{n}")) for n in range(parts)]


def uuid_used_by_split(session: Session, client_uuid: str) -> bool:
    """Whether a split was recorded under this client UUID (every split makes at least part 0)."""
    return session.scalar(select(Lot.id).where(Lot.client_uuid == _split_uuids(client_uuid, 1)[0])) is not None


def _uuid_conflict() -> AppError:
    return AppError("chain.uuid_conflict", errors={"client_uuid": ["Already used with different content."]})


def _own_current_lot(session: Session, actor: Actor, lot_id: int, field: str | None = None) -> Lot:
    """A current lot the actor may change; 404 (or 422 naming `field`) otherwise."""
    lot = session.get(Lot, lot_id)
    if lot is None or not actor.sees_operator(lot.operator_id) or actor.role == "inspector":
        if field:
            raise _bad_ref(field, "current lot of yours", lot_id)
        raise _not_found("lot", lot_id)
    if lot.correction is not None:
        if field:
            raise _bad_ref(field, "current lot of yours", lot_id)
        raise AppError("chain.already_corrected", errors={"lot_id": [f"Lot {lot.id} is voided."]})
    return lot


def _warehouse_of(session: Session, operator_id: int, warehouse_id: int, field: str) -> Warehouse:
    warehouse = session.get(Warehouse, warehouse_id)
    if warehouse is None or warehouse.operator_id != operator_id:
        raise _bad_ref(field, "warehouse of yours", warehouse_id)
    return warehouse


def _free_code(session: Session, operator_id: int, code: str, field: str) -> None:
    if session.scalar(select(Lot.id).where(Lot.operator_id == operator_id, Lot.code == code)) is not None:
        raise AppError("chain.duplicate", errors={field: [f"You already have a lot {code!r}."]})


def _draw(session: Session, lots_and_kg: list[tuple[Lot, Decimal, str]]) -> None:
    """Refuse if any lot holds less than asked (lots must already be locked)."""
    wanted: dict[int, Decimal] = {}
    for lot, kg, _ in lots_and_kg:
        wanted[lot.id] = wanted.get(lot.id, Decimal(0)) + kg
    left = kg_left(session, [lot for lot, _, _ in lots_and_kg])
    for lot, kg, field in lots_and_kg:
        if wanted[lot.id] > left[lot.id]:
            raise _rule(field, f"Lot {lot.code} holds {left[lot.id]} kg; {wanted[lot.id]} kg asked.", "chain.lot_exhausted")


# --- moves -------------------------------------------------------------------------------------
def move_lot(session: Session, actor: Actor, lot_id: int, values: dict) -> tuple[LotMove, bool]:
    lot = _own_lot(session, actor, lot_id)
    client_uuid = str(values["client_uuid"])
    digest = rules.content_hash({"lot_id": lot.id, "warehouse_id": values["warehouse_id"], "moved_on": values["moved_on"]})
    owner = lambda m: session.get(Lot, m.lot_id).operator_id  # noqa: E731
    if (earlier := _replay(session, LotMove, client_uuid, digest, actor, owner)) is not None:
        return earlier, False
    _current(lot)
    warehouse = _warehouse_of(session, lot.operator_id, values["warehouse_id"], "warehouse_id")
    _check_day("moved_on", values["moved_on"], lot.production_date, "the lot was made or received")
    _lock(session, Lot, [lot.id])
    if (earlier := _replay(session, LotMove, client_uuid, digest, actor, owner)) is not None:
        return earlier, False
    session.refresh(lot)
    _current(lot)
    if lot.warehouse_id == warehouse.id:
        raise _rule("warehouse_id", f"Lot {lot.code} is already in {warehouse.name}.")
    move = LotMove(client_uuid=client_uuid, content_hash=digest, lot_id=lot.id, from_warehouse_id=lot.warehouse_id,
                   to_warehouse_id=warehouse.id, moved_on=values["moved_on"], user_id=actor.user_id)
    lot.warehouse_id = warehouse.id
    session.add(move)
    session.flush()
    return move, True


def list_moves(session: Session, actor: Actor, lot_id: int) -> list[LotMove]:
    lot = get_lot(session, actor, lot_id)
    return list(session.scalars(select(LotMove).where(LotMove.lot_id == lot.id).order_by(LotMove.id)))


# --- splits and merges -------------------------------------------------------------------------
def _child(lot_values: dict, sources: list[tuple[Lot, Decimal]], kind: str, operator_id: int, actor: Actor,
           client_uuid: str, digest: str, day: date) -> Lot:
    total = sum((kg for _, kg in sources), Decimal(0))
    return Lot(client_uuid=client_uuid, content_hash=digest, operator_id=operator_id, code=lot_values["code"],
               kind=kind, warehouse_id=lot_values.get("warehouse_id"), stage=sources[0][0].stage,
               season=max(s.season for s, _ in sources), harvest_date=max(s.harvest_date for s, _ in sources),
               production_date=day, input_kg=total, output_kg=total, recorded_by=actor.user_id)


def _add_child(session: Session, child: Lot, sources: list[tuple[Lot, Decimal]]) -> Lot:
    session.add(child)
    session.flush()
    session.add_all(LotSource(lot_id=child.id, source_lot_id=s.id, kg=kg) for s, kg in sources)
    session.flush()
    session.expire(child, ["sources"])
    return child


def split_lot(session: Session, actor: Actor, lot_id: int, values: dict) -> tuple[list[Lot], bool]:
    """Pack part of a lot into sub-lots (分装); the lot keeps the rest."""
    lot = _own_lot(session, actor, lot_id)
    client_uuid = str(values["client_uuid"])
    content = {"lot_id": lot.id, "split_on": values["split_on"],
               "parts": [[p["code"], p["kg"], p.get("warehouse_id")] for p in values["parts"]]}
    digest = rules.content_hash(content)
    uuids = _split_uuids(client_uuid, len(values["parts"]))

    def replay():
        earlier = session.scalars(select(Lot).where(Lot.client_uuid.in_(uuids)).order_by(Lot.id)).all()
        if earlier:
            if earlier[0].content_hash != digest or not actor.sees_operator(earlier[0].operator_id):
                raise _uuid_conflict()
            return list(earlier)
        if session.scalar(select(Lot.id).where(Lot.client_uuid == client_uuid)) is not None:
            raise _uuid_conflict()  # a lot made or merged under this UUID
        return None

    if (earlier := replay()) is not None:
        return earlier, False
    # Lock before the checks: a parallel retry that committed meanwhile must be seen as a replay
    # (200), not as a clash with the part codes it just took.
    _lock(session, Lot, [lot.id])
    if (earlier := replay()) is not None:
        return earlier, False
    session.refresh(lot)
    _current(lot)
    codes = set()
    for n, part in enumerate(values["parts"]):
        if part["code"] in codes:
            raise _rule(f"parts.{n}.code", f"{part['code']!r} is given twice.")
        codes.add(part["code"])
        _free_code(session, lot.operator_id, part["code"], f"parts.{n}.code")
        part.setdefault("warehouse_id", None)
        if part["warehouse_id"] is None:
            part["warehouse_id"] = lot.warehouse_id
        if part["warehouse_id"] is None:
            raise _rule(f"parts.{n}.warehouse_id", "The lot is not stored yet; say where the part goes.")
        _warehouse_of(session, lot.operator_id, part["warehouse_id"], f"parts.{n}.warehouse_id")
    _check_day("split_on", values["split_on"], lot.production_date, "the lot was made or received")
    total = sum((p["kg"] for p in values["parts"]), Decimal(0))
    _draw(session, [(lot, total, "parts")])
    children = [
        _add_child(session, _child(part, [(lot, part["kg"])], "split", lot.operator_id, actor, uuids[n], digest,
                                   values["split_on"]), [(lot, part["kg"])])
        for n, part in enumerate(values["parts"])
    ]
    return children, True


def merge_lots(session: Session, actor: Actor, values: dict) -> tuple[Lot, bool]:
    """Merge kg from several of one's lots (same stage) into a new lot (拼堆); the vintage of the
    result is its youngest source's."""
    client_uuid = str(values["client_uuid"])
    operator_id = resolve_operator(session, actor, values.get("operator_id"))
    content = {"operator_id": operator_id, "code": values["code"], "warehouse_id": values["warehouse_id"],
               "merged_on": values["merged_on"], "sources": [[s["lot_id"], s["kg"]] for s in values["sources"]]}
    digest = rules.content_hash(content)
    if (earlier := _replay(session, Lot, client_uuid, digest, actor, lambda lot: lot.operator_id)) is not None:
        return earlier, False
    if uuid_used_by_split(session, client_uuid):
        raise _uuid_conflict()
    _warehouse_of(session, operator_id, values["warehouse_id"], "warehouse_id")
    sources: list[tuple[Lot, Decimal]] = []
    seen = set()
    for n, item in enumerate(values["sources"]):
        field = f"sources.{n}.lot_id"
        if item["lot_id"] in seen:
            raise _rule(field, f"Lot {item['lot_id']} is listed twice.")
        seen.add(item["lot_id"])
        lot = _own_current_lot(session, actor, item["lot_id"], field)
        if lot.operator_id != operator_id:
            raise _bad_ref(field, "current lot of yours", item["lot_id"])
        if sources and lot.stage != sources[0][0].stage:
            raise _rule(field, f"Lot {lot.code} is {lot.stage} peel; the others are {sources[0][0].stage}.")
        sources.append((lot, item["kg"]))
    latest = max(lot.production_date for lot, _ in sources)
    _check_day("merged_on", values["merged_on"], latest, "its newest source lot")
    _lock(session, Lot, [lot.id for lot, _ in sources])
    if (earlier := _replay(session, Lot, client_uuid, digest, actor, lambda lot: lot.operator_id)) is not None:
        return earlier, False
    if uuid_used_by_split(session, client_uuid):
        raise _uuid_conflict()
    # The code is checked under the lock, after the replay: a parallel retry that committed
    # meanwhile took it, and must answer as a replay, not as a clash.
    _free_code(session, operator_id, values["code"], "code")
    for lot, _ in sources:
        session.refresh(lot)
        _current(lot)
    _draw(session, [(lot, kg, f"sources.{n}.kg") for n, (lot, kg) in enumerate(sources)])
    child = _child(values, sources, "merge", operator_id, actor, client_uuid, digest, values["merged_on"])
    return _add_child(session, child, sources), True


# --- sales (and the buyer's purchases) ----------------------------------------------------------
def sell(session: Session, actor: Actor, lot_id: int, values: dict) -> tuple[Sale, bool]:
    """Sell kg from a lot, declaring the vintage year sold (and optionally an age in years)."""
    lot = _own_lot(session, actor, lot_id)
    client_uuid = str(values["client_uuid"])
    keys = ("sale_date", "kg", "vintage_year", "claimed_age_years", "price_per_kg", "buyer_kind",
            "buyer_operator_id", "destination")
    digest = rules.content_hash({"lot_id": lot.id, **{k: values.get(k) for k in keys}})
    if (earlier := _replay(session, Sale, client_uuid, digest, actor, lambda s: s.seller_operator_id)) is not None:
        return earlier, False
    _current(lot)
    buyer_kind = values["buyer_kind"]
    if buyer_kind == "operator":
        buyer = values.get("buyer_operator_id")
        if buyer is None:
            raise AppError("request.invalid", errors={"buyer_operator_id": ["Required when the buyer is an operator."]})
        if session.get(Operator, buyer) is None:
            raise _bad_ref("buyer_operator_id", "operator", buyer)
        if buyer == lot.operator_id:
            raise _rule("buyer_operator_id", "An operator cannot sell to itself; move or split the lot instead.")
        if values.get("destination"):
            raise _rule("destination", "Give a destination only for retail or export sales.")
    else:
        if values.get("buyer_operator_id") is not None:
            raise _rule("buyer_operator_id", "Only a sale to an operator names one.")
        if not values.get("destination"):
            raise AppError("request.invalid", errors={"destination": ["Required for retail and export sales."]})
    _check_day("sale_date", values["sale_date"], lot.production_date, "the lot was made or received")
    if values["vintage_year"] < lot.season:
        raise _rule("vintage_year", f"Lot {lot.code} is peel of the {lot.season} harvest; it cannot be sold as "
                                    f"{values['vintage_year']}.", "chain.vintage_overclaimed")
    if values["vintage_year"] > rules.season_of(values["sale_date"]):
        raise _rule("vintage_year", f"A sale on {values['sale_date'].isoformat()} cannot declare the "
                                    f"{values['vintage_year']} harvest: it is not in yet "
                                    f"(latest: {rules.season_of(values['sale_date'])}).")
    age = rules.age(lot.harvest_date, on=values["sale_date"])
    if values.get("claimed_age_years") is not None and values["claimed_age_years"] > age["years"]:
        raise _rule("claimed_age_years", f"Lot {lot.code} was {age['years']} full years old on "
                                         f"{values['sale_date'].isoformat()}.", "chain.vintage_overclaimed")
    _lock(session, Lot, [lot.id])
    if (earlier := _replay(session, Sale, client_uuid, digest, actor, lambda s: s.seller_operator_id)) is not None:
        return earlier, False
    session.refresh(lot)
    _current(lot)
    _draw(session, [(lot, values["kg"], "kg")])
    received = None
    if buyer_kind == "operator":
        received = _add_child(session, _child({"code": f"IN-{client_uuid.upper()}", "warehouse_id": None},
                                              [(lot, values["kg"])], "purchase", values["buyer_operator_id"], actor,
                                              str(uuid.uuid5(DERIVED_NS, f"sale/{client_uuid}")), digest,
                                              values["sale_date"]), [(lot, values["kg"])])
    sale = Sale(client_uuid=client_uuid, content_hash=digest, lot_id=lot.id, seller_operator_id=lot.operator_id,
                sale_date=values["sale_date"], kg=values["kg"], vintage_year=values["vintage_year"],
                claimed_age_years=values.get("claimed_age_years"), price_per_kg=values.get("price_per_kg"),
                buyer_kind=buyer_kind, buyer_operator_id=values.get("buyer_operator_id"),
                destination=values.get("destination"), received_lot_id=received.id if received else None,
                recorded_by=actor.user_id)
    session.add(sale)
    session.flush()
    return sale, True


def _sees_sale(actor: Actor, sale: Sale) -> bool:
    return actor.sees_operator(sale.seller_operator_id) or (
        sale.buyer_operator_id is not None and actor.sees_operator(sale.buyer_operator_id))


def get_sale(session: Session, actor: Actor, sale_id: int) -> Sale:
    sale = session.get(Sale, sale_id)
    if sale is None or not _sees_sale(actor, sale):
        raise _not_found("sale", sale_id)
    return sale


def list_sales(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    """Sales (as seller) and purchases (as buyer, 企业收购) the actor may see."""
    stmt = select(Sale).order_by(Sale.id)
    if actor.role not in ("admin", "inspector"):
        stmt = stmt.where(or_(Sale.seller_operator_id == actor.operator_id, Sale.buyer_operator_id == actor.operator_id))
    for key in ("lot_id", "seller_operator_id", "buyer_operator_id", "buyer_kind", "vintage_year"):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(Sale, key) == filters[key])
    if not filters.get("history"):
        stmt = stmt.where(current_sale())
    return paginate(session, stmt, page, page_size)


def void_sale(session: Session, actor: Actor, sale_id: int, values: dict) -> tuple[Sale, bool]:
    """Void a sale (the seller's correction): its kg return to the lot. A sale to an operator
    also voids the buyer's lot, which must not have been split, merged or sold from."""
    sale = get_sale(session, actor, sale_id)
    if not actor.sees_operator(sale.seller_operator_id):
        raise AppError("chain.other_operator", errors={"sale_id": ["Only the seller corrects a sale."]})
    client_uuid = str(values["client_uuid"])
    digest = rules.content_hash({"sale_id": sale.id, "reason": values["reason"]})
    owner = lambda c: session.get(Sale, c.sale_id).seller_operator_id  # noqa: E731
    if (earlier := _replay(session, SaleCorrection, client_uuid, digest, actor, owner)) is not None:
        return session.get(Sale, earlier.sale_id), False
    _lock(session, Lot, [sale.lot_id] + ([sale.received_lot_id] if sale.received_lot_id else []))
    if (earlier := _replay(session, SaleCorrection, client_uuid, digest, actor, owner)) is not None:
        return session.get(Sale, earlier.sale_id), False
    session.refresh(sale)
    if sale.correction is not None:
        raise AppError("chain.already_corrected", errors={"sale_id": [f"Sale {sale.id} is already voided."]})
    if sale.received_lot_id is not None and lot_usage(session, sale.received_lot_id):
        raise AppError("chain.lot_in_use", errors={"sale_id": [
            f"The buyer's lot {sale.received_lot_id} has been split, merged or sold from."]})
    session.add(SaleCorrection(client_uuid=client_uuid, content_hash=digest, sale_id=sale.id, reason=values["reason"],
                               user_id=actor.user_id))
    if sale.received_lot_id is not None:
        session.add(LotCorrection(client_uuid=str(uuid.uuid5(DERIVED_NS, f"void-sale/{client_uuid}")), content_hash=digest,
                                  lot_id=sale.received_lot_id, reason=f"sale {sale.id} voided: {values['reason']}"[:500],
                                  user_id=actor.user_id))
    session.flush()
    session.refresh(sale)
    return sale, True
