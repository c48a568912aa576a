"""The resolver's lean path: a scan of a label whose view is cached, answered below Flask.

That scan is the API's most frequent request and does little work of its own (one Redis round
trip, script.SCAN; no database), and Flask + flask-smorest + webargs around it cost as much again
(request context, session, argument parsing, response wrapping: ≈ 0.4 ms of a ≈ 1 ms scan,
bench/bench_scans.py). This WSGI middleware answers `GET /v/{code}` and `GET /V/{code}` without a
query string with the same service calls and the same helpers as the route (routes.client_of,
region_of, accepts_json, answer_parts; logs.request_id, log_request): the same status, headers,
body and log line. Everything else goes to Flask untouched: another path or method, a query
string, a code that does not parse (the route answers 422), a GS1 link, the embedded or a Cluster
Redis, Redis down. When the script answers that the view or the lot's origin must come from the
database, or that the client is rate limited, the request goes to Flask with what the round trip
found (environ routes.HANDED), and the route goes on from there without counting anything twice.
SCAN_FAST_PATH=0 turns it off.
"""
from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError
from werkzeug.http import HTTP_STATUS_CODES, parse_cookie

from .. import logs
from ..config import setting
from ..errors import AppError
from . import routes, script, service
from .settings import thresholds

log = logging.getLogger(__name__)
_MAX_PATH = 3 + routes.MAX_CODE_INPUT


class ResolverFastPath:
    """WSGI middleware in front of the Flask app's wsgi_app (create_app installs it)."""

    def __init__(self, app, wsgi_app):
        self.app, self.next = app, wsgi_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if (environ.get("REQUEST_METHOD") != "GET" or path[:3] not in ("/v/", "/V/") or len(path) > _MAX_PATH
                or environ.get("QUERY_STRING") or "/" in path[3:] or not path.isascii()):
            return self.next(environ, start_response)
        answered = self.answer(environ, path)  # (no app context: see `answer`)
        if answered is None:
            return self.next(environ, start_response)
        status, headers, body = answered
        start_response(f"{status} {HTTP_STATUS_CODES[status]}", headers)
        return [body]

    def answer(self, environ, path: str):
        """(status, headers, body), or None for Flask to answer. Runs outside an app context (its
        push and pop cost as much as the answer's JSON): everything here takes the app's config
        as arguments, and the database read, should a counted entry not decode, pushes one."""
        started = time.perf_counter()
        redis_ext = self.app.extensions.get("chenpi_redis")
        if not redis_ext or redis_ext["embedded"] or not script.usable(redis_ext["client"]):
            return None
        if setting("SCAN_FAST_PATH") in ("0", "false", "no", "off"):
            return None
        checked = service.check_code(path[3:], service.known_keys(self.app.config["CHENPI"]))
        if not isinstance(checked, str):
            return None
        t = thresholds()
        cookie = parse_cookie(environ.get("HTTP_COOKIE", "")).get(routes.DEVICE_COOKIE, "")
        remote = environ.get("REMOTE_ADDR") or ""
        client = routes.client_of(t, self.app.config["SECRET_KEY"], remote, environ.get("HTTP_X_FORWARDED_FOR"),
                                  cookie, environ.get("HTTP_USER_AGENT", ""), environ.get("HTTP_ACCEPT_LANGUAGE", ""))
        if t.region_header:
            client.region = routes.region_of(t, remote, environ.get("HTTP_" + t.region_header.upper().replace("-", "_")))
        try:
            kind, got = service.scan_once(redis_ext["client"], checked, client, t, lambda: self._read(checked))
        except RedisError:  # down (the route answers from the database), read-only, out of memory…:
            return None  # the route answers, as it answers any request
        if kind != "done":
            environ[routes.HANDED] = (kind, got, client)
            return None
        rid = logs.request_id(environ.get("HTTP_X_REQUEST_ID", ""))  # (after the count: only when it answers)
        try:
            status, headers, body = routes.answer_parts(
                got, 404 if got.verdict == "unknown" else 200,
                routes.accepts_json(environ.get("HTTP_ACCEPT", "")), cookie=cookie,
                secure=environ.get("wsgi.url_scheme") == "https")
        except Exception:  # noqa: BLE001 - counted already: answer as the app's error handler would
            log.exception("resolver: answering %s failed", checked, extra={"request_id": rid})
            status = 500
            body = (self.app.json.dumps(AppError("server.error").to_body(), separators=(",", ":")) + "\n").encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        headers.append(("X-Request-ID", rid))
        logs.log_request("GET", path, status, (time.perf_counter() - started) * 1000, "-", rid)
        return status, headers, body

    def _read(self, code: str):
        from ..extensions import db

        with self.app.app_context():
            return service.read_label(db.session, code)
