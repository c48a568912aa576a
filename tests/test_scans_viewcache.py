"""The resolver's label view cache (backend/scans/viewcache.py): a repeat scan reads no database,
and a committed change to the label, its batch, its operator or the inspectors' reports shows on
the very next scan — never the cached view."""
from __future__ import annotations

import dataclasses
import hashlib

import pytest
from sqlalchemy import event, func, select, update

from backend.extensions import db, redis
from backend.labels.models import Label
from backend.scans import script, viewcache
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


def cached(client, code):
    """Scan until the view is cached: a code's first scan only learns which batch, operator and lot
    its view is built from (their counters must be read before the database), the second caches."""
    scan(client, code)
    return scan(client, code)


def reads(client, code) -> tuple[dict, int]:
    """One scan's answer and how many times it read the labels table."""
    with Queries() as q:
        answer = scan(client, code)
    return answer, q.n


def test_a_repeat_scan_answers_from_the_cache_without_the_database(client, make, session):
    [code] = activated_codes(make, session, 1)
    first = cached(client, code)
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
    cached(client, code), cached(client, other)
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
    cached(client, code)
    gen = redis.client.get(viewcache.GEN)
    operator.name = "新会某某陈皮有限公司(更名)"
    session.commit()
    assert redis.client.get(viewcache.GEN) == gen  # the operator's own counter moved
    assert scan(client, code)["label"]["operator"]["name"] == "新会某某陈皮有限公司(更名)"


def test_a_code_reported_by_inspectors_after_a_scan_warns_on_the_next_one(client, make, session):
    from backend.fieldwork import service as fieldwork

    operator = make.operator()
    [code] = activated_codes(make, session, 1, operator)
    assert cached(client, code)["verdict"] == "repeat"
    gen = redis.client.get(viewcache.GEN)
    inspector = actor_of(session, make.token("inspector"))
    fieldwork.receive_checkins(session, inspector, [checkin_json(
        operator=operator, kind="shop", result="fail",
        findings=[{"kind": "counterfeit_labels", "codes": [code], "note": "假标"}])])
    session.commit()
    assert redis.client.get(viewcache.GEN) == gen  # the code's own counter moved
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
    r.set(viewcache.view_key("1ABCDEFGHJK"), "0.0 - - - -\n[{\"view\": {\"nope\": 1}}]")
    assert viewcache.through(r, "1ABCDEFGHJK", lambda: (None, False, None)) == (None, False, None)


@pytest.mark.real_servers
def test_a_cached_scan_costs_one_redis_round_trip_and_no_database(client, make, session, monkeypatch):
    """One script call (script.SCAN) takes the rate limit, checks the cached view and counts; a
    stale view costs a second call, the count that also stores the view read from the database."""
    import redis as redis_lib

    [code] = activated_codes(make, session, 1)
    cached(client, code)
    redis.client.incr(viewcache.gen_key(code))  # a change of the label: the next scan reads the database
    trips = []  # what goes out on any connection: one command's name, or a pipeline's
    real_execute, real_send = redis_lib.client.Pipeline.execute, redis_lib.connection.AbstractConnection.send_command
    monkeypatch.setattr(redis_lib.client.Pipeline, "execute", lambda self, *a, **k: (
        trips.append("pipeline"), real_execute(self, *a, **k))[1])
    monkeypatch.setattr(redis_lib.connection.AbstractConnection, "send_command", lambda self, *a, **k: (
        trips.append(a[0]), real_send(self, *a, **k))[1])
    assert scan(client, code)["verdict"] == "repeat"  # and stores its view in the count script
    assert trips == ["EVALSHA", "EVALSHA"]
    trips.clear()
    with Queries() as q:
        assert scan(client, code)["verdict"] == "repeat"
    assert q.n == 0
    assert trips == ["EVALSHA"]


# --- narrow generations: a view is stale only when what it is built from changed --------------------
def _lot_of(session, code):
    from backend.chain.models import Lot

    from backend.labels.models import LabelBatch

    lot_id = session.scalar(select(func.coalesce(Label.lot_id, LabelBatch.lot_id))
                            .join(LabelBatch, LabelBatch.id == Label.batch_id).where(Label.code == code))
    return session.get(Lot, lot_id)


def test_writes_to_other_batches_operators_and_lots_leave_a_cached_view_cached(client, make, session):
    from backend.labels.service.ranges import change_range

    operator, other_operator = make.operator(), make.operator()
    [code] = activated_codes(make, session, 1, operator)
    printed = activated_codes(make, session, 3, other_operator, state="printed")
    assert cached(client, code)["verdict"] == "repeat"
    gen = redis.client.get(viewcache.GEN)
    admin = actor_of(session, make.token("admin"))
    make.lot(other_operator)  # a fruit trade and a lot of someone else
    session.commit()
    change_range(session, admin, batch_of(session, printed[0]), "activate", None, None)  # another batch
    session.commit()
    change_range(session, admin, batch_of(session, printed[0]), "void", 3, 3)
    session.commit()
    other_operator.name = "另一家陈皮有限公司(更名)"  # another operator's rename
    session.commit()
    lot = _lot_of(session, code)  # this label's lot, but a column its view does not show
    lot.output_kg = lot.output_kg + 1
    session.commit()
    operator.contact_phone = "13800000000"  # this label's operator, a column its view does not show
    session.commit()
    assert redis.client.get(viewcache.GEN) == gen  # nothing above was a global bump
    answer, n = reads(client, code)
    assert n == 0 and answer["verdict"] == "repeat"
    assert scan(client, printed[0])["verdict"] == "genuine"  # while the activated batch shows at once


@pytest.mark.parametrize("operation, verdict", [("void", "voided"), ("stolen", "stolen"), ("lost", "lost")])
def test_a_range_operation_on_the_label_s_batch_shows_on_the_next_scan(client, make, session, operation, verdict):
    from backend.labels.service.ranges import change_range

    state = "activated" if operation == "void" else "printed"
    codes_ = activated_codes(make, session, 3, state=state)
    cached(client, codes_[0]), cached(client, codes_[2])
    gen = redis.client.get(viewcache.GEN)
    change_range(session, actor_of(session, make.token("admin")), batch_of(session, codes_[0]), operation, 2, 3)
    session.commit()
    assert redis.client.get(viewcache.GEN) == gen  # the batch's own counter moved
    assert scan(client, codes_[2])["verdict"] == verdict
    # (a label of the batch outside the range reads the database again, and is still what it was)
    assert scan(client, codes_[0])["verdict"] == ("repeat" if state == "activated" else "inactive")


def test_an_activation_shows_on_the_next_scan(client, make, session):
    from backend.labels.service.ranges import change_range

    [code] = activated_codes(make, session, 1, state="printed")
    assert cached(client, code)["verdict"] == "inactive"
    change_range(session, actor_of(session, make.token("admin")), batch_of(session, code), "activate", None, None)
    session.commit()
    assert scan(client, code)["label"]["state"] == "activated"


def test_the_label_s_lot_code_and_batch_product_show_on_the_next_scan(client, make, session):
    from backend.labels.models import LabelBatch

    [code] = activated_codes(make, session, 1)
    cached(client, code)
    gen = redis.client.get(viewcache.GEN)
    lot = _lot_of(session, code)
    lot.code = "LOT-RENAMED-1"
    session.commit()
    assert scan(client, code)["label"]["lot"] == "LOT-RENAMED-1"
    cached(client, code)
    session.get(LabelBatch, batch_of(session, code)).product = "柑普茶"
    session.commit()
    assert scan(client, code)["label"]["product"] == "柑普茶"
    assert redis.client.get(viewcache.GEN) == gen


def test_a_write_nobody_can_attribute_still_makes_every_view_stale(client, make, session):
    from sqlalchemy import text

    [code] = activated_codes(make, session, 1)
    cached(client, code)
    session.execute(text("UPDATE labels SET state = 'stolen' WHERE code = :c"), {"c": code})
    session.commit()
    assert scan(client, code)["verdict"] == "stolen"


def test_a_first_scan_caches_only_once_it_knew_the_view_s_batch_operator_and_lot(client, make, session):
    """A reader learns the batch, operator and lot from the database: their counters read after
    that could include a bump of a commit the read missed, so its entry matches nothing; the next
    reader read them (named by that entry) before the database, and caches."""
    [code] = activated_codes(make, session, 1)
    assert reads(client, code)[1] == 1
    assert _s(redis.client.get(viewcache.view_key(code))).startswith("x ")
    assert reads(client, code)[1] == 1
    assert reads(client, code)[1] == 0


def test_a_batch_bumped_between_the_database_read_and_the_store_is_not_cached():
    """The race the rule above closes: the writer's bump lands while the reader is in the database."""
    from backend.labels.service.lookup import LabelView

    r = redis.client
    view = LabelView(label_id=1, code="1ABCDEFGHJK", serial="000009-000001", state="activated", operator_id=4,
                     operator_name="甲", credit_code="x", product="陈皮", lot_id=None, lot_code=None,
                     harvest_year=2020, batch_id=9, activated_at=None)
    old = dataclasses.replace(view, state="activated")
    new = dataclasses.replace(view, state="voided")
    calls = []

    def read():
        calls.append(1)
        if len(calls) == 2:  # the second reader races a void of batch 9
            r.incr(viewcache.dep_key("b", 9))
            return (old, False, None)
        return (new if len(calls) > 2 else old, False, None)

    assert viewcache.through(r, view.code, read)[0].state == "activated"  # learns the batch
    assert viewcache.through(r, view.code, read)[0].state == "activated"  # raced: stored under the old tag
    assert viewcache.through(r, view.code, read)[0].state == "voided"
    assert viewcache.through(r, view.code, read)[0].state == "voided"
    assert len(calls) == 3


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


@pytest.mark.real_servers
def test_a_redis_that_forgot_the_read_script_still_answers_and_learns_it_again(client, make, session):
    [code] = activated_codes(make, session, 1)
    cached(client, code)
    redis.client.script_flush()
    answer, n = reads(client, code)  # the scan's script got NOSCRIPT: loaded and run again
    assert answer["verdict"] == "repeat" and n == 0
    assert redis.client.script_exists(hashlib.sha1(script.SCAN.encode()).hexdigest()) == [True]
    answer, n = reads(client, code)
    assert answer["verdict"] == "repeat" and n == 0


def test_a_bump_lost_while_redis_was_down_makes_the_next_one_global(make, session, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    [code, other] = activated_codes(make, session, 2)
    real = viewcache.bump

    def down(*a, **k):
        raise RedisConnectionError("down")

    monkeypatch.setattr(viewcache, "bump", down)
    session.scalar(select(Label).where(Label.code == code)).state = "stolen"
    session.commit()  # this bump is lost: a warmed view of it could live for days
    monkeypatch.setattr(viewcache, "bump", real)
    gen = int(redis.client.get(viewcache.GEN) or 0)
    session.scalar(select(Label).where(Label.code == other)).state = "lost"
    session.commit()
    assert int(redis.client.get(viewcache.GEN) or 0) == gen + 1
    session.scalar(select(Label).where(Label.code == other)).state = "stolen"
    session.commit()
    assert int(redis.client.get(viewcache.GEN) or 0) == gen + 1  # and only that one
