"""Labels in the demo (`chenpi demo`): one small batch taken along the whole label path, loaded once.

The first operator (by id) holding an active, in-date trademark licence and a peel lot of the
demo chain's latest season applies for 96 labels on the A4 3×8 sheet for that lot; the demo
admin approves (the batch is issued); labels 1–48 and 49–96 are rendered to PDF in-process; the
print job of 1–48 is leased and acknowledged as printed by the operator's print agent
(`demo-label-agent`: no printer is attached, the PDF is in the storage directory); labels 1–24
are activated on the lot (250 g packs) and 47–48 voided (a damaged corner of the sheet). The
print job of 49–96 stays queued, for a user to print with `chenpi-print-agent` and the demo-agent
token (the demo's operator and agent users belong to this operator). Every step goes through the
labels services, so the demo obeys the same rules as the API.

What the demo prints: three label URLs under PUBLIC_BASE_URL a user can open (genuine, printed but
not activated, voided).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from ..auth import service as auth
from ..auth.models import User
from ..chain.models import Lot, LotCorrection
from ..config import current_config
from ..http import Actor
from ..registry.models import Operator
from ..timeutil import utcnow
from . import codes
from .models import Label, LabelApplication, LabelBatch

DEMO_NOTE = "chenpi demo: labels"
QUANTITY, PRINTED, ACTIVATED, VOIDED = 96, 48, 24, 2  # two sheets printed; two waiting for an agent
TEMPLATE = "a4-3x8-70x37"
AGENT = "demo-label-agent"


@dataclass(frozen=True)
class LabelsDemo:
    operator_id: int
    operator_name: str
    batch_id: int
    lot_id: int
    pdf_key: str | None
    urls: dict[str, str]  # "genuine" | "inactive" | "voided" → the label's QR URL

    def counts(self) -> dict:
        return {"batch": self.batch_id, "labels": QUANTITY, "activated": ACTIVATED, "voided": VOIDED,
                "printed, not activated": PRINTED - ACTIVATED - VOIDED,
                "waiting for a print agent": QUANTITY - PRINTED}


def _actor(user: User) -> Actor:
    return Actor(user_id=user.id, name=user.name, role=user.role, operator_id=user.operator_id)


def _user(session: Session, name: str, role: str, operator_id: int | None) -> User:
    user = session.scalar(select(User).where(User.name == name))
    return user or auth.create_user(session, name, role, operator_id)


def _operator_and_lot(session: Session) -> tuple[Operator, Lot] | None:
    """The first licensed operator with a production lot (not voided) of the latest season."""
    today = utcnow().date()
    season = session.scalar(select(Lot.season).order_by(Lot.season.desc()).limit(1))
    if season is None:
        return None
    row = session.execute(
        select(Operator, Lot).join(Lot, Lot.operator_id == Operator.id)
        .where(Operator.licence_status == "active", Operator.licence_valid_from <= today,
               Operator.licence_valid_until >= today, Lot.season == season, Lot.kind == "production",
               ~exists().where(LotCorrection.lot_id == Lot.id))
        .order_by(Operator.id, Lot.id).limit(1)).first()
    return (row[0], row[1]) if row else None


def _summary(session: Session, batch: LabelBatch, pdf_key: str | None) -> LabelsDemo:
    base = current_config().PUBLIC_BASE_URL
    code_of = dict(session.execute(select(Label.serial, Label.code).where(Label.batch_id == batch.id)).all())
    operator = session.get(Operator, batch.operator_id)
    return LabelsDemo(operator.id, operator.name, batch.id, batch.lot_id, pdf_key, {
        "genuine": codes.qr_url(base, code_of[1]),
        "inactive": codes.qr_url(base, code_of[ACTIVATED + 1]),
        "voided": codes.qr_url(base, code_of[PRINTED]),
    })


def load_labels_demo(session: Session) -> LabelsDemo | None:
    """Load the demo batch once (None when no operator qualifies). Commits as it goes (the
    render job commits its own progress)."""
    from . import jobs, service
    from .models import RenderJob

    done = session.scalar(select(LabelBatch).join(LabelApplication, LabelBatch.application_id == LabelApplication.id)
                          .where(LabelApplication.note == DEMO_NOTE).order_by(LabelBatch.id).limit(1))
    if done is not None:
        render = session.scalar(select(RenderJob).where(RenderJob.batch_id == done.id,
                                                        RenderJob.status == "finished").order_by(RenderJob.id))
        return _summary(session, done, render.storage_key if render else None)
    found = _operator_and_lot(session)
    if found is None:
        return None
    operator, lot = found
    admin = _actor(_user(session, "demo-admin", "admin", None))
    agent = _actor(_user(session, AGENT, "agent", operator.id))
    session.commit()

    application, _ = service.apply(session, admin, {
        "operator_id": operator.id, "product": "新会柑皮 250 g (演示)", "quantity": QUANTITY, "lot_id": lot.id,
        "template": TEMPLATE, "note": DEMO_NOTE})
    batch = service.approve(session, admin, application.id, None)
    render = service.request_render(session, admin, batch.id, 1, PRINTED)
    waiting = service.request_render(session, admin, batch.id, PRINTED + 1, QUANTITY)
    session.commit()
    for rendered in (render, waiting):
        jobs.render_job(rendered.id)  # in-process: the demo needs no worker
        session.refresh(rendered)
        if rendered.status != "finished":
            raise RuntimeError(f"the demo's label render failed: {rendered.error}")
    job, _ = service.request_print(session, admin, render.id)
    session.commit()
    leased = service.lease_print_job(session, agent, "demo (no printer)")
    if leased is None or leased.id != job.id:  # the operator had print jobs waiting already
        raise RuntimeError(f"the demo's print job {job.id} is not the operator's next; leased {leased and leased.id}")
    service.ack_print_job(session, agent, leased.id, leased.lease_token, "printed",
                          "demo: no printer attached; the PDF is in the storage directory")
    service.change_range(session, admin, batch.id, "activate", 1, ACTIVATED, lot_id=lot.id, pack_g=250)
    service.change_range(session, admin, batch.id, "void", PRINTED - VOIDED + 1, PRINTED)
    service.request_print(session, admin, waiting.id)  # for `chenpi-print-agent` with the demo-agent token
    session.commit()
    return _summary(session, batch, render.storage_key)
