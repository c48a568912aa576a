"""Alembic owns the schema: the migrations and the models must describe the same database.

The test database was built by the migrations (tests/conftest.py, reset_schema), so comparing it
with the models' metadata is exactly "would `chenpi db revision` autogenerate anything?". Both
backends run it: PostgreSQL by default, SQLite with CHENPI_TEST_BACKEND=embedded.
"""
from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from backend.migrations import alembic_config, upgrade
from backend.models import metadata

VERSIONS = Path(__file__).resolve().parents[1] / "backend" / "migrations" / "versions"


def pending_changes(connection) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
    return compare_metadata(context, metadata)


def test_the_models_and_the_migrations_agree(session):
    diff = pending_changes(session.connection())
    assert diff == [], "the models differ from the migrated database; write a migration:\n" + "\n".join(map(str, diff))


def test_the_comparison_does_see_a_difference(session):
    """Guard against a comparison that can never fail: a table the migrations never made shows up."""
    extra = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(extra)
    sa.Table("not_migrated", extra, sa.Column("id", sa.Integer, primary_key=True))
    context = MigrationContext.configure(session.connection(), opts={"compare_type": True})
    diff = compare_metadata(context, extra)
    assert [d[0] for d in diff] == ["add_table"] and diff[0][1].name == "not_migrated"


def test_the_database_is_at_the_single_head(session, app):
    script = ScriptDirectory.from_config(alembic_config(app.config["SQLALCHEMY_DATABASE_URI"]))
    heads = script.get_heads()
    assert len(heads) == 1, f"the migrations branch ({heads}); merge them into one line"
    current = MigrationContext.configure(session.connection()).get_current_heads()
    assert tuple(current) == tuple(heads)


def test_migration_files_are_named_by_date_and_slug():
    names = sorted(p.name for p in VERSIONS.glob("*.py"))
    assert names, "no migrations found"
    bad = [n for n in names if not re.fullmatch(r"20\d{6}_[a-z0-9_]+\.py", n)]
    assert not bad, f"migration files must be named YYYYMMDD_slug.py: {bad}"


@pytest.fixture
def scratch_url(app, tmp_path):
    """An empty database of the same kind as the test database, dropped afterwards."""
    url = sa.engine.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'scratch.sqlite3'}"
        return
    name = f"{url.database}_scratch_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_every_migration_downgrades_and_upgrades_again(scratch_url):
    from alembic import command

    upgrade(scratch_url)
    engine = sa.create_engine(scratch_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert pending_changes(conn) == []
    command.downgrade(alembic_config(scratch_url), "base")
    with engine.connect() as conn:
        left = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
    assert left == set(), f"downgrade to base left tables behind: {left}"
    upgrade(scratch_url)
    with engine.connect() as conn:
        assert pending_changes(conn) == []
        assert set(sa.inspect(conn).get_table_names()) >= {t.name for t in metadata.sorted_tables}
    engine.dispose()
