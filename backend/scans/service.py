"""Consumer scans: resolve a code for the public page, record the scan (Redis stream, or the
database when Redis is down), drain the stream into `scan_events`, fraud alerts, stats, and the
rebuild of every counter from the database.

Plain functions over a session and a Redis client; no Flask request objects.
"""
from __future__ import annotations

import functools
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Container
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from sqlalchemy import Text, any_, bindparam, case, distinct, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session, scoped_session

from .. import alert_review
from ..chain import rules as chain_rules
from ..errors import AppError
from ..http import Actor
from ..labels import codes
from ..pagination import paginate
from ..timeutil import SHANGHAI, as_utc, utcnow
from . import counters, dump, regions, rules, script, viewcache
from .models import ScanAlert, ScanEvent
from .settings import Thresholds, thresholds

log = logging.getLogger(__name__)
REDIS_DOWN = viewcache.REDIS_DOWN  # what counts as Redis being down, defined once for the scans domain
TRADEMARK = "新会陈皮 地理标志证明商标"


# --- the labels domain, behind one function each ---------------------------------------------------
def find_label(session: Session, code: str):
    """The label with this canonical code (labels.service.lookup_label), or None."""
    from ..labels.service import lookup_label

    return lookup_label(session, code)


_SCAN_LOOKUP = None


def _scan_lookup_stmt():
    """The resolver's one query: lookup_label's (labels ⋈ batches ⋈ operators ⟕ lots on the
    unique code) plus one column, EXISTS over fieldwork's suspicious_codes statement (an
    inspector reported the code). Both statements are the domains' own, built once; composing
    them saves the scan a round trip to the database. A last column, the batch's GTIN, serves
    the GS1 Digital Link form."""
    global _SCAN_LOOKUP
    if _SCAN_LOOKUP is None:
        from ..fieldwork.service import _suspicious_codes_stmt
        from ..labels.models import LabelBatch
        from ..labels.service.lookup import _lookup_stmt

        _SCAN_LOOKUP = _lookup_stmt().add_columns(_suspicious_codes_stmt().exists().label("reported"),
                                                  LabelBatch.gtin)
    return _SCAN_LOOKUP


def find_label_reported(session, code: str) -> tuple[object | None, bool, str | None]:
    """(the label or None, whether inspectors reported the code, its batch's GTIN): lookup_label
    and fieldwork's suspicious_codes in one query. `code` is canonical (upper case)."""
    from ..labels.service.lookup import label_view

    row = session.execute(_scan_lookup_stmt(), {"code": code, "codes": [code]}).first()
    if row is None:
        return None, False, None
    return label_view(row), bool(row[-2]), row[-1]


def read_label(session: Session, code: str) -> tuple[object | None, bool, str | None]:
    """find_label_reported on the resolver's reader (see _reader)."""
    with _reader(session) as reader:
        return find_label_reported(reader, code)


def known_keys(config=None) -> Container[str]:
    """Key ids codes may carry (LABEL_KEYS; of the running app's config unless given)."""
    from ..labels.service.keys import all_keys

    return all_keys(config)


def _reader(session: Session):
    """Where the resolver's read (the label and the inspectors' reports, one query) runs.

    On PostgreSQL, when the session has not begun a transaction and is bound to the engine (not
    to a connection, as in the tests), it runs on a pooled connection in autocommit mode: a
    single-statement read needs no BEGIN, and a scan that writes nothing to the database (the
    event goes to the Redis stream) then leaves the session empty, so the request's commit sends
    nothing. Otherwise (SQLite, a session already in a transaction) it runs on the session.
    """
    plain = session() if isinstance(session, scoped_session) else session
    bind = plain.get_bind()
    if isinstance(bind, Engine) and bind.dialect.name == "postgresql" and not plain.in_transaction():
        conn = bind.connect()  # its isolation level is reset when it goes back to the pool
        return conn.execution_options(isolation_level="AUTOCOMMIT")
    return nullcontext(session)


# --- origin (chain trace), cached per lot ------------------------------------------------------------
_RESOLVER = Actor(user_id=0, name="resolver", role="inspector")
_ORIGIN_TTL_S = 300
_origin_cache: dict[int, tuple[float, dict]] = {}
_origin_lock = threading.Lock()


def lot_origin(session: Session, lot_id: int | None) -> dict:
    """Towns and villages the lot's fruit came from (largest share first) and its harvest date.
    The trace is append-only history, so it is cached in-process for a few minutes."""
    if lot_id is None:
        return {}
    now = time.monotonic()
    hit = _origin_cache.get(lot_id)
    if hit and hit[0] > now:
        return hit[1]
    from ..chain.service import trace_lot

    try:
        doc = trace_lot(session, _RESOLVER, lot_id)
    except AppError:
        doc = None
    origin = {} if doc is None else {
        "harvest_date": doc.get("harvest_date"),
        "towns": [t["name"] for t in doc.get("towns", [])],
        "villages": [v["name"] for v in doc.get("villages", [])],
        "town_id": doc["towns"][0]["town_id"] if doc.get("towns") else None,
    }
    with _origin_lock:
        if len(_origin_cache) > 10_000:
            _origin_cache.clear()
        _origin_cache[lot_id] = (now + _ORIGIN_TTL_S, origin)
    return origin


def _origin_store(lot_id: int, origin: dict) -> tuple[str, str, int]:
    """(key, value, TTL) of the lot's origin for Redis, where script.SCAN finds it: it expires
    when this process's copy does, so no copy is older than _ORIGIN_TTL_S."""
    hit = _origin_cache.get(lot_id)
    ttl = int(hit[0] - time.monotonic()) if hit else _ORIGIN_TTL_S
    return viewcache.origin_key(lot_id), viewcache.origin_entry(origin), max(ttl, 1)


def age_of(harvest_date: str | None, harvest_year: int | None, on: date | None = None) -> dict | None:
    """The age on `on` (today)."""
    on = on or chain_rules.today()
    if harvest_date:
        a = chain_rules.age(date.fromisoformat(harvest_date), on)
        return {"years": a["years"], "grade": a["grade"], "text": f"{a['years']} 年" if a["years"] else f"{a['days']} 天"}
    if harvest_year:
        years = max(on.year - harvest_year, 0)
        return {"years": years, "grade": "陈皮" if years >= chain_rules.CHENPI_MIN_YEARS else "柑皮", "text": f"约 {years} 年"}
    return None


# --- the scan ------------------------------------------------------------------------------------
@dataclass
class Client:
    """Who scans: keyed hashes only (no raw addresses or fingerprints are stored)."""

    client: str  # hash of the client address
    device: str  # hash of the device cookie, or of address + user agent + language
    lat: float | None = None
    lon: float | None = None
    region: str | None = None  # adcode of the region the trusted proxy header named (regions.py)


def place(lat: float | None, lon: float | None, region: str | None) -> tuple | None:
    """Where a scan happened for the impossible-travel rule: (lat, lon, by_region): the phone's
    location, else its region's point, else None."""
    if lat is not None and lon is not None:
        return (lat, lon, False)
    if region:
        found = regions.by_code(region)
        if found is not None:
            return (found.lat, found.lon, True)
    return None


@dataclass
class Result:
    verdict: str
    code: str | None = None
    label: object | None = None
    origin: dict = field(default_factory=dict)
    count: int = 0
    first_at: datetime | None = None
    devices: int = 0
    reasons: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    recorded: str = "stream"  # stream, direct, none
    problem: str | None = None  # for check_code: what is wrong

    label_json: str | None = None  # the label member's JSON, joined from cached parts (scan_once)
    view_json: str | None = None  # the cached view, not decoded yet (see `view`)
    read: Callable | None = None  # the database's (label, reported, gtin), should view_json not decode

    def view(self):
        """The label view: `label`, decoded from `view_json` on first use (a JSON answer joined
        from the stored parts never needs it); from the database if it does not decode."""
        if self.view_json is not None:
            raw, self.view_json = self.view_json, None
            try:
                self.label = viewcache.decode_view(raw)
            except (ValueError, TypeError, KeyError, IndexError) as err:
                log.error("label view cache: a current entry of %s does not decode: %s", self.code, err)
                self.label = self.read()[0] if self.read else None
        return self.label

    def to_dict(self, with_label: bool = True) -> dict:
        """The answer (ScanResultOut); `with_label=False` leaves the label member out, for
        dump.answer_json to join `label_json` in."""
        out = {
            "verdict": self.verdict,
            "genuine": self.verdict in ("genuine", "repeat"),
            "title": rules.TITLES[self.verdict],
            "warning": rules.warning(self.verdict, self.count, self.first_at, self.reasons),
            "code": self.code,
            "code_display": f"{self.code[0:4]}-{self.code[4:8]}-{self.code[8:]}" if self.code else None,
            "trademark": TRADEMARK if self.label_json is not None or self.view() is not None else None,
            "scan": None if self.code is None or self.verdict == "check_code" else {
                "count": self.count, "first_at": self.first_at, "devices": self.devices},
            "alerts": self.alerts,
            "problem": self.problem,
        }
        if with_label:
            lab = self.view()
            out["label"] = None if lab is None else {
                **dump.view_fields(lab), **dump.origin_fields(self.origin),
                **dump.age_fields(age_of(self.origin.get("harvest_date"), lab.harvest_year))}
        return out


def check_code(text: str, keys: Container[str] | None = None) -> str | Result:
    """The canonical code, or the check-the-code result (no database, no Redis). `keys`: the key
    ids codes may carry (known_keys(), the default, needs an app context)."""
    try:
        return codes.parse(text, known_keys() if keys is None else keys).code
    except codes.CodeError as err:
        return Result("check_code", problem=err.message)


def is_issued(session: Session, r, code: str, gtin: str | None = None, views: list | None = None) -> bool:
    """Whether `code` (parsed, check_code) names an issued label, of a batch with `gtin` when
    given, from the label view cache when current (`views`: as `resolve` takes them), else the
    database (and the view is cached). Counts nothing: the resolver's answer to HEAD."""
    label, _reported, batch_gtin = viewcache.through(r, code, lambda: read_label(session, code), views)
    return label is not None and (gtin is None or batch_gtin == gtin)


def resolve(session: Session, r, code: str, who: Client, t: Thresholds | None = None,
            gtin: str | None = None, views: list | None = None) -> Result:
    """Look the code up, count the scan (Redis; the database when Redis is down), apply the rules.

    With `gtin` (the GS1 Digital Link form, 14 digits) the label must belong to a batch of that
    GTIN; another product's GTIN answers as a never-issued code and counts as a counterfeit attempt
    (per client and pattern), never on the code's own counters (event "wrong_gtin")."""
    t = t or thresholds()

    def read():
        return read_label(session, code)

    # Redis's copy while it is current (`views`: viewcache.fetched(...) of the caller's round trip);
    # a view read from the database is stored by the count below, in the same round trip
    (label, reported, batch_gtin), store = viewcache.lookup(r, code, read, views)
    wrong_gtin = None
    if gtin is not None and label is not None and batch_gtin != gtin:
        label, reported, wrong_gtin = None, False, gtin
    origin = lot_origin(session, label.lot_id) if label is not None else {}
    event = _event(code, who, utcnow())
    event.update(label_id=label.label_id if label else None, operator_id=label.operator_id if label else None,
                 town_id=origin.get("town_id"), wrong_gtin=wrong_gtin)
    event["view"] = store  # (key, value, ttl) or None; not part of the stream's payload
    if label is not None and label.lot_id is not None and wrong_gtin is None and r is not None and script.usable(r):
        event["origin_store"] = _origin_store(label.lot_id, origin)  # where script.SCAN (scan_once) reads it
    state = label.state if label else None
    try:
        if r is None:
            raise RedisConnectionError("no redis")
        if wrong_gtin is not None:
            return _resolve_counterfeit(r, event, t)
        return _resolve_redis(r, event, label, origin, state, reported, t)
    except REDIS_DOWN as err:
        log.warning("scan recorded straight to the database, Redis is unavailable: %s", err)
        return _resolve_direct(session, event, label, origin, state, reported, t)


def _event(code: str, who: Client, at: datetime) -> dict:
    """A scan's event before its label is known: id, time, who and where."""
    pos = place(who.lat, who.lon, who.region)
    return {"id": secrets.token_hex(16), "code": code, "at": at, "day": at.astimezone(SHANGHAI).date().isoformat(),
            "label_id": None, "operator_id": None, "town_id": None, "device": who.device, "client": who.client,
            "lat": who.lat, "lon": who.lon, "region": who.region, "wrong_gtin": None,
            "pos": pos, "last": rules.located(at.timestamp(), pos)}


def scan_once(r, code: str, who: Client, t: Thresholds, read) -> tuple[str, object]:
    """The common scan in one Redis round trip (script.SCAN; a single Redis only, script.usable):
    the rate limit, the code's cached label view if it is current, its lot's cached origin, and
    the count. Answers ("limited", seconds to wait), ("done", Result), or ("miss", fetched) when
    the view or the origin must come from the database: then only the rate limit was counted, and
    `resolve(..., views=fetched)` goes on (and stores both for the next scan). `read()`: the
    database's (label, reported, gtin), should a counted entry not decode (viewcache._shape makes
    that a release's bug)."""
    at = utcnow()
    now = at.timestamp()
    event = _event(code, who, at)
    prefix = json.dumps(_event_fields(event))[:-1]  # the script appends the view's fields
    reply = script.run_scan(r, event=event, prefix=prefix, rate_key=counters.rate_key(who.client, int(now // 60)),
                            t=t, view_keys=viewcache.keys(code))
    kind = reply[0]
    if kind == b"limited":
        return "limited", counters.retry_after(now)
    if kind == b"miss":
        return "miss", list(reply[1:])
    raw, origin_raw = reply[1], reply[2]
    origin, origin_part = viewcache.split_origin(origin_raw) if origin_raw else ({}, _NO_ORIGIN_PART)
    try:  # the rules need the event's view fields; the view itself only a page (Result.view)
        _tag, part, answer, view_json = viewcache.split_entry(raw)
        seen = json.loads("{" + part + "}")
        label, state, reported = None, seen["state"], bool(seen["reported"])
        runs = json.loads(answer) if answer else None
    except (ValueError, TypeError, KeyError, IndexError) as err:  # (counted already: answer from the database)
        log.error("label view cache: a current entry of %s does not decode: %s", code, err)
        (label, reported, _gtin), runs, view_json = read(), None, None
        state = label.state if label else None
    result = _evaluate(event, label, origin, state, reported, t, counters.counted(reply[3:]))
    result.view_json, result.read = view_json, read
    if runs:
        result.label_json = dump.label_member(
            runs, origin_part, _age_part(origin.get("harvest_date"), runs[2], chain_rules.today()))
    return "done", result


_NO_ORIGIN_PART = json.loads(dump.origin_part({}))  # a label without a lot


@functools.lru_cache(maxsize=1024)
def _age_part(harvest_date: str | None, harvest_year: int | None, today) -> str:
    """dump.age_part of age_of(...) on `today` (the cache's key: ages change by the day)."""
    return dump.age_part(age_of(harvest_date, harvest_year, today))


def _resolve_redis(r, event, label, origin, state, reported, t) -> Result:
    counted = counters.count_scan(r, event=event, payload=json.dumps(_payload(event, state, reported)),
                                  issued=label is not None, fake_window_s=t.fake_window_s)
    return _evaluate(event, label, origin, state, reported, t, counted)


def _evaluate(event, label, origin, state, reported, t, counted: counters.Counted) -> Result:
    """The rules over a counted scan, and its answer."""
    travel = rules.travel(counted.previous, event["at"], event["pos"], t)
    found = rules.hits(code=event["code"], client=event["client"], state=state, count=counted.count,
                       devices=counted.devices, reported=reported, client_fakes=counted.client_fakes,
                       travel_evidence=travel, t=t)
    return _result(event, label, origin, state, reported, t, counted.count,
                   counters.first_time(counted.first) or event["at"], counted.devices, counted.flagged, found)


def _resolve_counterfeit(r, event, t) -> Result:
    """A genuine code with another product's GTIN: 查无此码, counted as a counterfeit attempt only;
    the answer is the one a never-issued code gets on its first scan (it says nothing of the code)."""
    client_fakes = counters.count_counterfeit(r, event=event, payload=json.dumps(_payload(event, None, False)),
                                              fake_window_s=t.fake_window_s)
    found = rules.hits(code=event["code"], client=event["client"], state=None, count=1, devices=1, reported=False,
                       client_fakes=client_fakes, travel_evidence=None, t=t)
    return _result(event, None, {}, None, False, t, 1, event["at"], 1, False, found)


def _result(event, label, origin, state, reported, t, count, first_at, devices, flagged, found) -> Result:
    reasons = [rules.REASONS[h.rule] for h in found if h.rule in rules.REASONS]
    if flagged and not reasons and state not in rules.BAD_STATES and state not in rules.INACTIVE_STATES:
        reasons = ["此码已有未处理的异常查询记录"]
    v = rules.verdict(state, count, t.warn_after, reported, bool(reasons))
    return Result(v, code=event["code"], label=label, origin=origin, count=count, first_at=first_at,
                  devices=devices, reasons=reasons, alerts=sorted({h.rule for h in found}))


def _payload(event: dict, state: str | None, reported: bool) -> dict:
    """The stream entry: what the drain needs to record the scan and apply the rules again."""
    return {**_event_fields(event), "label_id": event["label_id"], "operator_id": event["operator_id"],
            "town_id": event["town_id"], "state": state, "reported": reported}


def _event_fields(event: dict) -> dict:
    """The stream entry's fields known before the label is (script.SCAN appends the others from
    the cached view: viewcache.event_part, and the town)."""
    return {"id": event["id"], "at": event["at"].isoformat(), "code": event["code"], "device": event["device"],
            "client": event["client"], "lat": event["lat"], "lon": event["lon"], "region": event["region"],
            "wrong_gtin": event.get("wrong_gtin")}


def _resolve_direct(session: Session, event, label, origin, state, reported, t) -> Result:
    """Redis is down: record the scan in the database now and answer from it."""
    outcome = record_events(session, [_payload(event, state, reported)], "direct", t)
    if not outcome:  # the same event id was already there (cannot happen for a fresh id)
        raise AppError("request.conflict")
    o = outcome[0]
    res = _result(event, label, origin, state, reported, t, o.count, o.first_at, o.devices, o.flagged, o.hits)
    res.recorded = "direct"
    return res


# --- recording events (the drain, and the direct path) ------------------------------------------------
@dataclass
class Outcome:
    event_id: str
    code: str
    verdict: str
    count: int
    first_at: datetime
    devices: int
    flagged: bool
    hits: list


def record_events(session: Session, payloads: list[dict], source: str, t: Thresholds | None = None) -> list[Outcome]:
    """Insert scan events (idempotent by event id) in stream order, applying the rules against
    the database; upsert the alerts of the events actually inserted. Flushes; the caller commits.

    Counts come from the database plus the batch so far, so a replayed or reordered batch gives
    the same alerts as the original; events already recorded are skipped without a trace.
    """
    t = t or thresholds()
    if not payloads:
        return []
    postgres = session.get_bind().dialect.name == "postgresql"
    among = _among_array if postgres else _among_list
    if postgres:
        # The driver prepares these statements after a few batches, and PostgreSQL's generic plan for
        # `= ANY($1)` guesses a handful of elements: measured, it cost the database 0.4 ms per event
        # against 0.08 with a plan for the batch's arrays (bench/bench_scans.py).
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    ids = [p["id"] for p in payloads]
    seen = set(session.scalars(select(ScanEvent.event_id).where(among(ScanEvent.event_id, ids))))
    fresh, batch_ids = [], set()
    for p in payloads:
        if p["id"] not in seen and p["id"] not in batch_ids:
            batch_ids.add(p["id"])
            fresh.append(p)
    if not fresh:
        return []
    code_list = sorted({p["code"] for p in fresh})
    # the code's own scans: a scan with another product's GTIN (wrong_gtin) is none of them
    own = among(ScanEvent.code, code_list) & ScanEvent.wrong_gtin.is_(None)
    located = ScanEvent.lat.is_not(None) | ScanEvent.region.is_not(None)
    counts, devices, with_place = {}, {}, []
    batch_devices = sorted({p["device"] for p in fresh})
    aggregates = [ScanEvent.code, func.count(), func.min(ScanEvent.scanned_at),
                  func.count(func.distinct(ScanEvent.device)), func.count(case((located, 1)))]
    if postgres:  # which of the batch's devices each code has seen, in the same pass
        aggregates.append(func.array_agg(distinct(ScanEvent.device)).filter(among(ScanEvent.device, batch_devices)))
    known_devices = set()
    for c, n, first, n_devices, n_located, *seen_devices in session.execute(
            select(*aggregates).where(own).group_by(ScanEvent.code)):
        counts[c], devices[c] = [n, as_utc(first)], n_devices
        if n_located:
            with_place.append(c)
        if seen_devices:
            known_devices.update((c, d) for d in seen_devices[0] or ())
    if not postgres:
        known_devices = {(c, d) for c, d in session.execute(  # (plain tuples: a Row compares slowly)
            select(ScanEvent.code, ScanEvent.device).distinct().where(own, among(ScanEvent.device, batch_devices)))}
    last_loc = {}
    if with_place:  # (the last place of the codes that have one)
        latest = (select(ScanEvent.code, func.max(ScanEvent.scanned_at).label("at"))
                  .where(among(ScanEvent.code, with_place), ScanEvent.wrong_gtin.is_(None), located)
                  .group_by(ScanEvent.code).subquery())
        for c, at, lat, lon, region in session.execute(
                select(ScanEvent.code, ScanEvent.scanned_at, ScanEvent.lat, ScanEvent.lon, ScanEvent.region)
                .join(latest, (latest.c.code == ScanEvent.code) & (latest.c.at == ScanEvent.scanned_at))
                .where(ScanEvent.wrong_gtin.is_(None))):
            last_loc[c] = rules.located(as_utc(at).timestamp(), place(lat, lon, region)) or last_loc.get(c)
    flagged = set(session.scalars(select(ScanAlert.code).where(among(ScanAlert.code, code_list),
                                                                ScanAlert.state != "resolved")))
    fake_clients = sorted({p["client"] for p in fresh if p["label_id"] is None})
    fakes: dict[str, list[datetime]] = {}
    if fake_clients:
        since = min(datetime.fromisoformat(p["at"]) for p in fresh) - timedelta(seconds=t.fake_window_s)
        for client, at in session.execute(select(ScanEvent.client, ScanEvent.scanned_at).where(
                among(ScanEvent.client, fake_clients), ScanEvent.label_id.is_(None), ScanEvent.scanned_at >= since)):
            fakes.setdefault(client, []).append(as_utc(at))

    rows, outcomes = [], []
    for p in fresh:
        at = datetime.fromisoformat(p["at"])
        code = p["code"]
        if p.get("wrong_gtin"):  # a counterfeit attempt with this code: counts nothing of the code's
            n_first, n_devices, travel = [1, at], 1, None
        else:
            n_first = counts.setdefault(code, [0, None])
            n_first[0] += 1
            n_first[1] = min(n_first[1], at) if n_first[1] else at
            if (code, p["device"]) not in known_devices:
                known_devices.add((code, p["device"]))
                devices[code] = devices.get(code, 0) + 1
            n_devices = devices[code]
            pos = place(p["lat"], p["lon"], p.get("region"))
            travel = rules.travel(last_loc.get(code), at, pos, t)
            if pos is not None:
                last_loc[code] = rules.located(at.timestamp(), pos)
        client_fakes = 0
        if p["label_id"] is None:
            window = [x for x in fakes.get(p["client"], []) if x >= at - timedelta(seconds=t.fake_window_s)]
            window.append(at)
            fakes[p["client"]] = window
            client_fakes = len(window)
        found = rules.hits(code=code, client=p["client"], state=p["state"], count=n_first[0], devices=n_devices,
                           reported=p["reported"], client_fakes=client_fakes, travel_evidence=travel, t=t)
        reasons = [h for h in found if h.rule in rules.REASONS]
        was_flagged = code in flagged and not p.get("wrong_gtin")
        verdict_ = rules.verdict(p["state"], n_first[0], t.warn_after, p["reported"], bool(reasons) or was_flagged)
        if found and p["label_id"] is not None:
            flagged.add(code)
        rows.append({"event_id": p["id"], "scanned_at": at, "code": code, "label_id": p["label_id"],
                     "operator_id": p["operator_id"], "town_id": p["town_id"], "verdict": verdict_,
                     "device": p["device"], "client": p["client"], "lat": p["lat"], "lon": p["lon"],
                     "region": p.get("region"), "wrong_gtin": p.get("wrong_gtin"), "source": source,
                     "recorded_at": utcnow()})
        outcomes.append(Outcome(p["id"], code, verdict_, n_first[0], n_first[1], n_devices, was_flagged, found))
    inserted = set(_insert_events(session, rows))
    outcomes = [o for o in outcomes if o.event_id in inserted]
    by_id = {r["event_id"]: r for r in rows}
    upsert_alerts(session, [(by_id[o.event_id], h) for o in outcomes for h in o.hits])
    return outcomes


def _among_list(column, values: list):
    return column.in_(values)


def _among_array(column, values: list):
    """`column = ANY(:array)`: one parameter, so the statement's text is the same for any batch
    (an IN list renders, and the driver parses, a statement of its own for every length)."""
    return column == any_(bindparam(None, values, type_=ARRAY(Text)))


def _insert_events(session: Session, rows: list[dict]) -> list[str]:
    """INSERT … ON CONFLICT (event_id) DO NOTHING RETURNING event_id, in the rows' order."""
    if session.get_bind().dialect.name == "postgresql":
        return _copy_events(session.connection(), rows)
    from sqlalchemy.dialects.sqlite import insert

    stmt = insert(ScanEvent).on_conflict_do_nothing(index_elements=["event_id"]).returning(ScanEvent.event_id)
    out: list[str] = []
    for i in range(0, len(rows), 1000):
        out.extend(session.scalars(stmt, rows[i:i + 1000]).all())
    return out


# PostgreSQL: the batch is COPYed into a temporary table of this connection, then moved with one
# INSERT … SELECT. A multi-row INSERT of 15 parameters a row cost more CPU to build and parse
# (SQLAlchemy, the driver, the server) than all the rest of the drain.
_COLUMNS = ("event_id", "scanned_at", "code", "label_id", "operator_id", "town_id", "verdict", "device", "client",
            "lat", "lon", "region", "wrong_gtin", "source", "recorded_at")
_STAGE = "scan_events_stage"
_COLS = ", ".join(_COLUMNS)
# (re-created when a rolled-back transaction took it; the column types are scan_events', so a
# value too long or not a number is refused by the COPY as it would be by the INSERT)
_STAGE_DDL = (f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS AS "
              f"SELECT 0 AS seq, {_COLS} FROM scan_events WITH NO DATA")
_STAGE_COPY = f"COPY {_STAGE} (seq, {_COLS}) FROM STDIN"
# (emptying the stage in the same statement: a transaction may record more than one batch)
_STAGE_MOVE = (f"WITH moved AS (DELETE FROM {_STAGE} RETURNING *) INSERT INTO scan_events ({_COLS}) "
               f"SELECT {_COLS} FROM moved ORDER BY seq ON CONFLICT (event_id) DO NOTHING RETURNING event_id")


def _copy_events(conn, rows: list[dict]) -> list[str]:
    import psycopg

    conn.exec_driver_sql(_STAGE_DDL)
    try:
        with conn.connection.driver_connection.cursor() as cur, cur.copy(_STAGE_COPY) as copy:
            for i, row in enumerate(rows):
                try:
                    copy.write_row((i, *[row[c] for c in _COLUMNS]))
                except psycopg.ProgrammingError as err:  # a value no column takes (a list, an object)
                    raise psycopg.DataError(str(err)) from err
    except psycopg.Error as err:
        # as SQLAlchemy raises it from an execute: the drain tells a poison event (DataError,
        # IntegrityError) from a lost database (OperationalError) by these classes
        lost = conn.dialect.is_disconnect(err, conn.connection.dbapi_connection, None)
        if lost:
            conn.invalidate(err)
        raise DBAPIError.instance(_STAGE_COPY, None, err, psycopg.Error, connection_invalidated=lost,
                                  dialect=conn.dialect) from err
    return list(conn.exec_driver_sql(_STAGE_MOVE).scalars())


def upsert_alerts(session: Session, hits: list[tuple[dict, rules.Hit]]) -> int:
    """One open alert per (rule, subject): insert it, or add to its count and move last_seen."""
    if not hits:
        return 0
    merged: dict[tuple[str, str], dict] = {}
    for row, h in hits:
        key = (h.rule, h.subject)
        a = merged.get(key)
        if a is None:
            merged[key] = {"rule": h.rule, "subject": h.subject,
                           "code": None if h.subject.startswith("client:") else row["code"],
                           "label_id": row["label_id"], "operator_id": row["operator_id"], "state": "open",
                           "count": 1, "evidence": h.evidence, "first_seen": row["scanned_at"],
                           "last_seen": row["scanned_at"]}
        else:
            a["count"] += 1
            a["evidence"] = h.evidence
            a["last_seen"] = max(a["last_seen"], row["scanned_at"])
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    from sqlalchemy import text

    for values in merged.values():
        stmt = insert(ScanAlert).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["rule", "subject"], index_where=text("state <> 'resolved'"),
            set_={"count": ScanAlert.count + stmt.excluded.count, "evidence": stmt.excluded.evidence,
                  "last_seen": func.max(ScanAlert.last_seen, stmt.excluded.last_seen) if dialect == "sqlite"
                  else func.greatest(ScanAlert.last_seen, stmt.excluded.last_seen)})
        session.execute(stmt)
    return len(merged)


# --- the stream drain --------------------------------------------------------------------------------
def ensure_group(r) -> None:
    try:
        r.xgroup_create(counters.STREAM, counters.GROUP, id="0", mkstream=True)
    except ResponseError as err:
        if "BUSYGROUP" not in str(err):
            raise


# Errors that say "this event can never be recorded as it is" (bad data, a constraint, a value
# too long, a malformed payload): retried alone, then dead-lettered. Anything else (a lost
# connection, a deadlock, a missing table) may pass: the batch stays pending and is retried.
POISON = (IntegrityError, DataError, ValueError, TypeError, KeyError)


def is_poison(err: BaseException) -> bool:
    if isinstance(err, POISON):
        return True
    # a value the driver or a column type refused before the database saw it (not a DBAPI error)
    return (isinstance(err, StatementError) and not isinstance(err, DBAPIError)
            and isinstance(err.orig, (ValueError, TypeError)))


def _error_text(err: BaseException) -> str:
    text_ = str(getattr(err, "orig", None) or err) or type(err).__name__
    return f"{type(err).__name__}: {text_.splitlines()[0][:500]}"


def dead_letter(r, entry_id, fields: dict, error: str, consumer: str) -> None:
    """Move one stream entry to the dead-letter stream (its original fields, the error, when and
    by whom), acknowledge and delete it, and count it: one MULTI, so a retry never moves it twice."""
    eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    kept = {(k.decode() if isinstance(k, bytes) else k): v for k, v in (fields or {}).items()}
    p = r.pipeline(transaction=True)
    p.xadd(counters.DEAD, {**kept, "error": error[:2000], "entry": eid, "failed_at": utcnow().isoformat(),
                           "consumer": consumer})
    p.incr(counters.DEAD + ":n")
    p.xack(counters.STREAM, counters.GROUP, entry_id)
    p.xdel(counters.STREAM, entry_id)
    p.execute()
    log.error("scan event %s moved to the dead-letter stream %s: %s", eid, counters.DEAD, error)


def _record_one_by_one(session: Session, r, items: list, consumer: str, t) -> list[Outcome]:
    """The batch was refused: record its events one at a time (each in its own transaction);
    an event the database still refuses is dead-lettered, the others are committed. A transient
    error propagates (the remaining events stay pending and are retried)."""
    outcomes: list[Outcome] = []
    for entry_id, fields, payload in items:
        try:
            outcomes.extend(record_events(session, [payload], "stream", t))
            session.commit()
        except Exception as err:
            session.rollback()
            if not is_poison(err):
                raise
            dead_letter(r, entry_id, fields, _error_text(err), consumer)
    return outcomes


def drain_once(session: Session, r, consumer: str = "drain-1", count: int = 500, block_ms: int | None = None,
               claim_idle_ms: int = 60_000, t: Thresholds | None = None, own_pending: bool = False) -> int:
    """Read up to `count` entries, record them, commit, then acknowledge and delete them. Returns
    how many entries were handled (recorded now or before, or dead-lettered).

    Read first: with `own_pending`, the entries this consumer read but did not finish (a batch
    that failed on a lost database); then those another consumer left unacknowledged for
    `claim_idle_ms` (XAUTOCLAIM: a drain that died); then new entries.

    An entry the database refuses (a poison event: bad data, a constraint, a value too long) no
    longer blocks the stream: the batch is rolled back and its events recorded one by one, and
    the refused one goes to the dead-letter stream (`chenpi scans dead-letters`). A transient
    error (connection lost, deadlock) propagates and the batch stays pending, never dropped."""
    ensure_group(r)
    entries = []
    if own_pending:
        got = r.xreadgroup(counters.GROUP, consumer, {counters.STREAM: "0"}, count=count)
        entries = got[0][1] if got else []
    if not entries and claim_idle_ms is not None:
        claimed = r.xautoclaim(counters.STREAM, counters.GROUP, consumer, min_idle_time=claim_idle_ms,
                               start_id="0-0", count=count)
        entries = list(claimed[1])
    gone = [e[0] for e in entries if e and not e[1]]  # deleted while pending (Redis < 7 lists them)
    entries = [e for e in entries if e and e[1]]
    if gone:
        r.xack(counters.STREAM, counters.GROUP, *gone)
    if not entries:
        got = r.xreadgroup(counters.GROUP, consumer, {counters.STREAM: ">"}, count=count, block=block_ms)
        entries = got[0][1] if got else []
    if not entries:
        return len(gone)
    items, ids = [], []
    for entry_id, fields in entries:
        raw = fields.get(b"e") or fields.get("e")
        try:
            if raw is None:
                raise ValueError("the entry has no event field 'e'")
            payload = json.loads(raw)
            if not isinstance(payload, dict):
                raise ValueError("not a JSON object")
        except (TypeError, ValueError) as err:
            dead_letter(r, entry_id, fields, f"not a scan event: {err}", consumer)
            continue
        ids.append(entry_id)
        items.append((entry_id, fields, payload))
    try:
        outcomes = record_events(session, [p for _, _, p in items], "stream", t)
        session.commit()
    except Exception as err:
        session.rollback()
        if not is_poison(err):
            raise
        log.warning("scan drain: a batch of %d events was refused (%s); recording them one by one",
                    len(items), _error_text(err))
        outcomes = _record_one_by_one(session, r, items, consumer, t)
    flags = {o.code: o.hits[0].rule for o in outcomes if o.hits and not o.hits[0].subject.startswith("client:")}
    p = r.pipeline(transaction=False)
    for code, rule in flags.items():
        p.set(counters.code_key(code, "flag"), rule)
    if ids:  # (dead-lettered entries are acknowledged already; acknowledging them again is a no-op)
        p.xack(counters.STREAM, counters.GROUP, *ids)
        p.xdel(counters.STREAM, *ids)
    p.execute()
    return len(entries)


def drain_all(session: Session, r, consumer: str = "drain-1", t: Thresholds | None = None) -> int:
    """Drain until the stream is empty (tests, the embedded mode, rebuild-counters)."""
    total = 0
    while True:
        n = drain_once(session, r, consumer, claim_idle_ms=0, t=t)
        if not n:
            return total
        total += n


def pending(r) -> int:
    try:
        return int(r.xlen(counters.STREAM))
    except ResponseError:
        return 0


# --- dead letters: events the database refused --------------------------------------------------------
def _str(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def dead_letters(r) -> dict:
    """How many events wait in the dead-letter stream, and how many were ever moved there."""
    p = r.pipeline(transaction=False)
    p.xlen(counters.DEAD)
    p.get(counters.DEAD + ":n")
    waiting, ever = p.execute()
    return {"waiting": int(waiting or 0), "total": int(ever or 0)}


def list_dead_letters(r, limit: int = 100) -> list[dict]:
    """The oldest `limit` dead letters: id, the original stream entry, when, the error, the event."""
    out = []
    for entry_id, fields in r.xrange(counters.DEAD, count=limit):
        f = {_str(k): _str(v) for k, v in fields.items()}
        out.append({"id": _str(entry_id), "entry": f.get("entry"), "failed_at": f.get("failed_at"),
                    "error": f.get("error"), "event": f.get("e")})
    return out


def replay_dead_letters(r, ids: list[str] | None = None) -> int:
    """Put dead letters (all, or those ids) back on the scan stream, e.g. after the fix for what
    refused them is deployed; a drain records them (once: event ids stay) or dead-letters them again."""
    wanted = set(ids) if ids else None
    moved, start = 0, "-"
    while True:
        batch = r.xrange(counters.DEAD, min=start, count=500)
        if not batch:
            return moved
        for entry_id, fields in batch:
            if wanted is not None and _str(entry_id) not in wanted:
                continue
            original = {k: v for k, v in fields.items() if _str(k) not in ("error", "entry", "failed_at", "consumer")}
            p = r.pipeline(transaction=True)
            p.xadd(counters.STREAM, original or {"e": b""})
            p.xdel(counters.DEAD, entry_id)
            p.execute()
            moved += 1
        start = "(" + _str(batch[-1][0])


def delete_dead_letters(r, ids: list[str]) -> int:
    """Drop dead letters for good (after reading them: they are scans that will never count)."""
    return int(r.xdel(counters.DEAD, *ids)) if ids else 0


# --- rebuilding the counters ------------------------------------------------------------------------
def rebuild_counters(session: Session, r) -> dict:
    """Recompute every counter from scan_events and replace what Redis holds."""
    totals = {"total": 0, "day": {}, "ops": {}, "towns": {}, "fake": {}, "op_days": {}, "codes": {}}
    rows = session.execute(select(ScanEvent.code, ScanEvent.scanned_at, ScanEvent.label_id, ScanEvent.operator_id,
                                  ScanEvent.town_id, ScanEvent.device, ScanEvent.lat, ScanEvent.lon, ScanEvent.region,
                                  ScanEvent.wrong_gtin)
                           .order_by(ScanEvent.scanned_at, ScanEvent.id)).yield_per(5000)
    for code, at, label_id, op, town, device, lat, lon, region, wrong_gtin in rows:
        at = as_utc(at)
        day = at.astimezone(SHANGHAI).date().isoformat()
        totals["total"] += 1
        totals["day"][day] = totals["day"].get(day, 0) + 1
        if wrong_gtin is None:  # (another product's GTIN: a counterfeit attempt, not a scan of the code)
            c = totals["codes"].get(code)
            loc = counters._loc(lat, lon)
            if c is None:
                c = totals["codes"][code] = {"n": 0, "first": f"{at.isoformat()}|{loc}", "devices": set(), "last": None}
            c["n"] += 1
            c["devices"].add(device)
            pos = place(lat, lon, region)
            if pos is not None:
                c["last"] = rules.located(at.timestamp(), pos)
        if label_id is not None:
            totals["ops"][op] = totals["ops"].get(op, 0) + 1
            od = totals["op_days"].setdefault(op, {})
            od[day] = od.get(day, 0) + 1
            if town:
                totals["towns"][town] = totals["towns"].get(town, 0) + 1
        else:
            f = totals["fake"]
            for k in ("total", "k:" + code[0], "p:" + counters.fake_pattern(code)):
                f[k] = f.get(k, 0) + 1
    for code, rule in session.execute(select(ScanAlert.code, ScanAlert.rule).where(
            ScanAlert.state != "resolved", ScanAlert.code.is_not(None))):
        if code in totals["codes"]:
            totals["codes"][code]["flag"] = rule
    for c in totals["codes"].values():
        c["devices"] = sorted(c["devices"])
    counters.delete_all(r)
    counters.write_rebuilt(r, totals)
    return {"events": totals["total"], "codes": len(totals["codes"])}


# --- alerts -------------------------------------------------------------------------------------------
def _alert_scope(actor: Actor):
    stmt = select(ScanAlert)
    if actor.role == "operator":
        stmt = stmt.where(ScanAlert.operator_id == actor.operator_id)
    return stmt


def list_alerts(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = _alert_scope(actor)
    if filters.get("state"):
        stmt = stmt.where(ScanAlert.state == filters["state"])
    if filters.get("rule"):
        stmt = stmt.where(ScanAlert.rule == filters["rule"])
    if filters.get("code"):
        stmt = stmt.where(ScanAlert.code == filters["code"])
    if filters.get("operator_id"):
        stmt = stmt.where(ScanAlert.operator_id == filters["operator_id"])
    return paginate(session, stmt.order_by(ScanAlert.last_seen.desc(), ScanAlert.id.desc()), page, page_size)


def get_alert(session: Session, actor: Actor, alert_id: int, lock: bool = False) -> ScanAlert:
    """The alert, if the actor sees it; `lock`: its row locked (a review's change, against a
    concurrent one: a resolved alert never reopens, nor is it resolved twice)."""
    stmt = _alert_scope(actor).where(ScanAlert.id == alert_id)
    alert = session.scalar(stmt.with_for_update() if lock else stmt)
    if alert is None:
        raise AppError("scans.alert_not_found", errors={"alert_id": [f"No scan alert with id {alert_id}."]})
    return alert


def acknowledge_alert(session: Session, actor: Actor, alert_id: int, note: str | None) -> ScanAlert:
    alert = get_alert(session, actor, alert_id, lock=True)
    alert_review.acknowledge(alert, actor.user_id, note, "scans.alert_resolved")
    session.flush()
    return alert


def resolve_alert(session: Session, r, actor: Actor, alert_id: int, note: str) -> ScanAlert:
    alert = get_alert(session, actor, alert_id, lock=True)
    alert_review.resolve(alert, actor.user_id, note, "scans.alert_resolved")
    session.flush()
    if alert.code and not session.scalar(select(func.count()).where(
            ScanAlert.code == alert.code, ScanAlert.state != "resolved")):
        try:
            counters.clear_flag(r, alert.code)
        except REDIS_DOWN:
            log.warning("could not clear the page warning of %s; Redis is down (rebuild-counters will)", alert.code)
    return alert


# --- stats -------------------------------------------------------------------------------------------
def stats(r, actor: Actor, operator_id: int | None, days: int) -> dict:
    """Scan counts for the dashboards: admins everything (or one operator), operators their own."""
    if actor.role == "operator":
        operator_id = actor.operator_id
    raw = counters.read_stats(r, operator_id)
    today = datetime.now(SHANGHAI).date()
    series = [{"date": (today - timedelta(days=i)).isoformat(),
               "count": raw["days"].get((today - timedelta(days=i)).isoformat(), 0)} for i in range(days - 1, -1, -1)]
    out = {"operator_id": operator_id, "total": raw["total"], "today": series[-1]["count"] if series else 0,
           "days": series, "pending_events": pending(r)}
    if operator_id is None:
        fake = raw["fake"]
        out.update({
            "by_operator": sorted(({"operator_id": int(k), "count": v} for k, v in raw["operators"].items()),
                                  key=lambda x: -x["count"])[:50],
            "by_town": sorted(({"town_id": int(k), "count": v} for k, v in raw["towns"].items()),
                              key=lambda x: -x["count"]),
            "counterfeit_attempts": {
                "total": fake.get("total", 0),
                "by_key": {k[2:]: v for k, v in fake.items() if k.startswith("k:")},
                "top_patterns": [{"pattern": k[2:], "count": v} for k, v in
                                 sorted(((k, v) for k, v in fake.items() if k.startswith("p:")), key=lambda kv: -kv[1])[:20]],
            },
            "throttled": raw["throttled"],
        })
    return out
