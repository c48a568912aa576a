"""Scratch databases for the benchmarks: a fresh SQLite file or a fresh PostgreSQL database
(never the tests' `test` database), migrated to head, and an app bound to it."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend import create_app  # noqa: E402
from backend.config import Config  # noqa: E402
from backend.migrations import upgrade  # noqa: E402

PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/chenpi_bench")


def fresh_database(backend: str) -> str:
    """Create an empty database for `backend` ('sqlite' or 'postgresql') and return its URL."""
    if backend == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="chenpi-bench-")) / "bench.sqlite3"
        return f"sqlite:///{path}"
    url = sa.engine.make_url(PG_URL)
    if url.database in ("test", "postgres"):
        raise SystemExit(f"refusing to drop {url.database!r}: point BENCH_DATABASE_URL at a scratch database")
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()
    return url.render_as_string(hide_password=False)


def migrated_app(backend: str):
    """(app, url, seconds the migrations took) on a fresh database."""
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    url = fresh_database(backend)
    t0 = time.perf_counter()
    upgrade(url)
    migrate_s = time.perf_counter() - t0
    logging.getLogger("chenpi").setLevel(logging.ERROR)  # the embedded-mode warning is expected here
    return create_app(Config(DATABASE_URL=url, REDIS_URL="")), url, migrate_s


def drop(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
