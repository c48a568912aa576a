"""gunicorn settings for the API (also used by docker/compose: `gunicorn -c python:backend.gunicorn_conf`).

Sync/gthread workers: measured here, gevent gave second-long p99 tails.
"""
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
accesslog = None  # the app logs one line per request, with its request id
errorlog = "-"
wsgi_app = "backend.wsgi:app"
