"""Render jobs: a committed row handed to RQ, progress, the PDF with its SHA-256, and a worker
killed in the middle of a render."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from backend.labels import jobs
from backend.labels.models import RenderJob

API = "/api/v1/labels"
ROOT = Path(__file__).resolve().parents[1]
LICENCE = {"licence_status": "active", "licence_no": "GI-0002", "licence_valid_from": date(2020, 1, 1),
           "licence_valid_until": date(2099, 12, 31)}


def issue(client, make, quantity):
    op = make.operator(**LICENCE)
    people = {"op": make.auth(make.token("operator", op)), "admin": make.auth(make.token("admin")),
              "agent": make.auth(make.token("agent", op)), "other": make.auth(make.token("operator"))}
    r = client.post(f"{API}/applications", json={"product": "新会陈皮 十年陈 500 g", "quantity": quantity}, headers=people["op"])
    r = client.post(f"{API}/applications/{r.json['id']}/approve", json={}, headers=people["admin"])
    assert r.status_code == 201, r.json
    return r.json, people


@pytest.fixture
def inline(monkeypatch):
    """Run render jobs in-process at enqueue, on either backend (the real worker has its own test)."""
    import backend.labels.service as service

    monkeypatch.setattr(service, "enqueue", lambda job_id: jobs.render_job(job_id))


def test_a_render_job_reports_progress_and_serves_the_pdf_with_its_sha256(client, make, inline):
    batch, people = issue(client, make, 30)
    r = client.post(f"{API}/batches/{batch['id']}/renders", json={}, headers=people["op"])
    assert r.status_code == 202 and r.json["pages_total"] == 2
    job = client.get(f"{API}/renders/{r.json['id']}", headers=people["op"]).json
    assert job["status"] == "finished" and job["pages_done"] == 2 and len(job["sha256"]) == 64, job
    pdf = client.get(f"{API}/renders/{job['id']}/pdf", headers=people["agent"])
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert hashlib.sha256(pdf.data).hexdigest() == job["sha256"] and len(pdf.data) == job["size"]
    assert pdf.data.startswith(b"%PDF") and pdf.data.rstrip().endswith(b"%%EOF")
    # re-rendering gives the same bytes
    again = client.post(f"{API}/batches/{batch['id']}/renders", json={}, headers=people["admin"]).json
    assert client.get(f"{API}/renders/{again['id']}", headers=people["op"]).json["sha256"] == job["sha256"]
    # another operator sees nothing
    assert client.get(f"{API}/renders/{job['id']}", headers=people["other"]).status_code == 404
    assert client.get(f"{API}/renders/{job['id']}/pdf", headers=people["other"]).status_code == 404
    assert client.post(f"{API}/batches/{batch['id']}/renders", json={}, headers=people["other"]).status_code == 404


def test_a_range_renders_only_its_labels(client, make, inline):
    batch, people = issue(client, make, 30)
    r = client.post(f"{API}/batches/{batch['id']}/renders", json={"first": 25, "last": 30}, headers=people["op"])
    assert r.json["pages_total"] == 1
    assert client.get(f"{API}/renders/{r.json['id']}", headers=people["op"]).json["status"] == "finished"
    r = client.post(f"{API}/batches/{batch['id']}/renders", json={"first": 25, "last": 31}, headers=people["op"])
    assert r.status_code == 422 and r.json["reason"] == "labels.range_invalid"


def test_rendering_a_voided_batch_is_409_and_writes_nothing(client, session, make, inline):
    batch, people = issue(client, make, 5)
    client.post(f"{API}/batches/{batch['id']}/void-batch", json={"reason": "错印"}, headers=people["op"])
    r = client.post(f"{API}/batches/{batch['id']}/renders", json={}, headers=people["op"])
    assert r.status_code == 409 and r.json["reason"] == "labels.batch_voided"
    assert session.query(RenderJob).filter_by(batch_id=batch["id"]).count() == 0


def test_the_pdf_of_an_unfinished_job_is_409(client, make, monkeypatch):
    import backend.labels.service as service

    monkeypatch.setattr(service, "enqueue", lambda job_id: None)
    batch, people = issue(client, make, 3)
    r = client.post(f"{API}/batches/{batch['id']}/renders", json={}, headers=people["op"])
    pdf = client.get(f"{API}/renders/{r.json['id']}/pdf", headers=people["op"])
    assert pdf.status_code == 409 and pdf.json["reason"] == "labels.render_not_ready"


@pytest.mark.real_servers
def test_a_stale_queued_job_is_handed_over_again_only_when_rq_no_longer_holds_it(client, session, make):
    from datetime import timedelta

    from rq.job import Job

    from backend.extensions import redis
    from backend.labels.service import requeue_abandoned
    from backend.timeutil import utcnow

    batch, people = issue(client, make, 3)
    r = client.post(f"{API}/batches/{batch['id']}/renders", json={}, headers=people["op"])
    job = session.get(RenderJob, r.json["id"])
    first_handoff = job.rq_job_id
    assert Job.fetch(first_handoff, connection=redis.client).get_status() == "queued"
    job.heartbeat_at = utcnow() - timedelta(hours=1)  # waiting behind long renders, say
    session.commit()
    assert requeue_abandoned(session, 60) == []  # RQ still holds it: no second copy
    Job.fetch(first_handoff, connection=redis.client).delete()  # Redis lost it
    assert requeue_abandoned(session, 60) == [job.id]
    session.refresh(job)
    assert job.status == "queued" and job.rq_job_id != first_handoff
    assert Job.fetch(job.rq_job_id, connection=redis.client).args == (job.id,)
    assert redis.queue("render").count == 1  # one copy queued, never two


def test_a_job_row_from_before_hand_off_ids_is_claimed_by_the_rq_job_that_runs_it(client, session, make, monkeypatch):
    """A row queued by an older version names no RQ job: whichever hand-off runs first claims it."""
    from rq.job import Job

    import backend.labels.service as service
    from backend.extensions import redis

    monkeypatch.setattr(service, "enqueue", lambda job_id: None)
    batch, people = issue(client, make, 3)
    r = client.post(f"{API}/batches/{batch['id']}/renders", json={}, headers=people["op"])
    job = session.get(RenderJob, r.json["id"])
    job.rq_job_id = None
    session.commit()
    rq_job = Job.create("backend.labels.jobs.render_job", args=(job.id,), id="render-legacy", connection=redis.client)
    assert rq_job.perform()["status"] == "finished"
    session.refresh(job)
    assert job.status == "finished" and job.rq_job_id == "render-legacy" and job.attempts == 1
    # another hand-off of the same row, later, does nothing
    other = Job.create("backend.labels.jobs.render_job", args=(job.id,), id="render-other", connection=rq_job.connection)
    assert other.perform() == {"status": "finished", "sha256": job.sha256}
