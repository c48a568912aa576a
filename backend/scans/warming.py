"""Warming the resolver's label view cache at activation (viewcache): after a commit activates a
range of labels, a job on the `low` queue (in-process in the embedded mode) stores the views of
those labels in Redis for SCAN_VIEW_WARM_TTL seconds, so a consumer's first scan of a newly
activated label reads no database.

A warmed entry is tagged exactly as a reader tags one: the generation counters (global, code,
batch, operator, lot) are read *before* the database is, so a commit racing the job leaves
entries that never match. The batch, its operator and the lots of the range are learnt by a first
read; a label whose lot is not among them (changed in between) is left for the resolver.
"""
from __future__ import annotations

import logging
import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import viewcache

log = logging.getLogger("chenpi.scans.warming")
CHUNK = 2000  # labels per database read and Redis pipeline


def warm_ttl() -> int:
    from ..config import setting

    return int(setting("SCAN_VIEW_WARM_TTL"))


def _values(session: Session, batch_id: int, first: int, last: int) -> dict[str, tuple]:
    """code -> the resolver's value (label view, reported by inspectors, the batch's GTIN)."""
    from ..fieldwork.service import suspicious_codes
    from ..labels.models import Label, LabelBatch
    from ..labels.service.lookup import label_view, view_select

    rows = session.execute(view_select().add_columns(LabelBatch.gtin)
                           .where(Label.batch_id == batch_id, Label.serial.between(first, last))).all()
    reported = suspicious_codes(session, [row[1] for row in rows])
    return {row[1]: (label_view(row), row[1] in reported, row[-1]) for row in rows}


def warm(session: Session, r, batch_id: int, first: int, last: int, ttl: int | None = None) -> int:
    """Store the current views of serials first…last of a batch for `ttl` seconds; returns how
    many were stored."""
    from ..labels.models import Label, LabelBatch

    ttl = ttl or warm_ttl()
    stored = 0
    for a in range(first, last + 1, CHUNK):
        b = min(a + CHUNK - 1, last)
        deps = session.execute(
            select(LabelBatch.operator_id, func.coalesce(Label.lot_id, LabelBatch.lot_id)).distinct()
            .join(LabelBatch, LabelBatch.id == Label.batch_id)
            .where(Label.batch_id == batch_id, Label.serial.between(a, b))).all()
        codes = list(session.scalars(select(Label.code).where(Label.batch_id == batch_id, Label.serial.between(a, b))))
        if not codes:
            continue
        operator_id = deps[0][0]
        lots = sorted({lot for _, lot in deps if lot is not None})
        # the counters, before the database is read again (and the codes' counters kept alive
        # at least as long as the entries tagged with them)
        p = r.pipeline(transaction=False)
        p.get(viewcache.GEN)
        p.get(viewcache.dep_key("b", batch_id))
        p.get(viewcache.dep_key("o", operator_id))
        for lot in lots:
            p.get(viewcache.dep_key("l", lot))
        for code in codes:
            p.get(viewcache.gen_key(code))
        gen_ttl = viewcache.gen_ttl()
        for code in codes:
            p.expire(viewcache.gen_key(code), gen_ttl)
        got = p.execute()
        g, gb, go = got[:3]
        lot_gens = dict(zip(lots, got[3:3 + len(lots)]))
        code_gens = dict(zip(codes, got[3 + len(lots):3 + len(lots) + len(codes)]))
        values = _values(session, batch_id, a, b)
        p = r.pipeline(transaction=False)
        for code, value in values.items():
            view = value[0]
            if code not in code_gens or view.operator_id != operator_id or (
                    view.lot_id is not None and view.lot_id not in lot_gens):
                continue  # changed since the first read: the resolver reads it itself
            deps_ = viewcache._deps_of(value)
            head = f"{int(g or 0)}.{int(code_gens[code] or 0)}"
            tag = viewcache.tag(head, deps_, (gb, go, lot_gens.get(view.lot_id)))
            p.set(viewcache.view_key(code), viewcache.entry(tag, value), ex=ttl)
            stored += 1
        p.execute()
    return stored


def enqueue(batch_id: int, first: int, last: int) -> None:
    """Hand the warming of a committed activation to the `low` queue (run at once in-process in
    the embedded mode). A failure only costs the first scans a database read each."""
    from ..extensions import redis

    try:
        redis.queue("low").enqueue("backend.scans.warming.warm_job", batch_id, first, last, job_timeout=1800,
                                   result_ttl=600, failure_ttl=86400,
                                   description=f"warm label views of batch {batch_id} {first}-{last}")
    except Exception as err:  # noqa: BLE001 - never fail the activation that was committed
        log.warning("label views of batch %s %s-%s not warmed: %s", batch_id, first, last, err)


def warm_job(batch_id: int, first: int, last: int) -> int:
    """RQ entry point. Its own session (in-process it runs right after the activation's commit,
    when that session may emit no SQL), on the bind of the app's session."""
    from ..extensions import db, redis

    started = time.perf_counter()
    with Session(bind=db.session.get_bind(), join_transaction_mode="create_savepoint") as session:
        n = warm(session, redis.client, batch_id, first, last)
        session.rollback()
    log.info("batch %s: %d label views of %s-%s warmed in %.2f s", batch_id, n, first, last,
             time.perf_counter() - started)
    return n
