"""Label applications (申领): an operator with an active, in-date licence applies; an admin
approves (possibly fewer, within the limits) or rejects with a reason; approval issues the batch."""
from __future__ import annotations

import hashlib
import io
import json
from datetime import date
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ...chain.models import Lot
from ...errors import AppError
from ...registry.models import Operator
from ...timeutil import SHANGHAI, utcnow
from .. import codes, render, templates
from ..models import LabelApplication, LabelBatch
from .issuing import issue_batch


def _config(config):
    from ...config import current_config

    return config or current_config()


def not_found(what: str = "label application") -> AppError:
    return AppError("labels.not_found", f"No such {what}.")


def replayed(session: Session, model, client_uuid: str | None, same: Callable[[Any], bool]):
    """The row an earlier request carrying `client_uuid` made (None: no UUID, or a new one), for a
    retry whose answer was lost; 409 labels.uuid_conflict if that request asked for something else
    (`same(row)` false)."""
    if not client_uuid:
        return None
    row = session.scalar(select(model).where(model.client_uuid == client_uuid))
    if row is not None and not same(row):
        raise AppError("labels.uuid_conflict", errors={"client_uuid": ["Already used with different content."]})
    return row


def today() -> date:
    return utcnow().astimezone(SHANGHAI).date()


def check_licence(operator: Operator, on: date | None = None) -> None:
    on = on or today()
    problems = []
    if operator.licence_status != "active":
        problems.append(f"The licence status is {operator.licence_status!r}, not 'active'.")
    if operator.licence_valid_from is not None and on < operator.licence_valid_from:
        problems.append(f"The licence is valid from {operator.licence_valid_from.isoformat()}.")
    if operator.licence_valid_until is not None and on > operator.licence_valid_until:
        problems.append(f"The licence expired on {operator.licence_valid_until.isoformat()}.")
    if problems:
        raise AppError("labels.licence_required", errors={"operator_id": problems})


def batch_info(operator: Operator, product: str, lot: Lot | None, harvest_year, title: str = ""):
    return render.BatchInfo(operator_name=operator.name, credit_code=operator.credit_code, product=product,
                            lot=lot.code if lot is not None else "", harvest_year=harvest_year or "", title=title)


def check_fits(template_name: str, info, base_url: str) -> None:
    """Render one label with the batch's texts: a template they do not fit is refused now (422),
    not when the batch is rendered."""
    if template_name not in templates.available():  # a name, never a path
        raise AppError("labels.invalid_reference", errors={"template": [
            f"No label template {template_name!r} (known: {', '.join(templates.available())})."]})
    t = templates.load(template_name)
    code = codes.make_code("1", b"fit-check key, not a secret", 0, 1)
    row = render.LabelRow(code=codes.display(code), serial=codes.format_serial(999999, 999999),
                          url=codes.qr_url(base_url, code), pin="00000000" if t.pin is not None else None)
    render.render_chunk(t, info, [row], io.BytesIO())


def _content_hash(values: dict) -> str:
    keep = {k: values.get(k) for k in ("product", "gtin", "lot_id", "template", "quantity", "note")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def apply(session: Session, actor, values: dict, *, config=None) -> tuple[LabelApplication, bool]:
    """A new application of the actor's operator; (application, created). Idempotent on client_uuid."""
    cfg = _config(config)
    operator_id = actor.operator_id if actor.role == "operator" else values.get("operator_id")
    if operator_id is None:
        raise AppError("request.invalid", errors={"operator_id": ["Admins name the operator they apply for."]})
    values = {**values, "template": values.get("template") or cfg.LABEL_DEFAULT_TEMPLATE}
    uuid = str(values["client_uuid"]) if values.get("client_uuid") else None
    existing = replayed(session, LabelApplication, uuid, lambda a: (
        a.operator_id, a.product, a.gtin, a.lot_id, a.template, a.quantity, a.note) == (
        operator_id, values["product"], values.get("gtin"), values.get("lot_id"), values["template"],
        values["quantity"], values.get("note")))
    if existing is not None:
        return existing, False
    operator = session.get(Operator, operator_id)
    if operator is None:
        raise AppError("labels.invalid_reference", errors={"operator_id": [f"No operator with id {operator_id}."]})
    check_licence(operator)
    if values["quantity"] > cfg.LABEL_MAX_PER_APPLICATION:
        raise AppError("labels.limit_exceeded", errors={"quantity": [
            f"At most {cfg.LABEL_MAX_PER_APPLICATION:,} labels per application."]})
    lot = None
    if values.get("lot_id") is not None:
        lot = session.get(Lot, values["lot_id"])
        if lot is None or lot.operator_id != operator.id:
            raise AppError("labels.invalid_reference", errors={"lot_id": [f"No lot of yours with id {values['lot_id']}."]})
    check_fits(values["template"], batch_info(operator, values["product"], lot, lot.season if lot else None),
               cfg.PUBLIC_BASE_URL)
    application = LabelApplication(
        client_uuid=uuid, operator_id=operator.id, product=values["product"], gtin=values.get("gtin"),
        lot_id=lot.id if lot else None,
        template=values["template"], quantity=values["quantity"], year=today().year, note=values.get("note"),
        status="applied", applied_by=actor.user_id, applied_at=utcnow())
    session.add(application)
    session.flush()
    return application, True


def get_application(session: Session, actor, application_id: int, *, lock: bool = False) -> LabelApplication:
    stmt = select(LabelApplication).where(LabelApplication.id == application_id)
    if lock:
        stmt = stmt.with_for_update()
    application = session.scalar(stmt)
    if application is None or not actor.sees_operator(application.operator_id):
        raise not_found()
    return application


def list_applications(session: Session, actor, filters: dict, page: int, page_size: int):
    from ...pagination import paginate

    stmt = select(LabelApplication).order_by(LabelApplication.id.desc())
    if not actor.is_admin:
        stmt = stmt.where(LabelApplication.operator_id == actor.operator_id)
    for key in ("status", "operator_id", "year"):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(LabelApplication, key) == filters[key])
    return paginate(session, stmt, page, page_size)


def approve(session: Session, actor, application_id: int, quantity: int | None, *, config=None) -> LabelBatch:
    """Approve (all or fewer) and issue the batch, all in the caller's transaction."""
    cfg = _config(config)
    application = get_application(session, actor, application_id, lock=True)
    if application.status != "applied":
        raise AppError("labels.already_decided", errors={"status": [f"The application is {application.status}."]})
    quantity = application.quantity if quantity is None else quantity
    if quantity > application.quantity:
        raise AppError("labels.over_approval", errors={"quantity": [
            f"{quantity:,} is more than the {application.quantity:,} applied for."]})
    # the operator row lock serializes approvals of one operator, so the yearly sum cannot race
    operator = session.scalar(select(Operator).where(Operator.id == application.operator_id).with_for_update())
    check_licence(operator)
    approved = session.scalar(select(func.coalesce(func.sum(LabelApplication.approved_quantity), 0)).where(
        LabelApplication.operator_id == operator.id, LabelApplication.year == application.year,
        LabelApplication.status == "approved"))
    if approved + quantity > cfg.LABEL_MAX_PER_OPERATOR_YEAR:
        raise AppError("labels.limit_exceeded", errors={"quantity": [
            f"The operator already has {approved:,} labels approved in {application.year}; the yearly limit is "
            f"{cfg.LABEL_MAX_PER_OPERATOR_YEAR:,}."]})
    application.status = "approved"
    application.approved_quantity = quantity
    application.decided_by = actor.user_id
    application.decided_at = utcnow()
    session.flush()
    return issue_batch(session, application, quantity, actor.user_id, config=cfg)


def reject(session: Session, actor, application_id: int, reason: str) -> LabelApplication:
    application = get_application(session, actor, application_id, lock=True)
    if application.status != "applied":
        raise AppError("labels.already_decided", errors={"status": [f"The application is {application.status}."]})
    application.status = "rejected"
    application.reason = reason
    application.decided_by = actor.user_id
    application.decided_at = utcnow()
    session.flush()
    return application
