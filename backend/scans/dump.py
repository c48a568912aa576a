"""A faster `Schema.dump` for the resolver's answer (ScanResultOut), compiled from the schema.

marshmallow's dump walks every field through its generic machinery (accessors, defaults,
validation hooks): for the resolver's ~30 fields that was ~10 % of a cached scan's CPU. This
compiles the schema once into plain functions: String, Integer, Boolean, Nested, List and
LocalDateTime are done directly with marshmallow's own semantics (a missing key is left out,
None stays None); any other field is serialized by the field itself. The schema stays the one
truth (OpenAPI, validation); tests/test_scans_dump.py checks the two dumps agree.
"""
from __future__ import annotations

import json

from marshmallow import Schema, fields, missing  # noqa: F401 (Schema: the type)

from ..fields import LocalDateTime
from .schemas import ScanLabelOut, ScanResultOut

_TRUE, _FALSE = fields.Boolean.truthy, fields.Boolean.falsy


def _value_fn(field: fields.Field):
    """f(value, attr, obj) -> serialized value, for a value that is present."""
    kind = type(field)
    if kind is fields.String:
        return lambda v, a, o: None if v is None else (v if type(v) is str else str(v))
    if kind is fields.Integer and not field.as_string and not field.strict:
        return lambda v, a, o: None if v is None else int(v)
    if kind is fields.Boolean and field.truthy == _TRUE and field.falsy == _FALSE:
        return field._serialize
    if kind is fields.Nested:
        inner = compile_dump(field.schema)
        if field.many:
            return lambda v, a, o: None if v is None else [inner(x) for x in v]
        return lambda v, a, o: None if v is None else inner(v)
    if kind is LocalDateTime and field.SERIALIZATION_FUNCS.get(field.format or field.DEFAULT_FORMAT):
        to_text, local = field.SERIALIZATION_FUNCS[field.format or field.DEFAULT_FORMAT], field.local
        return lambda v, a, o: None if v is None else to_text(local(v))
    if kind is fields.List:
        each = _value_fn(field.inner)
        return lambda v, a, o: None if v is None else [each(x, a, o) for x in v]
    return field._serialize


def compile_dump(schema: Schema):
    """A function equal to `schema.dump` for a dict (or object) without `only`/`exclude` tricks."""
    if schema.many or any(schema._hooks.values()):  # (pre/post-dump hooks: marshmallow's own dump)
        return schema.dump
    plan = []
    for name, field in schema.dump_fields.items():
        if field.dump_default is not missing or field.attribute not in (None, name):
            return schema.dump
        plan.append((name, field.data_key or name, _value_fn(field)))

    def dump(obj):
        get = obj.get if isinstance(obj, dict) else (lambda k, d: getattr(obj, k, d))
        out = {}
        for name, key, fn in plan:
            v = get(name, missing)
            if v is not missing:
                out[key] = fn(v, name, obj)
        return out

    return dump


# --- the resolver's JSON answer, with the label member from parts kept beside the cached view ---------
# A cached scan's answer was mostly the label member re-dumped every time from what the cache
# already held (≈ 70 µs of a ≈ 350 µs scan, bench/bench_scans.py). Its parts are dumped once,
# when the view or the lot's origin is stored (viewcache.entry, viewcache.origin_entry), and
# joined at scan time with the part that changes by the day (the age). The label member's fields,
# in ScanLabelOut's order, come in five runs: VIEW_BEFORE, ORIGIN_BEFORE, AGE, ORIGIN_AFTER,
# VIEW_AFTER (checked below, at import).
VIEW_BEFORE = ("serial", "state", "product", "operator", "lot", "harvest_year")
ORIGIN_BEFORE = ("harvest_date",)
AGE = ("age_years", "age_text", "grade")
ORIGIN_AFTER = ("origin",)
VIEW_AFTER = ("activated_at", "pin")


def _check_runs(label_fields: tuple[str, ...]) -> None:
    if label_fields != VIEW_BEFORE + ORIGIN_BEFORE + AGE + ORIGIN_AFTER + VIEW_AFTER:
        raise RuntimeError(f"ScanLabelOut's fields changed order ({label_fields}): update the runs in dump.py")


_check_runs(tuple(ScanLabelOut().dump_fields))
_dump_label = compile_dump(ScanLabelOut())
_dump_result = compile_dump(ScanResultOut())


# JSON text as the app sends it: create_app turns ensure_ascii and sort_keys off; jsonify's compact
# separators. (Compiled dumps hold only JSON types, so no `default` is needed.) One encoder: json.dumps
# with arguments builds one per call.
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def view_fields(lab) -> dict:
    """The label member's fields that come from the label view (labels' LabelView)."""
    return {"serial": lab.serial, "state": lab.state, "product": lab.product,
            "operator": {"name": lab.operator_name, "credit_code": lab.credit_code},
            "lot": lab.lot_code, "harvest_year": lab.harvest_year, "activated_at": lab.activated_at,
            "pin": {"verified_at": lab.pin_verified_at} if lab.has_pin else None}


def origin_fields(origin: dict) -> dict:
    """…from the lot's origin (service.lot_origin)."""
    return {"harvest_date": origin.get("harvest_date"),
            "origin": {"towns": origin.get("towns", []), "villages": origin.get("villages", [])}}


def age_fields(age: dict | None) -> dict:
    """…from the age (service.age_of), which changes by the day."""
    return {"age_years": age["years"] if age else None, "age_text": age["text"] if age else None,
            "grade": age["grade"] if age else None}


def _members(fields_: dict, names: tuple[str, ...]) -> str:
    """The dumped `names` of `fields_` as JSON object members, without braces."""
    return dumps(_dump_label({n: fields_[n] for n in names}))[1:-1]


def view_part(lab) -> str:
    """What the view gives the label member, stored with it: a JSON list of its two runs and the
    harvest year (the age's other input); '' without a label."""
    if lab is None:
        return ""
    f = view_fields(lab)
    return dumps([_members(f, VIEW_BEFORE), _members(f, VIEW_AFTER), lab.harvest_year])


def origin_part(origin: dict) -> str:
    """What the origin gives the label member, stored with it: a JSON list of its two runs."""
    f = origin_fields(origin)
    return dumps([_members(f, ORIGIN_BEFORE), _members(f, ORIGIN_AFTER)])


def age_part(age: dict | None) -> str:
    """The age's run (service.age_of's answer)."""
    return _members(age_fields(age), AGE)


def label_member(view: list, origin: list, age: str) -> str:
    """The label member's JSON object from the parts above (view_part's and origin_part's lists,
    parsed)."""
    return "{" + ",".join((view[0], origin[0], age, origin[1], view[1])) + "}"


def answer_json(result) -> str:
    """The resolver's JSON answer for a service.Result: the compiled dump of ScanResultOut, with
    `result.label_json` put in when the scan brought it (service.scan_once): the same text as
    dumps(compiled dump of result.to_dict()) (tests/test_scans_dump.py). (The one top-level
    "label" member is the only place that text can occur: a JSON string cannot hold a bare quote.)"""
    if result.label_json is None:
        return dumps(_dump_result(result.to_dict()))
    return dumps(_dump_result({**result.to_dict(with_label=False), "label": None})).replace(
        '"label":null', '"label":' + result.label_json, 1)
