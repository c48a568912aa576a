"""Fault test: Redis dies in the middle of a run of scans and comes back.

Every scan that answered 200 must be in scan_events exactly once afterwards (the ones made while
Redis was down went straight to the database; the ones in the stream survive the restart through
AOF and are drained), and the counters rebuilt from the database match what was answered.
The test runs its own redis-server on a free port and stops it by its PID.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter

import pytest
import redis as redis_lib
from sqlalchemy import func, select

from backend import create_app
from backend.config import Config
from backend.scans import counters, service
from backend.scans.models import ScanEvent
from tests.factories import Factory
from tests.scans_support import activated_codes

pytestmark = pytest.mark.real_servers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRedis:
    def __init__(self, workdir):
        self.port, self.dir, self.proc = _free_port(), str(workdir), None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "yes", "--appendfsync", "always"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis_lib.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis_lib.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)  # no goodbye: only what AOF wrote survives
        self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    if server.proc and server.proc.poll() is None:
        server.proc.terminate()
        server.proc.wait(timeout=10)


def test_every_answered_scan_is_recorded_once_across_a_redis_crash(committed_db, test_config, own_redis, monkeypatch):
    monkeypatch.setenv("SCAN_RATE_PER_MIN", "100000")
    session = committed_db.session
    codes_ = activated_codes(Factory(session), session, 4)
    app = create_app(Config(DATABASE_URL=test_config.DATABASE_URL, REDIS_URL=f"redis://127.0.0.1:{own_redis.port}/0",
                            SECRET_KEY="test-secret", STORAGE_DIR=test_config.STORAGE_DIR))
    client = app.test_client()
    answered: Counter = Counter()
    sources = Counter()

    def run(n: int, phase: str) -> None:
        for i in range(n):
            code = codes_[i % len(codes_)]
            r = client.get(f"/v/{code}", headers={"Accept": "application/json", "User-Agent": f"{phase}-{i % 3}"})
            assert r.status_code in (200, 503), r.get_data(as_text=True)[:300]
            if r.status_code == 200:
                answered[code] += 1
                sources[phase] += 1

    run(40, "before")          # Redis up: counted and streamed, not drained yet
    own_redis.kill()
    run(24, "down")            # Redis down: the page answers from the database
    own_redis.start()          # AOF replays the undrained stream
    run(16, "after")
    assert sources == {"before": 40, "down": 24, "after": 16}

    with app.app_context():
        from backend.extensions import db, redis

        drained = service.drain_all(db.session, redis.client)
        assert drained == 56  # the 40 before the crash survived it, and the 16 after
        rows = dict(db.session.execute(select(ScanEvent.code, func.count()).group_by(ScanEvent.code)).all())
        assert rows == dict(answered)
        assert db.session.scalar(select(func.count(func.distinct(ScanEvent.event_id)))) == sum(answered.values())
        by_source = dict(db.session.execute(select(ScanEvent.source, func.count()).group_by(ScanEvent.source)).all())
        assert by_source == {"stream": 56, "direct": 24}
        # The live counters missed the scans made while Redis was down; the rebuild has them all.
        assert counters.read_stats(redis.client, None)["total"] == 56
        service.rebuild_counters(db.session, redis.client)
        assert counters.read_stats(redis.client, None)["total"] == 80
        assert {c: counters.code_counters(redis.client, c)["count"] for c in codes_} == dict(answered)
        # A second drain and a second rebuild change nothing.
        assert service.drain_all(db.session, redis.client) == 0
        service.rebuild_counters(db.session, redis.client)
        assert {c: counters.code_counters(redis.client, c)["count"] for c in codes_} == dict(answered)
        db.session.remove()


def test_chenpi_worker_drains_the_stream_and_the_cli_rebuilds_counters(committed_db, test_config, client, tmp_path):
    """`chenpi worker --burst` drains the scan stream (a long-running worker runs the drain as a
    child process); `chenpi scans rebuild-counters` recomputes the counters in Redis."""
    import sys
    from pathlib import Path

    from backend.extensions import redis

    session = committed_db.session
    codes_ = activated_codes(Factory(session), session, 2)
    for code in codes_ + codes_:
        assert client.get(f"/v/{code}", headers={"Accept": "application/json"}).status_code == 200
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "REDIS_URL": test_config.REDIS_URL, "DATABASE_URL": test_config.DATABASE_URL,
           "SECRET_KEY": "test-secret", "PYTHONPATH": str(root), "LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-m", "backend.cli", "worker", "--burst"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(ScanEvent)) == 4
    redis.client.delete(counters.code_key(codes_[0], "n"), "scans:{all}:n")
    done = subprocess.run([sys.executable, "-m", "backend.cli", "scans", "rebuild-counters"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rebuilt from 4 events of 2 codes" in done.stdout
    assert counters.code_counters(redis.client, codes_[0])["count"] == 2
    assert counters.read_stats(redis.client, None)["total"] == 4
    session.remove()
