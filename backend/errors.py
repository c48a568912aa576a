"""One catalog of domain errors. Each has a stable reason code, an HTTP status and a message.

Services raise `AppError("registry.town_not_found", errors={"town_id": [...]})`; the app turns
it into the JSON body flask-smorest uses, plus `reason`:
`{"code": 404, "status": "Not Found", "message": "...", "errors": {...}, "reason": "..."}`.
"""
from __future__ import annotations

from http import HTTPStatus

CATALOG: dict[str, tuple[int, str]] = {
    # request-level
    "request.invalid": (422, "The request has invalid fields."),
    "request.bad_json": (400, "The request body is not valid JSON."),
    "request.too_large": (413, "The request body is too large."),
    "request.unsupported_media": (415, "Unsupported media type."),
    "request.not_found": (404, "No such route."),
    "request.method_not_allowed": (405, "Method not allowed on this route."),
    "request.conflict": (409, "The request conflicts with the current state."),
    "server.error": (500, "Internal error; it has been logged."),
    "ops.not_ready": (503, "A backing service is unavailable."),
    # consumer scans (backend/scans)
    "scans.rate_limited": (429, "Too many lookups from this client; wait and try again."),
    "scans.alert_not_found": (404, "No such scan alert."),
    "scans.alert_resolved": (409, "The alert is already resolved."),
    "scans.code_unknown": (404, "No label was ever issued with this code (查无此码)."),
    "scans.pin_malformed": (422, "This is not a PIN: 8 digits are expected."),
    "scans.pin_mismatch": (422, "The PIN does not match this label."),
    "scans.pin_locked": (429, "Too many wrong PINs for this label; wait and try again."),
    "scans.pin_absent": (404, "This label has no scratch-off PIN."),
    "scans.pin_label_state": (409, "The label is voided, reported lost or stolen, or not activated: its PIN is not checked."),
    "scans.pin_label_flagged": (409, "Inspectors reported this code, or it has an open fraud alert: its PIN is not checked."),
    "scans.pin_client_locked": (429, "Too many wrong PINs from this client; wait and try again."),
    "scans.pin_unavailable": (503, "PIN verification is unavailable right now (its attempt counter cannot be reached)."),
    # auth
    "auth.unauthenticated": (401, "A valid bearer token is required."),
    "auth.forbidden": (403, "Your role may not do this."),
    "auth.user_exists": (409, "A user with this name already exists."),
    "auth.user_not_found": (404, "No such user."),
    "auth.operator_required": (422, "Operator and agent users must belong to an operator."),
    "auth.operator_not_allowed": (422, "Only operator and agent users belong to an operator."),
    # chain
    "chain.not_found": (404, "No such record."),
    "chain.alert_resolved": (409, "The alert is already resolved."),
    "chain.other_operator": (403, "Operators record only their own trades and lots."),
    "chain.uuid_conflict": (409, "This client_uuid was already used with different content."),
    "chain.already_corrected": (409, "This record has already been corrected; correct its replacement."),
    "chain.invalid_reference": (422, "A referenced record does not exist or is not yours."),
    "chain.rule_violation": (422, "The record breaks a trade-chain rule."),
    "chain.not_chenpi_material": (422, "Fruit harvested outside every harvest window is not chenpi material."),
    "chain.fruit_exhausted": (422, "More fruit than the trade has left."),
    "chain.output_implausible": (422, "More peel than the fruit can give."),
    "chain.trade_in_use": (409, "The trade's fruit is already in a lot; correct the lot first."),
    "chain.duplicate": (409, "A record with this name or code already exists for this operator."),
    "chain.lot_exhausted": (422, "More peel than the lot holds."),
    "chain.vintage_overclaimed": (422, "The sale claims an older vintage than the lot has."),
    "chain.lot_in_use": (409, "Other lots or sales draw on this lot."),
    # registry
    "registry.not_found": (404, "No such record."),
    "registry.duplicate": (409, "A record with this natural key already exists."),
    "registry.invalid_reference": (422, "A referenced record does not exist."),
    "registry.rule_violation": (422, "The record breaks a registry rule."),
    "registry.import_invalid": (422, "The import file has invalid rows; nothing was imported."),
    "registry.import_format": (422, "The import file cannot be read."),
    "registry.import_unsupported": (415, "The import file is neither CSV nor XLSX."),
    "registry.import_too_large": (413, "The import file is too large; split it."),
    # labels (codes, templates, rendering)
    "labels.code_malformed": (422, "This is not a label code: wrong length or character."),
    "labels.code_mistyped": (422, "The label code's check character does not match; it is mistyped."),
    "labels.code_unknown_key": (422, "The label code was not made with any known key."),
    "labels.serial_malformed": (422, "This is not a label serial."),
    "labels.base_url_invalid": (422, "PUBLIC_BASE_URL cannot be carried in a QR's alphanumeric mode."),
    "labels.template_not_found": (404, "No such label template."),
    "labels.template_invalid": (422, "The label template is invalid."),
    "labels.text_unprintable": (422, "A label text cannot be printed with this template."),
    "labels.qr_too_dense": (422, "The QR content is too long for this template's QR size and printer."),
    "labels.rows_invalid": (422, "The label rows do not fit this template."),
    # labels (applications, batches, ranges, render and print jobs)
    "labels.not_found": (404, "No such label application, batch, render or print job."),
    "labels.invalid_reference": (422, "A referenced record does not exist or is not yours."),
    "labels.licence_required": (422, "The operator has no active, in-date certification-trademark licence."),
    "labels.limit_exceeded": (422, "More labels than the configured limit allows."),
    "labels.over_approval": (422, "An approval cannot exceed the quantity applied for."),
    "labels.already_decided": (409, "The application has already been approved or rejected."),
    "labels.uuid_conflict": (409, "This client_uuid was already used with different content."),
    "labels.range_invalid": (422, "The serial range is outside the batch."),
    "labels.state_conflict": (409, "Some labels in the range are not in a state that allows this."),
    "labels.batch_voided": (409, "The batch is voided."),
    "labels.render_not_ready": (409, "The PDF is not rendered yet."),
    "labels.already_printed": (409, "These labels are printed or queued for printing; ask for a reprint with a reason."),
    "labels.lease_invalid": (409, "This print job is not leased to you (the lease expired, or it was acknowledged already)."),
    "labels.print_job_state": (409, "The print job is not in a state that allows this."),
    # fieldwork (inspectors' check-ins, photos, tasks)
    "fieldwork.not_found": (404, "No such check-in, photo or task."),
    "fieldwork.invalid": (422, "The check-in has invalid fields."),
    "fieldwork.unknown_target": (422, "The check-in's target does not exist."),
    "fieldwork.conflict": (409, "This UUID was already used with different content; an edit is a new check-in naming the one it replaces."),
    "fieldwork.already_replaced": (409, "That check-in has already been replaced by another version."),
    "fieldwork.batch_too_large": (413, "Too many check-ins in one batch; split it."),
    "fieldwork.photo_conflict": (409, "This photo UUID was already used with a different file or check-in."),
    "fieldwork.photo_too_large": (413, "The photo file is too large."),
    "fieldwork.photo_too_many_pixels": (413, "The image has too many pixels (decompression-bomb limit)."),
    "fieldwork.photo_unsupported": (415, "The file is not a supported image (JPEG, PNG or WebP)."),
    "fieldwork.photo_damaged": (422, "The image file is damaged or truncated."),
    "fieldwork.photo_limit": (422, "The check-in already has as many photos as allowed."),
    "fieldwork.task_invalid": (422, "The task is not valid for this check-in."),
}


class AppError(Exception):
    """A catalogued domain error; `errors` maps field names to messages."""

    def __init__(self, reason: str, message: str | None = None, errors: dict | None = None):
        if reason not in CATALOG:
            raise KeyError(f"unknown error reason {reason!r}; add it to backend.errors.CATALOG")
        status, default = CATALOG[reason]
        super().__init__(message or default)
        self.reason = reason
        self.status = status
        self.message = message or default
        self.errors = errors or {}

    def to_body(self) -> dict:
        body = {
            "code": self.status,
            "status": HTTPStatus(self.status).phrase,
            "message": self.message,
            "reason": self.reason,
        }
        if self.errors:
            body["errors"] = self.errors
        return body


def not_found(what: str, field: str | None = None, value=None) -> AppError:
    """The 404 for a record that does not exist or that the caller may not see."""
    errors = {field: [f"No {what} with id {value}."]} if field else None
    return AppError("registry.not_found", f"No such {what}.", errors)


def invalid_reference(field: str, what: str, value) -> AppError:
    return AppError("registry.invalid_reference", errors={field: [f"No {what} with id {value}."]})
