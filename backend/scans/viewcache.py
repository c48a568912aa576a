"""The resolver's label view, cached in Redis: what one scan reads from the database (the label,
its batch, operator and lot, whether inspectors reported the code, the batch's GTIN), kept for
TTL_S seconds (SCAN_VIEW_WARM_TTL when warmed at activation, see `warm`) under `scan:{CODE}:view`
and shared by every API process.

Correctness first: a cached view is used only while it is current. Each entry is tagged with the
generation counters of exactly what it is built from, read *before* the database was:

    scans:{views}:gen       global: writes nobody could attribute (text SQL, unknown bulk statements)
    scan:{CODE}:gen         the code's label row, the inspectors' findings naming the code
    scans:{views}:b:ID      its batch: range operations (activate, void, report...), the batch row
    scans:{views}:o:ID      its operator (name, credit code)
    scans:{views}:l:ID      its lot (code, season), if any

An entry is "G.C B O L gb.go.gl" (B O L: the batch, operator and lot ids, "-" for none), a newline,
the view's fields of a scan event (`event_part`: what script.SCAN writes into the stream entry),
a newline, the view's runs of the answer's label member (dump.view_part), a newline and the view
(`entry`). Every commit that wrote what a view shows bumps, right after the commit, only the
counters of what it touched (SQLAlchemy session events below, for every session of the process):
the ORM's changed objects name their label code / batch / operator / lot, and only when a column
the view shows changed (a lot's mass moving on a trade changes no view); a bulk statement says
what it changes through execution options (`views_changed`: codes, `views_batch`: batch ids);
anything else bumps the global counter. The reader fetches the global and code counters and the
entry in the round trip it already makes (the rate limit); the entry names its batch, operator and
lot, whose counters a Lua script reads in the same call (single Redis; elsewhere a second round
trip). An entry whose tag differs from the current counters is never used.

The batch/operator/lot of a code are only known once the database was read, and counters read
after that read could already include a bump of a commit the read did not see. So a reader stores
a current tag only when the stale entry it found named the same batch, operator and lot (their
counters were then read before the database); otherwise it stores an entry naming them with a tag
that never matches, and the next reader caches. `warm` (activation) knows them in advance.
If Redis is down at bump time the bump is lost; the resolver does not use the cache while Redis
is down either, and entries expire, which bounds what a restarted Redis (with AOF) could hold.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import re
from datetime import datetime

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import event
from sqlalchemy.orm import Session

from . import dump, script

log = logging.getLogger(__name__)
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)

TTL_S = 60  # a cached view lives this long at most
GEN_TTL_S = 86_400  # a code's generation counter outlives every view tagged with it
GEN = "scans:{views}:gen"
# The tables a view is read from (labels.service.lookup, fieldwork's suspicious codes).
WATCHED = frozenset({"labels", "label_batches", "operators", "chain_lots",
                     "fieldwork_finding_codes", "fieldwork_findings", "fieldwork_checkins"})
_TEXT_WRITE = re.compile(r"\b(insert\s+into|update|delete\s+from)\s+\"?(\w+)", re.IGNORECASE)


@functools.cache
def _shape() -> str:
    """A short digest of what an entry holds (LabelView's fields, the entry's lines): part of the
    key, so a release that changes the view reads none of an older release's entries (which can
    live for SCAN_VIEW_WARM_TTL) and script.SCAN never counts a scan over a view it cannot decode."""
    from ..labels.service.lookup import LabelView

    names = ",".join(f.name for f in dataclasses.fields(LabelView))
    return hashlib.sha1(f"5|{names}".encode()).hexdigest()[:6]


def view_key(code: str) -> str:
    return f"scan:{{{code}}}:view:{_shape()}"


def gen_key(code: str) -> str:
    return f"scan:{{{code}}}:gen"


# --- reading ------------------------------------------------------------------------------------------
def _encode(value: tuple) -> str:
    def item(x):
        if dataclasses.is_dataclass(x):
            return {"view": {f.name: (v.isoformat() if isinstance(v, datetime) else v)
                             for f in dataclasses.fields(x) for v in [getattr(x, f.name)]}}
        return {"v": x}

    return dump.dumps([item(x) for x in value])


@functools.cache
def _view_class() -> tuple[type, tuple[str, ...]]:
    """LabelView and the names of its datetime fields."""
    from ..labels.service.lookup import LabelView

    return LabelView, tuple(f.name for f in dataclasses.fields(LabelView) if "datetime" in str(f.type))


def _decode(raw: str) -> tuple:
    view_class, datetimes = _view_class()
    out = []
    for x in json.loads(raw):
        if "view" in x:
            values = x["view"]
            for name in datetimes:
                if isinstance(values.get(name), str):
                    values[name] = datetime.fromisoformat(values[name])
            out.append(view_class(**values))
        else:
            out.append(x["v"])
    return tuple(out)


def event_part(value: tuple) -> str:
    """The view's fields of a scan's stream entry (service._payload), as JSON members without braces:
    script.SCAN appends them to the entry the API process began."""
    label, reported = value[0], bool(value[1])
    return json.dumps({"label_id": label.label_id if label else None, "operator_id": label.operator_id if label else None,
                       "state": label.state if label else None, "reported": reported})[1:-1]


def entry(tag_: str, value: tuple) -> str:
    """What is stored under view_key: the tag, the event part, the answer part and the view, a
    line each."""
    return f"{tag_}\n{event_part(value)}\n{dump.view_part(value[0])}\n{_encode(value)}"


def origin_key(lot_id: int) -> str:
    """A lot's origin (service.lot_origin) as script.SCAN reads it: "TOWN_ID\nJSON\nANSWER PART"."""
    return f"scans:{{views}}:origin2:{lot_id}"  # (2: the entry's third line, an older release reads 2)


def origin_entry(origin: dict) -> str:
    return f"{origin.get('town_id') or ''}\n{dump.dumps(origin)}\n{dump.origin_part(origin)}"


@functools.lru_cache(maxsize=4096)
def split_origin(raw) -> tuple[dict, list]:
    """(origin, its answer part, parsed) of a stored origin entry. Parsed once per process and
    entry: a lot's origin serves all its labels (the result is shared: never change it)."""
    _town, body, part = _s(raw).split("\n", 2)
    return json.loads(body), json.loads(part)


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def dep_key(kind: str, ident) -> str:
    """The generation counter of a batch ("b"), operator ("o") or lot ("l")."""
    return f"scans:{{views}}:{kind}:{ident}"


# KEYS: 1 global gen, 2 code gen, 3 view. Returns {global, code, view, batch, operator, lot gens}
# (the last three only when the entry names them). Reads keys it is not passed: single Redis only.
READ = """
local g = redis.call('GET', KEYS[1])
local c = redis.call('GET', KEYS[2])
local v = redis.call('GET', KEYS[3])
if not v then return {g, c, false} end
local b, o, l = string.match(v, '^%S+ (%d+) (%d+) (%S+) ')
if not b then return {g, c, v} end
local gl = false
if l ~= '-' then gl = redis.call('GET', 'scans:{views}:l:' .. l) end
return {g, c, v, redis.call('GET', 'scans:{views}:b:' .. b), redis.call('GET', 'scans:{views}:o:' .. o), gl}
"""
READ_SHA = hashlib.sha1(READ.encode()).hexdigest()


def keys(code: str) -> list[str]:
    """The keys `queue_read` reads (besides those the entry names)."""
    return [GEN, gen_key(code), view_key(code)]


def queue_read(p, r, code: str) -> int:
    """Queue the read of `code`'s entry and counters on pipeline `p` of client `r` (the caller's
    round trip); returns how many replies it queued, to hand to `fetched`."""
    if script.usable(r):
        p.evalsha(READ_SHA, 3, *keys(code))
        return 1
    for k in keys(code):
        p.get(k)
    return 3


def fetched(r, replies: list) -> list | None:
    """What `lookup` takes, from the replies of `queue_read`; None (lookup reads itself) when the
    server did not know the script (restarted): it is loaded for the next reader."""
    if len(replies) == 1:
        if isinstance(replies[0], Exception):
            if isinstance(replies[0], NoScriptError):
                try:
                    r.script_load(READ)
                except REDIS_DOWN:
                    pass
            else:
                log.warning("label view cache: the read script failed: %s", replies[0])
            return None
        return list(replies[0])
    return list(replies)


def through(r, code: str, read, fetched: list | None = None):
    """`read()` (the database), or the cached copy of what it answered for `code` while no write
    to what the view shows has been committed since. Without Redis: `read()`. `fetched`: see
    `fetched()`, when the caller already read the entry."""
    value, store = lookup(r, code, read, fetched)
    if store is not None:
        try:
            r.set(store[0], store[1], ex=store[2])
        except REDIS_DOWN:
            pass
    return value


def split_entry(raw) -> tuple[str, str, str, str]:
    """(tag, event part, answer part, view JSON) of a stored entry (see `entry`); a ValueError if
    it is not one."""
    tag_, part, answer, body = _s(raw).split("\n", 3)
    return tag_, part, answer, body


def decode_view(body: str):
    """The LabelView (or None) of an entry's view JSON (split_entry's last part)."""
    return _decode(body)[0]


def _deps_of(value) -> tuple[str, str, str] | None:
    """(batch, operator, lot) ids of the label in a cached value, as strings; None without a label."""
    from ..labels.service.lookup import LabelView

    items = value if isinstance(value, tuple) else (value,)
    for x in items:
        if isinstance(x, LabelView):
            return str(x.batch_id), str(x.operator_id), "-" if x.lot_id is None else str(x.lot_id)
    return None


def _dep_gens(r, deps) -> list:
    b, o, lot = deps
    p = r.pipeline(transaction=False)
    p.get(dep_key("b", b))
    p.get(dep_key("o", o))
    if lot != "-":
        p.get(dep_key("l", lot))
    return [*p.execute(), None][:3]


def tag(head: str, deps, gens) -> str:
    """An entry's tag: `head` "G.C", the batch/operator/lot ids and their counters' values.
    (script.SCAN builds the same string in Lua to check an entry: change both together.)"""
    if deps is None:
        return f"{head} - - - -"
    b, o, lot = deps
    gb, go, gl = gens or (0, 0, 0)
    return f"{head} {b} {o} {lot} {int(gb or 0)}.{int(go or 0)}.{int(gl or 0) if lot != '-' else 0}"


def lookup(r, code: str, read, fetched: list | None = None):
    """As `through`, but a view read from the database is not stored: (value, store), store being
    (key, tagged value, TTL) for the caller to SET in a round trip of its own (the scan's count
    script does), or None."""
    if r is None:
        return read(), None
    deps = gens = None
    try:
        if fetched is None:
            p = r.pipeline(transaction=False)
            for k in keys(code):
                p.get(k)
            fetched = p.execute()
        g, c, cached = fetched[:3]
        head = f"{int(g or 0)}.{int(c or 0)}"
        if cached is not None:
            try:
                stored_tag, _, _, body = split_entry(cached)
            except ValueError:
                stored_tag = body = ""  # not an entry: read again
            parts = stored_tag.split(" ")
            if len(parts) == 5 and parts[1] != "-":
                deps = tuple(parts[1:4])
                gens = fetched[3:6] if len(fetched) >= 6 else _dep_gens(r, deps)
            if stored_tag == tag(head, deps, gens):
                try:
                    return _decode(body), None
                except (ValueError, TypeError, KeyError) as err:  # a view of an older shape: read again
                    log.info("label view cache: dropping an unreadable entry for %s (%s)", code, err)
    except REDIS_DOWN:
        return read(), None
    value = read()
    now = _deps_of(value)
    if now is None or now == deps:  # counters all read before the database: a current tag
        stored = tag(head, now, gens)
    else:  # names them for the next reader, matches nothing
        stored = tag("x", now, None)
    return value, (view_key(code), entry(stored, value), TTL_S)


# --- invalidation -------------------------------------------------------------------------------------
def bump(r, codes: set[str], everything: bool, deps: set[tuple[str, int]] = frozenset()) -> None:
    """Make cached views stale: every view (`everything`), those of `codes`, and those built from
    the batches, operators and lots in `deps` (("b"|"o"|"l", id))."""
    p = r.pipeline(transaction=False)
    if everything:
        p.incr(GEN)
    for code in codes:
        p.incr(gen_key(code))
        p.expire(gen_key(code), gen_ttl())
    for kind, ident in deps:  # (one per batch, operator, lot: they never expire)
        p.incr(dep_key(kind, ident))
    p.execute()


def gen_ttl() -> int:
    """A code's counter outlives every view tagged with it (warmed views included)."""
    try:
        from ..config import setting

        return max(GEN_TTL_S, int(setting("SCAN_VIEW_WARM_TTL")) + TTL_S)
    except Exception:  # noqa: BLE001 - outside an app: the longest default
        return 8 * 86_400


def _note(session: Session, codes=(), everything: bool = False, deps=()) -> None:
    info = session.info.setdefault("chenpi_views", {"codes": set(), "all": False, "deps": set()})
    info["codes"].update(codes)
    info["deps"].update(deps)
    info["all"] = info["all"] or everything


def _client():
    from flask import current_app, has_app_context

    if not has_app_context() or "chenpi_redis" not in current_app.extensions:
        return None
    return current_app.extensions["chenpi_redis"]["client"]


_lost_bump = False  # a bump this process could not make: the next one it makes is global


def _flush_notes(session: Session) -> None:
    global _lost_bump
    info = session.info.pop("chenpi_views", None)
    if not info or not (info["codes"] or info["all"] or info["deps"]):
        return
    r = _client()
    if r is None:
        return
    try:
        bump(r, info["codes"], info["all"] or _lost_bump, info["deps"])
        _lost_bump = False
    except REDIS_DOWN as err:
        _lost_bump = True
        log.warning("label view cache: could not mark views stale (Redis down: %s); every view will be "
                    "marked stale by this process's next bump", err)


# What a view shows of each table (labels.service.lookup, fieldwork's suspicious codes): a change
# of another column (a lot's mass, a batch's status, a check-in's photo count) changes no view.
SHOWN = {
    "label_batches": ("b", ("product", "harvest_year", "template", "lot_id", "operator_id", "gtin")),
    "operators": ("o", ("name", "credit_code")),
    "chain_lots": ("l", ("code", "season")),
}


def _changed(obj, columns) -> bool:
    from sqlalchemy import inspect

    attrs = inspect(obj).attrs
    return any(attrs[c].history.has_changes() for c in columns if c in attrs)


def _attribute(obj, table: str, codes: set, deps: set) -> bool:
    """Note what `obj` (new, changed or deleted) changes of the views; False: it cannot say."""
    state = obj.__dict__
    if table == "labels":
        code = state.get("code")
        if not code:
            return False
        codes.add(code)
        hist = _history(obj, "code")  # a code changed: the old code's view too
        codes.update(c for c in hist if c)
        return True
    if table in SHOWN:
        kind, columns = SHOWN[table]
        ident = state.get("id")
        if ident is None:
            return False
        if obj in _session_of(obj).new or obj in _session_of(obj).deleted or _changed(obj, columns):
            deps.add((kind, ident))
        return True
    if table == "fieldwork_finding_codes":
        code = state.get("code")
        if not code:
            return False
        codes.add(code.strip().upper())
        return True
    if table == "fieldwork_checkins":  # findings count while the check-in is not rejected nor replaced
        session = _session_of(obj)
        if obj in session.new:
            return state.get("replaces_id") is None
        return obj not in session.deleted and not _changed(obj, ("review_state", "replaces_id"))
    if table == "fieldwork_findings":  # a new finding's codes are its finding_codes rows
        return obj in _session_of(obj).new
    return False


def _history(obj, column: str) -> list:
    from sqlalchemy import inspect

    attrs = inspect(obj).attrs
    return list(attrs[column].history.deleted) if column in attrs else []


def _session_of(obj):
    from sqlalchemy.orm import object_session

    return object_session(obj) or _NO_SESSION


class _NoSession:
    new = deleted = frozenset()


_NO_SESSION = _NoSession()


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _ctx) -> None:
    codes, deps, everything = set(), set(), False
    for obj in (*session.new, *session.dirty, *session.deleted):
        table = getattr(obj, "__tablename__", None)
        if table in WATCHED and not _attribute(obj, table, codes, deps):
            everything = True
    if len(codes) > 100:  # (a flush of many labels: one global bump instead of many)
        codes, everything = set(), True
    if codes or deps or everything:
        _note(session, codes, everything, deps)


def _statement_table(statement) -> str | None:
    table = getattr(statement, "table", None)
    name = getattr(table, "name", None)
    if name:
        return name
    text_ = getattr(statement, "text", None)
    if isinstance(text_, str):
        m = _TEXT_WRITE.search(text_)
        return m.group(2).lower() if m else None
    return None


@event.listens_for(Session, "do_orm_execute")
def _do_orm_execute(state) -> None:
    if not state.is_select and _statement_table(state.statement) in WATCHED:
        # A statement may say whose views it changes: execution option views_changed (codes, () for
        # none, e.g. the PIN check's updates of one label) and/or views_batch (batch ids: a range
        # operation); otherwise every view is stale.
        changed = state.execution_options.get("views_changed")
        batches = state.execution_options.get("views_batch")
        warm = state.execution_options.get("views_warm")  # (batch id, first, last): activated
        if warm:
            state.session.info.setdefault("chenpi_warm", []).append(tuple(warm))
        if changed is None and batches is None:
            _note(state.session, everything=True)
        else:
            _note(state.session, codes=changed or (), deps={("b", int(b)) for b in batches or ()})


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    # (Notes are not dropped on a rollback: a savepoint's rollback must not lose the outer
    # transaction's notes, and a spare bump only costs a re-read.)
    _flush_notes(session)
    ranges = session.info.pop("chenpi_warm", None)
    if ranges and _client() is not None:  # after the bumps: the warmed views carry them
        from . import warming

        for batch_id, first, last in ranges:
            warming.enqueue(batch_id, first, last)
