"""Operations routes: liveness, readiness, and the Swagger UI assets served locally (no CDN)."""
from __future__ import annotations

import logging

from flask import Flask, send_from_directory
from flask.views import MethodView
from marshmallow import Schema, fields
from sqlalchemy import text

from .errors import AppError
from .extensions import db, redis
from .http import Blueprint, ErrorBody

log = logging.getLogger(__name__)
blp = Blueprint("ops", __name__, description="Liveness and readiness")


class HealthOut(Schema):
    status = fields.String(required=True)
    database = fields.String()
    redis = fields.String()
    embedded = fields.Boolean()
    scan_stream = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": (
        "Consumer scans: events in the stream not yet in the database (pending), events the database "
        "refused waiting in the dead-letter stream (dead_letters; see `chenpi scans dead-letters`) and "
        "ever moved there (dead_letters_total)")})


@blp.route("/healthz")
class Health(MethodView):
    @blp.public()
    @blp.response(200, HealthOut)
    def get(self):
        """The process is alive (touches nothing else)."""
        return {"status": "ok"}


def readiness() -> tuple[dict, dict]:
    """Check each backing service; returns (state per service, errors per service)."""
    state, errors = {}, {}
    try:
        db.session.execute(text("SELECT 1"))
        state["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        db.session.rollback()
        state["database"] = "down"
        errors["database"] = ["unreachable"]  # public route: details go to the log, not the caller
        log.error("readiness: database down: %s", exc)
    try:
        redis.client.ping()
        state["redis"] = "ok"
        state["scan_stream"] = _scan_stream()
    except Exception as exc:  # noqa: BLE001
        state["redis"] = "down"
        errors["redis"] = ["unreachable"]
        log.error("readiness: redis down: %s", exc)
    return state, errors


def _scan_stream() -> dict:
    from .scans import service as scans

    dead = scans.dead_letters(redis.client)
    return {"pending": scans.pending(redis.client), "dead_letters": dead["waiting"],
            "dead_letters_total": dead["total"]}


@blp.route("/readyz")
class Ready(MethodView):
    @blp.public()
    @blp.response(200, HealthOut)
    @blp.alt_response(503, schema=ErrorBody, description="A backing service is down")
    def get(self):
        """Database and Redis are reachable; 503 names what is down."""
        state, errors = readiness()
        if errors:
            raise AppError("ops.not_ready", f"Not ready: {', '.join(errors)} down.", errors)
        return {"status": "ok", "embedded": redis.embedded, **state}


def init_app(app: Flask, api) -> None:
    import swagger_ui_bundle

    api.register_blueprint(blp)

    @app.route("/api/docs/static/<path:filename>")
    def swagger_static(filename):
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)
