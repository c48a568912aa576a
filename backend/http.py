"""HTTP plumbing shared by every domain's routes: the role-declaring Blueprint and the actor.

Every route states its roles with `@blp.roles(...)` (or `@blp.public()`); the roles go into the
OpenAPI document as `x-roles`, and the access tests walk that document.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import wraps

import flask_smorest
from flask import g, request
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser, abort, is_json_request
from werkzeug.routing.converters import IntegerConverter

from .errors import AppError

ROLES = ("admin", "operator", "inspector", "agent")


@dataclass(frozen=True)
class Actor:
    """Who is calling: passed to services, which enforce tenancy with it."""

    user_id: int
    name: str
    role: str
    operator_id: int | None = None
    token_id: int | None = field(default=None, compare=False, repr=False)  # the bearer token used

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def sees_operator(self, operator_id: int | None) -> bool:
        """True if this actor may see rows belonging to `operator_id`."""
        if self.role in ("admin", "inspector"):
            return True
        return operator_id is not None and operator_id == self.operator_id


def current_actor() -> Actor:
    return g.actor


def one_page(pagination, list_fn, *args):
    """One page of a service list function `list_fn(session, *args, page, page_size) -> (items,
    total)`; the total goes to flask-smorest's pagination (the X-Pagination header)."""
    from .extensions import db

    items, pagination.item_count = list_fn(db.session, *args, pagination.page, pagination.page_size)
    return items


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, strict about request bodies.

    - A body that is not JSON (text/plain, a form, XML) is refused with 415; webargs alone
      ignores it and reports every field as missing, which hides the client's real mistake.
    - JSON that Python's decoder cannot take (nested deeper than the recursion limit, an integer
      literal past the 4,300-digit conversion limit) is a 400 like any malformed JSON, not a 500.
    """

    def _raw_load_json(self, req):
        if not is_json_request(req):
            if req.get_data(cache=True):
                abort(415, messages={"json": [f"Send the body as application/json, not {req.mimetype or 'untyped data'}."]})
            return webargs_core.missing
        try:
            return webargs_core.parse_json(req.get_data(cache=True))
        except json.JSONDecodeError:
            raise
        except (RecursionError, ValueError) as exc:
            self._handle_invalid_json_error(json.JSONDecodeError(str(exc)[:100], "-", 0), req)


ROW_ID_MAX = 2**31 - 1  # ids are PostgreSQL INTEGERs


class RowIdConverter(IntegerConverter):
    """`<int:…>` in our routes: ASCII digits up to PostgreSQL's INTEGER.

    Werkzeug's own converter takes any Unicode digit ('１' is row 1) and any size, so
    `/plots/2147483648` reached the database (a DataError answered as 422 on PostgreSQL, an
    OverflowError as 500 on SQLite). Out of range is simply no such route: 404. The OpenAPI
    document shows the bound as the parameter's maximum.
    """

    regex = r"[0-9]{1,10}"

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = ROW_ID_MAX,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def _install_converters(state) -> None:
    state.app.url_map.converters["int"] = RowIdConverter


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest Blueprint whose routes must declare who may call them."""

    ARGUMENTS_PARSER = JsonBodyParser()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Recorded first, so it runs at registration before any of this blueprint's rules are built.
        self.record_once(_install_converters)

    def roles(self, *roles: str):
        unknown = set(roles) - set(ROLES)
        if unknown or not roles:
            raise ValueError(f"bad roles {roles!r}")

        def decorator(func):
            @wraps(func)
            def wrapper(*args, **kwargs):
                from .auth.service import authenticate_request

                actor = authenticate_request(request.headers.get("Authorization"))
                g.token_id = actor.token_id  # so a failing request still records the token's use
                if actor.role not in roles:
                    raise AppError("auth.forbidden", f"Role {actor.role!r} may not do this; allowed: {', '.join(roles)}.")
                g.actor = actor
                return func(*args, **kwargs)

            wrapped = self.doc(security=[{"bearerAuth": []}], **{"x-roles": list(roles)})(wrapper)
            wrapped = self.alt_response(401, schema=ErrorBody, description="Missing or invalid token")(wrapped)
            return self.alt_response(403, schema=ErrorBody, description="Role not allowed")(wrapped)

        return decorator

    def public(self):
        """Mark a route as callable without a token (documented as such)."""
        return self.doc(security=[], **{"x-roles": ["public"]})


class ErrorBody(flask_smorest.Api.ERROR_SCHEMA):
    """The error shape: flask-smorest's {code, status, message, errors} plus a stable reason."""

    from marshmallow import fields as _f

    reason = _f.String()
