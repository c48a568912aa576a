"""`chenpi worker` is a real RQ worker on the app's queues."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rq import Queue
from rq.job import Job

from backend.extensions import QUEUES, redis

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.real_servers
def test_chenpi_worker_runs_jobs_from_every_app_queue(app, test_config, tmp_path):
    jobs = [Queue(name, connection=redis.client).enqueue("math.sqrt", 16 * (i + 1) ** 2) for i, name in enumerate(QUEUES)]
    env = {**os.environ, "REDIS_URL": test_config.REDIS_URL, "DATABASE_URL": test_config.DATABASE_URL,
           "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-m", "backend.cli", "worker", "--burst"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    results = [Job.fetch(job.id, connection=redis.client).return_value() for job in jobs]
    assert results == [4.0 * (i + 1) for i in range(len(QUEUES))]


def test_embedded_queue_runs_jobs_at_once(tmp_path):
    from backend import create_app
    from backend.config import Config

    embedded = create_app(Config(DATABASE_URL=f"sqlite:///{tmp_path}/w.db", REDIS_URL=""))
    with embedded.app_context():
        job = redis.queue("default").enqueue("math.sqrt", 81)
        assert job.is_finished and job.return_value() == 9.0
