"""GTINs (GS1 Global Trade Item Numbers) of labelled products, for the GS1 Digital Link form of
the label URL (`/01/{gtin}/21/{serial}`, served by backend/scans).

A GTIN-8, -12 (UPC-A), -13 (EAN) or -14 is checked by python-stdnum's `ean` module (length and
the GS1 mod-10 check digit) and kept in its 14-digit form, left-padded with zeros as GS1 says,
so every form of one product's number compares equal.
"""
from __future__ import annotations

from marshmallow import ValidationError, fields
from stdnum import ean
from stdnum.exceptions import InvalidChecksum, InvalidFormat, InvalidLength, ValidationError as StdnumError

GTIN_LENGTHS = (8, 12, 13, 14)


class GtinError(ValueError):
    """Not a GTIN; `message` says why in words a person can act on."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def normalise(text: str) -> str:
    """The 14-digit GTIN of `text` (8, 12, 13 or 14 digits; spaces and hyphens ignored)."""
    digits = ean.compact(text or "")
    if not digits.isdigit() or not digits.isascii():
        raise GtinError("A GTIN has digits only.")
    if len(digits) not in GTIN_LENGTHS:
        raise GtinError(f"A GTIN has 8, 12, 13 or 14 digits; this one has {len(digits)}.")
    try:
        ean.validate(digits)
    except InvalidChecksum:
        raise GtinError("The GTIN's check digit is wrong: check the number.") from None
    except (InvalidFormat, InvalidLength, StdnumError) as err:  # pragma: no cover - ruled out above
        raise GtinError(f"Not a GTIN ({err}).") from None
    return digits.zfill(14)


class Gtin(fields.String):
    """A GTIN-8/12/13/14 with a valid check digit, loaded as its 14-digit form."""

    def __init__(self, **kwargs):
        meta = kwargs.setdefault("metadata", {})
        meta.setdefault("description", "GS1 GTIN-8/12/13/14 (check digit verified; stored as 14 digits). "
                                       "Labels then also resolve at /01/{gtin}/21/{code} (GS1 Digital Link)")
        meta.setdefault("example", "06901234567892")
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > 40:
            raise ValidationError("A GTIN has at most 14 digits.")
        try:
            return normalise(text)
        except GtinError as err:
            raise ValidationError(err.message) from None
