"""Two phones (or one phone retrying while its first request is still running) sending the same
check-ins at the same moment: every UUID is stored once, and every answer is an honest one."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from backend.auth import service as auth_service
from backend.fieldwork.models import Checkin, FindingCode
from tests.factories import checkin_json, user_of

pytestmark = pytest.mark.real_servers
BATCH = "/api/v1/fieldwork/checkins/batch"


def race(app, bodies_and_headers):
    """POST each (body, headers) from its own thread, released together; the responses in order.

    Each token is used once first: its first use writes last_used_at, and that row lock would
    otherwise queue the racing requests one behind the other.
    """
    for _, headers in bodies_and_headers:
        assert app.test_client().get("/api/v1/auth/me", headers=headers).status_code == 200
    barrier = threading.Barrier(len(bodies_and_headers))
    answers = [None] * len(bodies_and_headers)

    def send(i, body, headers):
        client = app.test_client()
        barrier.wait()
        r = client.post(BATCH, json=body, headers=headers)
        answers[i] = (r.status_code, r.json)

    threads = [threading.Thread(target=send, args=(i, b, h)) for i, (b, h) in enumerate(bodies_and_headers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


def phones(make, session, n: int) -> list[dict]:
    """n tokens of one inspector (a phone and its retries, or the inspector's two phones)."""
    token = make.token("inspector")
    user = user_of(session, token)
    tokens = [token] + [auth_service.issue_token(session, user) for _ in range(n - 1)]
    session.commit()
    return [make.auth(t) for t in tokens]


def test_the_same_batch_sent_three_times_at_once_is_stored_once(app, committed_db, make):
    plot = make.plot()
    items = [checkin_json(plot, findings=[{"kind": "counterfeit_labels", "codes": [f"RACE{n:04d}"]}]) for n in range(100)]
    answers = race(app, [({"items": items}, headers) for headers in phones(make, committed_db.session, 3)])
    assert all(code == 200 for code, _ in answers), answers
    statuses = [[i["status"] for i in body["items"]] for _, body in answers]
    for n in range(100):
        column = [s[n] for s in statuses]
        assert column.count("created") == 1 and column.count("existing") == 2, column
    ids = {tuple(i["checkin"]["id"] for i in body["items"]) for _, body in answers}
    assert len(ids) == 1, "every answer names the same stored check-ins"
    session = committed_db.session
    assert session.scalar(select(func.count()).select_from(Checkin)) == 100
    assert session.scalar(select(func.count()).select_from(FindingCode)) == 100


def test_the_same_uuid_with_different_content_at_once_is_one_created_and_one_conflict(app, committed_db, make):
    plot = make.plot()
    first, second = phones(make, committed_db.session, 2)
    a = checkin_json(plot)
    b = dict(a, result="fail")
    answers = race(app, [({"items": [a]}, first), ({"items": [b]}, second)])
    statuses = sorted(body["items"][0]["status"] for _, body in answers)
    assert statuses == ["conflict", "created"], answers
    assert committed_db.session.scalar(select(func.count()).select_from(Checkin)) == 1


def test_photos_of_one_check_in_uploaded_at_once_count_every_flag(app, committed_db, make):
    """Each photo is taken ~100 km away (one exif_gps_mismatch flag); 8 upload in parallel and
    the check-in's flag_count must count all 8 (a read-modify-write would keep about one)."""
    import io
    import uuid

    from tests.factories import jpeg_bytes

    plot = make.plot()
    heads = phones(make, committed_db.session, 8)
    for headers in heads:
        assert app.test_client().get("/api/v1/auth/me", headers=headers).status_code == 200
    body = checkin_json(plot)
    assert app.test_client().post("/api/v1/fieldwork/checkins", json=body, headers=heads[0]).status_code == 201
    barrier = threading.Barrier(len(heads))
    codes = [None] * len(heads)

    def send(i, headers):
        data = jpeg_bytes(size=(64 + i, 48), exif={"lat": 23.5, "lon": 114.5})
        client = app.test_client()
        barrier.wait()
        r = client.put(f"/api/v1/fieldwork/checkins/{body['uuid']}/photos/{uuid.uuid4()}", headers=headers,
                       data={"file": (io.BytesIO(data), "p.jpg")}, content_type="multipart/form-data")
        codes[i] = r.status_code

    threads = [threading.Thread(target=send, args=(i, h)) for i, h in enumerate(heads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes == [201] * len(heads), codes
    committed_db.session.expire_all()
    flag_count = committed_db.session.scalar(select(Checkin.flag_count).where(Checkin.uuid == body["uuid"]))
    assert flag_count == len(heads)
