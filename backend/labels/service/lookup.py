"""What the consumer resolver (backend/scans) needs to know about a code: one indexed query."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from ...chain.models import Lot
from ...registry.models import Operator
from ...timeutil import as_utc
from .. import codes
from ..models import Label, LabelBatch
from .pins import template_has_pin


@dataclass(frozen=True)
class LabelView:
    label_id: int
    code: str  # canonical
    serial: str  # printed form, BBBBBB-SSSSSS
    state: str  # issued / printed / activated / voided / lost / stolen
    operator_id: int
    operator_name: str
    credit_code: str
    product: str
    lot_id: int | None  # bound at activation, else the batch's lot
    lot_code: str | None
    harvest_year: int | None  # the batch's, else the lot's season
    batch_id: int
    activated_at: datetime | None  # UTC
    has_pin: bool = False  # the batch's template has a scratch-off PIN box
    pin_verified_at: datetime | None = None  # the PIN's first correct verification (UTC)


_LOOKUP = None  # lookup_label's statement, built on first use


def _lookup_stmt():
    """Built once with a bound parameter: the resolver runs it on every scan, and building it
    per call cost more than running it."""
    global _LOOKUP
    if _LOOKUP is None:
        _LOOKUP = view_select().where(Label.code == bindparam("code"))
    return _LOOKUP


def view_select():
    """The columns `label_view` reads (labels ⋈ batches ⋈ operators ⟕ lots), without a WHERE: the
    resolver's per-code lookup, or a range of a batch (the scans domain warming its cache)."""
    lot_id = func.coalesce(Label.lot_id, LabelBatch.lot_id)
    return (
        select(Label.id, Label.code, Label.serial, Label.state, Label.activated_at, LabelBatch.id,
               LabelBatch.product, LabelBatch.harvest_year, Operator.id, Operator.name, Operator.credit_code,
               lot_id, Lot.code, Lot.season, LabelBatch.template, Label.pin_verified_at)
        .join(LabelBatch, LabelBatch.id == Label.batch_id)
        .join(Operator, Operator.id == LabelBatch.operator_id)
        .outerjoin(Lot, Lot.id == lot_id)
    )


def lookup_label(session: Session, code: str) -> LabelView | None:
    """The label with this canonical code (as `codes.parse` returns it), or None.

    One query (labels ⋈ batches ⋈ operators ⟕ lots) on the unique index of `labels.code`.
    """
    row = session.execute(_lookup_stmt(), {"code": code}).first()
    return None if row is None else label_view(row)


def label_view(row) -> LabelView:
    """The LabelView of a row whose first columns are `_lookup_stmt()`'s (the resolver adds a
    column of its own to the same query)."""
    (label_id, canonical, serial, state, activated_at, batch_id, product, harvest_year,
     operator_id, operator_name, credit_code, lot, lot_code, season, template, pin_verified_at) = tuple(row)[:16]
    return LabelView(
        label_id=label_id, code=canonical, serial=codes.format_serial(batch_id, serial), state=state,
        operator_id=operator_id, operator_name=operator_name, credit_code=credit_code, product=product,
        lot_id=lot, lot_code=lot_code, harvest_year=harvest_year if harvest_year is not None else season,
        batch_id=batch_id, activated_at=as_utc(activated_at),
        has_pin=template_has_pin(template), pin_verified_at=as_utc(pin_verified_at),
    )
