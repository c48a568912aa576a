"""Render jobs: a row per job (the truth), handed to RQ only after the request's commit.

A worker that dies mid-render (SIGKILL, OOM, a lost machine) leaves its row `running` with a
stale heartbeat. RQ 2.x itself only notices when the job's entry in the started registry expires
(then it retries the job if it had `Retry` left, else marks it failed); that can take minutes.
So `requeue_abandoned` (run when a `chenpi worker` starts and when a job's progress is read)
re-enqueues every job whose heartbeat is older than RENDER_STALE_SECONDS. Rendering is
deterministic and the PDF is written atomically under a key of its own, so a job that runs twice
(a late RQ retry of the dead worker's job) writes the same bytes; a job already finished returns
at once.
"""
from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ...errors import AppError
from ...timeutil import utcnow
from .. import templates
from ..models import RenderJob
from .applications import not_found
from .ranges import check_range, get_batch


def request_render(session: Session, actor, batch_id: int, first: int | None, last: int | None) -> RenderJob:
    batch = get_batch(session, actor, batch_id, lock=True)
    if batch.status == "voided":
        raise AppError("labels.batch_voided", errors={"batch_id": ["A voided batch cannot be rendered."]})
    first, last = check_range(batch, first, last)
    t = templates.load(batch.template)
    job = RenderJob(batch_id=batch.id, operator_id=batch.operator_id, template=batch.template, first_serial=first,
                    last_serial=last, status="queued", pages_done=0,
                    pages_total=math.ceil((last - first + 1) / t.per_page), attempts=0, requested_by=actor.user_id,
                    heartbeat_at=utcnow())
    session.add(job)
    session.flush()
    return job


def get_render(session: Session, actor, render_id: int) -> RenderJob:
    job = session.get(RenderJob, render_id)
    if job is None or not actor.sees_operator(job.operator_id):
        raise not_found("render job")
    return job


def enqueue(job_id: int) -> str:
    """Hand a committed job row to the `render` queue (in-process in the embedded mode)."""
    from rq import Retry

    from ...extensions import redis

    rq_job = redis.queue("render").enqueue("backend.labels.jobs.render_job", job_id, job_timeout=3600,
                                           retry=Retry(max=2, interval=[5, 30]), result_ttl=3600,
                                           failure_ttl=7 * 86400, description=f"render label job {job_id}")
    return rq_job.id


def requeue_abandoned(session: Session, stale_seconds: float) -> list[int]:
    """Re-enqueue jobs queued or running whose heartbeat is older than `stale_seconds`."""
    limit = utcnow() - timedelta(seconds=stale_seconds)
    jobs = session.scalars(select(RenderJob).where(RenderJob.status.in_(("queued", "running")),
                                                   or_(RenderJob.heartbeat_at.is_(None), RenderJob.heartbeat_at < limit))
                           .with_for_update(skip_locked=True)).all()
    for job in jobs:
        job.status, job.heartbeat_at = "queued", utcnow()
    session.commit()
    for job in jobs:
        enqueue(job.id)
    return [j.id for j in jobs]
