"""The scan's Redis work as Lua scripts (EVALSHA), so the API process packs one command and
parses one short reply instead of 13–16 (measured: the pipeline's packing and parsing was most
of the scan's Redis cost in Python).

COUNT_SCAN counts a scan whose label view the caller already has: the same commands as
counters.count_scan's pipeline. SCAN is the whole common scan in one round trip: the rate limit,
the code's cached label view (used only if its generation tag is current, viewcache.py), its lot's
cached origin, and then the same count; when the view or the origin is not in Redis it counts
only the rate limit and answers what the caller needs to read the database and finish with
COUNT_SCAN (service.scan_once).

Only on a single Redis server: a script's keys must share one hash slot on Redis Cluster, and
a scan's keys ({CODE}, {all}, {op:N}, {c:HASH}, {stream}, {views}) deliberately do not, so a
cluster client keeps the pipeline (which it splits per node). The embedded stand-in (fakeredis)
keeps it too: its Lua needs the optional `lupa`. tests/test_scans_script.py checks that both
paths leave the same keys behind.
"""
from __future__ import annotations

import os
import threading

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

# The count, shared by both scripts. k: 1 all:n  2 all:day  3 code:n  4 code:first  5 code:dev
# 6 code:last  7 code:flag  8 all:ops  9 op:day  10 all:towns  11 all:fake  12 client:fakes
# 13 stream. a: 1 day  2 first value  3 device  4 last value ('' when the scan has no place)
# 5 issued (1/0)  6 operator id  7 town id ('' none)  8 fake key field  9 fake pattern field
# 10 fake window seconds  11 stream payload.
# Returns {count, first, devices, previous last or false, flag or false, client fakes}.
_COUNT = """
local function count(k, a)
  redis.call('INCR', k[1])
  redis.call('HINCRBY', k[2], a[1], 1)
  local n = redis.call('INCR', k[3])
  local first = redis.call('SET', k[4], a[2], 'NX', 'GET') or a[2]
  redis.call('PFADD', k[5], a[3])
  local devices = redis.call('PFCOUNT', k[5])
  local previous = false
  if a[4] ~= '' then
    previous = redis.call('SET', k[6], a[4], 'GET')
  end
  local flag = redis.call('GET', k[7])
  local fakes = 0
  if a[5] == '1' then
    redis.call('HINCRBY', k[8], a[6], 1)
    redis.call('HINCRBY', k[9], a[1], 1)
    if a[7] ~= '' then
      redis.call('HINCRBY', k[10], a[7], 1)
    end
  else
    redis.call('HINCRBY', k[11], 'total', 1)
    redis.call('HINCRBY', k[11], a[8], 1)
    redis.call('HINCRBY', k[11], a[9], 1)
    fakes = redis.call('INCR', k[12])
    redis.call('EXPIRE', k[12], a[10], 'NX')
  end
  redis.call('XADD', k[13], '*', 'e', a[11])
  return {n, first, devices, previous, flag, fakes}
end
"""

# KEYS 1–13 / ARGV 1–11: as `count`. Then any number of values to store, each KEYS[13+i] with
# ARGV[10+2i] (value) and ARGV[11+2i] (TTL): the label view and the lot's origin this scan read
# from the database (viewcache).
COUNT_SCAN = _COUNT + """
local a = {}
for i = 1, 11 do a[i] = ARGV[i] end
local result = count(KEYS, a)
for i = 14, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2 * i - 16], 'EX', ARGV[2 * i - 15])
end
return result
"""

# KEYS: 1 rate key  2 client:fakes  3 views' global gen  4 code gen  5 code view  6 all:throttled
#       7–18 as count's k 1–8, 10–13 (the operator's day key and the lot's keys are named by the
#       view: single Redis only)
# ARGV: 1 rate limit  2 crawler rate limit  3 crawler after (fakes)  4–7 as count's a 1–4
#       8 fake key field  9 fake pattern field  10 fake window  11 the stream payload without its
#       closing brace: the view's fields and the town are appended here
# Returns {'limited'}; {'miss', g, c, view or false[, gb, go, gl]} (what viewcache.lookup takes as
# `fetched`; the rate limit is counted, nothing else); or {'counted', view, origin or false,
# count, first, devices, previous, flag, fakes}.
SCAN = _COUNT + """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], 120) end
local got = redis.call('MGET', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local crawler = tonumber(got[1] or '0') >= tonumber(ARGV[3])
if n > tonumber(crawler and ARGV[2] or ARGV[1]) then
  redis.call('HINCRBY', KEYS[6], crawler and 'crawler' or 'client', 1)
  return {'limited'}
end
local g, c, v = got[2], got[3], got[4]
if not v then return {'miss', g, c, false} end
local head, part = string.match(v, '^([^\\n]*)\\n([^\\n]*)\\n')
local b, o, l = string.match(v, '^%S+ (%d+) (%d+) (%S+) ')
local gb, go, gl, origin = false, false, false, false
local want = (g or '0') .. '.' .. (c or '0')
if b then
  local lg = '0'
  if l ~= '-' then
    local deps = redis.call('MGET', 'scans:{views}:b:' .. b, 'scans:{views}:o:' .. o, 'scans:{views}:l:' .. l,
                            'scans:{views}:origin2:' .. l)
    gb, go, gl, origin = deps[1], deps[2], deps[3], deps[4]
    lg = gl or '0'
  else
    local deps = redis.call('MGET', 'scans:{views}:b:' .. b, 'scans:{views}:o:' .. o)
    gb, go = deps[1], deps[2]
  end
  want = want .. ' ' .. b .. ' ' .. o .. ' ' .. l .. ' ' .. (gb or '0') .. '.' .. (go or '0') .. '.' .. lg
else
  want = want .. ' - - - -'
end
if head ~= want or not part then return {'miss', g, c, v, gb, go, gl} end
local town = ''
if b and l ~= '-' then
  if not origin then return {'miss', g, c, v, gb, go, gl} end
  town = string.match(origin, '^(%d*)\\n') or ''
end
local k = {KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14],
           b and ('scans:{op:' .. o .. '}:day') or KEYS[14], KEYS[15], KEYS[16], KEYS[2], KEYS[17]}
local a = {ARGV[4], ARGV[5], ARGV[6], ARGV[7], b and '1' or '0', o or '', town, ARGV[8], ARGV[9], ARGV[10],
           ARGV[11] .. ',' .. part .. ',"town_id":' .. (town ~= '' and town or 'null') .. '}'}
local r = count(k, a)
return {'counted', v, origin, r[1], r[2], r[3], r[4], r[5], r[6]}
"""

_scripts: dict[tuple[int, str], object] = {}  # (id(client), source) -> its registered Script


def usable(r) -> bool:
    """Whether `r` runs the scripts: a plain redis-py client (not a cluster, not fakeredis)."""
    kind = type(r)
    return kind.__name__ != "RedisCluster" and not kind.__module__.startswith("fakeredis")


def registered(r, source: str):
    """`source` registered for client `r` (redis-py's Script: EVALSHA, and SCRIPT LOAD once if the
    server does not know it, e.g. after a restart)."""
    script = _scripts.get((id(r), source))
    if script is None or script.registered_client is not r:
        script = _scripts[(id(r), source)] = r.register_script(source)
    return script


def count_scan(r):
    return registered(r, COUNT_SCAN)


def _count_keys_args(event: dict, payload: str, issued: bool, fake_window_s: int) -> tuple[list, list]:
    from .counters import ALL, STREAM, _loc, client_key, code_key, fake_pattern, op_key

    code, at = event["code"], event["at"]
    keys = [f"{ALL}:n", f"{ALL}:day", code_key(code, "n"), code_key(code, "first"), code_key(code, "dev"),
            code_key(code, "last"), code_key(code, "flag"), f"{ALL}:ops", op_key(event.get("operator_id"), "day"),
            f"{ALL}:towns", f"{ALL}:fake", client_key(event["client"], "fakes"), STREAM]
    args = [event["day"], f"{at.isoformat()}|{_loc(event['lat'], event['lon'])}", event["device"],
            event.get("last") or "", "1" if issued else "0", str(event.get("operator_id")),
            str(event.get("town_id") or ""), "k:" + code[0], "p:" + fake_pattern(code), fake_window_s, payload]
    return keys, args


def stores(event: dict) -> list[tuple[str, str, int]]:
    """What a scan stores beside its count: the label view and the lot origin it read from the
    database (viewcache), as (key, value, TTL)."""
    return [s for s in (event.get("view"), event.get("origin_store")) if s]


def run_count_scan(r, *, event: dict, payload: str, issued: bool, fake_window_s: int):
    """counters.count_scan's work in one EVALSHA; returns the same counters.Counted."""
    from .counters import counted

    keys, args = _count_keys_args(event, payload, issued, fake_window_s)
    for key, value, ttl in stores(event):
        keys.append(key)
        args.extend([value, ttl])
    return counted(count_scan(r)(keys=keys, args=args))


def run_scan(r, *, event: dict, prefix: str, rate_key: str, t, view_keys: list[str]) -> list:
    """SCAN for `event` (no label fields yet: the script takes them from the view); see SCAN for
    the reply."""
    from .counters import ALL

    keys, args = _count_keys_args(event, "", False, t.fake_window_s)
    keys = [rate_key, keys[11], *view_keys, f"{ALL}:throttled", *keys[:8], *keys[9:11], keys[12]]
    args = [t.rate_per_min, t.crawler_rate_per_min, t.fake_burst, *args[:4], *args[7:10], prefix]
    return evalsha_direct(r, SCAN, keys, args)


_lane = threading.local()  # this thread's own connection for evalsha_direct


def _own_connection(r):
    """A connection of this thread's own, made like `r`'s pool makes them (same server, db,
    timeouts, credentials), kept outside the pool; a new one after a fork or for another client."""
    pid = os.getpid()
    if getattr(_lane, "client", None) is not r or _lane.pid != pid:
        if getattr(_lane, "pid", None) == pid:
            _lane.conn.disconnect()  # (this process's own: another client's, no longer used here)
        pool = r.connection_pool
        _lane.conn, _lane.client, _lane.pid = pool.connection_class(**pool.connection_kwargs), r, pid
    return _lane.conn


def evalsha_direct(r, source: str, keys: list, args: list):
    """EVALSHA of `source` on this thread's own connection to `r`'s server (SCRIPT LOAD first if
    the server does not know it, e.g. after a restart). The scan's one round trip, without the
    pool's check-out and the client's retry layer around it (≈ 20-30 µs of a cached scan's CPU,
    bench/bench_scans.py): a connection error is not retried here; it disconnects (the next call
    connects anew) and propagates, and the caller hands the request to the route, which answers
    from the database when Redis is down."""
    conn = _own_connection(r)
    sha = registered(r, source).sha
    try:
        try:
            conn.send_command("EVALSHA", sha, len(keys), *keys, *args, check_health=True)
            return conn.read_response()
        except NoScriptError:
            conn.send_command("SCRIPT", "LOAD", source, check_health=True)
            conn.read_response()
            conn.send_command("EVALSHA", sha, len(keys), *keys, *args, check_health=True)
            return conn.read_response()
    except (RedisConnectionError, RedisTimeoutError, OSError):
        conn.disconnect()
        raise
