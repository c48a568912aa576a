"""Input and output schemas of field capture. Inputs check single fields and the target's shape;
the service checks what needs the database (target exists, task, replaced check-in), the
checklist answers against their template, and the time rules."""
from __future__ import annotations

from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..fields import AwareDateTime, Code, Id, Lat, LocalDateTime, Lon, SmallInt, Text
from ..http import current_actor
from .models import FINDING_KINDS, PREMISES_KINDS, RESULTS, REVIEW_STATES, TARGET_KINDS, TASK_STATES

MAX_BATCH = 500
MAX_FINDINGS = 50
MAX_CODES = 1000
MAX_PHOTOS = 50


def QueryId(**kwargs) -> fields.Integer:
    """A row id in a query string (arrives as text, so not strict like `Id`)."""
    return fields.Integer(validate=validate.Range(min=1, max=2**31 - 1), **kwargs)


def Finite(**kwargs) -> fields.Float:
    return fields.Float(allow_nan=False, **kwargs)


class TargetIn(Schema):
    target_kind = fields.String(required=True, validate=validate.OneOf(TARGET_KINDS),
                                metadata={"description": "plot, or an operator's premises: operator (office), warehouse, shop"})
    plot_id = Id(load_default=None, allow_none=True, metadata={"description": "For target_kind plot"})
    operator_id = Id(load_default=None, allow_none=True,
                     metadata={"description": "For operator, warehouse and shop: the operator whose premises these are"})
    premises = Text(max_length=300, load_default=None, allow_none=True,
                    metadata={"description": "Which warehouse or shop (free text until warehouses are registered)"})

    @validates_schema
    def _target_shape(self, data, **_):
        kind = data.get("target_kind")
        if kind == "plot":
            if data.get("plot_id") is None:
                raise ValidationError("Required for target_kind plot.", "plot_id")
            if data.get("operator_id") is not None:
                raise ValidationError("Only for operator premises, not a plot.", "operator_id")
        elif kind in PREMISES_KINDS:
            if data.get("operator_id") is None:
                raise ValidationError(f"Required for target_kind {kind}.", "operator_id")
            if data.get("plot_id") is not None:
                raise ValidationError("Only for target_kind plot.", "plot_id")


class FindingIn(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(FINDING_KINDS))
    note = Text(max_length=2000, multiline=True, load_default=None, allow_none=True)
    codes = fields.List(Code(max_length=64), load_default=list, validate=validate.Length(max=MAX_CODES),
                        metadata={"description": "Label codes, for counterfeit_labels (required) and label_misuse"})
    plot_id = Id(load_default=None, allow_none=True,
                 metadata={"description": "For plot_not_planted: the plot (default: the check-in's plot)"})


class CheckinIn(TargetIn):
    uuid = fields.UUID(required=True, metadata={"description": "Made by the phone; a resend with the same content is answered as before"})
    replaces = fields.UUID(load_default=None, allow_none=True,
                           metadata={"description": "An edit: the UUID of the inspector's check-in this version replaces"})
    task_id = Id(load_default=None, allow_none=True, metadata={"description": "The task this visit completes"})
    captured_at = AwareDateTime(required=True, metadata={"description": "Device clock, ISO 8601 with offset"})
    lat = Lat(required=True)
    lon = Lon(required=True)
    accuracy_m = Finite(required=True, validate=validate.Range(min=0, max=100_000), metadata={"description": "GPS accuracy radius, metres"})
    altitude_m = Finite(load_default=None, allow_none=True, validate=validate.Range(min=-500, max=10_000))
    checklist_version = SmallInt(min_value=1, max_value=1000, required=True,
                                 metadata={"description": "Version of the target kind's checklist template the answers follow"})
    answers = fields.Dict(keys=fields.String(validate=validate.Length(max=60)), required=True)
    findings = fields.List(fields.Nested(FindingIn), load_default=list, validate=validate.Length(max=MAX_FINDINGS))
    note = Text(max_length=4000, multiline=True, load_default=None, allow_none=True)
    result = fields.String(required=True, validate=validate.OneOf(RESULTS))
    photos_expected = SmallInt(max_value=MAX_PHOTOS, load_default=0, metadata={"description": "How many photos the phone will upload"})


class BatchIn(Schema):
    items = fields.List(fields.Raw(), required=True, metadata={
        "description": f"Up to {MAX_BATCH} check-ins (each as in POST /checkins); each is answered on its own"})


# --- output ----------------------------------------------------------------------------------
class FindingOut(Schema):
    kind = fields.String()
    note = fields.String(allow_none=True)
    plot_id = fields.Integer(allow_none=True)
    codes = fields.Function(lambda f: [c.code for c in f.codes])


class PhotoOut(Schema):
    uuid = fields.String()
    checkin_uuid = fields.String()
    attached = fields.Function(lambda p: p.checkin_id is not None)
    received_at = LocalDateTime()
    format = fields.String()
    width = fields.Integer()
    height = fields.Integer()
    size_bytes = fields.Integer()
    sha256 = fields.String()
    exif_taken_at = LocalDateTime(allow_none=True)
    exif_lat = fields.Float(allow_none=True)
    exif_lon = fields.Float(allow_none=True)
    flags = fields.Method("_flags", metadata={"description": "Admins only (null for others)"})

    def _flags(self, photo):
        return photo.flags if current_actor().is_admin else None


class FlagOut(Schema):
    code = fields.String()
    message = fields.String()


def _admin_only(attr):
    return lambda obj: getattr(obj, attr) if current_actor().is_admin else None


class CheckinAck(Schema):
    """What the phone needs to know after a sync."""

    id = fields.Integer()
    uuid = fields.String()
    received_at = LocalDateTime()
    photos_expected = fields.Integer()
    photos_arrived = fields.Integer(metadata={"description": "Photos received so far (including ones sent before the check-in)"})


class CheckinOut(CheckinAck):
    inspector_id = fields.Integer()
    replaces = fields.String(attribute="replaces_uuid", allow_none=True)
    replaced_by = fields.String(attribute="replaced_by_uuid", allow_none=True)
    task_id = fields.Integer(allow_none=True)
    target_kind = fields.String()
    plot_id = fields.Integer(allow_none=True)
    operator_id = fields.Integer(allow_none=True)
    premises = fields.String(allow_none=True)
    captured_at = LocalDateTime()
    lat = fields.Float()
    lon = fields.Float()
    accuracy_m = fields.Float()
    altitude_m = fields.Float(allow_none=True)
    checklist = fields.String()
    checklist_version = fields.Integer()
    answers = fields.Dict()
    findings = fields.List(fields.Nested(FindingOut))
    note = fields.String(allow_none=True)
    result = fields.String()
    review_state = fields.String()
    review_note = fields.String(allow_none=True)
    reviewed_at = LocalDateTime(allow_none=True)
    photos = fields.List(fields.Nested(PhotoOut), attribute="photo_rows")
    distance_m = fields.Function(_admin_only("distance_m"), metadata={
        "description": "Admins only: metres from the target's registered point or polygon"})
    flags = fields.Function(_admin_only("all_flags"), metadata={
        "description": "Admins only: off-site, time and photo flags, each {code, message}"})


class BatchItemOut(Schema):
    index = fields.Integer()
    uuid = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "created | existing | conflict | invalid"})
    code = fields.Integer(metadata={"description": "The HTTP status this item would have had alone: 201, 200, 409, 422"})
    reason = fields.String(allow_none=True)
    message = fields.String(allow_none=True)
    errors = fields.Dict(allow_none=True)
    checkin = fields.Nested(CheckinAck, allow_none=True)


class BatchOut(Schema):
    created = fields.Integer()
    existing = fields.Integer()
    conflict = fields.Integer()
    invalid = fields.Integer()
    items = fields.List(fields.Nested(BatchItemOut))


class CheckinQuery(Schema):
    target_kind = fields.String(validate=validate.OneOf(TARGET_KINDS))
    plot_id = QueryId()
    operator_id = QueryId()
    inspector_id = QueryId()
    result = fields.String(validate=validate.OneOf(RESULTS))
    review_state = fields.String(validate=validate.OneOf(REVIEW_STATES))
    flagged = fields.Boolean(metadata={"description": "Admins: only check-ins with flags"})
    since = AwareDateTime(metadata={"description": "captured_at from (inclusive)"})
    until = AwareDateTime(metadata={"description": "captured_at before (exclusive)"})
    include_replaced = fields.Boolean(load_default=False, metadata={"description": "Also versions that were replaced"})


class ReviewIn(Schema):
    review_state = fields.String(required=True, validate=validate.OneOf(REVIEW_STATES))
    review_note = Text(max_length=2000, multiline=True, load_default=None, allow_none=True)


class PhotoUploadIn(Schema):
    file = Upload(required=True, metadata={"description": "JPEG, PNG or WebP; the original is kept"})


class ChecklistOut(Schema):
    name = fields.String()
    version = fields.Integer()
    title = fields.String()
    current = fields.Boolean()
    items = fields.List(fields.Dict())


# --- tasks -----------------------------------------------------------------------------------
class TaskIn(TargetIn):
    assignee_id = Id(required=True, metadata={"description": "An inspector's user id"})
    due_date = fields.Date(required=True)
    instructions = Text(max_length=4000, multiline=True, load_default=None, allow_none=True)


class TaskOut(Schema):
    id = fields.Integer()
    assignee_id = fields.Integer()
    created_by_id = fields.Integer()
    created_at = LocalDateTime()
    target_kind = fields.String()
    plot_id = fields.Integer(allow_none=True)
    operator_id = fields.Integer(allow_none=True)
    premises = fields.String(allow_none=True)
    due_date = fields.Date()
    instructions = fields.String(allow_none=True)
    state = fields.String()
    done_at = LocalDateTime(allow_none=True)


class TaskQuery(Schema):
    state = fields.String(validate=validate.OneOf(TASK_STATES))
    assignee_id = QueryId()


class OfflinePackOut(Schema):
    generated_at = LocalDateTime()
    tasks = fields.List(fields.Nested(TaskOut))
    plots = fields.List(fields.Dict(), metadata={"description": "id, code, lon, lat, boundary, village, town, grower"})
    operators = fields.List(fields.Dict(), metadata={"description": "id, name, kind, address, lon, lat, town"})
    checklists = fields.List(fields.Dict(), metadata={"description": "The current checklist templates"})


class MapQuery(Schema):
    town_id = QueryId()
    since = AwareDateTime()
    until = AwareDateTime()
    result = fields.String(validate=validate.OneOf(RESULTS))
    review_state = fields.String(validate=validate.OneOf(REVIEW_STATES))
    limit = fields.Integer(validate=validate.Range(min=1, max=20_000), load_default=5000)


class PhotoUploadOut(Schema):
    photo = fields.Nested(PhotoOut)
    checkin_received = fields.Boolean(metadata={"description": "False while the photo waits for its check-in"})
    photos_expected = fields.Integer(allow_none=True)
    photos_arrived = fields.Integer()


class MapOut(Schema):
    type = fields.String(metadata={"description": "FeatureCollection"})
    features = fields.List(fields.Dict(), metadata={
        "description": "Point features at the phone's GPS position; properties: uuid, captured_at, target_kind, "
                       "plot_id, operator_id, town_id, result, review_state, inspector_id, flag_count, accuracy_m"})
