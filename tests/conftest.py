"""Test set-up: real PostgreSQL and Redis by default, the embedded SQLite/fakeredis with
CHENPI_TEST_BACKEND=embedded.

- TEST_DATABASE_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test) and
  TEST_REDIS_URL (default redis://127.0.0.1:6379/15) pick the servers. Each run works in a
  PostgreSQL database of its own, created beside TEST_DATABASE_URL's and dropped at exit, and
  (unless TEST_REDIS_URL is set) in the first Redis database of 15, 14, 13, 12 that no other
  running test run has claimed.
- The schema is built once per run by the Alembic migrations (so every run tests them).
- Each test runs inside a transaction that is rolled back; the app's commits become savepoints.
  Tests that need real commits (several connections, other processes) use `committed_db`,
  which truncates every table afterwards.
- Under CI=true a missing server fails the run; elsewhere the tests are skipped, saying why.
"""
from __future__ import annotations

import os
import tempfile

import pytest
import sqlalchemy as sa
from flask_sqlalchemy.session import Session as FlaskSession

from backend import create_app
from backend.config import Config
from backend.extensions import db
from backend.models import metadata
from backend.scans import settings as scan_settings

scan_settings.RELOAD = True  # the tests change SCAN_* settings at run time (monkeypatch.setenv)

BACKEND = os.environ.get("CHENPI_TEST_BACKEND", "real")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _servers_down() -> str | None:
    """Why the real servers cannot be used, or None."""
    import redis

    try:
        engine = sa.create_engine(TEST_DATABASE_URL, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL at {TEST_DATABASE_URL} is not reachable ({type(exc).__name__})"
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        return f"Redis at {TEST_REDIS_URL} is not reachable ({type(exc).__name__})"
    return None


@pytest.fixture(scope="session")
def test_config(tmp_path_factory) -> Config:
    storage = str(tmp_path_factory.mktemp("storage"))
    if BACKEND == "embedded":
        path = tmp_path_factory.mktemp("db") / "test.sqlite3"
        return Config(DATABASE_URL=f"sqlite:///{path}", REDIS_URL="", SECRET_KEY="test-secret",
                      PUBLIC_BASE_URL="https://trace.example.cn", STORAGE_DIR=storage)
    reason = _servers_down()
    if reason:
        if IN_CI:
            pytest.exit(f"CI=true and {reason}: the suite must run on the real servers.", returncode=1)
        pytest.skip(f"{reason}; start them (see README) or set CHENPI_TEST_BACKEND=embedded")
    return Config(DATABASE_URL=_run_database(), REDIS_URL=_run_redis_url(), SECRET_KEY="test-secret",
                  PUBLIC_BASE_URL="https://trace.example.cn", STORAGE_DIR=storage)


def _run_database() -> str:
    """A database of this run's own (`<name>_run_<pid>`), so concurrent runs never clobber each
    other's schema; databases of runs that died are dropped, and this one at exit."""
    import atexit

    base = sa.engine.make_url(TEST_DATABASE_URL)
    name = f"{base.database}_run_{os.getpid()}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        stale = conn.execute(sa.text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                             {"p": f"{base.database}_run_%"}).scalars().all()
        for db_name in stale:
            suffix = db_name.rsplit("_", 1)[1]
            if not suffix.isdigit():  # someone else's database that merely looks like ours
                continue
            pid = int(suffix)
            if pid == os.getpid() or not _alive(pid):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def _drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    atexit.register(_drop)
    return base.set(database=name).render_as_string(hide_password=False)


_REDIS_SLOTS = (15, 14, 13, 12)  # the databases test runs may claim (and empty)
_redis_claim = []  # the connection whose name claims this run's database, held for the run


def _run_redis_url() -> str:
    """A Redis database no other running test run uses, so concurrent runs (and their workers)
    never empty each other's queues and streams. A run claims database N by holding a connection
    named `chenpi-test-dbN`; TEST_REDIS_URL, when set, is used as it is."""
    import redis

    if "TEST_REDIS_URL" in os.environ:
        return TEST_REDIS_URL
    base = redis.Redis.from_url(TEST_REDIS_URL)
    for slot in _REDIS_SLOTS:
        name = f"chenpi-test-db{slot}"
        if any(c.get("name") == name for c in base.client_list()):
            continue
        claim = redis.Redis.from_url(TEST_REDIS_URL, db=slot, client_name=name)
        claim.ping()
        holders = sorted(int(c["id"]) for c in base.client_list() if c.get("name") == name)
        if holders and holders[0] != int(claim.client_id()):  # lost a race for this slot
            claim.close()
            continue
        _redis_claim.append(claim)
        url = base.connection_pool.connection_kwargs
        return f"redis://{url.get('host', '127.0.0.1')}:{url.get('port', 6379)}/{slot}"
    raise pytest.UsageError(f"every Redis test database {_REDIS_SLOTS} is claimed by a running test run")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reset_schema(url: str) -> None:
    """Drop everything and rebuild the schema with the Alembic migrations."""
    from backend.migrations import upgrade

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        else:
            metadata.drop_all(conn)
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(url)


@pytest.fixture(scope="session")
def app(test_config):
    reset_schema(test_config.sqlalchemy_url())
    application = create_app(test_config)
    application.config["TESTING"] = True
    return application


class _BoundSession(FlaskSession):
    """Flask-SQLAlchemy's session ignores `bind=`; tests bind it to one open connection."""

    def get_bind(self, *args, **kwargs):
        return self.bind if self.bind is not None else super().get_bind(*args, **kwargs)


@pytest.fixture(autouse=True)
def _app_context(request, app):
    """Every test runs in an app context, in a transaction rolled back at the end."""
    with app.app_context():
        if "committed_db" in request.fixturenames:
            yield
            return
        # (On SQLite the app's engine emits a real BEGIN, so the savepoints below are real too.)
        connection = db.engine.connect()
        outer = connection.begin()
        original = db.session
        db.session = db._make_scoped_session(
            {"class_": _BoundSession, "bind": connection, "join_transaction_mode": "create_savepoint"}
        )
        try:
            yield
        finally:
            db.session.remove()
            db.session = original
            outer.rollback()
            connection.close()


@pytest.fixture
def committed_db(app):
    """For tests whose writes must really commit; every table is emptied afterwards."""
    yield db
    db.session.remove()
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if db.engine.dialect.name == "postgresql":
            # A session a test leaked would block TRUNCATE for ever: fail loudly instead.
            conn.execute(sa.text("SET LOCAL lock_timeout = '30s'"))
            conn.execute(sa.text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(sa.text(f"DELETE FROM {name}"))


@pytest.fixture(autouse=True)
def _clean_redis(app):
    from backend.extensions import redis

    redis.client.flushdb()
    yield


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def session():
    return db.session


@pytest.fixture
def make():
    """Factories for registry rows and users: `make.operator()`, `make.token("admin")`, …"""
    from tests.factories import Factory

    return Factory(db.session)
