"""Recording a batch of scan events (service.record_events): on PostgreSQL the rows go through a
COPY into a temporary table, then one INSERT … SELECT. The rows must come out as the payloads
said (escaping, None, floats, times), in the batch's order and once; a value the COPY refuses
must surface as the poison error the drain dead-letters, and a database lost during the COPY as
the transient error that leaves the batch pending."""
from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DataError, OperationalError

from backend.extensions import db, redis
from backend.labels.models import Label, LabelBatch
from backend.scans import counters, service
from backend.scans.models import ScanEvent
from backend.timeutil import as_utc, utcnow
from tests.scans_support import activated_codes


def _labels(make, session, n: int) -> list[tuple[str, int, int]]:
    """(code, label id, operator id) of `n` activated labels."""
    codes_ = activated_codes(make, session, n)
    return [tuple(r) for r in session.execute(
        select(Label.code, Label.id, LabelBatch.operator_id).join(LabelBatch, LabelBatch.id == Label.batch_id)
        .where(Label.code.in_(codes_)).order_by(Label.serial))]


def _payload(label, at=None, **fields) -> dict:
    code, label_id, operator_id = label
    return {"id": uuid.uuid4().hex, "at": (at or utcnow()).isoformat(), "code": code, "label_id": label_id,
            "operator_id": operator_id, "town_id": None, "device": "d" * 32, "client": "c" * 32, "lat": None,
            "lon": None, "region": None, "state": "activated", "reported": False, "wrong_gtin": None, **fields}


def _recorded(session) -> list[tuple]:
    session.expire_all()
    return [tuple(r) for r in session.execute(
        select(ScanEvent.event_id, ScanEvent.scanned_at, ScanEvent.code, ScanEvent.device, ScanEvent.client,
               ScanEvent.lat, ScanEvent.lon, ScanEvent.region, ScanEvent.source).order_by(ScanEvent.id))]


def test_a_batch_is_recorded_as_sent_in_its_order_and_once(make, session):
    a, b = _labels(make, session, 2)
    at = utcnow().replace(microsecond=123456)
    before = _payload(a, at - timedelta(seconds=5))
    assert [o.event_id for o in service.record_events(session, [before], "stream")] == [before["id"]]
    odd = _payload(a, at, device="設備\t1\\n\n\"x\",;", client="客户 \\N")  # COPY's escapes, and \N (NULL)
    placed = _payload(b, at + timedelta(microseconds=1), lat=22.520833333333332, lon=113.03816666666667,
                      region="440705")
    last = _payload(b, at + timedelta(seconds=1))
    batch = [odd, before, placed, dict(odd), last]  # one recorded already, one twice in the batch
    outcomes = service.record_events(session, batch, "stream")
    assert [o.event_id for o in outcomes] == [odd["id"], placed["id"], last["id"]]
    assert [(o.code, o.count) for o in outcomes] == [(a[0], 2), (b[0], 1), (b[0], 2)]
    session.commit()
    rows = _recorded(session)
    assert [r[0] for r in rows] == [before["id"], odd["id"], placed["id"], last["id"]]
    by_id = {r[0]: r for r in rows}
    assert by_id[odd["id"]][2:5] == (a[0], "設備\t1\\n\n\"x\",;", "客户 \\N")
    assert by_id[odd["id"]][5:8] == (None, None, None)
    assert by_id[placed["id"]][5:8] == (22.520833333333332, 113.03816666666667, "440705")
    assert [as_utc(r[1]) for r in rows] == [at - timedelta(seconds=5), at, at + timedelta(microseconds=1),
                                            at + timedelta(seconds=1)]
    assert {r[8] for r in rows} == {"stream"}
    # a second batch in the same transaction: nothing of the first is recorded again
    again = _payload(a, at + timedelta(seconds=2))
    assert [o.count for o in service.record_events(session, [again, dict(last)], "stream")] == [3]
    assert service.record_events(session, [dict(again)], "stream") == []
    session.commit()
    assert session.scalar(select(func.count()).select_from(ScanEvent)) == 5


@pytest.mark.real_servers
@pytest.mark.parametrize("bad,why", [
    ({"code": "X" * 40}, "too long"),          # varchar(16)
    ({"town_id": "seven"}, "integer"),         # not an integer
    ({"region": "44\u000005"}, "NUL"),         # refused by the driver before the server sees it
    ({"lat": "north"}, "north"),               # not a float
    ({"lat": {"deg": 22}}, "cannot adapt"),    # no column takes an object (was a transient error: stuck)
])
def test_a_value_the_copy_refuses_is_a_poison_error_and_the_next_batch_is_recorded(make, session, bad, why):
    [label] = _labels(make, session, 1)
    good, refused = _payload(label), _payload(label, **bad)
    with pytest.raises(DataError) as err:
        service.record_events(session, [good, refused], "stream")
    assert service.is_poison(err.value) and why.lower() in service._error_text(err.value).lower()
    session.rollback()
    assert [o.event_id for o in service.record_events(session, [good], "stream")] == [good["id"]]
    session.commit()
    assert [r[0] for r in _recorded(session)] == [good["id"]]


@pytest.mark.real_servers
def test_a_database_lost_during_the_copy_leaves_the_batch_pending_and_dead_letters_nothing(committed_db, make):
    session = committed_db.session
    labels = _labels(make, session, 2)
    sent = [_payload(label) for label in labels]
    for p in sent:
        redis.client.xadd(counters.STREAM, {"e": json.dumps(p)})
    killed = []

    def kill_before_the_copy(conn, cursor, statement, *_):
        if statement == service._STAGE_DDL and not killed:  # the COPY comes next, on this connection
            killed.append(conn.connection.dbapi_connection.info.backend_pid)
            with committed_db.engine.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": killed[0]})

    event.listen(committed_db.engine, "after_cursor_execute", kill_before_the_copy)
    try:
        with pytest.raises(OperationalError) as err:
            service.drain_once(session, redis.client, "drain-a")
    finally:
        event.remove(committed_db.engine, "after_cursor_execute", kill_before_the_copy)
    assert killed and not service.is_poison(err.value) and err.value.connection_invalidated
    assert service.list_dead_letters(redis.client) == []
    assert redis.client.xpending(counters.STREAM, counters.GROUP)["pending"] == 2
    assert _recorded(session) == []
    # the same drain finishes its batch on a new connection
    assert service.drain_once(session, redis.client, "drain-a", own_pending=True) == 2
    assert [r[0] for r in _recorded(session)] == [p["id"] for p in sent]
    assert service.pending(redis.client) == 0 and service.list_dead_letters(redis.client) == []
