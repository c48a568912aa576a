"""Render jobs: a row per job (the truth), handed to RQ only after the request's commit.

Each hand-off to RQ gets an RQ job id of its own, stored on the row (`rq_job_id`) before the RQ
job exists; `render_job` works only for the hand-off the row names, and writes its progress, its
result and its failure only while the row still names it. So a stale RQ job (the dead worker's
job that RQ itself retries once its started-registry entry expires, or a worker that stalled and
was given up on) finds itself superseded and stops without touching the row.

A worker that dies mid-render (SIGKILL, OOM, a lost machine) leaves its row `running` with a
stale heartbeat. RQ only notices when the job's started-registry entry expires (90 s) at its next
registry cleanup (every 10 minutes), so `requeue_abandoned` hands every job whose heartbeat is
older than RENDER_STALE_SECONDS to RQ again under a new id. It runs in every `chenpi worker` on
the `render` queue, at start and then periodically (backend/worker.py), and when a job's progress
is read. Rendering is deterministic and the PDF is written atomically under the job's key, so an
overlap of two attempts writes the same bytes.
"""
from __future__ import annotations

import logging
import math
import uuid
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ...errors import AppError
from ...timeutil import utcnow
from .. import templates
from ..models import RenderJob
from .applications import not_found
from .ranges import check_range, get_batch

log = logging.getLogger(__name__)
#: RQ states of a hand-off that is still waiting for a worker: a queued row in one of them is left alone
WAITING = ("queued", "scheduled", "deferred")


def new_rq_job_id() -> str:
    return f"render-{uuid.uuid4().hex}"


def request_render(session: Session, actor, batch_id: int, first: int | None, last: int | None) -> RenderJob:
    batch = get_batch(session, actor, batch_id, lock=True)
    if batch.status == "voided":
        raise AppError("labels.batch_voided", errors={"batch_id": ["A voided batch cannot be rendered."]})
    first, last = check_range(batch, first, last)
    t = templates.load(batch.template)
    job = RenderJob(batch_id=batch.id, operator_id=batch.operator_id, template=batch.template, first_serial=first,
                    last_serial=last, status="queued", pages_done=0,
                    pages_total=math.ceil((last - first + 1) / t.per_page), attempts=0, requested_by=actor.user_id,
                    heartbeat_at=utcnow(), rq_job_id=new_rq_job_id())
    session.add(job)
    session.flush()
    return job


def get_render(session: Session, actor, render_id: int) -> RenderJob:
    job = session.get(RenderJob, render_id)
    if job is None or not actor.sees_operator(job.operator_id):
        raise not_found("render job")
    return job


def enqueue(job_id: int, rq_job_id: str | None = None) -> str:
    """Hand a committed job row to the `render` queue (in-process in the embedded mode), under the
    RQ job id the row names (read from the row when not given)."""
    from rq import Retry

    from ...extensions import db, redis

    if rq_job_id is None:
        rq_job_id = db.session.scalar(select(RenderJob.rq_job_id).where(RenderJob.id == job_id))
    rq_job = redis.queue("render").enqueue("backend.labels.jobs.render_job", job_id, job_id=rq_job_id,
                                           job_timeout=3600, retry=Retry(max=2, interval=[5, 30]), result_ttl=3600,
                                           failure_ttl=7 * 86400, description=f"render label job {job_id}")
    return rq_job.id


def _still_waiting(rq_job_id: str | None) -> bool:
    """Whether RQ still holds this hand-off in a queue (a queued row behind a long job, not lost)."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    from ...extensions import redis

    if rq_job_id is None:
        return False
    try:
        return Job.fetch(rq_job_id, connection=redis.client).get_status(refresh=False) in WAITING
    except NoSuchJobError:
        return False


def requeue_abandoned(session: Session, stale_seconds: float) -> list[int]:
    """Hand to RQ again, under a new RQ job id, every job whose heartbeat is older than
    `stale_seconds`: running (its worker died or stalled), or queued with a hand-off RQ no longer
    holds (lost, or taken by a worker that died before it started). Returns their ids."""
    limit = utcnow() - timedelta(seconds=stale_seconds)
    rows = session.scalars(select(RenderJob).where(RenderJob.status.in_(("queued", "running")),
                                                   or_(RenderJob.heartbeat_at.is_(None), RenderJob.heartbeat_at < limit))
                           .order_by(RenderJob.id).with_for_update(skip_locked=True)).all()
    again = [job for job in rows if job.status == "running" or not _still_waiting(job.rq_job_id)]
    for job in again:
        log.warning("render job %s: %s without a sign of life since %s (hand-off %s); handing it to RQ again",
                    job.id, job.status, job.heartbeat_at, job.rq_job_id)
        job.status, job.heartbeat_at, job.rq_job_id = "queued", utcnow(), new_rq_job_id()
    handoffs = [(job.id, job.rq_job_id) for job in again]
    session.commit()
    for job_id, rq_job_id in handoffs:
        enqueue(job_id, rq_job_id)
    return [job_id for job_id, _ in handoffs]
