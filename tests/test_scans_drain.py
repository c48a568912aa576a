"""The scan stream drain under bad events and outages: an event the database refuses goes to the
dead-letter stream and no longer blocks what is behind it; a lost database never dead-letters or
drops anything; entries a dead drain left pending are claimed; operations see and replay the
dead letters."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from backend.extensions import db, redis
from backend.scans import counters, jobs, service
from backend.scans.models import ScanEvent
from tests.scans_support import activated_codes

JSON = {"Accept": "application/json"}



@pytest.fixture
def stream(app):
    if redis.embedded:
        pytest.skip("embedded mode drains within the request; these tests need entries left in the stream")


needs_stream = pytest.mark.usefixtures("stream")


def scans_to_stream(client, codes_) -> None:
    for c in codes_:
        assert client.get(f"/v/{c}", headers=JSON).status_code == 200


def last_event() -> dict:
    [(_, fields)] = redis.client.xrevrange(counters.STREAM, count=1)
    return json.loads(fields[b"e"])


def inject(payload) -> None:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    redis.client.xadd(counters.STREAM, {"e": raw})


def recorded(session) -> dict:
    session.expire_all()
    return dict(session.execute(select(ScanEvent.code, func.count()).group_by(ScanEvent.code)).all())


def stream_pending() -> int:
    """Entries read by some drain and not acknowledged."""
    try:
        return redis.client.xpending(counters.STREAM, counters.GROUP)["pending"]
    except Exception:  # noqa: BLE001 - no group yet
        return 0


def dead() -> list[dict]:
    return service.list_dead_letters(redis.client)


@needs_stream
@pytest.mark.real_servers
@pytest.mark.parametrize("poison,why", [
    ({"code": "X" * 40}, "too long"),                         # varchar(16): DataError
    ({"device": "nul\u0000byte"}, "NUL"),                      # PostgreSQL text refuses NUL: DataError
    ({"lat": "north"}, "north"),                              # not a float: DataError
    ({"client": None}, "not-null"),                           # NOT NULL: IntegrityError
])
def test_an_event_the_database_refuses_is_dead_lettered_and_the_good_ones_around_it_recorded_once(
        client, make, session, poison, why):
    codes_ = activated_codes(make, session, 4)
    scans_to_stream(client, codes_[:2])
    bad = {**last_event(), "id": "f" * 32, **poison}
    inject(bad)
    scans_to_stream(client, codes_[2:] + codes_[:1])
    assert service.drain_all(db.session, redis.client) == 6
    assert recorded(session) == {codes_[0]: 2, codes_[1]: 1, codes_[2]: 1, codes_[3]: 1}
    assert session.scalar(select(func.count()).where(ScanEvent.event_id == "f" * 32)) == 0
    [letter] = dead()
    assert json.loads(letter["event"]) == bad and why.lower() in letter["error"].lower(), letter["error"]
    assert service.pending(redis.client) == 0 and stream_pending() == 0
    assert service.dead_letters(redis.client) == {"waiting": 1, "total": 1}
    # Not stuck: later scans are drained as usual, and nothing is recorded twice.
    scans_to_stream(client, codes_[3:])
    assert service.drain_all(db.session, redis.client) == 1
    assert recorded(session)[codes_[3]] == 2 and len(dead()) == 1


@needs_stream
def test_a_malformed_entry_is_dead_lettered_not_dropped(client, make, session):
    codes_ = activated_codes(make, session, 2)
    scans_to_stream(client, codes_[:1])
    inject("{not json")
    inject({"id": "a" * 32})  # a JSON object that is no scan event (KeyError while recording)
    redis.client.xadd(counters.STREAM, {"other": "field"})
    scans_to_stream(client, codes_[1:])
    assert service.drain_all(db.session, redis.client) == 5
    assert recorded(session) == {codes_[0]: 1, codes_[1]: 1}
    letters = {d["event"]: d["error"] for d in dead()}
    assert set(letters) == {"{not json", json.dumps({"id": "a" * 32}), None}
    assert "not a scan event" in letters["{not json"] and "KeyError" in letters[json.dumps({"id": "a" * 32})]
    assert "no event field" in letters[None]
    assert service.pending(redis.client) == 0 and stream_pending() == 0


def _outage(monkeypatch, plan: list[str]):
    """Make service.record_events follow `plan` call by call: 'down' raises OperationalError (a
    lost database), 'refuse' IntegrityError (a batch refused), 'ok' records; then normal."""
    real = service.record_events
    calls = []

    def fake(session, payloads, source, t=None):
        step = plan[len(calls)] if len(calls) < len(plan) else "ok"
        calls.append((step, len(payloads)))
        if step == "down":
            raise OperationalError("INSERT INTO scan_events …", {}, Exception("server closed the connection"))
        if step == "refuse":
            raise IntegrityError("INSERT INTO scan_events …", {}, Exception("a constraint said no"))
        return real(session, payloads, source, t)

    monkeypatch.setattr(service, "record_events", fake)
    return calls


@needs_stream
def test_a_lost_database_dead_letters_nothing_and_the_batch_is_retried(client, make, session, monkeypatch):
    codes_ = activated_codes(make, session, 3)
    scans_to_stream(client, codes_)
    calls = _outage(monkeypatch, ["down"])
    with pytest.raises(OperationalError):
        service.drain_once(db.session, redis.client, "drain-a")
    assert dead() == [] and stream_pending() == 3 and recorded(session) == {}
    # The same drain retries its own unfinished batch first.
    assert service.drain_once(db.session, redis.client, "drain-a", own_pending=True) == 3
    assert recorded(session) == {c: 1 for c in codes_} and stream_pending() == 0 and dead() == []
    assert calls == [("down", 3), ("ok", 3)]


@needs_stream
def test_a_database_lost_while_retrying_one_by_one_drops_nothing(client, make, session, monkeypatch):
    codes_ = activated_codes(make, session, 3)
    scans_to_stream(client, codes_)
    # the batch is refused; the first event alone goes in; then the database goes away
    calls = _outage(monkeypatch, ["refuse", "ok", "down"])
    with pytest.raises(OperationalError):
        service.drain_once(db.session, redis.client, "drain-a")
    assert dead() == [] and recorded(session) == {codes_[0]: 1} and stream_pending() == 3
    assert service.drain_once(db.session, redis.client, "drain-a", own_pending=True) == 3
    assert recorded(session) == {c: 1 for c in codes_} and dead() == [] and stream_pending() == 0
    assert [step for step, _ in calls] == ["refuse", "ok", "down", "ok"]


@needs_stream
def test_the_drain_loop_backs_off_through_an_outage_and_loses_nothing(client, make, session, monkeypatch):
    codes_ = activated_codes(make, session, 2)
    scans_to_stream(client, codes_ + codes_)
    calls = _outage(monkeypatch, ["down", "down"])
    n = jobs.run_drain(batch=10, block_ms=50, stop=lambda: len(calls) >= 3 and stream_pending() == 0,
                       linger_s=0)
    assert n == 4 and recorded(session) == {c: 2 for c in codes_} and dead() == []
    assert [step for step, _ in calls[:3]] == ["down", "down", "ok"]


@needs_stream
def test_entries_a_dead_drain_left_pending_are_claimed_by_another(client, make, session):
    codes_ = activated_codes(make, session, 2)
    scans_to_stream(client, codes_)
    service.ensure_group(redis.client)
    redis.client.xreadgroup(counters.GROUP, "died-mid-batch", {counters.STREAM: ">"}, count=10)
    assert stream_pending() == 2
    assert service.drain_once(db.session, redis.client, "drain-b", claim_idle_ms=0) == 2
    assert recorded(session) == {c: 1 for c in codes_} and stream_pending() == 0


@needs_stream
def test_operations_see_list_and_replay_dead_letters(app, client, make, session, monkeypatch):
    import backend.cli

    codes_ = activated_codes(make, session, 2)
    scans_to_stream(client, codes_[:1])
    inject({**last_event(), "id": "c" * 32, "at": "yesterday"})  # no time at all: ValueError
    scans_to_stream(client, codes_[1:])
    refused = last_event()["id"]
    real = service.record_events

    def refuse_one(session_, payloads, source, t=None):  # a bug the next release fixes
        if any(p["id"] == refused for p in payloads):
            raise IntegrityError("INSERT INTO scan_events …", {}, Exception("check constraint \"verdict\""))
        return real(session_, payloads, source, t)

    monkeypatch.setattr(service, "record_events", refuse_one)
    assert service.drain_all(db.session, redis.client) == 3
    assert recorded(session) == {codes_[0]: 1}
    ready = client.get("/readyz").json
    assert ready["scan_stream"] == {"pending": 0, "dead_letters": 2, "dead_letters_total": 2}

    monkeypatch.setattr(backend.cli, "_app", lambda: app)
    runner = CliRunner()

    def chenpi(*args):
        done = runner.invoke(backend.cli.main, ["scans", "dead-letters", *args], catch_exceptions=False)
        assert done.exit_code == 0, done.output
        return done.output

    listed = chenpi()
    assert "2 dead letters waiting (2 ever)" in listed
    assert "ValueError" in listed and "yesterday" in listed and "IntegrityError" in listed and refused in listed
    [hopeless, fixed] = [d["id"] for d in dead()]
    # The fix is deployed: replaying the refused event records it, once.
    monkeypatch.setattr(service, "record_events", real)
    assert "1 dead letters put back" in chenpi("--replay", fixed)
    assert service.drain_all(db.session, redis.client) == 1
    assert recorded(session) == {codes_[0]: 1, codes_[1]: 1}
    # Replaying one that is still bad moves it back to the dead letters; deleting drops it.
    assert "1 dead letters put back" in chenpi("--replay")
    service.drain_all(db.session, redis.client)
    assert [d["event"] for d in dead()] == [json.dumps({**json.loads(dead()[0]["event"])})]
    assert service.dead_letters(redis.client) == {"waiting": 1, "total": 3}
    assert "1 dead letters deleted" in chenpi("--delete", dead()[0]["id"])
    assert dead() == [] and recorded(session) == {codes_[0]: 1, codes_[1]: 1}
    assert hopeless not in [d["id"] for d in dead()]
