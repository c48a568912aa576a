"""Configuration from environment variables, with the defaults documented in the README."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


@dataclass
class Config:
    """Everything the app reads from the environment. Tests build one directly."""

    DATABASE_URL: str = ""
    REDIS_URL: str = ""
    SECRET_KEY: str = "dev-insecure-change-me"
    PUBLIC_BASE_URL: str = "http://127.0.0.1:5000"
    STORAGE_DIR: str = "var/storage"
    MAX_CONTENT_LENGTH: int = 16 * 1024 * 1024
    LOG_LEVEL: str = "INFO"
    # Registry rules: the Xinhui bounding box that every coordinate must fall inside.
    XINHUI_BBOX: tuple[float, float, float, float] = (112.70, 21.95, 113.40, 22.75)  # lon/lat min, max
    extra: dict = field(default_factory=dict)

    @property
    def embedded_db(self) -> bool:
        return not self.DATABASE_URL or self.DATABASE_URL.startswith("sqlite")

    @property
    def embedded_redis(self) -> bool:
        return not self.REDIS_URL

    @classmethod
    def from_env(cls) -> "Config":
        db = os.environ.get("DATABASE_URL", "")
        if db.startswith("postgres://"):
            db = "postgresql+psycopg://" + db[len("postgres://"):]
        elif db.startswith("postgresql://"):
            db = "postgresql+psycopg://" + db[len("postgresql://"):]
        return cls(
            DATABASE_URL=db,
            REDIS_URL=os.environ.get("REDIS_URL", ""),
            SECRET_KEY=os.environ.get("SECRET_KEY", cls.SECRET_KEY),
            PUBLIC_BASE_URL=os.environ.get("PUBLIC_BASE_URL", cls.PUBLIC_BASE_URL).rstrip("/"),
            STORAGE_DIR=os.environ.get("STORAGE_DIR", cls.STORAGE_DIR),
            MAX_CONTENT_LENGTH=_int("MAX_CONTENT_LENGTH", cls.MAX_CONTENT_LENGTH),
            LOG_LEVEL=os.environ.get("LOG_LEVEL", cls.LOG_LEVEL),
        )

    def sqlalchemy_url(self) -> str:
        if self.DATABASE_URL:
            return self.DATABASE_URL
        path = Path("var").resolve() / "chenpi.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"

    def to_flask(self) -> dict:
        return {
            "SECRET_KEY": self.SECRET_KEY,
            "SQLALCHEMY_DATABASE_URI": self.sqlalchemy_url(),
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
            "MAX_CONTENT_LENGTH": self.MAX_CONTENT_LENGTH,
            "API_TITLE": "chenpi-trace",
            "API_VERSION": "v1",
            "OPENAPI_VERSION": "3.0.3",
            "OPENAPI_URL_PREFIX": "/api",
            "OPENAPI_JSON_PATH": "openapi.json",
            "OPENAPI_SWAGGER_UI_PATH": "docs",
            # Swagger UI assets are served by the app itself (backend/ops.py): no external CDN.
            "OPENAPI_SWAGGER_UI_URL": "/api/docs/static/",
            "JSON_SORT_KEYS": False,
            "CHENPI": self,
        }


def current_config() -> Config:
    """The running app's Config (services use it instead of reaching into Flask)."""
    from flask import current_app

    return current_app.config["CHENPI"]
