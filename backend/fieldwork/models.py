"""Field capture: inspectors' check-ins, their findings (with label codes), photos and tasks.

A check-in is immutable once received (append-only, like ODK submissions): an edit is a new
check-in whose `replaces_id` names the old one; only the admin's review columns change later.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import utcnow

# Target kinds. Warehouses and shops are an operator's premises, told apart by a free
# description until the trade chain registers warehouses (then a warehouse_id column joins).
TARGET_KINDS = ("plot", "operator", "warehouse", "shop")
PREMISES_KINDS = ("operator", "warehouse", "shop")
RESULTS = ("pass", "fail", "follow_up")
REVIEW_STATES = ("new", "approved", "has_issues", "rejected")
FINDING_KINDS = ("counterfeit_labels", "label_misuse", "plot_not_planted", "storage_problem", "other")
CODE_FINDING_KINDS = ("counterfeit_labels", "label_misuse")  # their codes are suspicious for scans
TASK_STATES = ("open", "done", "cancelled")


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


TARGET_SHAPE = (
    "(target_kind = 'plot' AND plot_id IS NOT NULL AND operator_id IS NULL) OR "
    "(target_kind <> 'plot' AND operator_id IS NOT NULL AND plot_id IS NULL)"
)


class Checkin(db.Model):
    """One visit: where, when, the checklist answers, findings and a result."""

    __tablename__ = "fieldwork_checkins"
    __table_args__ = (
        CheckConstraint(_in_list("target_kind", TARGET_KINDS), name="target_kind"),
        CheckConstraint(TARGET_SHAPE, name="target_shape"),
        CheckConstraint(_in_list("result", RESULTS), name="result"),
        CheckConstraint(_in_list("review_state", REVIEW_STATES), name="review_state"),
        CheckConstraint("lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180", name="coordinates"),
        CheckConstraint("accuracy_m >= 0", name="accuracy"),
        CheckConstraint("photos_expected >= 0", name="photos_expected"),
        Index("ix_fieldwork_checkins_inspector_captured", "inspector_id", "captured_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    content_sha256: Mapped[str] = mapped_column(String(64))
    inspector_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("fieldwork_checkins.id"), unique=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("fieldwork_tasks.id"), index=True)

    target_kind: Mapped[str] = mapped_column(String(16))
    plot_id: Mapped[int | None] = mapped_column(ForeignKey("plots.id"), index=True)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), index=True)
    premises: Mapped[str | None] = mapped_column(String(300))

    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float] = mapped_column(Float)
    altitude_m: Mapped[float | None] = mapped_column(Float)

    checklist: Mapped[str] = mapped_column(String(40))
    checklist_version: Mapped[int] = mapped_column(Integer)
    answers: Mapped[dict] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str] = mapped_column(String(16))
    photos_expected: Mapped[int] = mapped_column(Integer, default=0)

    # Computed on receipt: metres from the target (None if it has no location) and flags.
    distance_m: Mapped[float | None] = mapped_column(Float)
    flags: Mapped[list] = mapped_column(JSON, default=list)
    # This check-in's flags plus its photos' (kept as a number so lists can filter on it).
    flag_count: Mapped[int] = mapped_column(Integer, default=0, index=True)

    review_state: Mapped[str] = mapped_column(String(16), default="new", index=True)
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    findings: Mapped[list["Finding"]] = relationship(
        back_populates="checkin", order_by="Finding.position", cascade="all, delete-orphan"
    )
    replaces: Mapped["Checkin | None"] = relationship(remote_side=[id], foreign_keys=[replaces_id])


class Finding(db.Model):
    """Something found on a visit: free text plus a structured kind (and label codes)."""

    __tablename__ = "fieldwork_findings"
    __table_args__ = (
        CheckConstraint(_in_list("kind", FINDING_KINDS), name="kind"),
        UniqueConstraint("checkin_id", "position", name="uq_fieldwork_findings_checkin_position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkin_id: Mapped[int] = mapped_column(ForeignKey("fieldwork_checkins.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    note: Mapped[str | None] = mapped_column(Text)
    # For plot_not_planted: the plot (normally the target) so the chain can look it up.
    plot_id: Mapped[int | None] = mapped_column(ForeignKey("plots.id"), index=True)

    checkin: Mapped[Checkin] = relationship(back_populates="findings")
    codes: Mapped[list["FindingCode"]] = relationship(
        back_populates="finding", order_by="FindingCode.id", cascade="all, delete-orphan"
    )


class FindingCode(db.Model):
    """A label code reported in a finding (counterfeit, seized or misused), upper-cased."""

    __tablename__ = "fieldwork_finding_codes"
    __table_args__ = (UniqueConstraint("finding_id", "code", name="uq_fieldwork_finding_codes_finding_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("fieldwork_findings.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64), index=True)

    finding: Mapped[Finding] = relationship(back_populates="codes")


class Photo(db.Model):
    """A photo of a check-in. It may arrive before its check-in: it is stored against the
    check-in's UUID and `checkin_id` is filled when the check-in arrives (same inspector)."""

    __tablename__ = "fieldwork_photos"
    __table_args__ = (
        CheckConstraint("size_bytes > 0 AND width > 0 AND height > 0", name="dimensions"),
        Index("ix_fieldwork_photos_checkin_uuid_uploader", "checkin_uuid", "uploaded_by_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    checkin_uuid: Mapped[str] = mapped_column(String(36))
    checkin_id: Mapped[int | None] = mapped_column(ForeignKey("fieldwork_checkins.id"), index=True)
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(8))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    original_key: Mapped[str] = mapped_column(String(200))
    jpeg_key: Mapped[str] = mapped_column(String(200))
    thumb_key: Mapped[str] = mapped_column(String(200))

    exif_taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    exif_lat: Mapped[float | None] = mapped_column(Float)
    exif_lon: Mapped[float | None] = mapped_column(Float)
    flags: Mapped[list] = mapped_column(JSON, default=list)


class Task(db.Model):
    """An inspection an admin assigns to an inspector; a check-in naming it completes it."""

    __tablename__ = "fieldwork_tasks"
    __table_args__ = (
        CheckConstraint(_in_list("target_kind", TARGET_KINDS), name="target_kind"),
        CheckConstraint(TARGET_SHAPE, name="target_shape"),
        CheckConstraint(_in_list("state", TASK_STATES), name="state"),
        Index("ix_fieldwork_tasks_assignee_state", "assignee_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignee_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    target_kind: Mapped[str] = mapped_column(String(16))
    plot_id: Mapped[int | None] = mapped_column(ForeignKey("plots.id"), index=True)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), index=True)
    premises: Mapped[str | None] = mapped_column(String(300))
    due_date: Mapped[date] = mapped_column(Date)
    instructions: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="open")
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
