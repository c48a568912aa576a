"""Input and output schemas of the resolver, the stats and the alerts."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..alert_review import AlertReviewOut
from ..fields import Code, LocalDateTime, QueryId
from .models import ALERT_STATES, RULES

VERDICTS = ("genuine", "repeat", "warn", "inactive", "voided", "lost", "stolen", "unknown", "check_code")


class ScanOperatorOut(Schema):
    name = fields.String()
    credit_code = fields.String(metadata={"description": "统一社会信用代码"})


class ScanOriginOut(Schema):
    towns = fields.List(fields.String(), metadata={"description": "Towns the lot's fruit came from, largest share first"})
    villages = fields.List(fields.String())


class ScanPinOut(Schema):
    verified_at = LocalDateTime(allow_none=True, metadata={
        "description": "The PIN's first correct verification (Asia/Shanghai), or null: a label with an intact "
                       "scratch-off layer whose PIN was already verified is a copy"})


class ScanLabelOut(Schema):
    serial = fields.String()
    state = fields.String(metadata={"description": "issued / printed / activated / voided / lost / stolen"})
    product = fields.String()
    operator = fields.Nested(ScanOperatorOut)
    lot = fields.String(allow_none=True, metadata={"description": "The operator's lot code"})
    harvest_year = fields.Integer(allow_none=True)
    harvest_date = fields.String(allow_none=True)
    age_years = fields.Integer(allow_none=True, metadata={"description": "Full years since harvest (computed)"})
    age_text = fields.String(allow_none=True)
    grade = fields.String(allow_none=True, metadata={"description": "陈皮 (≥ 3 years) or 柑皮"})
    origin = fields.Nested(ScanOriginOut)
    activated_at = LocalDateTime(allow_none=True)
    pin = fields.Nested(ScanPinOut, allow_none=True, metadata={
        "description": "The label has a scratch-off PIN (verify it with POST /v/{code}/pin); null: it has none"})


class ScanCountOut(Schema):
    count = fields.Integer(metadata={"description": "Scans of this code, this one included"})
    first_at = LocalDateTime(allow_none=True, metadata={"description": "First scan (Asia/Shanghai)"})
    devices = fields.Integer(metadata={"description": "Distinct devices (estimate)"})


class ScanResultOut(Schema):
    """What the resolver answers (the page shows the same)."""

    verdict = fields.String(validate=validate.OneOf(VERDICTS))
    genuine = fields.Boolean(metadata={"description": "An issued, activated label with no warning but repeats"})
    title = fields.String()
    warning = fields.String(allow_none=True)
    code = fields.String(allow_none=True)
    code_display = fields.String(allow_none=True)
    trademark = fields.String(allow_none=True)
    label = fields.Nested(ScanLabelOut, allow_none=True)
    scan = fields.Nested(ScanCountOut, allow_none=True)
    alerts = fields.List(fields.String(), metadata={"description": "Fraud rules this scan tripped"})
    problem = fields.String(allow_none=True, metadata={"description": "What is wrong with a mistyped code"})


class ResolveQuery(Schema):
    lat = fields.Float(allow_nan=False, validate=validate.Range(-90, 90),
                       metadata={"description": "The phone's latitude (optional; WGS 84)"})
    lon = fields.Float(allow_nan=False, validate=validate.Range(-180, 180))
    format = fields.String(validate=validate.OneOf(["json", "html"]),
                           metadata={"description": "Override the Accept header"})


class StatsQuery(Schema):
    operator_id = QueryId(metadata={"description": "Admins: one operator's counts"})
    days = fields.Integer(load_default=30, validate=validate.Range(1, 366))


class DayCount(Schema):
    date = fields.String()
    count = fields.Integer()


class StatsOut(Schema):
    operator_id = fields.Integer(allow_none=True)
    total = fields.Integer()
    today = fields.Integer()
    days = fields.List(fields.Nested(DayCount))
    pending_events = fields.Integer(metadata={"description": "Scans in the stream not yet in the database"})
    by_operator = fields.List(fields.Dict())
    by_town = fields.List(fields.Dict())
    counterfeit_attempts = fields.Dict()
    throttled = fields.Dict(keys=fields.String(), values=fields.Integer())


class AlertQuery(Schema):
    state = fields.String(validate=validate.OneOf(ALERT_STATES))
    rule = fields.String(validate=validate.OneOf(RULES))
    code = Code(max_length=16)
    operator_id = QueryId()


class ScanAlertOut(AlertReviewOut):
    id = fields.Integer()
    rule = fields.String()
    subject = fields.String()
    code = fields.String(allow_none=True)
    label_id = fields.Integer(allow_none=True)
    operator_id = fields.Integer(allow_none=True)
    count = fields.Integer()
    evidence = fields.Dict()
    first_seen = LocalDateTime()
    last_seen = LocalDateTime()


# --- the scratch-off PIN (POST /v/{code}/pin) --------------------------------------------------------
PIN_VERDICTS = ("first", "repeat", "mismatch", "locked", "no_pin", "unknown", "check_code", "bad_pin",
                "inactive", "voided", "lost", "stolen", "warn", "unavailable", "rate_limited")


class PinQuery(Schema):
    format = fields.String(validate=validate.OneOf(["json", "html"]),
                           metadata={"description": "Override the Accept header"})


class PinLabelOut(Schema):
    serial = fields.String()
    state = fields.String()
    product = fields.String()
    operator = fields.Nested(ScanOperatorOut)


class PinResultOut(Schema):
    """What the PIN check answers (the page shows the same)."""

    verdict = fields.String(validate=validate.OneOf(PIN_VERDICTS), metadata={"description": (
        "first: genuine, the PIN's first verification; repeat: already verified before (a copy, unless the "
        "same person checks again); mismatch: wrong PIN; locked: too many wrong PINs; no_pin: the label has "
        "none; unknown: 查无此码; check_code: a mistyped code; bad_pin: not 8 digits; inactive, voided, lost, "
        "stolen: the label's state (the PIN is not checked); warn: inspectors reported the code or it has an open "
        "fraud alert, as the resolver warns (the PIN is not checked); unavailable: try again later")})
    genuine = fields.Boolean(metadata={"description": "True for a first verification (or the same device again)"})
    title = fields.String()
    warning = fields.String(allow_none=True)
    code = fields.String(allow_none=True)
    code_display = fields.String(allow_none=True)
    verified_at = LocalDateTime(allow_none=True, metadata={"description": "The PIN's first correct verification"})
    same_device = fields.Boolean(allow_none=True, metadata={
        "description": "For repeat: the first verification came from this device"})
    attempts_left = fields.Integer(allow_none=True, metadata={"description": "Wrong PINs left before the lock"})
    retry_after = fields.Integer(allow_none=True, metadata={"description": "Seconds until the lock ends"})
    label = fields.Nested(PinLabelOut, allow_none=True)
    reason = fields.String(allow_none=True, metadata={"description": "The error catalog's reason, for 4xx/5xx"})
    message = fields.String(allow_none=True, metadata={"description": "What the reason means (English)"})
    errors = fields.Dict(allow_none=True, metadata={"description": "Field → messages, for 4xx"})
