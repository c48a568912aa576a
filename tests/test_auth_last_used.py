"""A token's last-used time is recorded without making parallel requests wait on its row."""
from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from backend.auth.models import ApiToken
from backend.auth.service import hash_token
from backend.extensions import db


def test_first_use_records_last_used_at(client, make, session):
    token = make.token("admin")
    row = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    assert row.last_used_at is None
    assert client.get("/api/v1/auth/me", headers=make.auth(token)).status_code == 200
    session.expire_all()
    assert session.get(ApiToken, row.id).last_used_at is not None


@pytest.mark.real_servers
def test_a_request_does_not_wait_while_another_holds_its_token_row(client, make, committed_db):
    token = make.token("admin")
    db.session.commit()
    token_id = db.session.scalar(sa.select(ApiToken.id).where(ApiToken.token_hash == hash_token(token)))
    with db.engine.connect() as other:
        other.execute(sa.text("SET lock_timeout = '10s'"))
        other.execute(sa.update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=None))  # holds the row lock
        started = time.monotonic()
        r = client.get("/api/v1/auth/me", headers=make.auth(token))
        took = time.monotonic() - started
        other.rollback()
    assert r.status_code == 200
    assert took < 2, f"the request waited {took:.1f}s on the token row"
