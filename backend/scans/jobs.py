"""The scan stream drain: a long-running loop (`chenpi scans drain`, also started by
`chenpi worker`) that moves scan events from the Redis Stream into `scan_events` in batches.

Each batch is committed before it is acknowledged, so a crash between the two only replays
events the database already has (skipped by event id). Entries another consumer left
unacknowledged for a minute are claimed and finished (XAUTOCLAIM). Several drains may run (one
per worker): the consumer group hands each entry to one of them.

A batch the database refuses because of one bad event is recorded event by event and the bad
one goes to the dead-letter stream (service.drain_once); a lost database or Redis only pauses
the drain (backing off up to 10 s), which then retries its own unfinished batch first: nothing
is dropped.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

from sqlalchemy.exc import SQLAlchemyError

from . import service

log = logging.getLogger("chenpi.scans.drain")


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def run_drain(batch: int = 500, block_ms: int = 2000, once: bool = False, stop=None, linger_s: float = 0.2) -> int:
    """Drain until stopped (SIGTERM/SIGINT, or `stop()` true); with `once`, until the stream is
    empty. Needs an app context. Returns the number of entries handled.

    After a batch smaller than `batch` the loop waits `linger_s` before reading again, so under
    load events accumulate into batches: each batch costs a fixed handful of queries and a
    commit, and a drain reading one or two events at a time spent as much CPU as the resolver
    itself (bench/bench_scans.py: 371 scans/s without the drain, 226 with it). An event reaches
    the database (and its alerts) at most `linger_s` later; the page answers from Redis at once."""
    from ..extensions import db, redis

    name = consumer_name()
    stopping = {"now": False}

    def _stop(*_):
        stopping["now"] = True

    if stop is None and not once:
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    total, pause = 0, 0.5
    retry_own = False  # a batch failed: read this consumer's unfinished entries first
    log.info("scan drain %s started", name)
    while not stopping["now"] and not (stop and stop()):
        try:
            n = service.drain_once(db.session, redis.client, name, count=batch,
                                   block_ms=None if once else block_ms, own_pending=retry_own)
            total += n
            pause, retry_own = 0.5, False
            if n:
                log.info("scan drain %s: %d events recorded", name, n)
            elif once:
                break
            if not once and 0 < n < batch and linger_s > 0:
                deadline = time.monotonic() + linger_s
                while not stopping["now"] and not (stop and stop()) and time.monotonic() < deadline:
                    time.sleep(min(0.05, linger_s))
        except service.REDIS_DOWN as err:
            db.session.rollback()
            log.warning("scan drain: Redis unavailable (%s); retrying in %.1f s", err, pause)
            retry_own = True
            if once:
                break
            time.sleep(pause)
            pause = min(pause * 2, 10)
        except SQLAlchemyError as err:
            db.session.rollback()
            log.error("scan drain: database error, batch left unacknowledged (retried in %.1f s): %s",
                      pause, str(err).splitlines()[0])
            retry_own = True
            if once:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 10)
    db.session.remove()
    log.info("scan drain %s stopped after %d events", name, total)
    return total


def spawn_drain() -> subprocess.Popen:
    """Start `chenpi scans drain` as a child process (used by `chenpi worker` and `chenpi demo`)."""
    return subprocess.Popen([sys.executable, "-m", "backend.cli", "scans", "drain"], env=dict(os.environ))


def stop_child(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
