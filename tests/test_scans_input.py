"""Bad input at the resolver: clear answers (422 check the code, 404, 429), never a 500."""
from __future__ import annotations

import pytest

from backend.extensions import redis
from backend.labels import codes
from tests.scans_support import activated_codes

JSON = {"Accept": "application/json"}

BAD_PATHS = {
    "empty-ish": "-",
    "too short": "1ABC",
    "too long": "1" * 40,
    "10 KB": "A" * 10_240,
    "cyrillic look-alike": "1АВС2345678",
    "greek omicron": "1ΟΟΟ2345678",
    "emoji": "1😀23456789A",
    "url-encoded NUL": "1ABC%00DEFGH",
    "url-encoded slash": "1ABC%2FDEFGH",
    "percent junk": "%E4%B8%AD%FF%FE",
    "dangling percent": "1ABC%ZZ",
    "sql": "1' OR '1'='1",
    "sql union": "x UNION SELECT password FROM users--",
    "path traversal": "../../etc/passwd",
    "html": "<script>alert(1)</script>",
    "nested path": "1ABC/DEF/GHI",
    "rtl override": "\u202e1ABCDEFGHJK",
    "zero width": "1ABC\u200bDEFGHJ",
}


@pytest.mark.parametrize("path", BAD_PATHS.values(), ids=BAD_PATHS.keys())
def test_junk_codes_answer_check_the_code(client, path):
    r = client.get(f"/v/{path}", headers=JSON)
    assert r.status_code == 422, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.json["verdict"] == "check_code" and r.json["warning"]
    page = client.get(f"/v/{path}")
    assert page.status_code == 422 and page.mimetype == "text/html"
    assert "<script>alert" not in page.get_data(as_text=True)


def test_lower_case_spaced_and_full_width_spellings_resolve(client, make, session):
    [code] = activated_codes(make, session, 1, lot=False)
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in code)
    for spelling in (code.lower(), codes.display(code), " ".join(code), full_width, code.replace("1", "l")):
        if spelling == code.replace("1", "l") and "1" not in code:
            continue
        r = client.get(f"/v/{spelling}", headers=JSON)
        assert r.status_code == 200 and r.json["code"] == code, spelling


HOSTILE_HEADERS = {
    "no headers": {},
    "garbage accept": {"Accept": "\x00\x01;;;q=abc"},
    "huge user agent": {"User-Agent": "M" * 20_000},
    "bad cookie": {"Cookie": "cpd=" + "z" * 5000},
    "forwarded junk": {"X-Forwarded-For": "not-an-ip, ' OR 1=1, " + "9" * 3000},
    "latin-1 language": {"Accept-Language": "caf\xe9"},
}


@pytest.mark.parametrize("headers", HOSTILE_HEADERS.values(), ids=HOSTILE_HEADERS.keys())
def test_hostile_headers_never_break_the_resolver(client, make, session, headers, monkeypatch):
    monkeypatch.setenv("SCAN_TRUSTED_PROXIES", "1")
    [code] = activated_codes(make, session, 1, lot=False)
    r = client.get(f"/v/{code}", headers=headers)
    assert r.status_code == 200


@pytest.mark.parametrize("query", [{"lat": "NaN", "lon": "1"}, {"lat": "91", "lon": "0"}, {"lat": "abc"},
                                   {"lat": "1e999", "lon": "1"}, {"format": "xml"}])
def test_bad_query_values_are_refused_by_name(client, make, session, query):
    [code] = activated_codes(make, session, 1, lot=False)
    r = client.get(f"/v/{code}", headers=JSON, query_string=query)
    assert r.status_code == 422 and r.json["reason"] == "request.invalid"


def test_a_flood_from_one_address_gets_429_with_retry_after_and_is_counted(client, make, session, monkeypatch):
    monkeypatch.setenv("SCAN_RATE_PER_MIN", "5")
    [code] = activated_codes(make, session, 1, lot=False)
    statuses = []
    for _ in range(30):
        r = client.get(f"/v/{code}", headers=JSON, environ_base={"REMOTE_ADDR": "192.0.2.50"})
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert 1 <= int(r.headers["Retry-After"]) <= 61 and r.json["reason"] == "scans.rate_limited"
    assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}
    other = client.get(f"/v/{code}", headers=JSON, environ_base={"REMOTE_ADDR": "192.0.2.51"})
    assert other.status_code == 200
    page = client.get(f"/v/{code}", environ_base={"REMOTE_ADDR": "192.0.2.50"})
    assert page.status_code == 429 and "频繁" in page.get_data(as_text=True)
    assert int(redis.client.hget("scans:{all}:throttled", "client")) == 26


def test_an_enumerating_crawler_is_slowed_to_the_crawler_rate(client, monkeypatch):
    monkeypatch.setenv("SCAN_FAKE_BURST", "3")
    monkeypatch.setenv("SCAN_CRAWLER_RATE_PER_MIN", "4")
    statuses = [client.get(f"/v/{codes.make_code('1', b'enumerator key 16 bytes+', 5, n)}", headers=JSON,
                           environ_base={"REMOTE_ADDR": "192.0.2.99"}).status_code for n in range(10)]
    assert statuses[:4] == [404] * 4 and set(statuses[4:]) == {429}
    assert int(redis.client.hget("scans:{all}:throttled", "crawler")) == 6
