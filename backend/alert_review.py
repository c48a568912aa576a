"""Staff review of an alert, shared by the scan fraud alerts (scans.models.ScanAlert) and the
trade-chain plausibility alerts (chain.models.Alert): open → acknowledged (seen; it stays open)
→ resolved (closed, with a note). Both models carry the same review columns."""
from __future__ import annotations

from marshmallow import Schema, fields

from .errors import AppError
from .fields import LocalDateTime, Text
from .timeutil import utcnow

ALERT_STATES = ("open", "acknowledged", "resolved")


class AlertReviewOut(Schema):
    """The review fields of an alert's answer (each domain's alert schema extends it)."""

    state = fields.String(metadata={"description": "open, acknowledged (seen, still open) or resolved"})
    note = fields.String(allow_none=True, metadata={"description": "The staff's note (required to resolve)"})
    acknowledged_by = fields.Integer(allow_none=True)
    acknowledged_at = LocalDateTime(allow_none=True)
    resolved_by = fields.Integer(allow_none=True)
    resolved_at = LocalDateTime(allow_none=True)


class AlertAckIn(Schema):
    note = Text(max_length=2000, multiline=True)


class AlertResolveIn(Schema):
    note = Text(max_length=2000, multiline=True, required=True, metadata={"description": "What was found and done"})


def acknowledge(alert, user_id: int, note: str | None, resolved_reason: str) -> None:
    """Mark `alert` seen by `user_id` (an acknowledged one keeps its first acknowledgement; a
    note replaces the last). `resolved_reason`: the AppError reason when it is resolved already."""
    if alert.state == "resolved":
        raise AppError(resolved_reason)
    if alert.state == "open":
        alert.state = "acknowledged"
        alert.acknowledged_by, alert.acknowledged_at = user_id, utcnow()
    if note:
        alert.note = note


def resolve(alert, user_id: int, note: str, resolved_reason: str) -> None:
    """Close `alert` with `note`; an AppError `resolved_reason` if it is closed already."""
    if alert.state == "resolved":
        raise AppError(resolved_reason)
    alert.state = "resolved"
    alert.resolved_by, alert.resolved_at, alert.note = user_id, utcnow(), note
