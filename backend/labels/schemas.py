"""Input and output schemas of the labels API (inputs and outputs apart)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..fields import Id, LocalDateTime, QueryId, SmallInt, Text
from .gtin import Gtin
from .models import APPLICATION_STATUSES, BATCH_STATUSES, LABEL_STATES, PRINT_KINDS, PRINT_STATUSES

TEMPLATE_NAME = validate.Regexp(r"^[a-z0-9][a-z0-9-]{0,79}$", error="A template name from label_templates/.")
MAX_QUANTITY = 10_000_000
Serial = lambda **kw: SmallInt(1, MAX_QUANTITY, **kw)  # noqa: E731


# --- applications ------------------------------------------------------------------------------
class LabelApplicationIn(Schema):
    client_uuid = fields.UUID(load_default=None, allow_none=True,
                              metadata={"description": "Client-made UUID; a retry with the same content answers as before"})
    operator_id = Id(load_default=None, allow_none=True, metadata={"description": "Admins only: the operator applied for"})
    product = Text(max_length=200, required=True, metadata={"description": "Product name printed on the labels"})
    gtin = Gtin(load_default=None, allow_none=True)
    lot_id = Id(load_default=None, allow_none=True, metadata={"description": "The peel lot (chain), if known"})
    template = fields.String(load_default=None, allow_none=True, validate=TEMPLATE_NAME,
                             metadata={"description": "Label template (default LABEL_DEFAULT_TEMPLATE)"})
    quantity = SmallInt(1, MAX_QUANTITY, required=True)
    note = Text(max_length=2000, multiline=True, load_default=None, allow_none=True)


class LabelApplicationQuery(Schema):
    status = fields.String(validate=validate.OneOf(APPLICATION_STATUSES))
    operator_id = QueryId()
    year = fields.Integer(validate=validate.Range(min=2000, max=2200))


class LabelApproveIn(Schema):
    quantity = SmallInt(1, MAX_QUANTITY, load_default=None, allow_none=True,
                        metadata={"description": "Labels approved (≤ applied); default: all applied for"})


class LabelRejectIn(Schema):
    reason = Text(max_length=2000, multiline=True, required=True)


class LabelApplicationOut(Schema):
    id = fields.Integer()
    client_uuid = fields.String(allow_none=True)
    operator_id = fields.Integer()
    product = fields.String()
    gtin = fields.String(allow_none=True, metadata={"description": "GS1 GTIN (14 digits), if the product has one"})
    lot_id = fields.Integer(allow_none=True)
    template = fields.String()
    quantity = fields.Integer()
    year = fields.Integer()
    note = fields.String(allow_none=True)
    status = fields.String()
    approved_quantity = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)
    applied_at = LocalDateTime()
    decided_at = LocalDateTime(allow_none=True)
    batch_id = fields.Function(lambda a: a.batch.id if a.batch is not None else None, allow_none=True)


# --- batches and ranges ------------------------------------------------------------------------
class LabelBatchQuery(Schema):
    status = fields.String(validate=validate.OneOf(BATCH_STATUSES))
    operator_id = QueryId()


class LabelBatchOut(Schema):
    id = fields.Integer()
    operator_id = fields.Integer()
    application_id = fields.Integer()
    template = fields.String()
    product = fields.String()
    gtin = fields.String(allow_none=True, metadata={"description": "GS1 GTIN (14 digits): the labels also resolve at /01/{gtin}/21/{code}"})
    lot_id = fields.Integer(allow_none=True)
    harvest_year = fields.Integer(allow_none=True)
    key_id = fields.String()
    first_serial = fields.Integer()
    last_serial = fields.Integer()
    quantity = fields.Integer()
    status = fields.String()
    created_at = LocalDateTime()
    voided_at = LocalDateTime(allow_none=True)
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(),
                         metadata={"description": "Labels per state"})


class LabelQuery(Schema):
    state = fields.String(validate=validate.OneOf(LABEL_STATES))
    first = fields.Integer(validate=validate.Range(min=1, max=MAX_QUANTITY))
    last = fields.Integer(validate=validate.Range(min=1, max=MAX_QUANTITY))


class LabelOut(Schema):
    id = fields.Integer()
    serial = fields.Integer()
    serial_text = fields.Function(lambda l: f"{l.batch_id:06d}-{l.serial:06d}")
    code = fields.String()
    state = fields.String()
    print_count = fields.Integer()
    lot_id = fields.Integer(allow_none=True)
    pack_g = fields.Integer(allow_none=True)
    activated_at = LocalDateTime(allow_none=True)


class LabelRangeIn(Schema):
    first = Serial(load_default=None, allow_none=True, metadata={"description": "First serial (default: the batch's first)"})
    last = Serial(load_default=None, allow_none=True, metadata={"description": "Last serial (default: the batch's last)"})

    @validates_schema
    def _order(self, data, **_):
        if data.get("first") is not None and data.get("last") is not None and data["first"] > data["last"]:
            raise ValidationError("Must not be after `last`.", "first")


class LabelActivateIn(LabelRangeIn):
    lot_id = Id(load_default=None, allow_none=True, metadata={"description": "The lot the labels go on (default: the batch's)"})
    pack_g = SmallInt(1, 100_000_000, required=True, metadata={"description": "Pack size in grams"})


class LabelVoidIn(LabelRangeIn):
    reason = Text(max_length=2000, multiline=True, required=True)


class LabelReportIn(LabelRangeIn):
    state = fields.String(required=True, validate=validate.OneOf(("lost", "stolen")))
    note = Text(max_length=2000, multiline=True, load_default=None, allow_none=True)


class LabelRangeOut(Schema):
    batch_id = fields.Integer()
    first = fields.Integer()
    last = fields.Integer()
    state = fields.String()
    changed = fields.Integer()
    cancelled_print_jobs = fields.List(fields.Integer(), metadata={
        "description": "Print jobs not yet acknowledged that would have printed labels now voided, lost or stolen: "
                       "cancelled (render and print the ranges around them)"})


# --- render jobs -------------------------------------------------------------------------------
class LabelRenderIn(LabelRangeIn):
    pass


class LabelRenderOut(Schema):
    id = fields.Integer()
    batch_id = fields.Integer()
    template = fields.String()
    first_serial = fields.Integer()
    last_serial = fields.Integer()
    status = fields.String(metadata={"description": "queued, running, finished or failed"})
    pages_done = fields.Integer()
    pages_total = fields.Integer()
    attempts = fields.Integer()
    error = fields.String(allow_none=True)
    sha256 = fields.String(allow_none=True)
    size = fields.Integer(allow_none=True)
    created_at = LocalDateTime()
    finished_at = LocalDateTime(allow_none=True)


# --- print jobs ----------------------------------------------------------------------------------
class PrintRequestIn(Schema):
    client_uuid = fields.UUID(load_default=None, allow_none=True,
                              metadata={"description": "Client-made UUID; a retry with the same content answers the same job"})
    copies = SmallInt(1, 10, load_default=1, metadata={"description": "Copies of each label (more than 1 is recorded as a reprint)"})
    reprint = fields.Boolean(load_default=False, metadata={
        "description": "Print labels printed (or queued for printing) before; needs a reason, recorded per range"})
    reason = Text(max_length=2000, multiline=True, load_default=None, allow_none=True,
                  metadata={"description": "Why: required for a reprint"})

    @validates_schema
    def _reason_for_reprint(self, data, **_):
        if data.get("reprint") and not data.get("reason"):
            raise ValidationError("A reprint needs a reason: every second print of a serial is recorded.", "reason")


class PrintJobQuery(Schema):
    status = fields.String(validate=validate.OneOf(PRINT_STATUSES))
    kind = fields.String(validate=validate.OneOf(PRINT_KINDS))
    batch_id = QueryId()
    render_job_id = QueryId()
    operator_id = QueryId(metadata={"description": "Admins: one operator's jobs"})


class PrintLeaseIn(Schema):
    printer = Text(max_length=200, required=True, metadata={"description": "The printer (CUPS queue) the agent prints on"})


class PrintAckIn(Schema):
    lease_token = fields.String(required=True, validate=validate.Length(min=1, max=200),
                                metadata={"description": "The token the lease answered with"})
    outcome = fields.String(required=True, validate=validate.OneOf(("printed", "failed")))
    printer_answer = Text(max_length=4000, multiline=True, load_default=None, allow_none=True,
                          metadata={"description": "What the printer (lp) answered"})


class PrintRenewIn(Schema):
    lease_token = fields.String(required=True, validate=validate.Length(min=1, max=200),
                                metadata={"description": "The token the lease answered with"})


class PrintRequeueIn(Schema):
    reason = Text(max_length=2000, multiline=True, required=True)


def _pdf_url(job) -> str:
    from flask import url_for

    return url_for("labels.render_pdf", render_id=job.render_job_id)


class PrintJobOut(Schema):
    id = fields.Integer()
    operator_id = fields.Integer()
    batch_id = fields.Integer()
    render_job_id = fields.Integer()
    kind = fields.String(metadata={"description": "print or reprint"})
    status = fields.String(metadata={"description": "queued, leased, printed, failed or cancelled"})
    copies = fields.Integer()
    first_serial = fields.Integer(attribute="render.first_serial")
    last_serial = fields.Integer(attribute="render.last_serial")
    labels = fields.Function(lambda j: j.render.last_serial - j.render.first_serial + 1, metadata={
        "type": "integer", "description": "Labels in the range (each printed `copies` times)"})
    lease_expires_at = LocalDateTime(allow_none=True)
    leases = fields.Integer(metadata={"description": "How many times the job was leased"})
    printer = fields.String(allow_none=True)
    printer_answer = fields.String(allow_none=True)
    acked_at = LocalDateTime(allow_none=True)
    reason = fields.String(allow_none=True)
    retry_of_id = fields.Integer(allow_none=True, metadata={"description": "The failed job this reprint requeues"})
    created_at = LocalDateTime()
    pdf_url = fields.Function(_pdf_url, metadata={"type": "string", "description": "Absolute path of the PDF to print"})
    sha256 = fields.String(attribute="render.sha256", metadata={"description": "SHA-256 of the PDF (hex)"})
    size = fields.Integer(attribute="render.size", metadata={"description": "Bytes of the PDF"})


def _lease_seconds_left(job) -> float | None:
    from ..timeutil import as_utc, utcnow

    if job.lease_expires_at is None:
        return None
    return round((as_utc(job.lease_expires_at) - utcnow()).total_seconds(), 3)


class PrintJobLeaseOut(PrintJobOut):
    lease_token = fields.String(metadata={"description": "Proof of the lease: send it with the renewal and the ack"})
    lease_seconds_left = fields.Function(_lease_seconds_left, metadata={
        "type": "number", "description": "Seconds the lease has left as this answer is made: an agent counts them "
                                         "down on its own monotonic clock, never comparing its wall clock with "
                                         "lease_expires_at"})


# --- label counters (累计用标量) ----------------------------------------------------------------
class LabelCounterQuery(Schema):
    group_by = fields.String(load_default="year", validate=validate.OneOf(("year", "operator", "town")))
    year = fields.Integer(validate=validate.Range(min=2000, max=2200),
                          metadata={"description": "The applications' year"})
    town_id = QueryId(metadata={"description": "The operators' town"})
    operator_id = QueryId(metadata={"description": "One operator (an operator sees only its own)"})


class LabelCounterOut(Schema):
    year = fields.Integer(metadata={"description": "group_by=year"})
    operator_id = fields.Integer(metadata={"description": "group_by=operator"})
    operator_name = fields.String(metadata={"description": "group_by=operator"})
    town_id = fields.Integer(metadata={"description": "group_by=town"})
    town_name = fields.String(metadata={"description": "group_by=town"})
    applied = fields.Integer(metadata={"description": "Labels applied for (every application)"})
    approved = fields.Integer(metadata={"description": "Labels approved"})
    issued = fields.Integer(metadata={"description": "Labels issued in batches"})
    printed = fields.Integer(metadata={"description": "Labels printed at least once"})
    activated = fields.Integer(metadata={"description": "Labels ever activated (applied to product)"})
    voided = fields.Integer()
    lost_or_stolen = fields.Integer()
