"""chenpi-trace: the traceability backend for Xinhui chenpi (新会陈皮)."""
from __future__ import annotations

import logging

from flask import Flask

from .config import Config


class ChenpiFlask(Flask):
    """Flask with one database transaction per request.

    The commit happens inside `dispatch_request`, so a failing commit still goes through the
    error handlers (a JSON 4xx/5xx), and an error anywhere rolls the whole request back.
    """

    def dispatch_request(self):
        from .extensions import db

        rv = super().dispatch_request()
        if db.session.registry.has():  # (a request that never touched the session has nothing to commit)
            db.session.commit()
        return rv


def create_app(config: Config | None = None) -> ChenpiFlask:
    """Build the app. No I/O happens until a request (or a CLI command) needs it."""
    from . import logs, errors_http, ops
    from .auth.routes import blp as auth_blp
    from .chain.routes import blp as chain_blp
    from .extensions import api, db, redis, serialize_sqlite_transactions
    from .fieldwork.routes import blp as fieldwork_blp
    from .labels.routes import blp as labels_blp, stats_blp as label_stats_blp
    from .registry.routes import blp as registry_blp
    from .scans.routes import blp as scans_blp, resolver as resolver_blp

    config = config or Config.from_env()
    app = ChenpiFlask(__name__)
    app.config.update(config.to_flask())
    app.json.ensure_ascii = False
    app.json.sort_keys = False

    logs.init_app(app)
    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            serialize_sqlite_transactions(db.engine)
    redis.init_app(app)
    api.init_app(app, spec_kwargs={"servers": [{"url": "/", "description": "this server"}]})
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    errors_http.init_app(app, api)
    ops.init_app(app, api)
    for blp in (auth_blp, registry_blp, chain_blp, fieldwork_blp, labels_blp, label_stats_blp, scans_blp, resolver_blp):
        api.register_blueprint(blp)
    from .scans.fastpath import ResolverFastPath

    app.wsgi_app = ResolverFastPath(app, app.wsgi_app)  # the common scan, answered below Flask
    if config.embedded_db or config.embedded_redis:
        logging.getLogger("chenpi").warning(
            "embedded mode: %s, %s; single process only, for the quickstart (set DATABASE_URL and REDIS_URL for production)",
            "SQLite file under ./var/" if config.embedded_db else "PostgreSQL",
            "in-process Redis stand-in, jobs run in-process" if config.embedded_redis else "Redis",
        )
    return app
