"""The resolver's label view cache (backend/scans/viewcache.py): a repeat scan reads no database,
and a committed change to the label, its batch, its operator or the inspectors' reports shows on
the very next scan — never the cached view."""
from __future__ import annotations

import pytest
from sqlalchemy import event, select, update

from backend.extensions import db, redis
from backend.labels.models import Label
from backend.scans import viewcache
from tests.factories import actor_of, checkin_json
from tests.scans_support import activated_codes

JSON = {"Accept": "application/json"}


def scan(client, code):
    r = client.get(f"/v/{code}", headers=JSON)
    assert r.status_code in (200, 404), r.json
    return r.json


class Queries:
    """Counts the statements that read the labels table."""

    def __init__(self):
        self.n = 0

    def __call__(self, conn, cursor, statement, *args):
        if "FROM labels" in statement:
            self.n += 1

    def __enter__(self):
        event.listen(db.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc):
        event.remove(db.engine, "before_cursor_execute", self)


def batch_of(session, code):
    return session.scalar(select(Label.batch_id).where(Label.code == code))


def test_a_repeat_scan_answers_from_the_cache_without_the_database(client, make, session):
    [code] = activated_codes(make, session, 1)
    first = scan(client, code)
    with Queries() as q:
        again = scan(client, code)
    assert q.n == 0
    assert again["verdict"] == "repeat" and again["label"] == first["label"]
    assert redis.client.exists(viewcache.view_key(code))


def test_a_label_voided_after_a_scan_is_voided_on_the_next_one(client, make, session):
    from backend.labels.service.ranges import change_range

    [code, other] = activated_codes(make, session, 2)
    assert scan(client, code)["verdict"] == "genuine"
    scan(client, other)
    change_range(session, actor_of(session, make.token("admin")), batch_of(session, code), "void", None, None)
    session.commit()
    assert scan(client, code)["verdict"] == "voided"
    assert scan(client, other)["verdict"] == "voided"


def test_a_label_changed_through_the_orm_invalidates_only_its_own_view(client, make, session):
    [code, other] = activated_codes(make, session, 2)
    scan(client, code), scan(client, other)
    gen = redis.client.get(viewcache.GEN)
    session.scalar(select(Label).where(Label.code == code)).state = "stolen"
    session.commit()
    assert redis.client.get(viewcache.GEN) == gen  # the code's own counter moved, not the global one
    assert scan(client, code)["verdict"] == "stolen"
    with Queries() as q:
        assert scan(client, other)["verdict"] == "repeat"
    assert q.n == 0


def test_an_operator_renamed_after_a_scan_shows_on_the_next_one(client, make, session):
    operator = make.operator()
    [code] = activated_codes(make, session, 1, operator)
    scan(client, code)
    operator.name = "新会某某陈皮有限公司(更名)"
    session.commit()
    assert scan(client, code)["label"]["operator"]["name"] == "新会某某陈皮有限公司(更名)"


def test_a_code_reported_by_inspectors_after_a_scan_warns_on_the_next_one(client, make, session):
    from backend.fieldwork import service as fieldwork

    operator = make.operator()
    [code] = activated_codes(make, session, 1, operator)
    assert scan(client, code)["verdict"] == "genuine"
    inspector = actor_of(session, make.token("inspector"))
    fieldwork.receive_checkins(session, inspector, [checkin_json(
        operator=operator, kind="shop", result="fail",
        findings=[{"kind": "counterfeit_labels", "codes": [code], "note": "假标"}])])
    session.commit()
    r = scan(client, code)
    assert r["verdict"] == "warn" and "reported_code" in r["alerts"]


def test_a_never_issued_code_cached_as_unknown_resolves_once_issued(client, make, session):
    from backend.labels import codes

    code = codes.make_code("1", b"dev-insecure-label-key-change-me", 77, 5)
    if scan(client, code)["verdict"] != "unknown":
        pytest.skip("the derived code exists already")
    assert redis.client.exists(viewcache.view_key(code))
    [real] = activated_codes(make, session, 1)
    session.execute(update(Label).where(Label.code == real).values(code=code))
    session.commit()
    assert scan(client, code)["verdict"] in ("genuine", "repeat")


@pytest.mark.real_servers
def test_a_committed_void_shows_at_once_on_committed_data(committed_db, client, make):
    """The app's own commits (no test savepoints): the bump after the commit is what counts."""
    from backend.labels.service.ranges import change_range

    session = committed_db.session
    [code] = activated_codes(make, session, 1)
    scan(client, code)
    scan(client, code)
    change_range(session, actor_of(session, make.token("admin")), batch_of(session, code), "void", None, None)
    session.commit()
    assert scan(client, code)["verdict"] == "voided"


def test_a_view_read_while_a_change_commits_is_never_used():
    """A reader that missed, read the database, and lost a race with a writer stores its view
    under the old tag: the next reader ignores it and reads again."""
    r = redis.client
    calls = []

    def read_racing_a_writer():
        calls.append(1)
        if len(calls) == 1:  # the writer commits and bumps while this reader is in the database
            viewcache.bump(r, {"1ABCDEFGHJK"}, everything=False)
            return (None, False, "old")
        return (None, False, "new")

    assert viewcache.through(r, "1ABCDEFGHJK", read_racing_a_writer) == (None, False, "old")
    assert viewcache.through(r, "1ABCDEFGHJK", read_racing_a_writer) == (None, False, "new")
    assert viewcache.through(r, "1ABCDEFGHJK", read_racing_a_writer) == (None, False, "new")
    assert len(calls) == 2


def test_the_cached_view_is_the_same_label_view(make, session):
    from backend.scans.service import _reader, find_label_reported

    [code] = activated_codes(make, session, 1)
    with _reader(session) as reader:
        value = find_label_reported(reader, code)
    assert viewcache._decode(viewcache._encode(value)) == value


def test_an_unreadable_entry_is_read_again():
    r = redis.client
    r.set(viewcache.view_key("1ABCDEFGHJK"), "0.0\n[{\"view\": {\"nope\": 1}}]")
    assert viewcache.through(r, "1ABCDEFGHJK", lambda: (None, False, None)) == (None, False, None)


@pytest.mark.real_servers
def test_a_cached_scan_costs_two_redis_round_trips_and_no_database(client, make, session, monkeypatch):
    """The rate limit's pipeline also fetches the cached view; the count (and storing a view read
    from the database) is one script call."""
    import redis as redis_lib

    [code] = activated_codes(make, session, 1)
    trips = []
    real_execute, real_command = redis_lib.client.Pipeline.execute, redis_lib.Redis.execute_command
    monkeypatch.setattr(redis_lib.client.Pipeline, "execute", lambda self, *a, **k: (
        trips.append("pipeline"), real_execute(self, *a, **k))[1])
    monkeypatch.setattr(redis_lib.Redis, "execute_command", lambda self, *a, **k: (
        trips.append(a[0]), real_command(self, *a, **k))[1])
    assert scan(client, code)["verdict"] == "genuine"  # a first scan stores its view in the count script
    assert trips == ["pipeline", "EVALSHA"]
    trips.clear()
    with Queries() as q:
        assert scan(client, code)["verdict"] == "repeat"
    assert q.n == 0
    assert trips == ["pipeline", "EVALSHA"]
