"""HEAD at the resolver (link previews, uptime checks): the status GET would answer, no body, and
no scan counted anywhere (the code's counters, the totals, the counterfeit counters, the scan
log); only the client's rate limit counts it."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from backend.extensions import db, redis
from backend.labels import codes
from backend.labels.models import LabelBatch
from backend.scans import counters, service
from backend.scans.models import ScanEvent
from tests.scans_support import activated_codes

GTIN14 = "06901234567892"
OTHER = "04006381333931"


def nothing_counted(session) -> tuple:
    service.drain_all(db.session, redis.client)
    stats = counters.read_stats(redis.client, None)
    return stats["total"], stats["fake"].get("total", 0), session.scalar(select(func.count()).select_from(ScanEvent))


@pytest.mark.parametrize("path", ["/v/{code}", "/V/{code}", "/01/" + GTIN14 + "/21/{code}"])
@pytest.mark.parametrize("accept", ["application/json", "text/html"])
def test_head_of_an_issued_label_answers_200_and_counts_no_scan(client, make, session, path, accept):
    [code] = activated_codes(make, session, 1, lot=False)
    session.execute(update(LabelBatch).values(gtin=GTIN14))
    session.commit()
    before = nothing_counted(session)
    for _ in range(3):
        r = client.head(path.format(code=code.lower()), headers={"Accept": accept})
        assert r.status_code == 200 and r.get_data() == b""
        assert r.mimetype == accept and r.headers["Cache-Control"] == "no-store"
    assert nothing_counted(session) == before
    assert counters.code_counters(redis.client, code)["count"] == 0
    first = client.get(f"/v/{code}", headers={"Accept": "application/json"}).json
    assert first["verdict"] == "genuine" and first["scan"]["count"] == 1, first  # still the first scan


def test_head_of_a_never_issued_code_a_typo_or_another_gtin_counts_no_counterfeit(client, make, session):
    [code] = activated_codes(make, session, 1, lot=False)
    forged = codes.make_code("1", b"forger's own key 16 bytes", 5, 7)
    typo = code[:-1] + ("A" if code[-1] != "A" else "B")
    before = nothing_counted(session)
    cases = [(f"/v/{forged}", 404), (f"/v/{typo}", 422), ("/v/" + "A" * 10_240, 422), ("/v/1' OR '1'='1", 422),
             (f"/01/{OTHER}/21/{code}", 404), (f"/01/06901234567891/21/{code}", 422), (f"/01/{'9' * 200}/21/{code}", 422)]
    for path, status in cases:
        r = client.head(path, headers={"Accept": "application/json"})
        assert r.status_code == status and r.get_data() == b"", (path[:60], r.status_code)
    assert nothing_counted(session) == before


def test_head_counts_in_the_rate_limit(client, make, session, monkeypatch):
    monkeypatch.setenv("SCAN_RATE_PER_MIN", "3")
    [code] = activated_codes(make, session, 1, lot=False)
    statuses = [client.head(f"/v/{code}", environ_base={"REMOTE_ADDR": "192.0.2.77"}) for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    assert 1 <= int(statuses[-1].headers["Retry-After"]) <= 61
    assert client.get(f"/v/{code}", environ_base={"REMOTE_ADDR": "192.0.2.77"}).status_code == 429
    assert counters.code_counters(redis.client, code)["count"] == 0
