"""The resolver's label view, cached in Redis: what one scan reads from the database (the label,
its batch, operator and lot, whether inspectors reported the code, the batch's GTIN), kept for
TTL_S seconds under `scan:{CODE}:view` and shared by every API process.

Correctness first: a cached view is used only while it is current. Each entry is tagged with two
generation counters read *before* the database was: the global one (`scans:{views}:gen`) and the
code's own (`scan:{CODE}:gen`). Every commit that wrote one of the tables a view is made of bumps
them (SQLAlchemy session events below, for every session of the process: the API's, the CLI's,
the workers'): the code's counter when the ORM knows which label changed (or the statement says
so: execution option `views_changed`, see _do_orm_execute), the global one for anything else (a
bulk UPDATE of labels, a batch, an operator, a lot, an inspector's finding). A
reader compares the tag with the counters it reads in the same round trip; an entry written by a
reader that raced a commit carries the old tag and is never used. So once a change is committed
(and its bump is done, right after the commit), no scan sees the old view. If Redis is down at
that moment the bump is lost; the resolver does not use the cache while Redis is down either, and
entries expire after TTL_S, which bounds what a restarted Redis (with AOF) could still hold.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
from datetime import datetime

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)

TTL_S = 60  # a cached view lives this long at most
GEN_TTL_S = 86_400  # a code's generation counter outlives every view tagged with it
GEN = "scans:{views}:gen"
# The tables a view is read from (labels.service.lookup, fieldwork's suspicious codes).
WATCHED = frozenset({"labels", "label_batches", "operators", "chain_lots",
                     "fieldwork_finding_codes", "fieldwork_findings", "fieldwork_checkins"})
_TEXT_WRITE = re.compile(r"\b(insert\s+into|update|delete\s+from)\s+\"?(\w+)", re.IGNORECASE)


def view_key(code: str) -> str:
    return f"scan:{{{code}}}:view"


def gen_key(code: str) -> str:
    return f"scan:{{{code}}}:gen"


# --- reading ------------------------------------------------------------------------------------------
def _encode(value: tuple) -> str:
    def item(x):
        if dataclasses.is_dataclass(x):
            return {"view": {f.name: (v.isoformat() if isinstance(v, datetime) else v)
                             for f in dataclasses.fields(x) for v in [getattr(x, f.name)]}}
        return {"v": x}

    return json.dumps([item(x) for x in value], ensure_ascii=False, separators=(",", ":"))


def _decode(raw: str) -> tuple:
    from ..labels.service.lookup import LabelView

    out = []
    for x in json.loads(raw):
        if "view" in x:
            values = x["view"]
            for f in dataclasses.fields(LabelView):
                if "datetime" in str(f.type) and isinstance(values.get(f.name), str):
                    values[f.name] = datetime.fromisoformat(values[f.name])
            out.append(LabelView(**values))
        else:
            out.append(x["v"])
    return tuple(out)


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def keys(code: str) -> list[str]:
    """What `through` reads: a caller may fetch them in a round trip of its own (the rate limit)."""
    return [GEN, gen_key(code), view_key(code)]


def through(r, code: str, read, fetched: list | None = None):
    """`read()` (the database), or the cached copy of what it answered for `code` while no write
    to the view's tables has been committed since. Without Redis: `read()`. `fetched`: the
    values of keys(code), when the caller already read them."""
    value, store = lookup(r, code, read, fetched)
    if store is not None:
        try:
            r.set(store[0], store[1], ex=store[2])
        except REDIS_DOWN:
            pass
    return value


def lookup(r, code: str, read, fetched: list | None = None):
    """As `through`, but a view read from the database is not stored: (value, store), store being
    (key, tagged value, TTL) for the caller to SET in a round trip of its own (the scan's count
    script does), or None."""
    if r is None:
        return read(), None
    if fetched is None:
        try:
            p = r.pipeline(transaction=False)
            for k in keys(code):
                p.get(k)
            fetched = p.execute()
        except REDIS_DOWN:
            return read(), None
    g, c, cached = fetched
    tag = f"{int(g or 0)}.{int(c or 0)}"
    if cached is not None:
        stored_tag, _, body = _s(cached).partition("\n")
        if stored_tag == tag:
            try:
                return _decode(body), None
            except (ValueError, TypeError, KeyError) as err:  # a view of an older shape: read again
                log.info("label view cache: dropping an unreadable entry for %s (%s)", code, err)
    value = read()
    return value, (view_key(code), f"{tag}\n{_encode(value)}", TTL_S)


# --- invalidation -------------------------------------------------------------------------------------
def bump(r, codes: set[str], everything: bool) -> None:
    """Make cached views stale: every view (`everything`), or those of `codes`."""
    p = r.pipeline(transaction=False)
    if everything:
        p.incr(GEN)
    else:
        for code in codes:
            p.incr(gen_key(code))
            p.expire(gen_key(code), GEN_TTL_S)
    p.execute()


def _note(session: Session, codes=(), everything: bool = False) -> None:
    info = session.info.setdefault("chenpi_views", {"codes": set(), "all": False})
    info["codes"].update(codes)
    info["all"] = info["all"] or everything


def _client():
    from flask import current_app, has_app_context

    if not has_app_context() or "chenpi_redis" not in current_app.extensions:
        return None
    return current_app.extensions["chenpi_redis"]["client"]


def _flush_notes(session: Session) -> None:
    info = session.info.pop("chenpi_views", None)
    if not info or not (info["codes"] or info["all"]):
        return
    r = _client()
    if r is None:
        return
    try:
        bump(r, info["codes"], info["all"])
    except REDIS_DOWN as err:
        log.warning("label view cache: could not mark views stale (Redis down: %s); they expire within %d s",
                    err, TTL_S)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _ctx) -> None:
    codes, everything = set(), False
    for obj in (*session.new, *session.dirty, *session.deleted):
        table = getattr(obj, "__tablename__", None)
        if table not in WATCHED:
            continue
        code = obj.__dict__.get("code") if table == "labels" else None
        if code:
            codes.add(code)
        else:
            everything = True
    if len(codes) > 100:  # (a flush of many labels: one global bump instead of many)
        codes, everything = set(), True
    if codes or everything:
        _note(session, codes, everything)


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
        # A statement may say whose views it changes (execution option views_changed: codes,
        # () for none, e.g. the PIN check's updates of one label); otherwise every view is stale.
        changed = state.execution_options.get("views_changed")
        if changed is None:
            _note(state.session, everything=True)
        elif changed:
            _note(state.session, codes=changed)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    # (Notes are not dropped on a rollback: a savepoint's rollback must not lose the outer
    # transaction's notes, and a spare bump only costs a re-read.)
    _flush_notes(session)
