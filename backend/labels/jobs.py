"""RQ entry points of the labels domain (queue `render`). Thin: load, call the pure renderer,
record the outcome on the job's row. The job id is in every log line."""
from __future__ import annotations

import logging
import os
import tempfile
import time

from sqlalchemy import select

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


def render_job(job_id: int) -> dict:
    """Render a RenderJob's labels to a PDF in storage, with progress on the row."""
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
    job.status, job.attempts, job.started_at, job.heartbeat_at = "running", job.attempts + 1, utcnow(), utcnow()
    job.pages_done, job.error = 0, None
    session.commit()
    log.info("render job %s: batch %s serials %s-%s, attempt %s", job_id, job.batch_id, job.first_serial,
             job.last_serial, job.attempts)
    try:
        batch = session.get(LabelBatch, job.batch_id)
        if batch.status == "voided":
            raise AppError("labels.batch_voided")
        operator = session.get(Operator, batch.operator_id)
        lot = session.get(Lot, batch.lot_id) if batch.lot_id else None
        t = templates.load(job.template)
        info = batch_info(operator, batch.product, lot, batch.harvest_year, title=f"批次 {batch.id:06d}")
        cfg = current_config()
        storage = get_storage()
        done = {"labels": 0, "beat": time.monotonic()}

        def progress(n: int) -> None:
            done["labels"] += n
            if time.monotonic() - done["beat"] >= 0.5:
                done["beat"] = time.monotonic()
                job.pages_done = min(job.pages_total, done["labels"] // t.per_page)
                job.heartbeat_at = utcnow()
                session.commit()

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
        job.status, job.pages_done, job.storage_key = "finished", result.pages, key
        job.sha256, job.size, job.finished_at, job.heartbeat_at = stored.sha256, stored.size, utcnow(), utcnow()
        session.commit()
        log.info("render job %s: %s labels, %s pages, %s bytes, sha256 %s", job_id, result.labels, result.pages,
                 stored.size, stored.sha256)
        return {"status": "finished", "sha256": stored.sha256, "pages": result.pages}
    except Exception as exc:
        session.rollback()
        job = session.get(RenderJob, job_id)
        job.status, job.error, job.finished_at = "failed", f"{type(exc).__name__}: {exc}"[:2000], utcnow()
        session.commit()
        log.exception("render job %s failed", job_id)
        if isinstance(exc, AppError):
            return {"status": "failed", "error": exc.reason}  # not retried: the input is wrong
        raise
