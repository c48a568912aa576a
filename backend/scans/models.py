"""The scan log and scan alerts.

`scan_events` is the durable record of every consumer scan of a well-formed code: written by the
stream drain (or, when Redis is down, by the request itself), unique by the event id the request
made, so a replay of the stream never records a scan twice. Partition it by month when it grows.
`scan_alerts` holds one open alert per (rule, subject): a code, or a client for the burst rule.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from ..alert_review import ALERT_STATES
from ..extensions import db
from ..timeutil import utcnow

VERDICTS = ("genuine", "repeat", "warn", "inactive", "voided", "lost", "stolen", "unknown")
RULES = ("too_many_scans", "too_many_devices", "impossible_travel", "bad_state", "reported_code", "fake_burst")
SOURCES = ("stream", "direct")


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ScanEvent(db.Model):
    """One consumer scan of a well-formed code (issued or not). Append-only."""

    __tablename__ = "scan_events"
    __table_args__ = (
        CheckConstraint(_in_list("verdict", VERDICTS), name="verdict"),
        CheckConstraint(_in_list("source", SOURCES), name="source"),
        Index("ix_scan_events_code_scanned_at", "code", "scanned_at"),
        # the fake-burst rule reads a client's scans of never-issued codes, and nothing else by client
        Index("ix_scan_events_unissued_client", "client", "scanned_at",
              postgresql_where=text("label_id IS NULL"), sqlite_where=text("label_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(32), unique=True)  # made by the request (128 random bits, hex)
    scanned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    code: Mapped[str] = mapped_column(String(16))  # canonical
    # label_id and operator_id are copied from the label view; no foreign keys (a check and a row
    # lock per inserted scan) and no index of their own (nothing reads scans by them): every index
    # costs each scan's insert
    label_id: Mapped[int | None] = mapped_column(Integer)  # None: never issued
    operator_id: Mapped[int | None] = mapped_column(Integer)
    town_id: Mapped[int | None] = mapped_column(Integer)  # the lot's main town, when the chain has it
    verdict: Mapped[str] = mapped_column(String(12))
    device: Mapped[str] = mapped_column(String(32))  # fingerprint (keyed hash), never raw data
    client: Mapped[str] = mapped_column(String(32))  # keyed hash of the client address
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    region: Mapped[str | None] = mapped_column(String(6))  # adcode the trusted proxy named (SCAN_REGION_HEADER)
    # the GS1 Digital Link's GTIN when it was not the label's: a counterfeit attempt with a genuine
    # code, counted per client and pattern, never as a scan of the code (its counts, first scan, devices)
    wrong_gtin: Mapped[str | None] = mapped_column(String(14))
    source: Mapped[str] = mapped_column(String(8))  # stream (drained) or direct (Redis was down)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ScanAlert(db.Model):
    """A fraud alert: one open (or acknowledged) row per rule and subject, updated by later hits."""

    __tablename__ = "scan_alerts"
    __table_args__ = (
        CheckConstraint(_in_list("rule", RULES), name="rule"),
        CheckConstraint(_in_list("state", ALERT_STATES), name="state"),
        Index("uq_scan_alerts_open", "rule", "subject", unique=True,
              postgresql_where=text("state <> 'resolved'"), sqlite_where=text("state <> 'resolved'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(24))
    subject: Mapped[str] = mapped_column(String(48))  # the code, or "client:<hash>"
    code: Mapped[str | None] = mapped_column(String(16), index=True)
    label_id: Mapped[int | None] = mapped_column(Integer)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), index=True)
    state: Mapped[str] = mapped_column(String(12), default="open")
    count: Mapped[int] = mapped_column(Integer, default=1)
    evidence: Mapped[dict] = mapped_column(JSON)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
