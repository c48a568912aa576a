"""HEAD at the resolver (uptime checks, some crawlers and link checkers): for an issued label, 200
and no scan counted anywhere (the code's counters, the totals, the scan log); everything else
answers as GET does, without the body: a typo 422 counting nothing, a never-issued code or
another product's GTIN 404 counted as a counterfeit attempt (so guessing codes by HEAD is slowed
and alerted like guessing them by GET), 429 past the rate limit."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from backend.extensions import db, redis
from backend.labels import codes
from backend.labels.models import LabelBatch
from backend.scans import counters, service
from backend.scans.models import ScanAlert, ScanEvent
from tests.scans_support import activated_codes

GTIN14 = "06901234567892"
OTHER = "04006381333931"
JSON = {"Accept": "application/json"}


def counted(session) -> tuple[int, int, int]:
    """(scans counted, counterfeit attempts counted, scan events recorded)."""
    service.drain_all(db.session, redis.client)
    stats = counters.read_stats(redis.client, None)
    return stats["total"], stats["fake"].get("total", 0), session.scalar(select(func.count()).select_from(ScanEvent))


def forged(n: int) -> str:
    return codes.make_code("1", b"forger's own key 16 bytes", 5, n)  # well formed, never issued


@pytest.mark.parametrize("path", ["/v/{code}", "/V/{code}", f"/01/{GTIN14}/21/{{code}}",
                                  f"/01/{GTIN14}/10/L-1/21/{{code}}"])
@pytest.mark.parametrize("accept", ["application/json", "text/html"])
def test_head_of_an_issued_label_answers_200_and_counts_no_scan(client, make, session, path, accept):
    [code] = activated_codes(make, session, 1, lot=False)
    session.execute(update(LabelBatch).values(gtin=GTIN14))
    session.commit()
    before = counted(session)
    for _ in range(3):
        r = client.head(path.format(code=code.lower()), headers={"Accept": accept})
        assert r.status_code == 200 and r.mimetype == accept and r.headers["Cache-Control"] == "no-store"
        assert "Content-Length" not in r.headers  # (not 0: the page's length is not known without a count)
    assert counted(session) == before
    assert counters.code_counters(redis.client, code)["count"] == 0
    first = client.get(f"/v/{code}", headers=JSON).json
    assert first["verdict"] == "genuine" and first["scan"]["count"] == 1, first  # still the first scan


def test_head_of_a_typo_counts_nothing_and_answers_as_get(client, make, session):
    [code] = activated_codes(make, session, 1, lot=False)
    typo = code[:-1] + ("A" if code[-1] != "A" else "B")
    before = counted(session)
    for path in (f"/v/{typo}", "/v/" + "A" * 10_240, "/v/1' OR '1'='1", f"/01/06901234567891/21/{code}",
                 f"/01/{'9' * 200}/21/{code}"):
        got, head = client.get(path, headers=JSON), client.head(path, headers=JSON)
        assert got.status_code == head.status_code == 422, path[:60]
        assert head.headers["Content-Length"] == got.headers["Content-Length"]
    assert counted(session) == before


def test_head_of_a_never_issued_code_or_another_gtin_is_a_counted_counterfeit_attempt(client, make, session):
    [code] = activated_codes(make, session, 1, lot=False)
    session.execute(update(LabelBatch).values(gtin=GTIN14))
    session.commit()
    total, fakes, events = counted(session)
    for path in (f"/v/{forged(1)}", f"/01/{OTHER}/21/{code}"):
        r = client.head(path, headers=JSON)
        assert r.status_code == 404 and int(r.headers["Content-Length"]) > 0
    assert counted(session) == (total + 2, fakes + 2, events + 2)  # as two GETs would
    assert counters.code_counters(redis.client, code)["count"] == 0  # another GTIN counts nothing of the code's


def test_guessing_codes_by_head_is_slowed_and_alerted_like_get(client, session, monkeypatch):
    monkeypatch.setenv("SCAN_FAKE_BURST", "3")
    monkeypatch.setenv("SCAN_CRAWLER_RATE_PER_MIN", "4")
    statuses = [client.head(f"/v/{forged(n)}", environ_base={"REMOTE_ADDR": "192.0.2.98"}).status_code
                for n in range(10)]
    assert statuses[:4] == [404] * 4 and set(statuses[4:]) == {429}
    service.drain_all(db.session, redis.client)
    assert session.scalar(select(func.count()).select_from(ScanAlert).where(ScanAlert.rule == "fake_burst")) == 1


def test_head_counts_in_the_rate_limit(client, make, session, monkeypatch):
    monkeypatch.setenv("SCAN_RATE_PER_MIN", "3")
    [code] = activated_codes(make, session, 1, lot=False)
    answers = [client.head(f"/v/{code}", environ_base={"REMOTE_ADDR": "192.0.2.77"}) for _ in range(5)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 61
    assert client.get(f"/v/{code}", environ_base={"REMOTE_ADDR": "192.0.2.77"}).status_code == 429
    assert counters.code_counters(redis.client, code)["count"] == 0
