"""Marshmallow fields shared by every domain's schemas.

Text refuses control characters (PostgreSQL rejects NUL; nobody means a BEL in a name) and lone
surrogates, and always has a length cap, so bad strings answer 422 and never reach the database.
"""
from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation

from marshmallow import Schema, ValidationError, fields, validate

_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


class Text(fields.String):
    """A trimmed string with a length cap and no control characters."""

    def __init__(self, max_length: int = 200, min_length: int = 1, multiline: bool = False, **kwargs):
        self.multiline = multiline
        kwargs.setdefault("validate", validate.Length(min=min_length, max=max_length))
        super().__init__(**kwargs)
        self.metadata.setdefault("maxLength", max_length)

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs).strip()
        if _BAD_CHARS.search(value) or (not self.multiline and ("\n" in value or "\r" in value)):
            raise ValidationError("Contains control characters.")
        return value


class Code(Text):
    """An identifier-like string: trimmed and upper-cased (credit codes, plot codes)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).upper()


class _Quantity(fields.Decimal):
    """Decimal input with at most `places` decimals: finer values are refused (1.0004 kg is an
    error, not 1.000), exact ones are padded to `places` (3 → 3.000)."""

    def __init__(self, places: int, **kwargs):
        self.step = Decimal(1).scaleb(-places)
        self.places_count = places
        super().__init__(as_string=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        number = super()._deserialize(value, attr, data, **kwargs)
        try:
            padded = number.quantize(self.step)
        except InvalidOperation:  # more digits than Decimal's context holds
            raise ValidationError("Out of range.") from None
        if padded != number:
            raise ValidationError(f"At most {self.places_count} decimal places.")
        return padded


def Quantity(places: int = 3, max_value: str = "1e9", allow_zero: bool = False, **kwargs) -> fields.Decimal:
    """A Decimal quantity (kg, 亩, price), refused if NaN/Infinity, out of range, or finer than
    `places` decimals; serialized as a string."""
    return _Quantity(
        places,
        validate=validate.Range(min=Decimal(0), max=Decimal(max_value), min_inclusive=allow_zero),
        **kwargs,
    )


def Lon(**kwargs) -> fields.Float:
    return fields.Float(allow_nan=False, validate=validate.Range(min=-180, max=180), **kwargs)


def Lat(**kwargs) -> fields.Float:
    return fields.Float(allow_nan=False, validate=validate.Range(min=-90, max=90), **kwargs)


def Id(**kwargs) -> fields.Integer:
    """A row id: a positive integer that fits PostgreSQL's INTEGER."""
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=2**31 - 1), **kwargs)


class QueryId(fields.Integer):
    """A row id in a query string (`?town_id=5`).

    Query values are always text, so the strict `Id` would refuse every one of them; this takes
    ASCII digits only (no signs, spaces, exponents, other scripts' digits, or 5,000-digit numbers
    that Python refuses to convert) and then applies the same range as `Id`.
    """

    _DIGITS = re.compile(r"[0-9]{1,20}")

    def __init__(self, **kwargs):
        kwargs.setdefault("validate", validate.Range(min=1, max=2**31 - 1))
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            if not self._DIGITS.fullmatch(value):
                raise self.make_error("invalid")
            value = int(value)
        return super()._deserialize(value, attr, data, **kwargs)


def SmallInt(min_value: int = 0, max_value: int = 2**31 - 1, **kwargs) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=min_value, max=max_value), **kwargs)


class AwareDateTime(fields.AwareDateTime):
    """An input time with its UTC offset, within years `min_year`..`max_year` (2000–2100 by default).

    Python's datetimes stop at years 1 and 9999, so a time like 9999-12-31T23:00:00-10:00 parses
    but overflows when converted to UTC; the bound keeps every accepted value convertible.
    """

    def __init__(self, min_year: int = 2000, max_year: int = 2100, **kwargs):
        self.min_year, self.max_year = min_year, max_year
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        if not self.min_year <= result.year <= self.max_year:
            raise ValidationError(f"Must be a time in the years {self.min_year}–{self.max_year}.")
        return result


class LocalDateTime(fields.DateTime):
    """Output of a stored UTC time, shown in Asia/Shanghai with its offset (+08:00)."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else super()._serialize(self.local(value), attr, obj, **kwargs)

    @staticmethod
    def local(value: datetime) -> datetime:
        from .timeutil import SHANGHAI, as_utc

        return as_utc(value).astimezone(SHANGHAI)


class ListQuery(Schema):
    """Base for list filters: a free-text search `q`."""

    q = Text(max_length=100, metadata={"description": "Search text"})


