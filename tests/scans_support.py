"""Helpers for the scans tests (and the access matrix): issued, activated labels."""
from __future__ import annotations

from sqlalchemy import select, update

from backend.labels.models import Label
from backend.timeutil import utcnow
from tests.factories import label_batch


def activated_codes(make, session, n: int = 3, operator=None, lot=True, state: str = "activated") -> list[str]:
    """Codes of `n` labels of a new batch (on a lot of `operator` when `lot`), all in `state`."""
    operator = operator or make.operator()
    the_lot = make.lot(operator) if lot else None
    batch = label_batch(session, operator, n, lot=the_lot)
    values = {"state": state}
    if state == "activated":
        values["activated_at"] = utcnow()
    session.execute(update(Label).where(Label.batch_id == batch.id).values(**values))
    session.commit()
    return list(session.scalars(select(Label.code).where(Label.batch_id == batch.id).order_by(Label.serial)))


def world_label_code(world) -> str:
    """An activated label of operator A, made once per access-matrix world."""
    from backend.extensions import db
    from tests.factories import Factory

    if "_scan_code" not in world.__dict__:
        world.__dict__["_scan_code"] = activated_codes(Factory(db.session), db.session, 1, world.operator_a, lot=False)[0]
    return world.__dict__["_scan_code"]


def world_alert_id(world) -> int:
    """An open scan alert on a label of operator A, made once per access-matrix world."""
    from backend.extensions import db
    from backend.scans.models import ScanAlert
    from backend.timeutil import utcnow

    if "_scan_alert" not in world.__dict__:
        code = world_label_code(world)
        now = utcnow()
        alert = ScanAlert(rule="too_many_scans", subject=code, code=code, operator_id=world.operator_a.id,
                          state="open", count=1, evidence={"scans": 20}, first_seen=now, last_seen=now)
        db.session.add(alert)
        db.session.commit()
        world.__dict__["_scan_alert"] = alert.id
    return world.__dict__["_scan_alert"]


WORLD_GTIN = "06901234567892"


def world_gtin(world) -> str:
    """The GTIN of the batch of world_label_code (set on first use): the GS1 Digital Link form."""
    from backend.extensions import db
    from backend.labels.models import LabelBatch

    if "_scan_gtin" not in world.__dict__:
        code = world_label_code(world)
        batch_id = db.session.scalar(select(Label.batch_id).where(Label.code == code))
        db.session.execute(update(LabelBatch).where(LabelBatch.id == batch_id).values(gtin=WORLD_GTIN))
        db.session.commit()
        world.__dict__["_scan_gtin"] = WORLD_GTIN
    return world.__dict__["_scan_gtin"]
