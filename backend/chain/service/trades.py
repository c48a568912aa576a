"""Fruit trades with their quota and plausibility checks, corrections, alerts.

Every function takes a session and plain values, enforces tenancy (an operator sees and records
only its own rows; another operator's row is "not found"), raises catalogued AppErrors and
flushes; the request commits. Writers of a plot's trades lock the plot row first (FOR NO KEY
UPDATE on PostgreSQL), so concurrent trades are summed one after the other and none overdraws
the quota unnoticed.
"""
from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ... import alert_review
from ...config import current_config
from ...errors import AppError
from ...http import Actor
from ...pagination import paginate
from ...registry.models import Grower, Plot, Village
from ...timeutil import SHANGHAI
from .. import rules
from ..models import Alert, FruitTrade, LotInput, PlotFinding, TradeCorrection
from .common import _bad_ref, current_trade, _lock, _nested, _not_found, _replay, _rule, resolve_operator

__all__ = ["plot_quota", "traded", "quota_status", "create_trade", "get_trade", "list_trades", "correct_trade",
           "correction_view", "latest_finding", "record_plot_finding", "list_alerts", "get_alert", "acknowledge_alert",
           "resolve_alert"]

REPLACEMENT_NS = uuid.UUID("6f1c2b0e-4a57-4c1e-9a43-8b1d2f0c7e11")


# --- quota -------------------------------------------------------------------------------------
def plot_quota(plot: Plot) -> tuple[Decimal, str]:
    """A plot's fruit quota per season: its verified yield, else area × the configured ceiling."""
    if plot.verified_yield_kg is not None:
        return rules.kg(plot.verified_yield_kg), "verified"
    return rules.kg(Decimal(plot.area_mu) * current_config().CHAIN_YIELD_CEILING_KG_PER_MU), "ceiling"


def traded(session: Session, plot_id: int, season: int) -> tuple[Decimal, int]:
    """kg and count of the plot's current trades in a season."""
    total, count = session.execute(
        select(func.sum(FruitTrade.weight_kg), func.count(FruitTrade.id))
        .where(FruitTrade.plot_id == plot_id, FruitTrade.season == season, current_trade())
    ).one()
    return rules.kg(total), count


def quota_status(session: Session, actor: Actor, plot_id: int, season: int | None) -> dict:
    plot = session.get(Plot, plot_id)
    if plot is None:
        raise _not_found("plot", plot_id)
    season = season or rules.season_of(rules.today())
    quota, basis = plot_quota(plot)
    total, count = traded(session, plot_id, season)
    return {"plot_id": plot_id, "season": season, "quota_kg": quota, "basis": basis, "traded_kg": total,
            "remaining_kg": quota - total, "trade_count": count}


# --- trades ------------------------------------------------------------------------------------
def _trade_content(values: dict, operator_id: int) -> dict:
    keys = ("plot_id", "trade_date", "stage", "weight_kg", "price_per_kg", "grower_id", "village_id")
    return {"operator_id": operator_id, **{k: values.get(k) for k in keys}}


def _check_trade(session: Session, values: dict, prefix: str | None = None) -> Plot:
    """The checks that refuse a trade (422 naming the field); returns its plot."""
    plot = session.get(Plot, values["plot_id"])
    if plot is None:
        raise _bad_ref(_nested(prefix, "plot_id"), "plot", values["plot_id"])
    for field, model, what in (("grower_id", Grower, "grower"), ("village_id", Village, "village")):
        if values.get(field) is not None and session.get(model, values[field]) is None:
            raise _bad_ref(_nested(prefix, field), what, values[field])
    day = values["trade_date"]
    field = _nested(prefix, "trade_date")
    if day > rules.today():
        raise _rule(field, "Cannot be in the future.")
    if day < rules.EARLIEST_DATE:
        raise _rule(field, f"Cannot be before {rules.EARLIEST_DATE.isoformat()}.")
    if not rules.in_any_window(day):
        raise _rule(field, f"{day.isoformat()} is outside every harvest window (Aug 8 – Jan 6).",
                    "chain.not_chenpi_material")
    return plot


def _insert_trade(session: Session, actor: Actor, plot: Plot, operator_id: int, values: dict,
                  client_uuid: str, digest: str) -> FruitTrade:
    trade = FruitTrade(
        client_uuid=client_uuid, content_hash=digest, plot_id=plot.id, grower_id=plot.grower_id,
        village_id=plot.village_id, operator_id=operator_id, trade_date=values["trade_date"],
        stage=values["stage"], season=rules.season_of(values["trade_date"]), weight_kg=values["weight_kg"],
        price_per_kg=values["price_per_kg"], recorded_by=actor.user_id,
    )
    session.add(trade)
    session.flush()
    return trade


def _alert(session: Session, kind: str, trade: FruitTrade, evidence: dict) -> Alert:
    alert = Alert(kind=kind, plot_id=trade.plot_id, trade_id=trade.id, operator_id=trade.operator_id,
                  evidence=evidence)
    session.add(alert)
    return alert


def _plausibility(session: Session, trade: FruitTrade, plot: Plot, values: dict) -> list[Alert]:
    """Raise (store) the alerts a new current trade deserves. The plot row is locked."""
    alerts = []
    quota, basis = plot_quota(plot)
    total, count = traded(session, plot.id, trade.season)
    if total > quota:
        alerts.append(_alert(session, "over_quota", trade, {
            "season": trade.season, "quota_kg": str(quota), "basis": basis, "trade_kg": str(rules.kg(trade.weight_kg)),
            "traded_kg_before": str(total - rules.kg(trade.weight_kg)), "traded_kg_after": str(total),
            "trade_count": count, "area_mu": str(plot.area_mu),
        }))
    if not rules.in_stage_window(trade.stage, trade.trade_date):
        start, end = rules.stage_window(trade.stage, trade.season)
        alerts.append(_alert(session, "stage_window", trade, {
            "stage": trade.stage, "trade_date": trade.trade_date.isoformat(),
            "window": [start.isoformat(), end.isoformat()],
        }))
    if values.get("grower_id") is not None and values["grower_id"] != plot.grower_id:
        alerts.append(_alert(session, "grower_mismatch", trade, {
            "declared_grower_id": values["grower_id"], "plot_grower_id": plot.grower_id}))
    if values.get("village_id") is not None and values["village_id"] != plot.village_id:
        alerts.append(_alert(session, "village_mismatch", trade, {
            "declared_village_id": values["village_id"], "plot_village_id": plot.village_id}))
    unplanted = _unplanted_evidence(session, plot.id, trade.trade_date)
    if unplanted is not None:
        alerts.append(_alert(session, "plot_unplanted", trade, unplanted))
    session.flush()
    return alerts


def create_trade(session: Session, actor: Actor, values: dict) -> tuple[FruitTrade, bool]:
    """Record a trade; returns (trade, created). A retry of the same client UUID returns the first."""
    operator_id = resolve_operator(session, actor, values.get("operator_id"))
    client_uuid = str(values["client_uuid"])
    digest = rules.content_hash(_trade_content(values, operator_id))
    owner = lambda t: t.operator_id  # noqa: E731
    if (earlier := _replay(session, FruitTrade, client_uuid, digest, actor, owner)) is not None:
        return earlier, False
    plot = _check_trade(session, values)
    _lock(session, Plot, [plot.id])
    if (earlier := _replay(session, FruitTrade, client_uuid, digest, actor, owner)) is not None:
        return earlier, False  # a parallel retry got there while we waited for the lock
    trade = _insert_trade(session, actor, plot, operator_id, values, client_uuid, digest)
    _plausibility(session, trade, plot, values)
    return trade, True


def get_trade(session: Session, actor: Actor, trade_id: int) -> FruitTrade:
    trade = session.get(FruitTrade, trade_id)
    if trade is None or not actor.sees_operator(trade.operator_id):
        raise _not_found("trade", trade_id)
    return trade


def list_trades(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = select(FruitTrade).order_by(FruitTrade.id)
    if actor.role not in ("admin", "inspector"):
        stmt = stmt.where(FruitTrade.operator_id == actor.operator_id)
    for key in ("plot_id", "operator_id", "grower_id", "village_id", "season", "stage"):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(FruitTrade, key) == filters[key])
    if filters.get("date_from"):
        stmt = stmt.where(FruitTrade.trade_date >= filters["date_from"])
    if filters.get("date_to"):
        stmt = stmt.where(FruitTrade.trade_date <= filters["date_to"])
    if not filters.get("history"):
        stmt = stmt.where(current_trade())
    return paginate(session, stmt, page, page_size)


# --- corrections -------------------------------------------------------------------------------
def correct_trade(session: Session, actor: Actor, trade_id: int, values: dict) -> tuple[TradeCorrection, bool]:
    """Void a trade, optionally replacing it by a corrected one; the old row stays as it was."""
    trade = get_trade(session, actor, trade_id)
    replacement = values.get("replacement")
    client_uuid = str(values["client_uuid"])
    content = {"trade_id": trade.id, "reason": values["reason"],
               "replacement": _trade_content(replacement, trade.operator_id) if replacement else None}
    digest = rules.content_hash(content)
    owner = lambda c: session.get(FruitTrade, c.trade_id).operator_id  # noqa: E731
    if (earlier := _replay(session, TradeCorrection, client_uuid, digest, actor, owner)) is not None:
        return earlier, False
    new_plot = _check_trade(session, replacement, "replacement") if replacement else None
    _lock(session, Plot, [trade.plot_id] + ([new_plot.id] if new_plot else []))
    _lock(session, FruitTrade, [trade.id])  # lots lock their trades: no lot takes this fruit meanwhile
    if (earlier := _replay(session, TradeCorrection, client_uuid, digest, actor, owner)) is not None:
        return earlier, False
    session.refresh(trade)
    if trade.correction is not None:
        raise AppError("chain.already_corrected", errors={"trade_id": [
            f"Trade {trade.id} was corrected by correction {trade.correction.id}."]})
    _check_not_in_lots(session, trade)
    new = None
    if replacement:
        new_uuid = str(uuid.uuid5(REPLACEMENT_NS, client_uuid))
        new = _insert_trade(session, actor, new_plot, trade.operator_id, replacement, new_uuid,
                            rules.content_hash(_trade_content(replacement, trade.operator_id)))
    correction = TradeCorrection(client_uuid=client_uuid, content_hash=digest, trade_id=trade.id,
                                 replacement_id=new.id if new else None, reason=values["reason"],
                                 user_id=actor.user_id)
    session.add(correction)
    session.flush()
    if new is not None:
        _plausibility(session, new, new_plot, replacement)
    session.expire(trade)
    return correction, True


def _check_not_in_lots(session: Session, trade: FruitTrade) -> None:
    """A trade whose fruit is in a current lot cannot be corrected underneath it."""
    from .lots import current_lot

    lot_ids = list(session.scalars(select(LotInput.lot_id).where(LotInput.trade_id == trade.id, current_lot(LotInput.lot_id))))
    if lot_ids:
        raise AppError("chain.trade_in_use", errors={"trade_id": [
            f"Trade {trade.id} is used by lot(s) {', '.join(map(str, lot_ids))}; void those lots first."]})


def correction_view(session: Session, correction: TradeCorrection) -> dict:
    return {
        "id": correction.id, "trade_id": correction.trade_id, "replacement_id": correction.replacement_id,
        "reason": correction.reason, "user_id": correction.user_id, "created_at": correction.created_at,
        "trade": session.get(FruitTrade, correction.trade_id),
        "replacement": session.get(FruitTrade, correction.replacement_id) if correction.replacement_id else None,
    }


# --- plot findings (the hook field capture calls) -----------------------------------------------
def latest_finding(session: Session, plot_id: int, on: date) -> PlotFinding | None:
    return session.scalar(
        select(PlotFinding).where(PlotFinding.plot_id == plot_id, PlotFinding.found_on <= on)
        .order_by(PlotFinding.found_on.desc(), PlotFinding.id.desc()).limit(1)
    )


def _unplanted_evidence(session: Session, plot_id: int, on: date) -> dict | None:
    """Why the plot counts as unplanted on `on`, or None: an "unplanted" finding recorded here, or
    an inspector's check-in (fieldwork) that found it not planted, unless a later "planted"
    finding here says it was replanted."""
    from ...fieldwork import service as fieldwork

    finding = latest_finding(session, plot_id, on)
    unplanted = finding is not None and finding.kind == "unplanted"
    seen = fieldwork.unplanted_plots(session, [plot_id]).get(plot_id)
    if seen is not None:
        seen_on = seen.astimezone(SHANGHAI).date()
        # the visit itself is the evidence (fieldwork also records it here as an "unplanted" finding)
        if seen_on <= on and (finding is None or unplanted or finding.found_on < seen_on):
            return {"source": "fieldwork", "found_at": seen.isoformat(), "found_on": seen_on.isoformat()}
    return _finding_evidence(finding) if unplanted else None


def _finding_evidence(finding: PlotFinding) -> dict:
    return {"finding_id": finding.id, "found_on": finding.found_on.isoformat(), "found_by": finding.user_id,
            "note": finding.note}


def record_plot_finding(session: Session, plot_id: int, kind: str, found_on: date, user_id: int | None = None,
                        note: str | None = None, source: str | None = None) -> PlotFinding:
    """Record what an inspector found on a plot ("unplanted" or "planted" again).

    Fieldwork calls this (source "fieldwork") when a check-in finds a plot not planted. Trades
    dated on or after an "unplanted" finding raise a plot_unplanted alert, both those recorded
    later and current ones already there. Idempotent: the same finding again (a re-synced or
    amended check-in) adds no row, and a trade never gets a second plot_unplanted alert.
    """
    if session.get(Plot, plot_id) is None:
        raise _bad_ref("plot_id", "plot", plot_id)
    _lock(session, Plot, [plot_id])
    latest = latest_finding(session, plot_id, found_on)
    if latest is not None and latest.kind == kind and latest.found_on == found_on:
        return latest
    finding = PlotFinding(plot_id=plot_id, kind=kind, found_on=found_on, user_id=user_id,
                          note=note[:500] if note else note)
    session.add(finding)
    session.flush()
    if kind == "unplanted":
        alerted = set(session.scalars(select(Alert.trade_id).where(Alert.plot_id == plot_id,
                                                                   Alert.kind == "plot_unplanted")))
        trades = session.scalars(select(FruitTrade).where(
            FruitTrade.plot_id == plot_id, FruitTrade.trade_date >= found_on, current_trade()).order_by(FruitTrade.id))
        evidence = {**_finding_evidence(finding), "retroactive": True, **({"source": source} if source else {})}
        for trade in trades:
            if trade.id not in alerted and latest_finding(session, plot_id, trade.trade_date).id == finding.id:
                _alert(session, "plot_unplanted", trade, evidence)
        session.flush()
    return finding


# --- alerts ------------------------------------------------------------------------------------
def list_alerts(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = select(Alert).order_by(Alert.id.desc())
    for key in ("kind", "state", "plot_id", "trade_id", "operator_id"):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(Alert, key) == filters[key])
    return paginate(session, stmt, page, page_size)


def get_alert(session: Session, actor: Actor, alert_id: int, lock: bool = False) -> Alert:
    """The alert; `lock`: its row locked (a review's change, against a concurrent one)."""
    stmt = select(Alert).where(Alert.id == alert_id)
    alert = session.scalar(stmt.with_for_update() if lock else stmt)
    if alert is None:
        raise _not_found("alert", alert_id)
    return alert


def acknowledge_alert(session: Session, actor: Actor, alert_id: int, note: str | None) -> Alert:
    alert = get_alert(session, actor, alert_id, lock=True)
    alert_review.acknowledge(alert, actor.user_id, note, "chain.alert_resolved")
    session.flush()
    return alert


def resolve_alert(session: Session, actor: Actor, alert_id: int, note: str) -> Alert:
    alert = get_alert(session, actor, alert_id, lock=True)
    alert_review.resolve(alert, actor.user_id, note, "chain.alert_resolved")
    session.flush()
    return alert
