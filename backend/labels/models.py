"""Certification-trademark labels in the database: applications (申领), batches, labels, render
jobs, print jobs and reprint records.

A label's code is derived from (key, batch id, serial, variant) by `codes.make_code`, so it can
always be re-derived; it is stored (normalised, upper case) under a unique index so the consumer
resolver finds a label with one index lookup.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint, DateTime, ForeignKey, Index, Integer, SmallInteger, String, Text, UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import utcnow

APPLICATION_STATUSES = ("applied", "approved", "rejected")
BATCH_STATUSES = ("issued", "voided")
LABEL_STATES = ("issued", "printed", "activated", "voided", "lost", "stolen")
DEAD_LABEL_STATES = ("voided", "lost", "stolen")  # printed, such a label warns every consumer who scans it
JOB_STATUSES = ("queued", "running", "finished", "failed")
PRINT_STATUSES = ("queued", "leased", "printed", "failed", "cancelled")
PRINT_KINDS = ("print", "reprint")


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class LabelApplication(db.Model):
    """申领: an operator asks for N labels for a product (and, where the chain has it, a lot)."""

    __tablename__ = "label_applications"
    __table_args__ = (
        CheckConstraint(_in_list("status", APPLICATION_STATUSES), name="status"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("(status = 'approved') = (approved_quantity IS NOT NULL)", name="approved_has_quantity"),
        CheckConstraint("approved_quantity IS NULL OR (approved_quantity > 0 AND approved_quantity <= quantity)",
                        name="approved_within_applied"),
        CheckConstraint("status <> 'rejected' OR reason IS NOT NULL", name="rejected_has_reason"),
        CheckConstraint("gtin IS NULL OR length(gtin) = 14", name="gtin_14_digits"),
        Index("ix_label_applications_operator_year", "operator_id", "year"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_uuid: Mapped[str | None] = mapped_column(String(36), unique=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    product: Mapped[str] = mapped_column(String(200))
    gtin: Mapped[str | None] = mapped_column(String(14))  # the product's GS1 GTIN, 14 digits (labels.gtin)
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("chain_lots.id"), index=True)
    template: Mapped[str] = mapped_column(String(80))
    quantity: Mapped[int] = mapped_column(Integer)
    year: Mapped[int] = mapped_column(Integer)  # the applied-for year (Asia/Shanghai), for the yearly limit
    note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="applied")
    approved_quantity: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    applied_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    batch: Mapped["LabelBatch | None"] = relationship(back_populates="application", uselist=False, viewonly=True)


class LabelBatch(db.Model):
    """A serialized batch of labels issued on an approved application: serials first…last."""

    __tablename__ = "label_batches"
    __table_args__ = (
        CheckConstraint(_in_list("status", BATCH_STATUSES), name="status"),
        CheckConstraint("first_serial >= 1 AND last_serial >= first_serial", name="serial_range"),
        CheckConstraint("quantity = last_serial - first_serial + 1", name="quantity_matches"),
        CheckConstraint("harvest_year IS NULL OR harvest_year BETWEEN 1900 AND 2200", name="harvest_year"),
        CheckConstraint("gtin IS NULL OR length(gtin) = 14", name="gtin_14_digits"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("label_applications.id"), unique=True)
    template: Mapped[str] = mapped_column(String(80))
    product: Mapped[str] = mapped_column(String(200))
    gtin: Mapped[str | None] = mapped_column(String(14))  # the application's: /01/{gtin}/21/{code} resolves
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("chain_lots.id"), index=True)
    harvest_year: Mapped[int | None] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(String(1))
    first_serial: Mapped[int] = mapped_column(Integer)
    last_serial: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    collisions: Mapped[int] = mapped_column(Integer, default=0)  # codes re-derived with a variant
    status: Mapped[str] = mapped_column(String(12), default="issued")
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    voided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    application: Mapped[LabelApplication] = relationship(back_populates="batch")


class Label(db.Model):
    """One label: its code (unique), serial within the batch, and state."""

    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("batch_id", "serial", name="uq_labels_batch_serial"),
        CheckConstraint(_in_list("state", LABEL_STATES), name="state"),
        CheckConstraint("serial >= 1", name="serial_positive"),
        CheckConstraint("variant >= 0", name="variant_nonnegative"),
        CheckConstraint("print_count >= 0", name="print_count_nonnegative"),
        CheckConstraint("pack_g IS NULL OR pack_g > 0", name="pack_positive"),
        CheckConstraint("state <> 'activated' OR activated_at IS NOT NULL", name="activated_has_time"),
        CheckConstraint("pin_repeats >= 0", name="pin_repeats_nonnegative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("label_batches.id"))
    serial: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(16), unique=True)  # canonical: upper case, no separators
    variant: Mapped[int] = mapped_column(SmallInteger, default=0)
    state: Mapped[str] = mapped_column(String(12), default="issued")
    print_count: Mapped[int] = mapped_column(Integer, default=0)
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("chain_lots.id"), index=True)
    pack_g: Mapped[int | None] = mapped_column(Integer)  # pack size in grams, bound at activation
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # last state change
    # the scratch-off PIN (codes.make_pin; never stored): its first correct verification, by whom
    # (a keyed hash of the device, as scans record it), and how many correct ones came after it
    pin_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pin_device: Mapped[str | None] = mapped_column(String(32))
    pin_repeats: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class RenderJob(db.Model):
    """A PDF render of a batch (or a range of it) on an RQ worker; the row is the job's truth."""

    __tablename__ = "label_render_jobs"
    __table_args__ = (
        CheckConstraint(_in_list("status", JOB_STATUSES), name="status"),
        CheckConstraint("first_serial >= 1 AND last_serial >= first_serial", name="serial_range"),
        CheckConstraint("pages_done >= 0 AND pages_done <= pages_total", name="progress"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("label_batches.id"), index=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    template: Mapped[str] = mapped_column(String(80))
    first_serial: Mapped[int] = mapped_column(Integer)
    last_serial: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), default="queued")
    pages_done: Mapped[int] = mapped_column(Integer, default=0)
    pages_total: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    storage_key: Mapped[str | None] = mapped_column(String(400))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(Integer)
    rq_job_id: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # while running
    requested_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PrintJob(db.Model):
    """A rendered PDF to print at the operator's printer, leased by its print agent."""

    __tablename__ = "label_print_jobs"
    __table_args__ = (
        CheckConstraint(_in_list("status", PRINT_STATUSES), name="status"),
        CheckConstraint(_in_list("kind", PRINT_KINDS), name="kind"),
        CheckConstraint("status <> 'leased' OR (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)",
                        name="leased_has_lease"),
        Index("ix_label_print_jobs_operator_status", "operator_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("label_batches.id"), index=True)
    render_job_id: Mapped[int] = mapped_column(ForeignKey("label_render_jobs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12), default="print")
    status: Mapped[str] = mapped_column(String(12), default="queued")
    copies: Mapped[int] = mapped_column(Integer, default=1)
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    leased_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    leases: Mapped[int] = mapped_column(Integer, default=0)
    printer: Mapped[str | None] = mapped_column(String(200))
    printer_answer: Mapped[str | None] = mapped_column(Text)
    acked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    requested_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str | None] = mapped_column(Text)  # why a reprint was asked for
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # a reprint made by requeueing a failed job names it; unique: a failed job is requeued once
    retry_of_id: Mapped[int | None] = mapped_column(ForeignKey("label_print_jobs.id"), unique=True)
    client_uuid: Mapped[str | None] = mapped_column(String(36), unique=True)  # the request's, for its retries

    render: Mapped[RenderJob] = relationship(viewonly=True)  # the PDF and the serial range


class LabelReprint(db.Model):
    """A record that serials first…last of a batch were asked to be printed again (and why)."""

    __tablename__ = "label_reprints"
    __table_args__ = (CheckConstraint("first_serial >= 1 AND last_serial >= first_serial", name="serial_range"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("label_batches.id"), index=True)
    print_job_id: Mapped[int] = mapped_column(ForeignKey("label_print_jobs.id"), index=True)
    first_serial: Mapped[int] = mapped_column(Integer)
    last_serial: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
