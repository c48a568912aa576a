"""The scan's counters as one Lua script (EVALSHA): the same commands as counters.count_scan's
pipeline, run inside Redis, so the API process packs one command and parses one short reply
instead of 13–16 (measured: the pipeline's packing and parsing was most of the scan's Redis
cost in Python).

Only on a single Redis server: a script's keys must share one hash slot on Redis Cluster, and
a scan's keys ({CODE}, {all}, {op:N}, {c:HASH}, {stream}) deliberately do not, so a cluster
client keeps the pipeline (which it splits per node). The embedded stand-in (fakeredis) keeps
it too: its Lua needs the optional `lupa`. tests/test_scans_script.py checks that both paths
leave the same keys behind.
"""
from __future__ import annotations

# KEYS: 1 all:n  2 all:day  3 code:n  4 code:first  5 code:dev  6 code:last  7 code:flag
#       8 all:ops  9 op:day  10 all:towns  11 all:fake  12 client:fakes  13 stream
# ARGV: 1 day  2 first value  3 device  4 last value ('' when the scan has no place)
#       5 issued (1/0)  6 operator id  7 town id ('' none)  8 fake key field  9 fake pattern field
#       10 fake window seconds  11 stream payload
# KEYS 14 / ARGV 12, 13 (optional): the label view to store (viewcache), its TTL
# Returns {count, first, devices, previous last or false, flag or false, client fakes}.
COUNT_SCAN = """
redis.call('INCR', KEYS[1])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local count = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[4], ARGV[2], 'NX')
local first = redis.call('GET', KEYS[4])
redis.call('PFADD', KEYS[5], ARGV[3])
local devices = redis.call('PFCOUNT', KEYS[5])
local previous = false
if ARGV[4] ~= '' then
  previous = redis.call('SET', KEYS[6], ARGV[4], 'GET')
end
local flag = redis.call('GET', KEYS[7])
local fakes = 0
if ARGV[5] == '1' then
  redis.call('HINCRBY', KEYS[8], ARGV[6], 1)
  redis.call('HINCRBY', KEYS[9], ARGV[1], 1)
  if ARGV[7] ~= '' then
    redis.call('HINCRBY', KEYS[10], ARGV[7], 1)
  end
else
  redis.call('HINCRBY', KEYS[11], 'total', 1)
  redis.call('HINCRBY', KEYS[11], ARGV[8], 1)
  redis.call('HINCRBY', KEYS[11], ARGV[9], 1)
  fakes = redis.call('INCR', KEYS[12])
  redis.call('EXPIRE', KEYS[12], ARGV[10], 'NX')
end
redis.call('XADD', KEYS[13], '*', 'e', ARGV[11])
if KEYS[14] then
  redis.call('SET', KEYS[14], ARGV[12], 'EX', ARGV[13])
end
return {count, first, devices, previous, flag, fakes}
"""

_scripts: dict[int, object] = {}  # id(client) -> its registered Script (EVALSHA, loaded on NOSCRIPT)


def usable(r) -> bool:
    """Whether `r` runs the script: a plain redis-py client (not a cluster, not fakeredis)."""
    kind = type(r)
    return kind.__name__ != "RedisCluster" and not kind.__module__.startswith("fakeredis")


def count_scan(r):
    """The registered COUNT_SCAN script for client `r` (redis-py's Script: EVALSHA, and SCRIPT LOAD
    once if the server does not know it, e.g. after a restart)."""
    script = _scripts.get(id(r))
    if script is None or script.registered_client is not r:
        script = _scripts[id(r)] = r.register_script(COUNT_SCAN)
    return script


def run_count_scan(r, *, event: dict, payload: str, issued: bool, fake_window_s: int):
    """counters.count_scan's work in one EVALSHA; returns the same counters.Counted."""
    from .counters import ALL, STREAM, Counted, _loc, _s, client_key, code_key, fake_pattern, op_key

    code, at = event["code"], event["at"]
    operator_id = event.get("operator_id")
    keys = [f"{ALL}:n", f"{ALL}:day", code_key(code, "n"), code_key(code, "first"), code_key(code, "dev"),
            code_key(code, "last"), code_key(code, "flag"), f"{ALL}:ops", op_key(operator_id, "day"),
            f"{ALL}:towns", f"{ALL}:fake", client_key(event["client"], "fakes"), STREAM]
    args = [event["day"], f"{at.isoformat()}|{_loc(event['lat'], event['lon'])}", event["device"],
            event.get("last") or "", "1" if issued else "0", str(operator_id), str(event.get("town_id") or ""),
            "k:" + code[0], "p:" + fake_pattern(code), fake_window_s, payload]
    store = event.get("view")  # the label view this scan read from the database (viewcache)
    if store:
        keys.append(store[0])
        args.extend([store[1], store[2]])
    count, first, devices, previous, flag, fakes = count_scan(r)(keys=keys, args=args)
    return Counted(count=int(count), first=_s(first), devices=int(devices), previous=_s(previous),
                   flagged=flag is not None, client_fakes=int(fakes))
