"""Unbound extensions; `init_app` binds them to one app. Nothing here connects at import."""
from __future__ import annotations

import logging

import flask_smorest
from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

log = logging.getLogger(__name__)

# Stable constraint names, so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
api = flask_smorest.Api()


class RedisHandle:
    """The app's Redis: a real server from REDIS_URL, or fakeredis in-process (embedded mode).

    Like Flask-SQLAlchemy's `db`, one handle serves every app: the client lives in
    `app.extensions`, so importing this module never connects and two apps never share one.
    """

    def init_app(self, app: Flask) -> None:
        cfg = app.config["CHENPI"]
        if cfg.embedded_redis:
            import fakeredis

            client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        else:
            import redis as redis_lib

            client = redis_lib.Redis.from_url(
                cfg.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30
            )
        app.extensions["chenpi_redis"] = {"client": client, "embedded": cfg.embedded_redis}

    @property
    def client(self):
        return current_app.extensions["chenpi_redis"]["client"]

    @property
    def embedded(self) -> bool:
        return current_app.extensions["chenpi_redis"]["embedded"]

    def queue(self, name: str = "default"):
        """An RQ queue on this Redis; in embedded mode jobs run in-process, at enqueue."""
        from rq import Queue

        return Queue(name, connection=self.client, is_async=not self.embedded)


redis = RedisHandle()

# The RQ queues the app uses; `chenpi worker` listens on all of them, highest first.
QUEUES = ("high", "default", "render", "low")
