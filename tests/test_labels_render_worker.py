"""A real `chenpi worker` killed (SIGKILL, with its work horse) in the middle of a label render:
another worker takes the job over and the PDF is complete, the same bytes as a fresh render; a
worker that only stalled and wakes up after the takeover stops without touching the job's row.

Real PostgreSQL, real Redis (the `render` queue) and real worker processes; the test reads the
job's row directly, never through the API's progress route (which re-enqueues abandoned jobs
itself and would hide a worker that does not)."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pypdfium2 as pdfium
import pytest
import zxingcpp
from sqlalchemy import select

from backend.labels import codes, jobs, templates
from backend.labels.models import Label, RenderJob
from backend.storage import get_storage
from tests.factories import Factory, label_batch

ROOT = Path(__file__).resolve().parents[1]
LABELS = 2_400  # 100 A4 3×8 pages: several seconds of rendering on the 2-core machine
STALE_S = 3


def _worker(test_config, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": test_config.REDIS_URL, "DATABASE_URL": test_config.DATABASE_URL,
           "SECRET_KEY": test_config.SECRET_KEY, "PUBLIC_BASE_URL": test_config.PUBLIC_BASE_URL,
           "STORAGE_DIR": test_config.STORAGE_DIR, "RENDER_STALE_SECONDS": str(STALE_S),
           "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO"}
    log = open(log_path, "ab")
    # a session of its own, so the whole process group (the worker and its work horse) can be killed
    return subprocess.Popen([sys.executable, "-m", "backend.cli", "worker", "--no-scan-drain", "render"], env=env,
                            cwd=log_path.parent, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants: the worker, its work horse (RQ puts the horse in a process group
    of its own, so killing the worker's group misses it) and its scheduler."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return found


def _signal_tree(proc: subprocess.Popen, sig) -> list[int]:
    pids = _tree(proc.pid)
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    return pids


def _kill_tree(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    """Stop the tree first (nothing reacts to a sibling's death), then signal every process."""
    pids = _signal_tree(proc, signal.SIGSTOP)
    for p in pids:
        try:
            os.kill(p, sig)
            if sig != signal.SIGKILL:
                os.kill(p, signal.SIGCONT)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _signal_tree(proc, signal.SIGKILL)
        proc.wait(timeout=10)


def _row(session, job_id: int) -> RenderJob:
    session.expire_all()
    return session.get(RenderJob, job_id)


def _wait(session, job_id: int, done, timeout: float, what: str, logs: Path) -> RenderJob:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        row = _row(session, job_id)
        if done(row):
            return row
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s; row: status={row.status} pages={row.pages_done}/"
                         f"{row.pages_total} attempts={row.attempts} error={row.error}\n"
                         + logs.read_text(errors="replace")[-3000:])


def _page_urls(page) -> set[str]:
    img = page.render(scale=300 / 72, grayscale=True).to_pil()
    return {r.text for r in zxingcpp.read_barcodes(img, formats=zxingcpp.BarcodeFormat.QRCode)}


def _wait_for_workers(n: int, logs: Path, timeout: float = 60) -> None:
    from rq import Worker

    from backend.extensions import redis

    end = time.monotonic() + timeout
    while len(Worker.all(connection=redis.client)) < n:
        assert time.monotonic() < end, f"{n} workers did not start\n" + logs.read_text(errors="replace")[-3000:]
        time.sleep(0.2)


def _render_with_two_workers(session, client, test_config, tmp_path):
    """Two idle workers, then a batch's render requested through the API; returns when one of
    them is making progress: (batch, job id, the busy worker, the idle one, the log). The idle
    worker's start-up look for abandoned jobs found none: only its periodic look can save the job."""
    from rq import Worker

    from backend.extensions import redis

    make = Factory(session)
    op = make.operator()
    batch = label_batch(session, op, LABELS)
    headers = make.auth(make.token("operator", op))
    logs = tmp_path / "workers.log"
    workers = [_worker(test_config, logs), _worker(test_config, logs)]
    _wait_for_workers(2, logs)
    r = client.post(f"/api/v1/labels/batches/{batch.id}/renders", json={}, headers=headers)
    assert r.status_code == 202, r.json
    job_id = r.json["id"]
    assert r.json["pages_total"] == LABELS // templates.load(batch.template).per_page
    _wait(session, job_id, lambda j: j.status == "running" and j.pages_done > 0, 90, "no progress", logs)
    busy = [w.pid for w in Worker.all(connection=redis.client) if w.get_current_job_id()]
    assert len(busy) == 1, busy
    busy_worker = next(w for w in workers if w.pid == busy[0])
    idle_worker = next(w for w in workers if w.pid != busy[0])
    return batch, job_id, busy_worker, idle_worker, logs


@pytest.mark.real_servers
@pytest.mark.timeout(240)
def test_a_worker_killed_mid_render_is_taken_over_and_the_pdf_is_complete(committed_db, client, test_config,
                                                                           tmp_path):
    session = committed_db.session
    batch, job_id, first_worker, second_worker, logs = _render_with_two_workers(session, client, test_config, tmp_path)
    batch_id, first, last = batch.id, batch.first_serial, batch.last_serial
    try:
        _kill_tree(first_worker)
        killed = _row(session, job_id)
        pages_total = killed.pages_total
        assert killed.status == "running" and 0 < killed.pages_done < pages_total, "killed too late to mean anything"
        assert killed.attempts == 1
        row = _wait(session, job_id, lambda j: j.status in ("finished", "failed"), 150, "not finished", logs)
    finally:
        _kill_tree(first_worker)
        _kill_tree(second_worker, signal.SIGTERM)
    assert row.status == "finished", row.error
    assert row.attempts == 2 and row.pages_done == pages_total
    assert "re-enqueued label render jobs abandoned by a dead worker: [%d]" % job_id in logs.read_text()

    stored = get_storage().open(row.storage_key).read()
    assert hashlib.sha256(stored).hexdigest() == row.sha256 and len(stored) == row.size
    pdf = pdfium.PdfDocument(stored)
    assert len(pdf) == pages_total

    # the same bytes as a fresh render in this process (rendering is deterministic)
    again = RenderJob(batch_id=batch_id, operator_id=batch.operator_id, template=row.template, first_serial=first,
                      last_serial=last, status="queued", pages_done=0, pages_total=pages_total, attempts=0,
                      requested_by=row.requested_by)
    session.add(again)
    session.commit()
    assert jobs.render_job(again.id)["status"] == "finished"
    fresh = _row(session, again.id)
    assert fresh.sha256 == row.sha256
    assert get_storage().open(fresh.storage_key).read() == stored

    # the first and the last page carry their labels' URLs
    per_page = templates.load(row.template).per_page
    code_of = dict(session.execute(select(Label.serial, Label.code).where(Label.batch_id == batch_id)).all())
    for p in (0, pages_total - 1):
        serials = range(first + p * per_page, min(first + (p + 1) * per_page, last + 1))
        assert _page_urls(pdf[p]) == {codes.qr_url(test_config.PUBLIC_BASE_URL, code_of[s]) for s in serials}, p
    pdf.close()
    session.remove()


@pytest.mark.real_servers
@pytest.mark.timeout(240)
def test_a_stalled_worker_that_wakes_after_the_takeover_leaves_the_finished_job_alone(committed_db, client,
                                                                                      test_config, tmp_path):
    session = committed_db.session
    _, job_id, stalled, second_worker, logs = _render_with_two_workers(session, client, test_config, tmp_path)
    try:
        _signal_tree(stalled, signal.SIGSTOP)  # alive but silent, like a machine that froze
        row = _wait(session, job_id, lambda j: j.status in ("finished", "failed"), 150, "not finished", logs)
        assert row.status == "finished" and row.attempts == 2, row.error
        done = (row.sha256, row.storage_key, row.finished_at, row.rq_job_id)
        _signal_tree(stalled, signal.SIGCONT)  # its next heartbeat finds the job taken over
        end = time.monotonic() + 60
        while "was superseded while it ran" not in logs.read_text():
            assert time.monotonic() < end, logs.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
    finally:
        _kill_tree(stalled)
        _kill_tree(second_worker, signal.SIGTERM)
    row = _row(session, job_id)
    assert (row.status, row.attempts, row.pages_done) == ("finished", 2, row.pages_total)
    assert (row.sha256, row.storage_key, row.finished_at, row.rq_job_id) == done and row.error is None
    assert hashlib.sha256(get_storage().open(row.storage_key).read()).hexdigest() == row.sha256
    session.remove()
