"""Issuing a batch: every label's code made with `codes.make_codes` and written in one bulk insert.

Codes are 45-bit HMAC outputs, so two labels (of any batch) can collide: the first expected near
8 million codes on one key. A colliding label is re-derived with variant 1, 2, … (stored with it).
Issuance is serialized (a transaction-scoped advisory lock on PostgreSQL; SQLite serializes
writers anyway), so "check the new codes against the table, then insert" cannot race another
issuance.

On PostgreSQL the rows go in with one COPY, optimistically: collisions are rare (a 100,000-label
batch on a table of 10 million codes meets one about 3 % of the time), so the new codes are not
looked up first; the COPY runs in a savepoint and the unique index on `code` refuses a batch
that collides, which is then checked code by code (the SQLite path) and written again. Both
paths give the same codes: variant 0 everywhere unless a code is taken. Measured with
bench/bench_issue.py (README): 100,000 labels in 7.2–7.6 s on PostgreSQL on the loaded 2-core
machine, most of it PostgreSQL's per-row foreign-key check.
"""
from __future__ import annotations

import logging
import time

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from .. import codes
from ..models import Label, LabelBatch

log = logging.getLogger(__name__)
_ISSUE_LOCK = 0x6C61626C  # "labl": pg_advisory_xact_lock key for issuance
_CHECK_CHUNK = 5000
_COPY_ROWS = 20000
MAX_VARIANT = 50


def _existing(session: Session, candidates: list[str]) -> set[str]:
    found: set[str] = set()
    postgres = session.get_bind().dialect.name == "postgresql"
    for i in range(0, len(candidates), _CHECK_CHUNK):
        part = candidates[i:i + _CHECK_CHUNK]
        if postgres:  # one array parameter: far cheaper to send and plan than 5,000 IN parameters
            found.update(session.scalars(text("SELECT code FROM labels WHERE code = ANY(:codes)"), {"codes": part}))
        else:
            found.update(session.scalars(select(Label.code).where(Label.code.in_(part))))
    return found


def make_codes(session: Session, batch: LabelBatch, key: bytes,
               first_codes: list[str] | None = None) -> tuple[list[tuple[int, str, int]], int]:
    """(serial, code, variant) for every serial of `batch`, free of collisions; and how many collided.
    `first_codes`: the variant-0 codes when the caller has them already."""
    serials = range(batch.first_serial, batch.last_serial + 1)
    if first_codes is None:
        first_codes = codes.make_codes(batch.key_id, key, batch.id, serials)
    rows = {s: (code, 0) for s, code in zip(serials, first_codes)}
    collided = 0
    pending = list(rows)
    while pending:
        in_table = _existing(session, [rows[s][0] for s in pending])
        waiting = set(pending)
        owner: dict[str, int] = {}  # settled labels keep their codes; then the lowest pending serial
        for s, (code, _) in rows.items():
            if s not in waiting:
                owner[code] = s
        for s in pending:
            owner.setdefault(rows[s][0], s)
        retry = [s for s in pending if rows[s][0] in in_table or owner[rows[s][0]] != s]
        for s in retry:
            variant = rows[s][1] + 1
            if variant > MAX_VARIANT:
                raise RuntimeError(f"label {batch.id}/{s}: {MAX_VARIANT} code variants all collide")
            rows[s] = (codes.make_code(batch.key_id, key, batch.id, s, variant=variant), variant)
        collided += len(retry)
        pending = retry
    return [(s, code, variant) for s, (code, variant) in rows.items()], collided


def _copy(conn, batch_id: int, rows) -> None:
    """COPY the rows into labels (codes and numbers only: no escaping needed), in large chunks."""
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        with cur.copy("COPY labels (batch_id, serial, code, variant, state, print_count) FROM STDIN") as copy:
            for i in range(0, len(rows), _COPY_ROWS):
                copy.write("".join(f"{batch_id}\t{s}\t{c}\t{v}\tissued\t0\n" for s, c, v in rows[i:i + _COPY_ROWS]))


def insert_labels(session: Session, batch: LabelBatch, key: bytes) -> int:
    """Write every label of `batch` (state issued). Returns how many codes needed a variant."""
    import psycopg

    started = time.perf_counter()
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    serials = range(batch.first_serial, batch.last_serial + 1)
    first_codes = codes.make_codes(batch.key_id, key, batch.id, serials)
    if postgres:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ISSUE_LOCK})
        if len(set(first_codes)) == len(first_codes):  # no collision inside the batch: try it as it is
            try:
                with session.begin_nested():  # (the SAVEPOINT is sent when the connection is asked for)
                    _copy(session.connection(), batch.id, [(s, c, 0) for s, c in zip(serials, first_codes)])
                log.info("batch %s: %d labels issued in %.2f s", batch.id, len(first_codes),
                         time.perf_counter() - started)
                return 0
            except psycopg.errors.UniqueViolation:
                log.info("batch %s: a code is taken; checking every code", batch.id)
    rows, collided = make_codes(session, batch, key, first_codes)
    if postgres:
        _copy(conn, batch.id, rows)
    else:
        session.execute(insert(Label), [
            {"batch_id": batch.id, "serial": s, "code": c, "variant": v, "state": "issued", "print_count": 0}
            for s, c, v in rows
        ])
    log.info("batch %s: %d labels issued in %.2f s (%d code collisions re-derived)",
             batch.id, len(rows), time.perf_counter() - started, collided)
    return collided


def issue_batch(session: Session, application, quantity: int, user_id: int, *, config=None) -> LabelBatch:
    """Create the batch of an approved application and its `quantity` labels (serials 1…quantity)."""
    from ...chain.models import Lot
    from .keys import active_key

    key_id, key = active_key(config)
    harvest_year = None
    if application.lot_id is not None:
        lot = session.get(Lot, application.lot_id)
        harvest_year = lot.season if lot is not None else None
    batch = LabelBatch(operator_id=application.operator_id, application_id=application.id,
                       template=application.template, product=application.product, gtin=application.gtin,
                       lot_id=application.lot_id,
                       harvest_year=harvest_year, key_id=key_id, first_serial=1, last_serial=quantity,
                       quantity=quantity, collisions=0, status="issued", created_by=user_id)
    session.add(batch)
    session.flush()
    batch.collisions = insert_labels(session, batch, key)
    return batch
