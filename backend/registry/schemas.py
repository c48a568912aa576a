"""Input and output schemas of the registry. Inputs validate single fields; the service checks
rules that need the database or several fields (village of a plot, trees per 亩, polygon)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates

from ..fields import Code, LocalDateTime, Id, Lat, ListQuery, Lon, Quantity, QueryId, SmallInt, Text
from . import validators
from .models import LICENCE_STATUSES, OPERATOR_KINDS


class Stamped(Schema):
    id = fields.Integer(dump_only=True)
    created_at = LocalDateTime(dump_only=True)
    updated_at = LocalDateTime(dump_only=True)


class PointIn(Schema):
    lon = Lon(load_default=None, allow_none=True)
    lat = Lat(load_default=None, allow_none=True)


def _check(error: str | None) -> None:
    if error:
        raise ValidationError(error)


# --- towns and villages --------------------------------------------------------------------
class TownIn(PointIn):
    name = Text(max_length=40, required=True)
    code = Code(max_length=12, required=True, validate=validate.Regexp(r"^[0-9]{6,12}$", error="Digits only, 6–12 of them."))


class TownOut(Stamped):
    name = fields.String()
    code = fields.String()
    lon = fields.Float(allow_none=True)
    lat = fields.Float(allow_none=True)


class VillageIn(PointIn):
    town_id = Id(required=True)
    name = Text(max_length=40, required=True)
    code = Code(max_length=16, required=True, validate=validate.Regexp(r"^[0-9]{6,16}$", error="Digits only, 6–16 of them."))


class VillageOut(TownOut):
    town_id = fields.Integer()


class VillageQuery(ListQuery):
    town_id = QueryId()


# --- growers ---------------------------------------------------------------------------------
class GrowerIn(Schema):
    household_code = Code(max_length=32, required=True)
    name = Text(max_length=60, required=True)
    phone = Text(max_length=20, load_default=None, allow_none=True)
    id_number = Code(max_length=18, load_default=None, allow_none=True, load_only=True,
                     metadata={"description": "居民身份证号码; stored only as a keyed hash and a masked form"})
    village_id = Id(required=True)

    @validates("phone")
    def _phone(self, value, **_):
        if value is not None:
            _check(validators.phone_error(value))

    @validates("id_number")
    def _id_number(self, value, **_):
        if value is not None:
            _check(validators.id_number_error(value))


class GrowerOut(Stamped):
    household_code = fields.String()
    name = fields.String()
    phone = fields.String(allow_none=True)
    id_number_masked = fields.String(allow_none=True)
    village_id = fields.Integer()
    town_id = fields.Integer(attribute="village.town_id")


class GrowerQuery(ListQuery):
    village_id = QueryId()
    town_id = QueryId()


# --- plots -----------------------------------------------------------------------------------
class PlotIn(Schema):
    code = Code(max_length=32, required=True)
    grower_id = Id(required=True)
    village_id = Id(required=True)
    area_mu = Quantity(places=2, max_value="100000", required=True, metadata={"description": "Area in 亩"})
    tree_count = SmallInt(max_value=10_000_000, required=True)
    planting_year = SmallInt(min_value=1950, max_value=2100, load_default=None, allow_none=True)
    verified_yield_kg = Quantity(places=3, max_value="1e8", allow_zero=True, load_default=None, allow_none=True,
                                 metadata={"description": "现场核定产量 (kg per season)"})
    lon = Lon(required=True)
    lat = Lat(required=True)
    boundary = fields.Dict(load_default=None, allow_none=True, metadata={"description": "GeoJSON Polygon or MultiPolygon"})

    @validates("boundary")
    def _boundary(self, value, **_):
        if value is not None:
            _check(validators.polygon_error(value))


class PlotOut(Stamped):
    code = fields.String()
    grower_id = fields.Integer()
    village_id = fields.Integer()
    town_id = fields.Integer(attribute="village.town_id")
    area_mu = fields.Decimal(as_string=True)
    tree_count = fields.Integer()
    planting_year = fields.Integer(allow_none=True)
    verified_yield_kg = fields.Decimal(as_string=True, allow_none=True)
    lon = fields.Float()
    lat = fields.Float()
    boundary = fields.Dict(allow_none=True)


class PlotQuery(ListQuery):
    grower_id = QueryId()
    village_id = QueryId()
    town_id = QueryId()


# --- operators -------------------------------------------------------------------------------
class OperatorIn(PointIn):
    name = Text(max_length=200, required=True)
    credit_code = Code(max_length=18, required=True, metadata={"description": "统一社会信用代码 (GB 32100)"})
    kind = fields.String(required=True, validate=validate.OneOf(OPERATOR_KINDS))
    town_id = Id(required=True)
    address = Text(max_length=300, load_default=None, allow_none=True)
    contact_phone = Text(max_length=20, load_default=None, allow_none=True)
    licence_status = fields.String(load_default="none", validate=validate.OneOf(LICENCE_STATUSES))
    licence_no = Text(max_length=40, load_default=None, allow_none=True)
    licence_valid_from = fields.Date(load_default=None, allow_none=True)
    licence_valid_until = fields.Date(load_default=None, allow_none=True)

    @validates("credit_code")
    def _credit(self, value, **_):
        _check(validators.credit_code_error(value))

    @validates("contact_phone")
    def _phone(self, value, **_):
        if value is not None:
            _check(validators.phone_error(value))


class OperatorOut(Stamped):
    name = fields.String()
    credit_code = fields.String()
    kind = fields.String()
    town_id = fields.Integer()
    address = fields.String(allow_none=True)
    contact_phone = fields.String(allow_none=True)
    lon = fields.Float(allow_none=True)
    lat = fields.Float(allow_none=True)
    licence_status = fields.String()
    licence_no = fields.String(allow_none=True)
    licence_valid_from = fields.Date(allow_none=True)
    licence_valid_until = fields.Date(allow_none=True)


class OperatorQuery(ListQuery):
    town_id = QueryId()
    kind = fields.String(validate=validate.OneOf(OPERATOR_KINDS))
    licence_status = fields.String(validate=validate.OneOf(LICENCE_STATUSES))


# --- nurseries -------------------------------------------------------------------------------
class NurseryIn(PointIn):
    name = Text(max_length=200, required=True)
    credit_code = Code(max_length=18, load_default=None, allow_none=True)
    licence_no = Text(max_length=40, load_default=None, allow_none=True)
    town_id = Id(required=True)
    village_id = Id(load_default=None, allow_none=True)
    address = Text(max_length=300, load_default=None, allow_none=True)

    @validates("credit_code")
    def _credit(self, value, **_):
        if value is not None:
            _check(validators.credit_code_error(value))


class NurseryOut(Stamped):
    name = fields.String()
    credit_code = fields.String(allow_none=True)
    licence_no = fields.String(allow_none=True)
    town_id = fields.Integer()
    village_id = fields.Integer(allow_none=True)
    address = fields.String(allow_none=True)
    lon = fields.Float(allow_none=True)
    lat = fields.Float(allow_none=True)


class TownQuery(ListQuery):
    pass


class NurseryQuery(ListQuery):
    town_id = QueryId()


# --- bulk import -------------------------------------------------------------------------------
from flask_smorest.fields import Upload  # noqa: E402  (kept with the import schemas it serves)


class ImportFileIn(Schema):
    file = Upload(required=True, metadata={
        "description": "CSV (UTF-8, UTF-8 with BOM or GBK/GB18030) or XLSX (first sheet); the header is line 1 "
                       "and names the API's input fields or their Chinese names (户号, 户主, 地块编号, 面积(亩), "
                       "统一社会信用代码, …); references by natural key: village_code (or town + village names), "
                       "household_code, town (name) or town_code."})


class ImportQuery(Schema):
    dry_run = fields.Boolean(load_default=False, metadata={"description": "Check every row and report; write nothing."})


class ImportRowErrorOut(Schema):
    line = fields.Integer(metadata={"description": "Spreadsheet row number; the header is line 1, 0 is the whole file"})
    column = fields.String(metadata={"description": "The column's header as written in the file"})
    reason = fields.String()


class ImportReportOut(Schema):
    kind = fields.String()
    rows = fields.Integer(metadata={"description": "Data rows read (blank rows are skipped)"})
    inserted = fields.Integer()
    dry_run = fields.Boolean()
    errors = fields.List(fields.Nested(ImportRowErrorOut))


class ImportErrorBody(Schema):
    """The error shape; for bad rows `errors` is a list of {line, column, reason}."""

    code = fields.Integer()
    status = fields.String()
    message = fields.String()
    reason = fields.String()
    errors = fields.Raw(metadata={
        "description": "Bad rows: a list of {line, column, reason} (line 1 is the header). A malformed request "
                       "(no file part, bad dry_run) has the usual {location: {field: [messages]}} instead."})
