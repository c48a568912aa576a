"""Run gunicorn in-process with backend/gunicorn_conf.py settings (used by `chenpi serve`/`demo`)."""
from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication

from . import gunicorn_conf

log = logging.getLogger(__name__)


class _Server(BaseApplication):
    def __init__(self, app, options: dict):
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self.application


def run(app, host: str, port: int, workers: int | None) -> None:
    from .extensions import redis

    workers = workers or gunicorn_conf.workers
    if redis.embedded and workers > 1:
        log.warning("embedded mode (no REDIS_URL): serving with one process, since the in-process Redis is not shared")
        workers = 1
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": gunicorn_conf.threads,
        "worker_class": gunicorn_conf.worker_class,
        "timeout": gunicorn_conf.timeout,
        "graceful_timeout": gunicorn_conf.graceful_timeout,
        "keepalive": gunicorn_conf.keepalive,
        "errorlog": "-",
    }
    _Server(app, options).run()
