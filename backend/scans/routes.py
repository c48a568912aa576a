"""Routes: the public resolver (/v/{code}, /V/{code}: a page or JSON) and, under /api/v1, the
scan stats for dashboards and the scan alerts.

The resolver answers 200 for an issued label (whatever the warning), 404 for a well-formed code
that was never issued (查无此码), 422 for a mistyped code (no database touched) and 429 past the
rate limit; every answer has the same body (ScanResultOut) or page.
"""
from __future__ import annotations

import hmac
import ipaddress
import re
import secrets

from flask import current_app, make_response, redirect, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import dump_cookie, parse_accept_header
from flask.views import MethodView
from marshmallow import Schema, fields

from ..alert_review import AlertAckIn, AlertResolveIn
from ..extensions import db, redis
from ..http import Blueprint, current_actor, one_page
from ..errors import AppError
from ..labels import codes
from . import dump, page, pins, script, service
from . import schemas as s
from .settings import thresholds
from ..labels import gtin as gtins  # noqa: I001 (kept apart from the lines above)
from . import regions

resolver = Blueprint("resolver", __name__, description="The consumer resolver: scan a label's QR")
blp = Blueprint("scans", __name__, url_prefix="/api/v1", description="Consumer scans: stats and fraud alerts")

DEVICE_COOKIE = "cpd"
_COOKIE_RE = re.compile(r"[0-9a-f]{32}")
MAX_CODE_INPUT = 64  # longer input is never a code: answered without parsing it
HANDED = "chenpi.scan"  # environ key: (kind, what script.SCAN found, the Client), from fastpath.py
COOKIE_AGE_S = 3 * 365 * 86400
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
_RESULT = s.ScanResultOut()  # built once: a schema instance per response cost more than the lookup
_dump_result = dump.compile_dump(_RESULT)  # the same dict, without marshmallow's per-field machinery
_QUERY = s.ResolveQuery()  # likewise for the query arguments (webargs builds a class anew per request)


def _hash(kind: str, value: str, secret: str | None = None) -> str:
    key = (secret if secret is not None else current_app.config["SECRET_KEY"]).encode()
    return hmac.digest(key, f"{kind}\x00{value}".encode("utf-8", "replace"), "sha256").hex()[:32]


def client_address(trusted_proxies: int, proxy_networks: str, remote_addr: str | None = None,
                   forwarded_for: str | None = None) -> str:
    """The client's address: X-Forwarded-For's entry `trusted_proxies` hops from the right, but
    only on a request that came from one of the proxies (SCAN_PROXY_NETWORKS); anyone else could
    name any address there and dodge the rate limit. (The request's, unless `remote_addr` is given.)"""
    if remote_addr is None:
        remote_addr, forwarded_for = request.remote_addr, request.headers.get("X-Forwarded-For")
    addr = remote_addr or "unknown"
    if trusted_proxies > 0 and regions.from_trusted_proxy(remote_addr, proxy_networks):
        hops = [h.strip() for h in (forwarded_for or "")[:1000].split(",") if h.strip()]
        if len(hops) >= trusted_proxies:
            candidate = hops[-trusted_proxies]
            try:
                addr = str(ipaddress.ip_address(candidate))
            except ValueError:
                pass
    return addr


def client_of(t, secret: str, remote_addr: str | None, forwarded_for: str | None, cookie: str, user_agent: str,
              accept_language: str, lat: float | None = None, lon: float | None = None) -> service.Client:
    """Who scans, from the request's parts: keyed hashes of the address and of the device (its
    cookie, else address + user agent + language)."""
    addr = client_address(t.trusted_proxies, t.proxy_networks, remote_addr or "", forwarded_for)
    if _COOKIE_RE.fullmatch(cookie):
        basis = "c:" + cookie
    else:
        basis = "h:" + "|".join([addr, user_agent[:300], accept_language[:100]])
    if lat is None or lon is None:
        lat = lon = None
    return service.Client(client=_hash("client", addr, secret), device=_hash("device", basis, secret), lat=lat, lon=lon)


def who(args: dict, t) -> service.Client:
    h = request.headers
    return client_of(t, current_app.config["SECRET_KEY"], request.remote_addr, h.get("X-Forwarded-For"),
                     request.cookies.get(DEVICE_COOKIE, ""), h.get("User-Agent", ""), h.get("Accept-Language", ""),
                     args.get("lat"), args.get("lon"))


_REGION_CODES: dict[str, str | None] = {}  # header value -> adcode: a proxy names few distinct regions
_REGION_CACHE_MAX, _REGION_KEY_MAX = 4096, 64


def region_of(t, remote_addr: str | None = None, raw: str | None = None) -> str | None:
    """The adcode the trusted proxy's region header names (the request's, unless `remote_addr` is
    given): read only on a request whose peer is a trusted proxy (SCAN_PROXY_NETWORKS). The scan's
    one round trip (script.SCAN) needs it before the rate limit answers, so short values are looked
    up once per process: a flood of requests costs a dict hit each."""
    if not t.region_header:
        return None
    if remote_addr is None:
        remote_addr, raw = request.remote_addr, request.headers.get(t.region_header)
    if not regions.from_trusted_proxy(remote_addr, t.proxy_networks):
        return None
    if raw is not None and len(raw) <= _REGION_KEY_MAX and raw in _REGION_CODES:
        return _REGION_CODES[raw]
    region = regions.lookup(raw)
    code = region.code if region is not None else None
    if raw is not None and len(raw) <= _REGION_KEY_MAX:
        if len(_REGION_CODES) >= _REGION_CACHE_MAX:
            _REGION_CODES.clear()
        _REGION_CODES[raw] = code
    return code


_ACCEPT_JSON: dict[str, bool] = {}  # Accept header -> JSON wanted: clients send few distinct ones


def accepts_json(accept: str) -> bool:
    """Whether an Accept header prefers JSON to the page (werkzeug's negotiation, cached)."""
    hit = _ACCEPT_JSON.get(accept)
    if hit is None:
        best = parse_accept_header(accept, MIMEAccept).best_match(["text/html", "application/json"])
        hit = best == "application/json"
        if len(accept) <= 200:
            if len(_ACCEPT_JSON) >= 1024:
                _ACCEPT_JSON.clear()
            _ACCEPT_JSON[accept] = hit
    return hit


def wants_json(args: dict) -> bool:
    if args.get("format"):
        return args["format"] == "json"
    return accepts_json(request.headers.get("Accept", ""))


def answer_parts(body: dict | service.Result, status: int, as_json: bool, headers: dict | None = None, *,
                 schema=None, html=None, cookie: str = "", secure: bool = False) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body bytes) of an answer (`body`: a service.Result, or its to_dict()): JSON
    (dump.answer_json, the compiled dump of ScanResultOut; or `schema`'s), or the page with its
    security headers and, for a browser without one, a new device cookie. Shared by the route
    (`answer`) and the lean path (fastpath.py)."""
    out = [*(headers or {}).items(), ("Cache-Control", "no-store"), ("Vary", "Accept")]
    if as_json:
        if isinstance(body, service.Result):
            payload = dump.answer_json(body) + "\n"
        else:
            payload = dump.dumps(_dump_result(body) if schema is None else schema.dump(body)) + "\n"  # (as jsonify)
        out.append(("Content-Type", "application/json"))
    else:
        payload = (html or page.render)(body.to_dict() if isinstance(body, service.Result) else body)
        out += [("Content-Type", "text/html; charset=utf-8"), ("Content-Security-Policy", CSP),
                ("X-Content-Type-Options", "nosniff")]
        if not _COOKIE_RE.fullmatch(cookie):
            out.append(("Set-Cookie", dump_cookie(DEVICE_COOKIE, secrets.token_hex(16), max_age=COOKIE_AGE_S,
                                                  httponly=True, samesite="Lax", secure=secure)))
    data = payload.encode()
    out.append(("Content-Length", str(len(data))))
    return status, out, data


def answer(body: dict | service.Result, status: int, as_json: bool, headers: dict | None = None, *, schema=None, html=None):
    status, out, data = answer_parts(body, status, as_json, headers, schema=schema, html=html,
                                     cookie=request.cookies.get(DEVICE_COOKIE, ""), secure=request.is_secure)
    return current_app.response_class(data, status, out)


def _rate_limited(client: str, t, code: str | None = None) -> tuple[int | None, list | None]:
    """(seconds to wait or None, the cached label view of `code` fetched in the same round trip)."""
    try:
        wait, views = service.counters.rate_check_and_get(
            redis.client, client, t.rate_per_min, t.crawler_rate_per_min, t.fake_burst, view=code)
        return wait, views[-1] if code else None
    except service.REDIS_DOWN:
        return None, None  # no Redis, no rate limit: the page still answers


def _head_of_issued(as_json: bool):
    """HEAD of an issued label: 200 and the headers, no body, no Content-Length (the page's length
    would take the count this answer must not make)."""
    response = current_app.response_class(status=200, headers={
        "Cache-Control": "no-store", "Vary": "Accept",
        "Content-Type": "application/json" if as_json else "text/html; charset=utf-8"})
    response.automatically_set_content_length = False
    return response


def resolve_code(code_text: str, args: dict, gtin_text: str | None = None):
    """The resolver; with `gtin_text` (the GS1 Digital Link form) the label's batch must carry
    that GTIN: a bad check digit is a typo (422), another product's GTIN 查无此码 (404)."""
    t = thresholds()
    as_json = wants_json(args)
    client = who(args, t)
    # HEAD (uptime checks, some crawlers and link checkers) of an issued label counts no scan: it
    # would tell the next consumer 已查询过 and feed the fraud rules. Everything else (a typo, a
    # never-issued code or another GTIN, counted as a counterfeit attempt; 429) answers as GET,
    # without the body.
    head = request.method == "HEAD"
    if len(code_text) > MAX_CODE_INPUT:  # (parsing needs no I/O: the rate limit's round trip can
        # then also fetch the code's cached view)
        checked = service.Result("check_code", problem=f"A label code has 11 characters; this input has {len(code_text)}.")
    else:
        checked = service.check_code(code_text)
    wait = views = result = kind = None
    handed = request.environ.get(HANDED)  # fastpath.py made the round trip: go on from it
    if handed is not None and gtin_text is None:
        kind, got, client = handed
    else:
        client.region = region_of(t)  # (script.SCAN counts the scan in the rate limit's round trip)
        if isinstance(checked, str) and gtin_text is None and not head and script.usable(redis.client):
            try:
                kind, got = service.scan_once(redis.client, checked, client, t,
                                              lambda: service.read_label(db.session, checked))
            except service.REDIS_DOWN:  # no Redis, no rate limit: the page still answers
                kind, got = "down", None
        else:
            wait, views = _rate_limited(client.client, t, checked if isinstance(checked, str) else None)
    if kind == "limited":
        wait = got
    elif kind == "done":
        result = got
    elif kind is not None:
        views = got
    if wait is not None:
        body = service.Result("rate_limited").to_dict()
        body["warning"] = f"查询过于频繁,请 {wait} 秒后再试。"
        body.update({"code": 429, "status": "Too Many Requests", "reason": "scans.rate_limited"})
        if as_json:
            return make_response({**_RESULT.dump(body), "code": 429, "status": "Too Many Requests",
                                  "message": "Too many lookups from this client; wait and try again.",
                                  "reason": "scans.rate_limited"}, 429, {"Retry-After": str(wait), "Cache-Control": "no-store"})
        return answer(body, 429, False, {"Retry-After": str(wait)})
    gtin_ = None
    if gtin_text is not None:
        try:
            gtin_ = gtins.normalise(gtin_text[:MAX_CODE_INPUT])
        except gtins.GtinError as err:
            return answer(service.Result("check_code", problem=err.message).to_dict(), 422, as_json)
    if isinstance(checked, service.Result):
        return answer(checked.to_dict(), 422, as_json)
    if head and result is None and service.is_issued(db.session, redis.client, checked, gtin_, views):
        return _head_of_issued(as_json)
    if result is None:
        result = service.resolve(db.session, redis.client, checked, client, t, gtin=gtin_, views=views)
    if redis.embedded and result.recorded == "stream":
        service.drain_all(db.session, redis.client, t=t)  # no worker in the embedded mode
    return answer(result, 404 if result.verdict == "unknown" else 200, as_json)


# Every answer (the verdict, 查无此码, a typo, too many lookups) is the page for a browser and
# the same content as JSON for `Accept: application/json`. (Written out here: flask-smorest's
# manual doc replaces the generated content of a response rather than adding to it.)
_BOTH = {"text/html": {"schema": {"type": "string"}},
         "application/json": {"schema": {"$ref": "#/components/schemas/ScanResultOut"}}}
_DOC = {"responses": {status: {"description": what, "content": _BOTH} for status, what in (
    ("200", "An issued label (the verdict says whether to trust it)"),
    ("404", "查无此码: a well-formed code never issued"),
    ("429", "Too many lookups; see Retry-After"))}}
# A mistyped code answers the page/result; bad query arguments (lat=1e7) the usual error body.
_DOC["responses"]["422"] = {"description": "A mistyped code (check character, length), or bad query arguments",
                            "content": {**_BOTH, "application/json": {"schema": {"anyOf": [
                                {"$ref": "#/components/schemas/ScanResultOut"},
                                {"$ref": "#/components/schemas/ErrorBody"}]}}}}


@resolver.route("/v/<path:code>")
class Resolve(MethodView):
    @resolver.public()
    @resolver.arguments(_QUERY, location="query")
    @resolver.response(200, s.ScanResultOut, description="An issued label; text/html for browsers")
    @resolver.alt_response(404, schema=s.ScanResultOut, description="查无此码: a well-formed code never issued")
    @resolver.alt_response(422, schema=s.ScanResultOut, description="A mistyped code (check character, length)")
    @resolver.alt_response(429, schema=s.ScanResultOut, description="Too many lookups; see Retry-After")
    @resolver.doc(summary="Resolve a label code (the QR's URL): a zh-CN page, or JSON for Accept: application/json", **_DOC)
    def get(self, args, code):
        return resolve_code(code, args)


@resolver.route("/V/<path:code>")
class ResolveUpper(MethodView):
    @resolver.public()
    @resolver.arguments(_QUERY, location="query")
    @resolver.response(200, s.ScanResultOut, description="The same as /v/{code}: QR URLs are upper case")
    @resolver.alt_response(404, schema=s.ScanResultOut, description="查无此码")
    @resolver.alt_response(422, schema=s.ScanResultOut, description="A mistyped code")
    @resolver.alt_response(429, schema=s.ScanResultOut, description="Too many lookups; see Retry-After")
    @resolver.doc(summary="Resolve a label code (upper-case QR form)", **_DOC)
    def get(self, args, code):
        return resolve_code(code, args)


# GS1 Digital Link (https://ref.gs1.org/standards/digital-link/): /01/{gtin}/21/{serial}, the
# serial being the label's code; the optional /10/{lot} qualifier comes before it and is not
# checked (the label names its lot), and query strings the resolver does not know are ignored.
_GS1_DOC = {**_DOC, "parameters": [
    {"in": "path", "name": "gtin", "required": True, "schema": {"type": "string", "example": "06901234567892"},
     "description": "GS1 AI 01: the product's GTIN-8/12/13/14 (check digit verified; a wrong one answers 422)"},
    {"in": "path", "name": "serial", "required": True, "schema": {"type": "string"},
     "description": "GS1 AI 21: the label's code, any case"}]}


@resolver.route("/01/<gtin>/21/<serial>")
class ResolveGs1(MethodView):
    @resolver.public()
    @resolver.arguments(_QUERY, location="query")
    @resolver.response(200, s.ScanResultOut, description="An issued label of this GTIN; text/html for browsers")
    @resolver.alt_response(404, schema=s.ScanResultOut, description="查无此码: never issued, or not a label of this GTIN")
    @resolver.alt_response(422, schema=s.ScanResultOut, description="A mistyped code or GTIN (check digit)")
    @resolver.alt_response(429, schema=s.ScanResultOut, description="Too many lookups; see Retry-After")
    @resolver.doc(summary="Resolve a label by GS1 Digital Link (/01/{gtin}/21/{code}): the same answer as /v/{code}",
                  **_GS1_DOC)
    def get(self, args, gtin, serial):
        return resolve_code(serial, args, gtin_text=gtin)


@resolver.route("/01/<gtin>/10/<lot>/21/<serial>")
class ResolveGs1Lot(MethodView):
    @resolver.public()
    @resolver.arguments(_QUERY, location="query")
    @resolver.response(200, s.ScanResultOut, description="The same as /01/{gtin}/21/{serial}")
    @resolver.alt_response(404, schema=s.ScanResultOut, description="查无此码")
    @resolver.alt_response(422, schema=s.ScanResultOut, description="A mistyped code or GTIN")
    @resolver.alt_response(429, schema=s.ScanResultOut, description="Too many lookups; see Retry-After")
    @resolver.doc(summary="Resolve a label by GS1 Digital Link with the batch/lot qualifier (AI 10, not checked)",
                  **{**_GS1_DOC, "parameters": _GS1_DOC["parameters"] + [
                      {"in": "path", "name": "lot", "required": True, "schema": {"type": "string"},
                       "description": "GS1 AI 10: batch/lot (ignored: the label names its own lot)"}]})
    def get(self, args, gtin, lot, serial):
        return resolve_code(serial, args, gtin_text=gtin)


class LookupQuery(Schema):
    c = fields.String(required=True, metadata={"description": "A typed code (the page's form)"})


@resolver.route("/v/")
class Lookup(MethodView):
    @resolver.public()
    @resolver.arguments(LookupQuery, location="query")
    @resolver.response(303, description="To /v/{code}")
    @resolver.doc(summary="The page's code form: redirect to /v/{code}")
    def get(self, args):
        typed = (args.get("c") or "")[:MAX_CODE_INPUT]
        try:
            target = service.codes.normalise(typed)
        except service.codes.CodeError:
            target = re.sub(r"[^0-9A-Za-z]", "", typed)[:20] or "-"
        return redirect(f"/v/{target}", 303)


# --- the scratch-off PIN ----------------------------------------------------------------------------
_PIN_RESULT = s.PinResultOut()
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_PIN_BODY = {"type": "object", "required": ["pin"], "properties": {"pin": {
    "type": "string", "maxLength": codes.MAX_PIN_INPUT, "example": "01234567",
    "description": "The 8 digits under the scratch-off layer (full-width digits, spaces and hyphens accepted)"}}}
_PIN_BOTH = {"text/html": {"schema": {"type": "string"}},
             "application/json": {"schema": {"$ref": "#/components/schemas/PinResultOut"}}}
_PIN_DOC = {
    "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": _PIN_BODY},
                                                  "application/json": {"schema": _PIN_BODY}}},
    "responses": {status: {"description": what, "content": _PIN_BOTH} for status, what in (
        ("200", "A correct PIN: first verification (genuine), or already verified at verified_at"),
        ("404", "查无此码 (scans.code_unknown), or the label has no PIN (scans.pin_absent)"),
        ("409", "The label is voided, lost, stolen or not activated (scans.pin_label_state), or inspectors "
                "reported the code or it has an open fraud alert (scans.pin_label_flagged, verdict warn): "
                "the PIN is not checked"),
        ("429", "Too many wrong PINs for this code (scans.pin_locked) or from this client "
                "(scans.pin_client_locked), or too many lookups; see Retry-After"),
        ("503", "The attempt counter (Redis) is unreachable: no check without it"))}}
_PIN_DOC["responses"]["422"] = {
    "description": "A wrong PIN (scans.pin_mismatch, with attempts_left), not 8 digits (scans.pin_malformed), "
                   "a mistyped code, or bad query arguments",
    "content": {**_PIN_BOTH, "application/json": {"schema": {"anyOf": [
        {"$ref": "#/components/schemas/PinResultOut"}, {"$ref": "#/components/schemas/ErrorBody"}]}}}}


def _pin_input() -> tuple[object, bool]:
    """(the typed PIN, whether the body was JSON): a form post (the page) or JSON (the
    mini-program). A body of another type is 415; JSON that does not parse is 400."""
    mimetype = request.mimetype or ""
    if mimetype in _FORM_TYPES:
        return request.form.get("pin"), False
    if mimetype == "application/json" or mimetype.endswith("+json"):
        data = request.get_json(silent=True, cache=True)
        if data is None and request.get_data(cache=True).strip() not in (b"", b"null"):
            raise AppError("request.bad_json", errors={"json": ["The body is not valid JSON."]})
        return (data.get("pin") if isinstance(data, dict) else None), True
    if request.get_data(cache=True):
        raise AppError("request.unsupported_media", errors={"json": [
            f"Send the PIN as a form (application/x-www-form-urlencoded) or JSON, not {mimetype or 'untyped data'}."]})
    return None, False


def verify_pin(code_text: str, args: dict):
    typed, json_body = _pin_input()
    if args.get("format"):
        as_json = args["format"] == "json"
    elif json_body:
        as_json = request.accept_mimetypes.best_match(["application/json", "text/html"]) != "text/html"
    else:
        as_json = wants_json(args)
    t = thresholds()
    result = pins.verify(db.session, redis.client, code_text, typed, who({}, t), t)
    body = result.to_dict()
    headers = {"Retry-After": str(result.retry_after)} if result.status in (429, 503) and result.retry_after else {}
    if result.status == 503:
        headers["Retry-After"] = "30"
    return answer(body, result.status, as_json, headers, schema=_PIN_RESULT, html=page.render_pin)


@resolver.route("/v/<code>/pin")
class VerifyPin(MethodView):
    @resolver.public()
    @resolver.arguments(s.PinQuery, location="query")
    @resolver.response(200, s.PinResultOut, description="A correct PIN; text/html for browsers")
    @resolver.alt_response(404, schema=s.PinResultOut, description="查无此码, or a label without PIN")
    @resolver.alt_response(409, schema=s.PinResultOut, description="The label's state: the PIN is not checked")
    @resolver.alt_response(429, schema=s.PinResultOut, description="Locked after wrong PINs; see Retry-After")
    @resolver.alt_response(503, schema=s.PinResultOut, description="No attempt counter, no check")
    @resolver.doc(summary="Verify the scratch-off PIN of a label, once: a form post from the page (answers the "
                          "zh-CN page) or JSON (answers JSON)", **_PIN_DOC)
    def post(self, args, code):
        return verify_pin(code, args)


# --- stats and alerts ------------------------------------------------------------------------------
@blp.route("/stats/scans")
class ScanStats(MethodView):
    @blp.roles("admin", "operator")
    @blp.arguments(s.StatsQuery, location="query")
    @blp.response(200, s.StatsOut)
    @blp.doc(summary="Scan counts for the dashboards (admins: all or one operator; operators: their own)")
    def get(self, args):
        return service.stats(redis.client, current_actor(), args.get("operator_id"), args["days"])


@blp.route("/scans/alerts")
class Alerts(MethodView):
    @blp.roles("admin", "operator", "inspector")
    @blp.arguments(s.AlertQuery, location="query")
    @blp.response(200, s.ScanAlertOut(many=True))
    @blp.paginate()
    @blp.doc(summary="Scan fraud alerts (operators: on their own labels)")
    def get(self, filters, pagination_parameters):
        return one_page(pagination_parameters, service.list_alerts, current_actor(), filters)


@blp.route("/scans/alerts/<int:alert_id>")
class Alert(MethodView):
    @blp.roles("admin", "operator", "inspector")
    @blp.response(200, s.ScanAlertOut)
    @blp.doc(summary="Read a scan alert")
    def get(self, alert_id):
        return service.get_alert(db.session, current_actor(), alert_id)


@blp.route("/scans/alerts/<int:alert_id>/acknowledge")
class AlertAck(MethodView):
    @blp.roles("admin", "operator")
    @blp.arguments(AlertAckIn)
    @blp.response(200, s.ScanAlertOut)
    @blp.doc(summary="Acknowledge an alert (it stays open: later scans still update it)")
    def post(self, values, alert_id):
        return service.acknowledge_alert(db.session, current_actor(), alert_id, values.get("note"))


@blp.route("/scans/alerts/<int:alert_id>/resolve")
class AlertResolve(MethodView):
    @blp.roles("admin", "operator")
    @blp.arguments(AlertResolveIn)
    @blp.response(200, s.ScanAlertOut)
    @blp.doc(summary="Resolve an alert with a note (a later hit opens a new one)")
    def post(self, values, alert_id):
        return service.resolve_alert(db.session, redis.client, current_actor(), alert_id, values["note"])
