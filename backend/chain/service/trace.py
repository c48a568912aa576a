"""Trace backward from a lot to the fruit trades, plots, growers, villages and towns it came from,
and forward from a plot or a grower to every lot and sale its fruit reached.

A lot made from fruit owes each trade the kg that went in. A lot made from lots (split, merge,
purchase) owes each source lot's trades in proportion: taking k kg of a source whose output was
O kg takes k/O of that source's fruit. Sources always have smaller ids than the lots made from
them (a database check), so one pass in id order computes everything, and lineage has no cycles.
Queries are batched: one per lineage level, one for all the fruit.
"""
from __future__ import annotations

from collections import defaultdict, namedtuple
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...http import Actor
from ...registry.models import Plot, Town, Village
from .. import rules
from ..models import FruitTrade, Lot, LotCorrection, LotInput, LotSource, Sale
from .common import _not_found, current_trade

__all__ = ["trace_lot", "trace_forward"]


def trace_lot(session: Session, actor: Actor, lot_id: int) -> dict:
    # Columns only: loading the Lot object would load its (maybe hundreds of) inputs too.
    lot = session.execute(select(*_LOT_COLUMNS).where(Lot.id == lot_id)).first()
    if lot is None or not actor.sees_operator(lot.operator_id):
        raise _not_found("lot", lot_id)
    lots, sources, fruit = _gather(session, lot)
    staff = actor.role in ("admin", "inspector")
    document = assemble(lot, lots, sources, fruit, lambda operator_id: staff or operator_id == actor.operator_id)
    if not staff:  # the registry shows grower households to staff only
        for row in document["trades"]:
            row["grower_id"] = None
        document["growers"] = []
    return document


_Fruit = namedtuple("_Fruit", "lot_id kg id operator_id trade_date stage season plot_id plot_code grower_id village_id "
                             "village_name town_id town_name")
_LOT_COLUMNS = (Lot.id, Lot.kind, Lot.operator_id, Lot.code, Lot.output_kg, Lot.season, Lot.harvest_date)


def _gather(session: Session, lot):
    """The lot's lineage (every ancestor, level by level) and the fruit of its production lots."""
    conn = session.connection()
    lots = {lot.id: lot}
    sources: dict[int, list[tuple[int, Decimal]]] = defaultdict(list)
    frontier = [lot.id]
    while frontier:
        links = conn.execute(select(LotSource.lot_id, LotSource.source_lot_id, LotSource.kg)
                             .where(LotSource.lot_id.in_(frontier))).all()
        for child, source, kg in links:
            sources[child].append((source, _kg(kg)))
        frontier = sorted({source for _, source, _ in links} - lots.keys())
        if frontier:
            lots.update({r.id: r for r in conn.execute(select(*_LOT_COLUMNS).where(Lot.id.in_(frontier)))})
    fruit = conn.execute(
        select(LotInput.lot_id, LotInput.kg, FruitTrade.id, FruitTrade.operator_id, FruitTrade.trade_date,
               FruitTrade.stage, FruitTrade.season, FruitTrade.plot_id, Plot.code.label("plot_code"),
               FruitTrade.grower_id, FruitTrade.village_id, Village.name.label("village_name"), Village.town_id,
               Town.name.label("town_name"))
        .join(FruitTrade, FruitTrade.id == LotInput.trade_id)
        .join(Plot, Plot.id == FruitTrade.plot_id)
        .join(Village, Village.id == FruitTrade.village_id)
        .join(Town, Town.id == Village.town_id)
        .where(LotInput.lot_id.in_([i for i, r in lots.items() if r.kind == "production"]))
    )
    # Plain named tuples: attribute access on SQLAlchemy rows costs more than the whole assembly.
    return lots, sources, [_Fruit._make(row) for row in fruit]


def _kg(value) -> Decimal:
    return value if isinstance(value, Decimal) else rules.kg(value)  # SQLite hands back floats


def _s3(value: Decimal) -> str:
    return f"{value:.3f}"


def assemble(lot, lots: dict, sources: dict, fruit: list, visible) -> dict:
    """The trace document from the gathered rows (pure: no database). `visible(operator_id)` says
    whether the caller may see that operator's trade and lot ids."""
    trades = {row.id: row for row in fruit}
    owed: dict[int, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))  # lot → trade → fruit kg
    for row in fruit:
        owed[row.lot_id][row.id] += _kg(row.kg)
    for lid in sorted(lots):  # sources have smaller ids: they are complete before their children
        for source, kg in sources.get(lid, ()):
            part = kg / _kg(lots[source].output_kg)
            target = owed[lid]
            for trade_id, fruit_kg in owed[source].items():
                target[trade_id] += fruit_kg * part
    mine = owed[lot.id]
    total = sum(mine.values(), Decimal(0))
    scale = (1 / total) if total else Decimal(0)

    def share(kg: Decimal) -> str:
        return f"{kg * scale:.6f}"

    def grouped(key, extra) -> list[dict]:
        sums: dict = defaultdict(Decimal)
        for trade_id, kg in mine.items():
            sums[key(trades[trade_id])] += kg
        return [{**extra(k), "fruit_kg": _s3(kg), "share": share(kg)}
                for k, kg in sorted(sums.items(), key=lambda kv: (-kv[1], str(kv[0])))]

    trade_rows = []
    for trade_id, kg in sorted(mine.items(), key=lambda kv: (-kv[1], kv[0])):
        t = trades[trade_id]
        trade_rows.append({
            "trade_id": trade_id if visible(t.operator_id) else None, "trade_date": t.trade_date.isoformat(),
            "stage": t.stage, "season": t.season, "plot_id": t.plot_id, "grower_id": t.grower_id,
            "village_id": t.village_id, "town_id": t.town_id, "fruit_kg": _s3(kg), "share": share(kg)})
    return {
        "lot_id": lot.id, "code": lot.code, "kind": lot.kind, "season": lot.season,
        "harvest_date": lot.harvest_date.isoformat(), "output_kg": _s3(_kg(lot.output_kg)), "fruit_kg": _s3(total),
        "lineage": [{"lot_id": r.id if visible(r.operator_id) else None, "kind": r.kind,
                     "code": r.code if visible(r.operator_id) else None, "operator_id": r.operator_id,
                     "sources": [{"lot_id": s if visible(lots[s].operator_id) else None, "kg": _s3(kg)}
                                 for s, kg in sources.get(r.id, ())]}
                    for r in sorted(lots.values(), key=lambda r: -r.id)],
        "trades": trade_rows,
        "plots": grouped(lambda t: (t.plot_id, t.plot_code), lambda k: {"plot_id": k[0], "code": k[1]}),
        "growers": grouped(lambda t: t.grower_id, lambda k: {"grower_id": k}),
        "villages": grouped(lambda t: (t.village_id, t.village_name), lambda k: {"village_id": k[0], "name": k[1]}),
        "towns": grouped(lambda t: (t.town_id, t.town_name), lambda k: {"town_id": k[0], "name": k[1]}),
    }


# --- forward: from a plot or a grower to every lot and sale ---------------------------------------
def trace_forward(session: Session, actor: Actor, plot_id: int | None = None, grower_id: int | None = None) -> dict:
    """Every current trade of the plot's (or grower's) fruit, every lot it went into (down through
    splits, merges and purchases), and every sale from those lots, each with the fruit kg that
    came from here. Staff only (it crosses operators)."""
    from ...registry.models import Grower
    from .stock import current_sale

    if plot_id is not None and session.get(Plot, plot_id) is None:
        raise _not_found("plot", plot_id)
    if grower_id is not None and session.get(Grower, grower_id) is None:
        raise _not_found("grower", grower_id)
    conn = session.connection()
    where = FruitTrade.plot_id == plot_id if plot_id is not None else FruitTrade.grower_id == grower_id
    trades = conn.execute(select(FruitTrade.id, FruitTrade.operator_id, FruitTrade.plot_id, FruitTrade.trade_date,
                                 FruitTrade.stage, FruitTrade.season, FruitTrade.weight_kg)
                          .where(where, current_trade()).order_by(FruitTrade.id)).all()
    owed: dict[int, Decimal] = defaultdict(Decimal)  # lot → fruit kg from here
    for lot_id, kg in conn.execute(select(LotInput.lot_id, LotInput.kg)
                                   .where(LotInput.trade_id.in_([t.id for t in trades]))):
        owed[lot_id] += _kg(kg)
    lots: dict = {}
    frontier = sorted(owed)
    while frontier:
        lots.update({r.id: r for r in conn.execute(select(*_LOT_COLUMNS).where(Lot.id.in_(frontier)))})
        links = conn.execute(select(LotSource.lot_id, LotSource.source_lot_id, LotSource.kg)
                             .where(LotSource.source_lot_id.in_(frontier)).order_by(LotSource.lot_id)).all()
        children: dict[int, list] = defaultdict(list)
        for child, source, kg in links:
            children[child].append((source, _kg(kg)))
        for child in sorted(children):
            for source, kg in children[child]:
                owed[child] += owed[source] * kg / _kg(lots[source].output_kg)
        frontier = sorted(set(children) - lots.keys())
    voided = set(conn.execute(select(LotCorrection.lot_id).where(LotCorrection.lot_id.in_(list(lots)))).scalars())
    sales = conn.execute(select(Sale.id, Sale.lot_id, Sale.sale_date, Sale.kg, Sale.vintage_year, Sale.buyer_kind,
                                Sale.buyer_operator_id, Sale.destination, Sale.received_lot_id)
                         .where(Sale.lot_id.in_(list(lots)), current_sale()).order_by(Sale.id)).all()
    return {
        "plot_id": plot_id, "grower_id": grower_id,
        "fruit_kg": _s3(sum((_kg(t.weight_kg) for t in trades), Decimal(0))),
        "trades": [{"trade_id": t.id, "operator_id": t.operator_id, "plot_id": t.plot_id,
                    "trade_date": t.trade_date.isoformat(), "stage": t.stage, "season": t.season,
                    "weight_kg": _s3(_kg(t.weight_kg))} for t in trades],
        "lots": [{"lot_id": r.id, "kind": r.kind, "operator_id": r.operator_id, "code": r.code, "season": r.season,
                  "output_kg": _s3(_kg(r.output_kg)), "fruit_kg": _s3(owed[r.id]), "voided": r.id in voided}
                 for r in sorted(lots.values(), key=lambda r: r.id)],
        "sales": [{"sale_id": x.id, "lot_id": x.lot_id, "sale_date": x.sale_date.isoformat(), "kg": _s3(_kg(x.kg)),
                   "fruit_kg": _s3(owed[x.lot_id] * _kg(x.kg) / _kg(lots[x.lot_id].output_kg)),
                   "vintage_year": x.vintage_year, "buyer_kind": x.buyer_kind, "buyer_operator_id": x.buyer_operator_id,
                   "destination": x.destination, "received_lot_id": x.received_lot_id} for x in sales],
    }
