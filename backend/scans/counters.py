"""Scan counters in Redis: key names, the one-round-trip pipeline per scan, the stats read, the
rate limit, and the rebuild from the database.

Every key carries a hash tag, so on Redis Cluster the keys of one code ({CODE}), one operator
({op:N}), one client ({c:HASH}) and the global counters ({all}) each live in one slot; the
pipeline is not a transaction, so a cluster client may split it per node. Nothing here is the
only copy of anything: `rebuild` recomputes every counter from `scan_events`.

    scans:{all}:n            total scans                       STRING
    scans:{all}:day          scans per day (YYYY-MM-DD)        HASH
    scans:{all}:ops          scans per operator id             HASH
    scans:{all}:towns        scans per town id                 HASH
    scans:{all}:fake         never-issued codes: total, per key id (k:K), per pattern (p:KBB)  HASH
    scans:{all}:throttled    resolver requests refused by the rate limit (crawlers: crawler)   HASH
    scans:{op:N}:day         one operator's scans per day      HASH
    scan:{CODE}:n            scans of one code                 STRING
    scan:{CODE}:first        first scan "iso|lat|lon"           STRING
    scan:{CODE}:last         last located scan "epoch|lat|lon[|r]" (r: placed by region)  STRING
    scan:{CODE}:dev          distinct devices                  HyperLogLog
    scan:{CODE}:flag         an alert is open on the code (the page warns)  STRING
    scans:{c:HASH}:fakes     never-issued codes from one client in the window (expires)
    rl:{c:HASH}:MINUTE       resolver requests from one client in one minute (expires)
    scans:{stream}           the scan stream (consumer group "drain")
    scans:{stream}:dead      dead letters: events the database refused, with the error  STREAM
    scans:{stream}:dead:n    events ever dead-lettered         STRING
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from . import script

STREAM = "scans:{stream}"
GROUP = "drain"
DEAD = "scans:{stream}:dead"  # same hash tag as the stream: moved in one MULTI on Redis Cluster
ALL = "scans:{all}"


def code_key(code: str, what: str) -> str:
    return f"scan:{{{code}}}:{what}"


def op_key(operator_id: int, what: str) -> str:
    return f"scans:{{op:{operator_id}}}:{what}"


def client_key(client: str, what: str) -> str:
    return f"scans:{{c:{client}}}:{what}"


def fake_pattern(code: str) -> str:
    """The pattern a never-issued code is counted under: its key id and the body's first two
    characters (an enumerator walking one prefix shows up as one hot pattern)."""
    return code[:3]


@dataclass
class Counted:
    """What the scan's pipeline answered."""

    count: int  # scans of this code, this one included
    first: str | None  # "iso|lat|lon" of the first scan
    devices: int
    previous: str | None  # the last located scan before this one, "epoch|lat|lon"
    flagged: bool  # an alert was open on the code before this scan
    client_fakes: int  # never-issued codes from this client in the window (0 for issued codes)


def counted(reply) -> Counted:
    """Counted from the count's six replies (script.COUNT_SCAN's and script.SCAN's)."""
    count, first, devices, previous, flag, fakes = reply
    return Counted(count=int(count), first=_s(first), devices=int(devices), previous=_s(previous),
                   flagged=flag is not None, client_fakes=int(fakes))


def _loc(lat, lon) -> str:
    return f"{lat:.5f}|{lon:.5f}" if lat is not None and lon is not None else "|"


def count_scan(r, *, event: dict, payload: str, issued: bool, fake_window_s: int) -> Counted:
    """Count one scan and append it to the stream: one round trip. `event` holds code, at (UTC
    datetime), day (Asia/Shanghai date), operator_id, town_id, device, client, lat, lon."""
    if script.usable(r):  # the same commands as one Lua script: one command to pack, one reply
        return script.run_count_scan(r, event=event, payload=payload, issued=issued, fake_window_s=fake_window_s)
    code, at = event["code"], event["at"]
    p = r.pipeline(transaction=False)
    p.incr(f"{ALL}:n")
    p.hincrby(f"{ALL}:day", event["day"], 1)
    p.incr(code_key(code, "n"))
    p.set(code_key(code, "first"), f"{at.isoformat()}|{_loc(event['lat'], event['lon'])}", nx=True)
    p.get(code_key(code, "first"))
    p.pfadd(code_key(code, "dev"), event["device"])
    p.pfcount(code_key(code, "dev"))
    last = event.get("last")  # "epoch|lat|lon[|r]" (rules.located): the phone's place or its region's
    if last:
        p.set(code_key(code, "last"), last, get=True)
    p.get(code_key(code, "flag"))
    if issued:
        p.hincrby(f"{ALL}:ops", str(event["operator_id"]), 1)
        p.hincrby(op_key(event["operator_id"], "day"), event["day"], 1)
        if event.get("town_id"):
            p.hincrby(f"{ALL}:towns", str(event["town_id"]), 1)
    else:
        _count_fake(p, code, event["client"], fake_window_s)
    p.xadd(STREAM, {"e": payload})
    store = event.get("view")  # the label view this scan read from the database (viewcache)
    if store:
        p.set(store[0], store[1], ex=store[2])
    res = p.execute()
    if store:
        res = res[:-1]
    count, first, devices = res[2], res[4], res[6]
    i = 7
    previous = None
    if last:
        previous = res[i]
        i += 1
    flagged = res[i] is not None
    client_fakes = 0 if issued else res[-3]
    return Counted(count=int(count), first=_s(first), devices=int(devices), previous=_s(previous),
                   flagged=flagged, client_fakes=int(client_fakes))


def _count_fake(p, code: str, client: str, fake_window_s: int) -> None:
    """Queue a counterfeit attempt's counters on pipeline `p`: the fake totals (all, per key id,
    per code pattern) and the client's never-issued codes in the window (5 replies; the client's
    count is the fourth)."""
    p.hincrby(f"{ALL}:fake", "total", 1)
    p.hincrby(f"{ALL}:fake", "k:" + code[0], 1)
    p.hincrby(f"{ALL}:fake", "p:" + fake_pattern(code), 1)
    p.incr(client_key(client, "fakes"))
    p.expire(client_key(client, "fakes"), fake_window_s, nx=True)


def _s(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def count_counterfeit(r, *, event: dict, payload: str, fake_window_s: int) -> int:
    """Count a scan that names an issued code with another product's GTIN (GS1 Digital Link): a
    counterfeit attempt like a never-issued code (all scans, the fake counters, the client's
    fakes) but nothing of the code's own (its count, first scan, devices, last place, flag), and
    append it to the stream. One round trip; returns the client's never-issued codes in the window."""
    code = event["code"]
    p = r.pipeline(transaction=False)
    p.incr(f"{ALL}:n")
    p.hincrby(f"{ALL}:day", event["day"], 1)
    _count_fake(p, code, event["client"], fake_window_s)
    p.xadd(STREAM, {"e": payload})
    return int(p.execute()[5])


# --- rate limit ------------------------------------------------------------------------------------
def rate_check(r, client: str, limit: int, crawler_limit: int, crawler_after: int) -> int | None:
    """Count one resolver request; None if allowed, else the seconds to wait (Retry-After).

    A client past `crawler_after` never-issued codes in the fake window gets `crawler_limit`.
    Fixed one-minute windows: one round trip (INCR, EXPIRE, GET)."""
    return rate_check_and_get(r, client, limit, crawler_limit, crawler_after)[0]


def rate_check_and_get(r, client: str, limit: int, crawler_limit: int, crawler_after: int,
                       keys: list[str] | tuple = (), view: str | None = None) -> tuple[int | None, list]:
    """rate_check, plus GET of `keys` and the cached label view of code `view` (viewcache) in the
    same round trip: (seconds to wait or None, the values of `keys` [+ what viewcache.lookup takes
    as `fetched`, when `view`])."""
    from . import viewcache

    now = time.time()
    key = rate_key(client, int(now // 60))
    p = r.pipeline(transaction=False)
    p.incr(key)
    p.expire(key, 120)
    p.get(client_key(client, "fakes"))
    for k in keys:
        p.get(k)
    n_view = viewcache.queue_read(p, r, view) if view else 0
    n, _, fakes, *values = p.execute(raise_on_error=not n_view)
    if n_view:
        values = [*values[:len(keys)], viewcache.fetched(r, values[len(keys):])]
    for v in (n, fakes, *values):
        if isinstance(v, Exception):
            raise v
    crawler = int(fakes or 0) >= crawler_after
    if n <= (crawler_limit if crawler else limit):
        return None, values
    r.hincrby(f"{ALL}:throttled", "crawler" if crawler else "client", 1)
    return retry_after(now), values


def rate_key(client: str, minute: int) -> str:
    """The client's resolver requests in one minute (since the epoch): a fixed window."""
    return f"rl:{{c:{client}}}:{minute}"


def retry_after(now: float) -> int:
    """Seconds until the next minute's window (Retry-After) for a request refused at `now`."""
    return max(1, int(60 - now % 60) + 1)


# --- reading ------------------------------------------------------------------------------------------
def _int_hash(raw: dict) -> dict[str, int]:
    return {_s(k): int(v) for k, v in raw.items()}


def read_stats(r, operator_id: int | None) -> dict:
    """The dashboard's numbers: everything, or one operator's."""
    if operator_id is not None:
        p = r.pipeline(transaction=False)
        p.hget(f"{ALL}:ops", str(operator_id))
        p.hgetall(op_key(operator_id, "day"))
        total, days = p.execute()
        return {"total": int(total or 0), "days": _int_hash(days)}
    p = r.pipeline(transaction=False)
    p.get(f"{ALL}:n")
    p.hgetall(f"{ALL}:day")
    p.hgetall(f"{ALL}:ops")
    p.hgetall(f"{ALL}:towns")
    p.hgetall(f"{ALL}:fake")
    p.hgetall(f"{ALL}:throttled")
    total, days, ops, towns, fake, throttled = p.execute()
    return {"total": int(total or 0), "days": _int_hash(days), "operators": _int_hash(ops),
            "towns": _int_hash(towns), "fake": _int_hash(fake), "throttled": _int_hash(throttled)}


def code_counters(r, code: str) -> dict:
    p = r.pipeline(transaction=False)
    p.get(code_key(code, "n"))
    p.get(code_key(code, "first"))
    p.pfcount(code_key(code, "dev"))
    n, first, dev = p.execute()
    return {"count": int(n or 0), "first": _s(first), "devices": int(dev)}


def set_flag(r, code: str, rule: str) -> None:
    r.set(code_key(code, "flag"), rule)


def clear_flag(r, code: str) -> None:
    r.delete(code_key(code, "flag"))


# --- rebuild ------------------------------------------------------------------------------------------
def delete_all(r) -> int:
    """Delete every counter key (not the stream, rate limits or client windows)."""
    n = 0
    for pattern in ("scans:{all}:*", "scans:{op:*}:*", "scan:{*}:*"):
        batch = []
        for key in r.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                n += r.delete(*batch) if not _cluster(r) else sum(r.delete(k) for k in batch)
                batch = []
        if batch:
            n += r.delete(*batch) if not _cluster(r) else sum(r.delete(k) for k in batch)
    return n


def _cluster(r) -> bool:
    return type(r).__name__ == "RedisCluster"


def write_rebuilt(r, totals: dict) -> None:
    """Write counters computed from the database (see service.rebuild_counters)."""
    p = r.pipeline(transaction=False)
    if totals["total"]:
        p.set(f"{ALL}:n", totals["total"])
    for name in ("day", "ops", "towns", "fake"):
        if totals[name]:
            p.hset(f"{ALL}:{name}", mapping={str(k): v for k, v in totals[name].items()})
    for op, days in totals["op_days"].items():
        p.hset(op_key(op, "day"), mapping=days)
    for code, c in totals["codes"].items():
        p.set(code_key(code, "n"), c["n"])
        p.set(code_key(code, "first"), c["first"])
        if c.get("last"):
            p.set(code_key(code, "last"), c["last"])
        if c["devices"]:
            p.pfadd(code_key(code, "dev"), *c["devices"])
        if c.get("flag"):
            p.set(code_key(code, "flag"), c["flag"])
        if len(p) > 5000:
            p.execute()
    p.execute()


def first_time(first: str | None) -> datetime | None:
    if not first:
        return None
    return datetime.fromisoformat(first.split("|", 1)[0])
