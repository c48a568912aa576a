"""A lot's history as a GS1 EPCIS 2.0 JSON-LD document, for partners with EPCIS tooling.

Events (CBV 2.0 vocabulary, quantities in kg, `uom` KGM):
- ObjectEvent ADD, bizStep commissioning, per fruit trade in the lot's lineage (the harvest and
  purchase of fruit at the plot, which is the readPoint);
- TransformationEvent per lot in the lineage: fruit → peel (commissioning) for a production lot,
  peel → peel (repackaging) for a split or a merge;
- ObjectEvent OBSERVE shipping (or retail_selling) per sale of the lot itself and per sale on the
  path to it (whose received lot is in the lineage; an ancestor's other sales are not this lot's
  history), and ObjectEvent ADD receiving for the lot a purchase created;
- ObjectEvent OBSERVE storing per move of the lot itself.
Identifiers are HTTPS URIs under PUBLIC_BASE_URL (`/id/lot/…`, `/id/trade/…`, `/id/plot/…`,
`/id/warehouse/…`, `/id/operator/…`, `/id/grower/…`). Rows of other operators than the caller's,
and grower households (when the caller is not staff), get opaque identifiers: the lineage stays
whole without naming their records, and their quantities are only the kg that went towards
this lot (as in the trace), never their whole trade weights or outputs.
Day-precision dates become noon in Asia/Shanghai (+08:00).
"""
from __future__ import annotations

import hashlib
import uuid
from datetime import date
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ...config import current_config
from ...http import Actor
from ...timeutil import utcnow
from .. import rules
from ..models import FruitTrade, Lot, LotInput, LotMove, LotSource, Sale
from .common import _not_found
from .stock import current_sale

__all__ = ["epcis_document", "EPCIS_CONTEXT"]

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
EVENT_NS = uuid.UUID("5d0c8f3e-9b0a-4c7e-8f55-2f1b7a6c9e30")
OFFSET = "+08:00"


def _time(day: date) -> str:
    return f"{day.isoformat()}T12:00:00{OFFSET}"


def _kg(value) -> Decimal:
    return value if isinstance(value, Decimal) else rules.kg(value)  # SQLite hands back floats


def _qty(epc_class: str, kg) -> dict:
    return {"epcClass": epc_class, "quantity": float(rules.kg(kg)), "uom": "KGM"}


def epcis_document(session: Session, actor: Actor, lot_id: int) -> dict:
    lot = session.get(Lot, lot_id)
    if lot is None or not actor.sees_operator(lot.operator_id):
        raise _not_found("lot", lot_id)
    cfg = current_config()
    base = cfg.PUBLIC_BASE_URL.rstrip("/")
    staff = actor.role in ("admin", "inspector")

    def visible(operator_id: int) -> bool:
        return staff or operator_id == actor.operator_id

    def uri(kind: str, row_id: int, operator_id: int | None = None) -> str:
        if operator_id is None or visible(operator_id):
            return f"{base}/id/{kind}/{row_id}"
        opaque = hashlib.sha256(f"{kind}:{row_id}:{cfg.SECRET_KEY}".encode()).hexdigest()[:20]
        return f"{base}/id/{kind}/x{opaque}"

    def event_id(kind: str, row_id: int) -> str:
        return f"urn:uuid:{uuid.uuid5(EVENT_NS, f'{kind}/{row_id}')}"

    # lineage, level by level
    lots = {lot.id: lot}
    frontier = [lot.id]
    links: list[LotSource] = []
    while frontier:
        level = list(session.scalars(select(LotSource).where(LotSource.lot_id.in_(frontier))))
        links += level
        frontier = sorted({s.source_lot_id for s in level} - lots.keys())
        lots.update({x.id: x for x in session.scalars(select(Lot).where(Lot.id.in_(frontier)))})
    sources: dict[int, list[LotSource]] = {}
    for link in links:
        sources.setdefault(link.lot_id, []).append(link)
    inputs = session.execute(select(LotInput, FruitTrade).join(FruitTrade, FruitTrade.id == LotInput.trade_id)
                             .where(LotInput.lot_id.in_(list(lots))).order_by(LotInput.id)).all()
    # Only the lot's own sales and the sales on the path to it (whose received lot is in the
    # lineage): never an ancestor's other sales (another operator's, or a split's siblings).
    sales = list(session.scalars(select(Sale).where(
        or_(Sale.lot_id == lot.id, Sale.received_lot_id.in_(list(lots))), current_sale()).order_by(Sale.id)))
    # kg of each lineage lot (and of each trade) that went towards this lot, as trace_lot computes
    # them: a lot the caller cannot see shows only that share, never its whole output.
    toward: dict[int, Decimal] = {lot.id: _kg(lot.output_kg)}
    for lid in sorted(lots, reverse=True):  # children have larger ids than their sources
        row = lots[lid]
        need = toward.get(lid, Decimal(0))
        for link in sources.get(lid, []):
            toward[link.source_lot_id] = toward.get(link.source_lot_id, Decimal(0)) + \
                need * _kg(link.kg) / _kg(row.output_kg)
    fruit_toward: dict[int, Decimal] = {}
    for lot_input, trade in inputs:
        row = lots[lot_input.lot_id]
        fruit_toward[trade.id] = fruit_toward.get(trade.id, Decimal(0)) + \
            toward.get(row.id, Decimal(0)) * _kg(lot_input.kg) / _kg(row.output_kg)

    def lot_kg(row: Lot):
        return row.output_kg if visible(row.operator_id) else toward.get(row.id, Decimal(0))

    def part_of(row: Lot, kg):
        """kg that went into `row`, scaled to this lot's share when the caller cannot see `row`."""
        if visible(row.operator_id):
            return kg
        return toward.get(row.id, Decimal(0)) * _kg(kg) / _kg(row.output_kg)
    moves = list(session.scalars(select(LotMove).where(LotMove.lot_id == lot.id).order_by(LotMove.id)))

    def lot_uri(row: Lot) -> str:
        return uri("lot", row.id, row.operator_id)

    events: list[dict] = []
    seen_trades = set()
    for lot_input, trade in inputs:
        if trade.id in seen_trades:
            continue
        seen_trades.add(trade.id)
        events.append({
            "type": "ObjectEvent", "eventID": event_id("trade", trade.id), "eventTime": _time(trade.trade_date),
            "eventTimeZoneOffset": OFFSET, "action": "ADD", "bizStep": "commissioning", "disposition": "active",
            "quantityList": [_qty(uri("trade", trade.id, trade.operator_id),
                                 trade.weight_kg if visible(trade.operator_id) else fruit_toward[trade.id])],
            "readPoint": {"id": uri("plot", trade.plot_id)},
            "sourceList": [{"type": "owning_party", "source": uri("grower", trade.grower_id, None if staff else -1)}],
            "destinationList": [{"type": "owning_party", "destination": uri("operator", trade.operator_id, trade.operator_id)}],
            "ilmd": {"chenpi:harvestStage": trade.stage, "chenpi:season": trade.season},
        })
    by_lot: dict[int, list] = {}
    for lot_input, trade in inputs:
        by_lot.setdefault(lot_input.lot_id, []).append((lot_input, trade))
    received = {s.received_lot_id: s for s in sales if s.received_lot_id}
    for row in sorted(lots.values(), key=lambda r: r.id):
        where = {"bizLocation": {"id": uri("warehouse", row.warehouse_id, row.operator_id)}} if row.warehouse_id else {}
        if row.kind == "production":
            events.append({
                "type": "TransformationEvent", "eventID": event_id("lot", row.id), "eventTime": _time(row.production_date),
                "eventTimeZoneOffset": OFFSET, "bizStep": "commissioning", "disposition": "active",
                "inputQuantityList": [_qty(uri("trade", t.id, t.operator_id), part_of(row, i.kg))
                                      for i, t in by_lot.get(row.id, [])],
                "outputQuantityList": [_qty(lot_uri(row), lot_kg(row))],
                **where,
                "ilmd": {"chenpi:harvestStage": row.stage, "chenpi:season": row.season,
                         "chenpi:harvestDate": row.harvest_date.isoformat()},
            })
        elif row.kind in ("split", "merge"):
            events.append({
                "type": "TransformationEvent", "eventID": event_id("lot", row.id), "eventTime": _time(row.production_date),
                "eventTimeZoneOffset": OFFSET, "bizStep": "repackaging", "disposition": "active",
                "inputQuantityList": [_qty(lot_uri(lots[s.source_lot_id]), part_of(row, s.kg))
                                      for s in sources.get(row.id, [])],
                "outputQuantityList": [_qty(lot_uri(row), lot_kg(row))],
                **where,
            })
        elif row.kind == "purchase" and row.id in received:
            sale = received[row.id]
            events.append({
                "type": "ObjectEvent", "eventID": event_id("receipt", row.id), "eventTime": _time(row.production_date),
                "eventTimeZoneOffset": OFFSET, "action": "ADD", "bizStep": "receiving", "disposition": "in_progress",
                "quantityList": [_qty(lot_uri(row), lot_kg(row))],
                "sourceList": [{"type": "owning_party",
                                "source": uri("operator", sale.seller_operator_id, sale.seller_operator_id)}],
                "destinationList": [{"type": "owning_party", "destination": uri("operator", row.operator_id, row.operator_id)}],
            })
    for sale in sales:
        seller_lot = lots[sale.lot_id]
        event = {
            "type": "ObjectEvent", "eventID": event_id("sale", sale.id), "eventTime": _time(sale.sale_date),
            "eventTimeZoneOffset": OFFSET, "action": "OBSERVE",
            "bizStep": "retail_selling" if sale.buyer_kind == "retail" else "shipping",
            "disposition": "retail_sold" if sale.buyer_kind == "retail" else "in_transit",
            "quantityList": [_qty(lot_uri(seller_lot), sale.kg if sale.received_lot_id not in lots
                                  else lot_kg(lots[sale.received_lot_id]))],
            "sourceList": [{"type": "owning_party", "source": uri("operator", sale.seller_operator_id, sale.seller_operator_id)}],
            "chenpi:vintageYear": sale.vintage_year,
        }
        if sale.buyer_operator_id is not None:
            event["destinationList"] = [{"type": "owning_party",
                                         "destination": uri("operator", sale.buyer_operator_id, sale.buyer_operator_id)}]
        elif sale.destination and visible(sale.seller_operator_id):
            event["chenpi:destination"] = sale.destination
        events.append(event)
    for move in moves:
        events.append({
            "type": "ObjectEvent", "eventID": event_id("move", move.id), "eventTime": _time(move.moved_on),
            "eventTimeZoneOffset": OFFSET, "action": "OBSERVE", "bizStep": "storing", "disposition": "active",
            "quantityList": [_qty(lot_uri(lot), lot.output_kg)],
            "bizLocation": {"id": uri("warehouse", move.to_warehouse_id, lot.operator_id)},
        })
    events.sort(key=lambda e: (e["eventTime"], e["eventID"]))
    return {
        "@context": [EPCIS_CONTEXT, {"chenpi": f"{base}/ns/chenpi#"}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": utcnow().isoformat(timespec="seconds").replace("+00:00", "Z"),
        "epcisBody": {"eventList": events},
    }
