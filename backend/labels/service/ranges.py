"""Batches and label ranges: read, activate (bind lot and pack size), void, report lost/stolen.

State machine (per label):  issued → printed → activated;  issued/printed/activated → voided;
issued/printed → lost | stolen.  A range operation checks every label of the range under the
batch's row lock and changes all of them or none (409 with the count of each offending state).
"""
from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ...chain.models import Lot
from ...errors import AppError
from ...timeutil import utcnow
from ..models import DEAD_LABEL_STATES, Label, LabelBatch
from .applications import not_found

# operation → (states it applies to, resulting state)
TRANSITIONS = {
    "activate": (("printed",), "activated"),
    "void": (("issued", "printed", "activated"), "voided"),
    "lost": (("issued", "printed"), "lost"),
    "stolen": (("issued", "printed"), "stolen"),
}


def get_batch(session: Session, actor, batch_id: int, *, lock: bool = False) -> LabelBatch:
    stmt = select(LabelBatch).where(LabelBatch.id == batch_id)
    if lock:
        stmt = stmt.with_for_update()
    batch = session.scalar(stmt)
    if batch is None or not actor.sees_operator(batch.operator_id):
        raise not_found("label batch")
    return batch


def list_batches(session: Session, actor, filters: dict, page: int, page_size: int):
    from ...pagination import paginate

    stmt = select(LabelBatch).order_by(LabelBatch.id.desc())
    if not actor.is_admin:
        stmt = stmt.where(LabelBatch.operator_id == actor.operator_id)
    for key in ("status", "operator_id"):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(LabelBatch, key) == filters[key])
    return paginate(session, stmt, page, page_size)


def state_counts(session: Session, batch_id: int, first: int | None = None, last: int | None = None) -> dict[str, int]:
    stmt = select(Label.state, func.count()).where(Label.batch_id == batch_id).group_by(Label.state)
    if first is not None:
        stmt = stmt.where(Label.serial.between(first, last))
    return dict(session.execute(stmt).all())


def list_labels(session: Session, actor, batch_id: int, filters: dict, page: int, page_size: int):
    from ...pagination import paginate

    batch = get_batch(session, actor, batch_id)
    stmt = select(Label).where(Label.batch_id == batch.id).order_by(Label.serial)
    if filters.get("state"):
        stmt = stmt.where(Label.state == filters["state"])
    if filters.get("first") is not None:
        stmt = stmt.where(Label.serial >= filters["first"])
    if filters.get("last") is not None:
        stmt = stmt.where(Label.serial <= filters["last"])
    return paginate(session, stmt, page, page_size)


def check_range(batch: LabelBatch, first: int | None, last: int | None) -> tuple[int, int]:
    first = batch.first_serial if first is None else first
    last = batch.last_serial if last is None else last
    if not (batch.first_serial <= first <= last <= batch.last_serial):
        raise AppError("labels.range_invalid", errors={"first": [
            f"Serials {first}–{last} are not within the batch's {batch.first_serial}–{batch.last_serial}."]})
    return first, last


def change_range(session: Session, actor, batch_id: int, operation: str, first: int | None, last: int | None,
                 *, lot_id: int | None = None, pack_g: int | None = None) -> dict:
    """Apply `operation` to serials first…last (default: the whole batch): all or nothing."""
    allowed, target = TRANSITIONS[operation]
    batch = get_batch(session, actor, batch_id, lock=True)
    if batch.status == "voided":
        raise AppError("labels.batch_voided")
    first, last = check_range(batch, first, last)
    values: dict = {"state": target, "changed_at": utcnow()}
    if operation == "activate":
        if lot_id is not None:
            lot = session.get(Lot, lot_id)
            if lot is None or lot.operator_id != batch.operator_id:
                raise AppError("labels.invalid_reference", errors={"lot_id": [f"No lot of this operator with id {lot_id}."]})
        values.update(activated_at=values["changed_at"], lot_id=lot_id if lot_id is not None else batch.lot_id,
                      pack_g=pack_g)
    counts = state_counts(session, batch.id, first, last)
    wrong = {state: n for state, n in counts.items() if state not in allowed}
    if wrong:
        listed = ", ".join(f"{n:,} {state}" for state, n in sorted(wrong.items()))
        if operation == "activate":  # labels go on packs only once the print agent has printed them
            message = (f"Only printed labels can be activated; serials {first}–{last} include "
                       f"{sum(wrong.values()):,} not printed ({listed}).")
        else:
            message = f"{operation} applies to {' or '.join(allowed)} labels; serials {first}–{last} include {listed}."
        raise AppError("labels.state_conflict", errors={"state": [message]})
    # (the label view cache: the batch's views go stale; an activation's are warmed after the commit)
    views = {"views_batch": (batch.id,), "views_warm": (batch.id, first, last) if operation == "activate" else None}
    result = session.execute(update(Label).where(Label.batch_id == batch.id, Label.serial.between(first, last),
                                                 Label.state.in_(allowed)).values(**values).execution_options(**views))
    changed = result.rowcount
    if changed != last - first + 1:  # cannot happen under the batch lock; never half-write
        raise AppError("labels.state_conflict")
    cancelled = []
    if target in DEAD_LABEL_STATES:
        from .printing import cancel_open_jobs  # (printing imports rendering, which imports this module)

        cancelled = cancel_open_jobs(session, batch.id, first, last)
    session.flush()
    return {"batch_id": batch.id, "first": first, "last": last, "state": target, "changed": changed,
            "cancelled_print_jobs": cancelled}


def void_batch(session: Session, actor, batch_id: int) -> LabelBatch:
    """Void a whole batch: its labels not yet on products (issued, printed) become voided, and its
    print jobs not yet acknowledged are cancelled."""
    from .printing import cancel_open_jobs

    batch = get_batch(session, actor, batch_id, lock=True)
    if batch.status == "voided":
        raise AppError("labels.batch_voided")
    now = utcnow()
    session.execute(update(Label).where(Label.batch_id == batch.id, Label.state.in_(("issued", "printed")))
                    .values(state="voided", changed_at=now).execution_options(views_batch=(batch.id,)))
    cancel_open_jobs(session, batch.id)
    batch.status = "voided"
    batch.voided_at = now
    session.flush()
    return batch
