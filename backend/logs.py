"""Request logging: one line per request, with a request id that is also returned to the client."""
from __future__ import annotations

import logging
import re
import secrets
import time

from flask import Flask, g, has_request_context, request

log = logging.getLogger("chenpi.request")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:  # (the resolver's lean path passes its own)
            record.request_id = getattr(g, "request_id", "-") if has_request_context() else "-"
        return True


def request_id(incoming: str) -> str:
    """The client's X-Request-ID if it is safe to echo and log, else a new one."""
    return incoming if _SAFE_REQUEST_ID.match(incoming) else secrets.token_hex(16)


def log_request(method: str, path: str, status: int, took_ms: float, user: str, rid: str | None = None) -> None:
    """The one line per request."""
    if log.isEnabledFor(logging.INFO):
        log.info("%s %s %s %.1fms user=%s", method, path[:200], status, took_ms, user,
                 extra=None if rid is None else {"request_id": rid})


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if any(getattr(h, "_chenpi", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._chenpi = True
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


def init_app(app: Flask) -> None:
    configure_logging(app.config["CHENPI"].LOG_LEVEL)

    @app.before_request
    def _start():
        g.request_id = request_id(request.headers.get("X-Request-ID", ""))
        g.started = time.perf_counter()

    @app.after_request
    def _log(response):
        response.headers["X-Request-ID"] = getattr(g, "request_id", "-")
        took_ms = (time.perf_counter() - getattr(g, "started", time.perf_counter())) * 1000
        actor = getattr(g, "actor", None)
        log_request(request.method, request.path, response.status_code, took_ms, actor.name if actor else "-")
        return response
