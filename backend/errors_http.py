"""Turn every error into the one JSON shape: {code, status, message, errors?, reason}."""
from __future__ import annotations

import logging

from flask import Flask, g, has_request_context
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from .errors import AppError
from .extensions import db

log = logging.getLogger(__name__)

_REASON_BY_STATUS = {
    400: "request.bad_json",
    404: "request.not_found",
    405: "request.method_not_allowed",
    413: "request.too_large",
    415: "request.unsupported_media",
    422: "request.invalid",
    500: "server.error",
}


def _rollback(record_token_use: bool = True) -> None:
    """Undo the request's writes, but keep the record that its bearer token was used."""
    db.session.rollback()
    token_id = g.get("token_id") if record_token_use and has_request_context() else None
    if token_id is None:
        return
    try:
        from .auth.service import record_use

        record_use(db.session, token_id)
        db.session.commit()
    except Exception:  # noqa: BLE001 - bookkeeping must never replace the real error
        db.session.rollback()
        log.warning("could not record the token's use after a failed request", exc_info=True)


def init_app(app: Flask, api) -> None:
    @app.errorhandler(AppError)
    def _app_error(err: AppError):
        _rollback()
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else {}
        return err.to_body(), err.status, headers

    def _http_error(err: HTTPException):
        _rollback()
        body, status, headers = api.handle_http_exception(err)
        body.setdefault("message", err.description if status != 500 else "Internal error; it has been logged.")
        body["reason"] = _REASON_BY_STATUS.get(status, f"http.{status}")
        return body, status, headers

    # flask-smorest registered its own HTTPException handler; ours adds `reason`.
    app.register_error_handler(HTTPException, _http_error)

    @app.errorhandler(IntegrityError)
    def _integrity(err: IntegrityError):
        # Services check natural keys first; this is the safety net for a race between two requests.
        _rollback()
        log.warning("integrity error reached the handler: %s", err.orig)
        return AppError("request.conflict", "The record conflicts with an existing one.").to_body(), 409

    @app.errorhandler(DataError)
    def _data_error(err: DataError):
        _rollback()
        log.warning("data error reached the handler: %s", err.orig)
        return AppError("request.invalid", "A value is out of range for its field.").to_body(), 422

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database_down(err):
        _rollback(record_token_use=False)
        if "no such " in str(err.orig):  # SQLite's missing table/column: a bug, not an outage
            log.error("schema error: %s", err.orig)
            return AppError("server.error").to_body(), 500
        log.error("database unavailable: %s", str(err.orig).splitlines()[0] if err.orig else err)
        return AppError("ops.not_ready", "The database is unavailable; try again shortly.",
                        {"database": ["unavailable"]}).to_body(), 503, {"Retry-After": "5"}

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def _redis_down(err):
        _rollback()
        log.error("redis unavailable: %s", err)
        return AppError("ops.not_ready", "Redis is unavailable; try again shortly.",
                        {"redis": ["unavailable"]}).to_body(), 503, {"Retry-After": "5"}

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        if isinstance(err, HTTPException):
            return _http_error(err)
        _rollback()
        log.exception("unhandled error")
        return AppError("server.error").to_body(), 500
