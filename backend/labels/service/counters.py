"""Label counters (累计用标量) for the dashboards: labels applied for, approved, issued, printed,
activated, voided and lost or stolen, per operator, town (the operator's) or year (the
application's), summed in SQL: one aggregate query over applications (with their batches) and
one over labels, whatever the number of labels.

The counts are cumulative: `activated` counts every label ever activated (it may be voided since,
and then counts as voided too); `printed` counts labels printed at least once.
"""
from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ...registry.models import Operator, Town
from ..models import Label, LabelApplication, LabelBatch

METRICS = ("applied", "approved", "issued", "printed", "activated", "voided", "lost_or_stolen")

#: group_by → the key columns (labelled as they appear in the answer)
GROUPS = {
    "year": lambda: [LabelApplication.year.label("year")],
    "operator": lambda: [Operator.id.label("operator_id"), Operator.name.label("operator_name")],
    "town": lambda: [Town.id.label("town_id"), Town.name.label("town_name")],
}


def _count(condition):
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _scoped(stmt, actor, filters: dict):
    """Join the application's operator and town, apply the tenancy rule and the filters."""
    stmt = (stmt.join(Operator, Operator.id == LabelApplication.operator_id)
            .join(Town, Town.id == Operator.town_id))
    if actor.role not in ("admin", "inspector"):
        stmt = stmt.where(LabelApplication.operator_id == actor.operator_id)
    if filters.get("operator_id") is not None:
        stmt = stmt.where(LabelApplication.operator_id == filters["operator_id"])
    if filters.get("town_id") is not None:
        stmt = stmt.where(Operator.town_id == filters["town_id"])
    if filters.get("year") is not None:
        stmt = stmt.where(LabelApplication.year == filters["year"])
    return stmt


def label_counters(session: Session, actor, group_by: str, filters: dict) -> list[dict]:
    """Rows of {key fields…, applied, approved, issued, printed, activated, voided, lost_or_stolen}.

    Operators see their own operator only: naming another operator_id finds nothing (an empty
    list), as the other counters do."""
    keys = GROUPS[group_by]()
    names = [k.name for k in keys]
    quotas = _scoped(select(*keys, func.coalesce(func.sum(LabelApplication.quantity), 0),
                            func.coalesce(func.sum(LabelApplication.approved_quantity), 0),
                            func.coalesce(func.sum(LabelBatch.quantity), 0))
                     .select_from(LabelApplication)
                     .outerjoin(LabelBatch, LabelBatch.application_id == LabelApplication.id), actor, filters)
    labels = _scoped(select(*keys, _count(Label.print_count > 0), _count(Label.activated_at.is_not(None)),
                            _count(Label.state == "voided"), _count(Label.state.in_(("lost", "stolen"))))
                     .select_from(Label).join(LabelBatch, LabelBatch.id == Label.batch_id)
                     .join(LabelApplication, LabelApplication.id == LabelBatch.application_id), actor, filters)
    rows: dict[tuple, dict] = {}
    for *key, applied, approved, issued in session.execute(quotas.group_by(*keys)):
        rows[tuple(key)] = {**dict(zip(names, key)), "applied": applied, "approved": approved, "issued": issued,
                            "printed": 0, "activated": 0, "voided": 0, "lost_or_stolen": 0}
    for *key, printed, activated, voided, lost in session.execute(labels.group_by(*keys)):
        row = rows.setdefault(tuple(key), {**dict(zip(names, key)), **dict.fromkeys(METRICS, 0)})
        row.update(printed=printed, activated=activated, voided=voided, lost_or_stolen=lost)
    return [rows[k] for k in sorted(rows, key=lambda k: tuple((v is None, v) for v in k))]
