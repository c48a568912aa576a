"""RQ entry points of the labels domain (queue `render`). Thin: load, call the pure renderer,
record the outcome on the job's row. The job id is in every log line.

A render works for one hand-off (the RQ job id the row names, service/rendering.py) and writes
the row only while the row still names it: a superseded run (RQ's own late retry of a dead
worker's job, or a stalled worker given up on) stops at its next heartbeat and never marks the
row running, finished or failed over the attempt that replaced it."""
from __future__ import annotations

import logging
import os
import tempfile
import time

from sqlalchemy import select, update

from ..chain.models import Lot
from ..errors import AppError
from ..registry.models import Operator
from ..timeutil import utcnow
from . import codes, render, templates
from .models import Label, LabelBatch, RenderJob
from .service.applications import batch_info
from .service.keys import key_for

log = logging.getLogger("chenpi.labels.jobs")
ROWS_PER_QUERY = 2400


def _rows(session, batch_id: int, first: int, last: int, base_url: str, pin_key: tuple[str, bytes] | None = None):
    """The batch's label rows in serial order; with `pin_key` (the batch's key id and secret, for
    a template with a scratch-off box) each row carries its PIN, derived again, never stored."""
    for a in range(first, last + 1, ROWS_PER_QUERY):
        b = min(a + ROWS_PER_QUERY - 1, last)
        for serial, code in session.execute(select(Label.serial, Label.code).where(
                Label.batch_id == batch_id, Label.serial.between(a, b)).order_by(Label.serial)).all():
            yield render.LabelRow(code=codes.display(code), serial=codes.format_serial(batch_id, serial),
                                  url=codes.qr_url(base_url, code),
                                  pin=codes.make_pin(*pin_key, batch_id, serial) if pin_key else None)


class Superseded(Exception):
    """The row no longer names this run's hand-off: another attempt took the job over."""


def _write(session, job_id: int, handoff: str | None, statuses: tuple[str, ...], **values) -> bool:
    """Set `values` on the job's row if it still names `handoff` and is in `statuses`; committed."""
    done = session.execute(update(RenderJob).where(RenderJob.id == job_id, RenderJob.rq_job_id.is_not_distinct_from(handoff),
                                                   RenderJob.status.in_(statuses)).values(**values))
    session.commit()
    return done.rowcount == 1


def render_job(job_id: int) -> dict:
    """Render a RenderJob's labels to a PDF in storage, with progress on the row.

    Run by RQ, it works for the hand-off named by its RQ job id; called directly (tests, the
    embedded mode's callers), for the hand-off the row names."""
    from rq import get_current_job

    from ..config import current_config
    from ..extensions import db
    from ..storage import get_storage

    session = db.session
    job = session.get(RenderJob, job_id)
    if job is None:
        log.warning("render job %s: no such row (rolled back?)", job_id)
        return {"status": "missing"}
    if job.status == "finished":
        return {"status": "finished", "sha256": job.sha256}
    current = get_current_job()
    handoff = current.id if current is not None else job.rq_job_id
    # the row must name this hand-off; a row from before hand-off ids (none named) is claimed by it
    expected = None if job.rq_job_id is None else handoff
    now = utcnow()
    if not _write(session, job_id, expected, ("queued", "running", "failed"), status="running", rq_job_id=handoff,
                  attempts=RenderJob.attempts + 1, started_at=now, heartbeat_at=now, pages_done=0, error=None,
                  finished_at=None):
        session.refresh(job)
        log.warning("render job %s: hand-off %s was superseded by %s (%s); nothing to do", job_id, handoff,
                    job.rq_job_id, job.status)
        return {"status": "superseded"}
    session.refresh(job)
    log.info("render job %s: batch %s serials %s-%s, attempt %s (hand-off %s)", job_id, job.batch_id,
             job.first_serial, job.last_serial, job.attempts, handoff)
    try:
        batch = session.get(LabelBatch, job.batch_id)
        if batch.status == "voided":
            raise AppError("labels.batch_voided")
        operator = session.get(Operator, batch.operator_id)
        lot = session.get(Lot, batch.lot_id) if batch.lot_id else None
        t = templates.load(job.template)
        info = batch_info(operator, batch.product, lot, batch.harvest_year, title=f"批次 {batch.id:06d}")
        pages_total = job.pages_total
        cfg = current_config()
        storage = get_storage()
        done = {"labels": 0, "beat": time.monotonic()}

        def progress(n: int) -> None:
            done["labels"] += n
            if time.monotonic() - done["beat"] >= 0.5:
                done["beat"] = time.monotonic()
                if not _write(session, job_id, handoff, ("running",), heartbeat_at=utcnow(),
                              pages_done=min(pages_total, done["labels"] // t.per_page)):
                    raise Superseded

        os.makedirs(cfg.STORAGE_DIR, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cfg.STORAGE_DIR, prefix=".render-", suffix=".pdf")
        os.close(fd)
        try:
            pin_key = (batch.key_id, key_for(batch.key_id, cfg)) if t.pin is not None else None
            result = render.render_pdf(t, info, _rows(session, batch.id, job.first_serial, job.last_serial,
                                                      cfg.PUBLIC_BASE_URL, pin_key), tmp, progress=progress)
            key = f"labels/batch-{batch.id}/render-{job.id}.pdf"
            with open(tmp, "rb") as f:
                stored = storage.put(key, f)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if stored.sha256 != result.sha256:
            raise RuntimeError("the stored PDF differs from the rendered one")
        if not _write(session, job_id, handoff, ("running",), status="finished", pages_done=result.pages,
                      storage_key=key, sha256=stored.sha256, size=stored.size, finished_at=utcnow(),
                      heartbeat_at=utcnow()):
            raise Superseded  # the same bytes are stored under the same key: nothing to undo
        log.info("render job %s: %s labels, %s pages, %s bytes, sha256 %s", job_id, result.labels, result.pages,
                 stored.size, stored.sha256)
        return {"status": "finished", "sha256": stored.sha256, "pages": result.pages}
    except Superseded:
        session.rollback()
        log.warning("render job %s: hand-off %s was superseded while it ran; stopped, the row left alone", job_id,
                    handoff)
        return {"status": "superseded"}
    except Exception as exc:
        session.rollback()
        if not _write(session, job_id, handoff, ("running",), status="failed", finished_at=utcnow(),
                      error=f"{type(exc).__name__}: {exc}"[:2000]):
            log.warning("render job %s: hand-off %s failed after it was superseded: %s", job_id, handoff, exc)
            return {"status": "superseded"}
        log.exception("render job %s failed", job_id)
        if isinstance(exc, AppError):
            return {"status": "failed", "error": exc.reason}  # not retried: the input is wrong
        raise
