"""Print jobs: a finished render's PDF printed once at the operator's printer by its print agent.

    queued ──lease──▶ leased ──ack printed──▶ printed
       │                 │  └──ack failed───▶ failed ──requeue (reason)──▶ a new reprint job
       └──cancel──▶ cancelled ◀──cancel── (lease expired)
                        └──late ack printed (its agent did print it)──▶ printed

A lease lasts PRINT_LEASE_SECONDS; the agent renews it (another PRINT_LEASE_SECONDS from then)
right before printing. A job leased and not acknowledged in time (its agent died) is leased again
by the next agent that asks, with a new token, so the old token's ack and renewal are refused.
Leasing takes the oldest waiting job of the agent's operator with SELECT … FOR UPDATE SKIP LOCKED
on PostgreSQL, so two agents never lease the same job (SQLite's BEGIN IMMEDIATE serializes).

A serial printed twice is a counterfeiting risk, so:
- a first print of a range is refused while any of its labels has been printed, or is covered by
  another print job of the batch that is queued, leased, printed or failed (a failed job may have
  printed half a sheet), or cancelled after it was leased (its agent may have printed it: a lease
  that ran out is an agent that was slow, not necessarily one that died);
- a reprint names a reason and leaves a LabelReprint row (range, reason, who asked); so does a job
  asking for more than one copy of each label, the requeue of a failed job, and the late 'printed'
  ack of a cancelled job whose labels were printed in the meantime;
- acknowledging 'printed' adds the job's copies to every label's print_count and moves issued
  labels to printed, in one transaction under the batch's row lock.
Lock order everywhere: the batch row, then the print job row.
"""
from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from ...errors import AppError
from ...timeutil import as_utc, utcnow
from ..models import DEAD_LABEL_STATES, Label, LabelBatch, LabelReprint, PrintJob, RenderJob
from .applications import not_found, replayed
from .rendering import get_render

#: Jobs that cover their labels: a first print of an overlapping range is refused. A cancelled job
#: covers them too once it was ever leased (see _covering).
COVERING = ("queued", "leased", "printed", "failed")


def _covering():
    """The condition of a job that covers its labels: COVERING, or cancelled after an agent held it
    (its lease ran out and it was cancelled, or its batch was voided: the agent may have printed it,
    and its late 'printed' ack is still accepted)."""
    return or_(PrintJob.status.in_(COVERING), and_(PrintJob.status == "cancelled", PrintJob.leases > 0))


def _waiting(now):
    """The condition of a job an agent may lease: queued, or leased with its lease run out."""
    return or_(PrintJob.status == "queued", and_(PrintJob.status == "leased", PrintJob.lease_expires_at < now))


def lease_expired(job: PrintJob, now=None) -> bool:
    return job.status == "leased" and as_utc(job.lease_expires_at) < (now or utcnow())


def _lock_batch(session: Session, batch_id: int) -> LabelBatch:
    return session.scalar(select(LabelBatch).where(LabelBatch.id == batch_id).with_for_update()
                          .execution_options(populate_existing=True))


def _locked_job(session: Session, actor, print_job_id: int) -> tuple[PrintJob, LabelBatch]:
    """The job (404 unless the actor's operator's) and its batch, both row-locked, batch first."""
    row = session.execute(select(PrintJob.batch_id, PrintJob.operator_id).where(PrintJob.id == print_job_id)).first()
    if row is None or not actor.sees_operator(row.operator_id):
        raise not_found("print job")
    batch = _lock_batch(session, row.batch_id)
    job = session.scalar(select(PrintJob).where(PrintJob.id == print_job_id).with_for_update()
                         .execution_options(populate_existing=True))
    return job, batch


def _record_reprint(session: Session, job: PrintJob, render: RenderJob, reason: str, user_id: int) -> LabelReprint:
    record = LabelReprint(batch_id=job.batch_id, print_job_id=job.id, first_serial=render.first_serial,
                          last_serial=render.last_serial, reason=reason, requested_by=user_id, created_at=utcnow())
    session.add(record)
    return record


def check_unprinted(session: Session, batch_id: int, first: int, last: int) -> None:
    """409 labels.already_printed if any label of first…last was printed or is covered by a job."""
    printed = session.scalar(select(func.count()).select_from(Label).where(
        Label.batch_id == batch_id, Label.serial.between(first, last), Label.print_count > 0))
    covering = session.execute(
        select(PrintJob.id, PrintJob.status).join(RenderJob, RenderJob.id == PrintJob.render_job_id)
        .where(PrintJob.batch_id == batch_id, _covering(),
               RenderJob.first_serial <= last, RenderJob.last_serial >= first)
        .order_by(PrintJob.id).limit(10)).all()
    problems = []
    if printed:
        problems.append(f"{printed:,} labels of serials {first}–{last} have been printed already.")
    if covering:
        problems.append("Print jobs of this batch already cover these serials: "
                        + ", ".join(f"{job_id} ({status})" for job_id, status in covering) + ".")
    if problems:
        raise AppError("labels.already_printed", errors={"reprint": problems + [
            "Ask for a reprint (reprint: true) with a reason; it is recorded per label."]})


def _dead_labels(session: Session, batch_id: int, first: int, last: int, limit: int) -> list[tuple[int, str]]:
    """(serial, state) of up to `limit` labels of first…last voided or reported lost or stolen."""
    return [tuple(row) for row in session.execute(select(Label.serial, Label.state).where(
        Label.batch_id == batch_id, Label.serial.between(first, last), Label.state.in_(DEAD_LABEL_STATES))
        .order_by(Label.serial).limit(limit))]


def check_live(session: Session, batch_id: int, first: int, last: int, field: str) -> None:
    """409 labels.state_conflict if any label of first…last is voided or reported lost or stolen:
    printed, it would be a label whose every scan warns the consumer (and a stolen code on a
    genuine-looking label). The operator renders and prints the ranges around them."""
    dead = _dead_labels(session, batch_id, first, last, 11)
    if dead:
        listed = ", ".join(f"{serial} ({state})" for serial, state in dead[:10]) + ("…" if len(dead) > 10 else "")
        raise AppError("labels.state_conflict", errors={field: [
            f"Labels of serials {first}–{last} are voided or reported lost or stolen: {listed}. A printed one would "
            "warn every consumer who scans it; render and print the ranges around them (labels a cancelled job's agent had "
            "leased are printed again only as a reprint)."]})


def request_print(session: Session, actor, render_id: int, copies: int = 1, reprint: bool = False,
                  reason: str | None = None, client_uuid: str | None = None) -> tuple[PrintJob, bool]:
    """Queue a finished render for the operator's print agent (a first print, or a recorded reprint);
    (job, created). Idempotent on client_uuid: a retry whose answer was lost gets the job it made,
    where a second reprint job would print every label of the range again."""
    render = get_render(session, actor, render_id)
    batch = _lock_batch(session, render.batch_id)  # (also serializes two retries of one client_uuid)
    kind = "reprint" if reprint else "print"
    existing = replayed(session, PrintJob, client_uuid, lambda job: (
        job.render_job_id, job.copies, job.kind, job.reason) == (render.id, copies, kind, reason))
    if existing is not None:
        return existing, False
    if batch.status == "voided":
        raise AppError("labels.batch_voided", errors={"render_id": ["The render's batch is voided; it cannot be printed."]})
    if render.status != "finished":
        raise AppError("labels.render_not_ready", errors={"render_id": [f"The render job is {render.status}."]})
    if reprint and not reason:
        raise AppError("request.invalid", errors={"reason": ["A reprint needs a reason: every second print is recorded."]})
    check_live(session, batch.id, render.first_serial, render.last_serial, "render_id")
    if not reprint:
        check_unprinted(session, batch.id, render.first_serial, render.last_serial)
    job = PrintJob(operator_id=batch.operator_id, batch_id=batch.id, render_job_id=render.id,
                   kind=kind, status="queued", copies=copies, leases=0,
                   requested_by=actor.user_id, reason=reason, created_at=utcnow(), client_uuid=client_uuid)
    session.add(job)
    session.flush()
    if reprint:
        _record_reprint(session, job, render, reason, actor.user_id)
    elif copies > 1:  # each serial printed `copies` times: second prints, recorded like a reprint
        _record_reprint(session, job, render, reason or f"{copies} copies of each label in one print job",
                        actor.user_id)
    session.flush()
    return job, True


def get_print_job(session: Session, actor, print_job_id: int) -> PrintJob:
    job = session.get(PrintJob, print_job_id)
    if job is None or not actor.sees_operator(job.operator_id):
        raise not_found("print job")
    return job


def list_print_jobs(session: Session, actor, filters: dict, page: int, page_size: int):
    from ...pagination import paginate

    stmt = select(PrintJob).options(selectinload(PrintJob.render)).order_by(PrintJob.id.desc())
    if not actor.is_admin:
        stmt = stmt.where(PrintJob.operator_id == actor.operator_id)
    for key in ("status", "kind", "batch_id", "render_job_id", "operator_id"):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(PrintJob, key) == filters[key])
    return paginate(session, stmt, page, page_size)


def lease_print_job(session: Session, actor, printer: str, *, config=None) -> PrintJob | None:
    """Lease the oldest waiting job of the agent's operator to `printer`, or None when none waits.
    A waiting job whose range holds labels voided or reported lost or stolen (queued before such
    reports cancelled the jobs covering them) is cancelled on the way: it is never printed."""
    from .applications import _config

    cfg = _config(config)
    now = utcnow()
    while True:
        job = session.scalar(select(PrintJob).where(PrintJob.operator_id == actor.operator_id, _waiting(now))
                             .order_by(PrintJob.created_at, PrintJob.id).limit(1)
                             .with_for_update(skip_locked=True).execution_options(populate_existing=True))
        if job is None:
            return None
        if not _dead_labels(session, job.batch_id, job.render.first_serial, job.render.last_serial, 1):
            break
        job.status = "cancelled"
        session.flush()
    job.status = "leased"
    job.lease_token = secrets.token_urlsafe(32)
    job.lease_expires_at = now + timedelta(seconds=cfg.PRINT_LEASE_SECONDS)
    job.leased_by = actor.user_id
    job.leases += 1
    job.printer = printer
    session.flush()
    return job


def _token_holds(job: PrintJob, lease_token: str) -> bool:
    return job.lease_token is not None and secrets.compare_digest(
        job.lease_token.encode(), lease_token.encode("utf-8", "surrogatepass"))  # any text is just a wrong token


def renew_print_job(session: Session, actor, print_job_id: int, lease_token: str, *, config=None) -> PrintJob:
    """Extend a lease by PRINT_LEASE_SECONDS from now while its token still holds (the agent asks right
    before printing, so nobody else can lease the job while its PDF goes to the printer). A lease that
    ran out but was not taken by anyone else still holds, as for the ack."""
    from .applications import _config

    cfg = _config(config)
    job, _ = _locked_job(session, actor, print_job_id)
    if job.status != "leased" or not _token_holds(job, lease_token):
        why = ("The lease token does not match: the lease expired and the job was leased again."
               if job.status == "leased" else f"The print job is {job.status}, not leased.")
        raise AppError("labels.lease_invalid", errors={"lease_token": [why]})
    job.lease_expires_at = utcnow() + timedelta(seconds=cfg.PRINT_LEASE_SECONDS)
    session.flush()
    return job


def ack_print_job(session: Session, actor, print_job_id: int, lease_token: str, outcome: str,
                  printer_answer: str | None) -> PrintJob:
    """The agent's answer for a leased job: 'printed' counts the print on every label; 'failed' not.

    A lease that expired but was not taken by anyone else still accepts its token (the agent was
    slow, not dead); so does a job cancelled after its lease expired, for 'printed' only: the
    sheets exist, and the labels' print counts must say so. If some of its labels were printed
    meanwhile (a reprint asked for after the cancel), this print is a second one and is recorded
    as a LabelReprint like any other.
    """
    job, batch = _locked_job(session, actor, print_job_id)
    if job.status == "printed":
        raise AppError("labels.already_printed", errors={"print_job_id": [
            f"Print job {job.id} was acknowledged as printed already."]})
    token_ok = _token_holds(job, lease_token)
    late_after_cancel = job.status == "cancelled" and outcome == "printed"
    if not token_ok or not (job.status == "leased" or late_after_cancel):
        why = ("The lease token does not match: the lease expired and the job was leased again."
               if job.status == "leased" else f"The print job is {job.status}, not leased.")
        raise AppError("labels.lease_invalid", errors={"lease_token": [why]})
    now = utcnow()
    job.acked_at = now
    job.printer_answer = printer_answer
    if outcome == "printed":
        job.status = "printed"
        render = job.render
        in_range = (Label.batch_id == batch.id, Label.serial.between(render.first_serial, render.last_serial))
        if late_after_cancel and session.scalar(select(Label.id).where(*in_range, Label.print_count > 0).limit(1)):
            _record_reprint(session, job, render, f"late acknowledgement of cancelled print job {job.id}: printed again",
                            actor.user_id)
        # (the label view cache: print_count is not shown, the state is: the batch's views)
        session.execute(update(Label).where(*in_range).values(print_count=Label.print_count + job.copies)
                        .execution_options(views_changed=()))
        session.execute(update(Label).where(*in_range, Label.state == "issued").values(state="printed", changed_at=now)
                        .execution_options(views_batch=(batch.id,)))
    else:
        job.status = "failed"
    session.flush()
    return job


def cancel_print_job(session: Session, actor, print_job_id: int) -> PrintJob:
    """Cancel a job no agent holds: queued, or leased with its lease run out."""
    job, _ = _locked_job(session, actor, print_job_id)
    if not (job.status == "queued" or lease_expired(job)):
        state = "leased to an agent that may be printing it now" if job.status == "leased" else job.status
        raise AppError("labels.print_job_state", errors={"status": [
            f"Only a queued job (or one whose lease expired) can be cancelled; this one is {state}."]})
    job.status = "cancelled"
    session.flush()
    return job


def requeue_print_job(session: Session, actor, print_job_id: int, reason: str) -> PrintJob:
    """A failed job may have printed part of its pages: print it again as a recorded reprint."""
    job, batch = _locked_job(session, actor, print_job_id)
    if job.status != "failed":
        raise AppError("labels.print_job_state", errors={"status": [
            f"Only a failed job can be requeued; this one is {job.status}."]})
    again = session.scalar(select(PrintJob.id).where(PrintJob.retry_of_id == job.id))
    if again is not None:
        raise AppError("labels.print_job_state", errors={"status": [
            f"This failed job was requeued already as print job {again}."]})
    if batch.status == "voided":
        raise AppError("labels.batch_voided", errors={"print_job_id": ["The job's batch is voided; it cannot be printed."]})
    check_live(session, batch.id, job.render.first_serial, job.render.last_serial, "print_job_id")
    new = PrintJob(operator_id=job.operator_id, batch_id=job.batch_id, render_job_id=job.render_job_id, kind="reprint",
                   status="queued", copies=job.copies, leases=0, requested_by=actor.user_id, reason=reason,
                   retry_of_id=job.id, created_at=utcnow())
    session.add(new)
    session.flush()
    _record_reprint(session, new, job.render, reason, actor.user_id)
    session.flush()
    return new


def cancel_open_jobs(session: Session, batch_id: int, first: int | None = None, last: int | None = None) -> list[int]:
    """Voiding a batch, or voiding or reporting lost or stolen serials first…last of it, cancels
    its jobs not yet acknowledged (queued or leased) that would print them; returns their ids. An
    agent that has not handed a leased one to its printer learns it at its next renewal (409) and
    does not print it; one printing it right now can still acknowledge 'printed' (ack_print_job)."""
    overlapping = select(RenderJob.id).where(RenderJob.batch_id == batch_id)
    if first is not None and last is not None:
        overlapping = overlapping.where(RenderJob.first_serial <= last, RenderJob.last_serial >= first)
    ids = list(session.scalars(update(PrintJob).where(
        PrintJob.batch_id == batch_id, PrintJob.status.in_(("queued", "leased")),
        PrintJob.render_job_id.in_(overlapping)).values(status="cancelled")
        .returning(PrintJob.id).execution_options(synchronize_session="fetch")))
    return sorted(ids)
