"""gunicorn settings for the API (docker/compose runs `gunicorn -c python:backend.gunicorn_conf`;
`chenpi serve` uses the same values). Sync/gthread workers: measured here, gevent gave
second-long p99 tails."""
from backend.config import setting

bind = f"{setting('HOST')}:{setting('PORT')}"
workers = int(setting("WEB_CONCURRENCY"))
threads = int(setting("WEB_THREADS"))
worker_class = "gthread"
timeout = int(setting("WEB_TIMEOUT"))
graceful_timeout = 20
keepalive = 5
accesslog = None  # the app logs one line per request, with its request id
errorlog = "-"
wsgi_app = "backend.wsgi:app"
