from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..fields import Id, LocalDateTime, Text
from ..http import ROLES


class UserIn(Schema):
    name = Text(max_length=80, required=True, validate=validate.Regexp(r"^[\w.@-]{1,80}$", error="Letters, digits and . _ @ - only."))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    operator_id = Id(load_default=None, allow_none=True)


class UserOut(Schema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String()
    operator_id = fields.Integer(allow_none=True)
    active = fields.Boolean()
    created_at = LocalDateTime()


class UserWithToken(UserOut):
    token = fields.String(metadata={"description": "Shown once; only its hash is stored."})


class MeOut(Schema):
    user_id = fields.Integer()
    name = fields.String()
    role = fields.String()
    operator_id = fields.Integer(allow_none=True)


class RevokeOut(Schema):
    user = fields.Nested(UserOut)
    tokens_revoked = fields.Integer()
