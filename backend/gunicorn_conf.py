"""gunicorn settings for the API (docker/compose runs `gunicorn -c python:backend.gunicorn_conf`;
`chenpi serve` uses the same values). Sync/gthread workers: measured here, gevent gave
second-long p99 tails."""
import os

from backend.config import setting


def worker_count(value: str) -> int:
    """WEB_CONCURRENCY as a number of workers. Unset (empty) means one more than the cores this
    process may use: a consumer scan spends part of its time waiting on Redis, and with one worker
    per core about 10 % of the host sat idle under the resolver's load (bench/bench_scans.py:
    host_busy 0.90 with 2 workers on 2 cores, 0.96 with 3, and +7 % scans per second)."""
    if not value.strip():
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return cores + 1
    try:
        workers = int(value)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ValueError(f"WEB_CONCURRENCY must be a whole number ≥ 1, not {value!r}")
    return workers


bind = f"{setting('HOST')}:{setting('PORT')}"
workers = worker_count(setting("WEB_CONCURRENCY"))
threads = int(setting("WEB_THREADS"))
worker_class = "gthread"
timeout = int(setting("WEB_TIMEOUT"))
graceful_timeout = 20
keepalive = 5
accesslog = None  # the app logs one line per request, with its request id
errorlog = "-"
wsgi_app = "backend.wsgi:app"
