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


def _decimal_property(converter, field, ret: dict, **kwargs) -> dict:
    """How a marshmallow Decimal appears in the OpenAPI document.

    apispec calls every Decimal a number and copies a Range's Decimal bounds, which the JSON
    encoder then writes as strings ("maximum": "100000.00", invalid OpenAPI). Our quantities are
    strings on the way out (as_string) and a number or a decimal string on the way in.
    """
    from marshmallow import fields as ma_fields, validate

    if not isinstance(field, ma_fields.Decimal):
        return {}
    ranges = [v for v in field.validators if isinstance(v, validate.Range)]
    for key in ("type", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        ret.pop(key, None)
    decimal_string = {"type": "string", "format": "decimal", "pattern": r"^-?[0-9]{1,15}(\.[0-9]{1,6})?$"}
    if not ranges:
        return decimal_string
    number: dict = {"type": "number"}
    for r in ranges:
        if r.min is not None:
            number["minimum"] = float(r.min)
            if not r.min_inclusive:
                number["exclusiveMinimum"] = True
        if r.max is not None:
            number["maximum"] = float(r.max)
            if not r.max_inclusive:
                number["exclusiveMaximum"] = True
    if ret.pop("nullable", False):
        number["nullable"] = decimal_string["nullable"] = True
    return {"anyOf": [number, decimal_string]}


class Api(flask_smorest.Api):
    """flask-smorest's Api, with the OpenAPI document telling the truth about two things.

    - Errors: flask-smorest documents its own {code, status, message, errors} with
      additionalProperties false, so the `reason` every error carries broke the contract.
    - Decimals: see `_decimal_property`.
    """

    @property
    def ERROR_SCHEMA(self):  # noqa: N802 - flask-smorest's name
        from .http import ErrorBody

        return ErrorBody

    def _init_spec(self, **kwargs):
        super()._init_spec(**kwargs)
        self.ma_plugin.converter.add_attribute_function(_decimal_property)


db = SQLAlchemy(model_class=Base)


def serialize_sqlite_transactions(engine) -> None:
    """Give SQLite real, serialized transactions (SQLAlchemy's documented pysqlite recipe).

    pysqlite defers BEGIN until the first write, so a request's checks (kg left in a lot, a
    plot's quota) would read outside its transaction and two threads could oversell. Every
    transaction here starts with BEGIN IMMEDIATE instead: one writer at a time, checks and writes
    atomic. The embedded SQLite mode is for the quickstart, so serializing costs nothing real.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_pysqlite_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


api = Api()


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
