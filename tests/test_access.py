"""The access matrix: every operation in /api/openapi.json × every kind of caller.

The walk is driven by the OpenAPI document the app serves, so a route added by a later issue
(labels, scans, …) is covered the moment it is registered. For each operation it checks:

- anonymous, a garbage token and a revoked user's token → 401, unless `x-roles` is ["public"];
- each role not in `x-roles` → 403;
- each role in `x-roles` → neither 401 nor 403 (and never a 5xx); a GET answers 200.

An operation without `x-roles` fails the run (it forgot `@blp.roles(...)` / `@blp.public()`), and
so does a Flask URL rule that is missing from the document (a plain `@app.route` bypasses both).

How a new route gets its path parameters
-----------------------------------------
`PATH_PARAMS` maps a path parameter to a function of the `World` (the rows built below for
every test). Keys are looked up most specific first:

    "<segment before the parameter>/{name}"   e.g. "operators/{row_id}", "batches/{batch_id}"
    "{name}"                                  e.g. "{user_id}"

so the generic `row_id` of `/registry/<name>/<int:row_id>` resolves per collection. Values must
be rows (or, for a non-id parameter such as an import's `kind`, a valid value) that belong to operator A (the operator and agent callers' own operator), so that every
allowed role may read them. A new domain adds its rows to `World`/`build_world` and its
parameter names here; a path parameter without a mapping fails with a message saying so.
Requests that take a body get `{}`: callers that may not call the route are refused before the
body is read, callers that may are answered 2xx or 4xx, never 401/403/5xx.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from backend.auth import service as auth_service
from backend.http import ROLES
from tests.factories import fieldwork_access_rows
from tests.scans_support import world_alert_id, world_gtin, world_label_code
from tests.factories import labels_world_row, print_job_world_row, world_row

HTTP_METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")
# Flask URL rules that are deliberately not API operations (the document itself and its UI).
UNDOCUMENTED_RULES = {"/api/openapi.json", "/api/docs", "/api/docs/static/{filename}", "/static/{filename}"}


# --- the world every test runs against ---------------------------------------------------------
@dataclass
class World:
    town: Any
    village: Any
    grower: Any
    plot: Any
    nursery: Any
    operator_a: Any
    operator_b: Any
    spare_user: Any  # a user the admin routes may act on (revoke …) without disturbing the callers
    tokens: dict[str, str] = field(default_factory=dict)  # caller name → bearer token


def build_world(make, session) -> World:
    town = make.town()
    village = make.village(town)
    grower = make.grower(village)
    plot = make.plot(grower)
    nursery = make.nursery(town, village_id=village.id)
    operator_a, operator_b = make.operator(town), make.operator(town)
    spare = auth_service.create_user(session, "spare-inspector", "inspector")
    tokens = {
        "admin": make.token("admin"),
        "inspector": make.token("inspector"),
        "operator": make.token("operator", operator_a),
        "agent": make.token("agent", operator_a),
        "operator_b": make.token("operator", operator_b),
    }
    revoked = auth_service.create_user(session, "revoked-operator", "operator", operator_a.id)
    tokens["revoked"] = auth_service.issue_token(session, revoked)
    auth_service.revoke_user(session, revoked)
    session.commit()  # a savepoint in the tests: a failing request must not roll the world back
    return World(town, village, grower, plot, nursery, operator_a, operator_b, spare, tokens)


PATH_PARAMS: dict[str, Callable[[World], Any]] = {
    "towns/{row_id}": lambda w: w.town.id,
    "villages/{row_id}": lambda w: w.village.id,
    "growers/{row_id}": lambda w: w.grower.id,
    "plots/{row_id}": lambda w: w.plot.id,
    "operators/{row_id}": lambda w: w.operator_a.id,
    "nurseries/{row_id}": lambda w: w.nursery.id,
    "imports/{kind}": lambda w: "growers",
    "{user_id}": lambda w: w.spare_user.id,
    # fieldwork: rows made on first use (tests/factories.py fieldwork_access_rows)
    "checkins/{checkin_uuid}": lambda w: fieldwork_access_rows(w)["checkin_uuid"],
    "photos/{photo_uuid}": lambda w: fieldwork_access_rows(w)["photo_uuid"],
    "{variant}": lambda w: "thumb",
    "tasks/{task_id}": lambda w: fieldwork_access_rows(w)["task_id"],
    # the trade chain: rows of operator A, built on first use (tests/factories.py, world_row)
    "trades/{trade_id}": lambda w: world_row(w, "trade").id,
    "plots/{plot_id}": lambda w: w.plot.id,
    "warehouses/{warehouse_id}": lambda w: world_row(w, "warehouse").id,
    "lots/{lot_id}": lambda w: world_row(w, "lot").id,
    "sales/{sale_id}": lambda w: world_row(w, "sale").id,
    "growers/{grower_id}": lambda w: w.grower.id,
    "seedling-sales/{seedling_sale_id}": lambda w: world_row(w, "seedling_sale").id,
    "alerts/{chain_alert_id}": lambda w: world_row(w, "alert").id,
    # consumer scans: an activated label and an open alert of operator A (tests/scans_support.py)
    "v/{code}": world_label_code,
    "V/{code}": world_label_code,
    "alerts/{alert_id}": world_alert_id,
    # GS1 Digital Link: the label above, its batch given a GTIN
    "01/{gtin}": world_gtin,
    "10/{lot}": lambda w: "L1",
    "21/{serial}": world_label_code,
    # labels: a batch of operator A and its application (tests/factories.py, labels_world_row)
    "applications/{application_id}": lambda w: labels_world_row(w, "application"),
    "batches/{batch_id}": lambda w: labels_world_row(w, "batch"),
    "renders/{render_id}": lambda w: labels_world_row(w, "render"),
    "print-jobs/{print_job_id}": print_job_world_row,
}


def fill_path(path: str, world: World) -> str:
    """The concrete URL for a templated path, or a test failure naming the missing mapping."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        before = path[: match.start()].rstrip("/").rsplit("/", 1)[-1]
        for key in (f"{before}/{{{name}}}", f"{{{name}}}"):
            if key in PATH_PARAMS:
                return str(PATH_PARAMS[key](world))
        pytest.fail(
            f"{path}: no value for path parameter {{{name}}}. Add '{before}/{{{name}}}' or '{{{name}}}' "
            f"to PATH_PARAMS in tests/test_access.py (and the row to build_world)."
        )

    return re.sub(r"\{([^}/]+)\}", value, path)


# --- the document ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spec(app) -> dict:
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    return response.json


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    roles: tuple[str, ...]
    has_body: bool
    required_query: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


def operations(spec: dict) -> list[Operation]:
    ops = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            params = op.get("parameters", []) + item.get("parameters", [])
            ops.append(Operation(
                method=method,
                path=path,
                roles=tuple(op.get("x-roles") or ()),
                has_body="requestBody" in op,
                required_query=tuple(p["name"] for p in params if p.get("in") == "query" and p.get("required")),
            ))
    return ops


@pytest.fixture
def world(make, session) -> World:
    return build_world(make, session)


def call(client, op: Operation, world: World, headers: dict | None = None):
    kwargs = {"headers": headers or {}}
    if op.has_body:
        kwargs["json"] = {}
    return client.open(fill_path(op.path, world), method=op.method.upper(), **kwargs)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# --- the document is complete ------------------------------------------------------------------
def test_every_operation_declares_its_roles(spec):
    ops = operations(spec)
    assert len(ops) >= 20, "the walk found suspiciously few operations"
    missing = [str(op) for op in ops if not op.roles]
    assert not missing, f"operations without x-roles (add @blp.roles(...) or @blp.public()): {missing}"
    allowed = set(ROLES) | {"public"}
    odd = [f"{op}: {op.roles}" for op in ops if set(op.roles) - allowed or ("public" in op.roles and len(op.roles) > 1)]
    assert not odd, f"x-roles with unknown roles, or 'public' mixed with roles: {odd}"


def test_every_url_rule_is_in_the_document(app, spec):
    """A route added with a plain @app.route (or a blueprint outside the Api) has no role check."""
    documented = {(path, m) for path, item in spec["paths"].items() for m in item if m in HTTP_METHODS}
    missing = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        if path in UNDOCUMENTED_RULES:
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if (path, method.lower()) not in documented:
                missing.append(f"{method} {path}")
    assert not missing, f"routes missing from /api/openapi.json (so without declared roles): {missing}"


def test_a_path_parameter_without_a_mapping_fails_clearly(world):
    with pytest.raises(pytest.fail.Exception, match=r"no value for path parameter \{widget_id\}.*PATH_PARAMS"):
        fill_path("/api/v1/widgets/{widget_id}", world)


# --- the matrix --------------------------------------------------------------------------------
@pytest.mark.parametrize("caller", ["anonymous", "garbage", "revoked"])
def test_callers_without_a_valid_token_get_401_except_on_public_routes(client, spec, world, caller):
    headers = {
        "anonymous": {},
        "garbage": bearer("cp_" + "x" * 43),
        "revoked": bearer(world.tokens["revoked"]),
    }[caller]
    problems = []
    for op in operations(spec):
        r = call(client, op, world, headers)
        if op.roles == ("public",):
            if r.status_code in (401, 403) or r.status_code >= 500:
                problems.append(f"{op}: public route answered {r.status_code}")
            continue
        if r.status_code != 401:
            problems.append(f"{op}: expected 401, got {r.status_code}")
        elif not (r.is_json and r.json.get("reason") == "auth.unauthenticated" and r.json.get("code") == 401):
            problems.append(f"{op}: 401 without the error body: {r.get_data(as_text=True)[:200]}")
        elif r.headers.get("WWW-Authenticate") != "Bearer":
            problems.append(f"{op}: 401 without 'WWW-Authenticate: Bearer'")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_refused_exactly_where_the_document_says(client, spec, world, role):
    headers = bearer(world.tokens[role])
    problems = []
    for op in operations(spec):
        r = call(client, op, world, headers)
        if r.status_code >= 500:
            problems.append(f"{op}: {r.status_code} for {role}")
        elif op.roles == ("public",) or role in op.roles:
            if r.status_code in (401, 403):
                problems.append(f"{op}: {role} is in x-roles {op.roles} but got {r.status_code}: {r.json}")
            elif op.method == "get" and not op.required_query and r.status_code != 200:
                problems.append(f"{op}: {role} may read it but got {r.status_code}: {r.json}")
        elif r.status_code != 403:
            problems.append(f"{op}: {role} is not in x-roles {op.roles} but got {r.status_code}")
        elif r.json.get("reason") != "auth.forbidden":
            problems.append(f"{op}: 403 without reason auth.forbidden: {r.json}")
    assert not problems, "\n".join(problems)


# --- tenancy -----------------------------------------------------------------------------------
#: Path parameters that name rows every operator may read (the shared registry), or no row at all.
SHARED_PARAMS = {"towns/{row_id}", "villages/{row_id}", "plots/{row_id}", "nurseries/{row_id}",
                 "imports/{kind}", "{variant}", "v/{code}", "V/{code}"}


def param_keys(path: str) -> list[str]:
    """The PATH_PARAMS keys a templated path uses (as fill_path resolves them)."""
    keys = []
    for match in re.finditer(r"\{([^}/]+)\}", path):
        before = path[: match.start()].rstrip("/").rsplit("/", 1)[-1]
        name = match.group(1)
        keys.append(next((k for k in (f"{before}/{{{name}}}", f"{{{name}}}") if k in PATH_PARAMS), name))
    return keys


def test_another_operator_never_reaches_operator_a_rows(client, spec, world):
    """Every route an operator may call, aimed at operator A's rows, with operator B's token:
    never a 2xx (404 is the rule: no existence leak), never a 5xx."""
    headers = bearer(world.tokens["operator_b"])
    problems, checked = [], 0
    for op in operations(spec):
        keys = param_keys(op.path)
        if "operator" not in op.roles or not keys or all(k in SHARED_PARAMS for k in keys):
            continue
        checked += 1
        r = call(client, op, world, headers)
        if r.status_code < 300 or r.status_code >= 500:
            problems.append(f"{op}: operator B got {r.status_code}: {r.get_data(as_text=True)[:200]}")
        elif op.method == "get" and r.status_code not in (403, 404):
            problems.append(f"{op}: operator B got {r.status_code}, expected 404")
    assert checked >= 5, "the walk found too few operator routes on operator A's rows"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ["operator", "agent"])
def test_an_operator_or_agent_lists_only_its_own_operator(client, world, role):
    r = client.get("/api/v1/registry/operators", headers=bearer(world.tokens[role]))
    assert r.status_code == 200
    assert [row["id"] for row in r.json] == [world.operator_a.id]
    assert '"total": 1' in r.headers["X-Pagination"]


@pytest.mark.parametrize("role", ["operator", "agent"])
def test_an_operator_filtering_for_another_operator_finds_nothing(client, world, role):
    name = world.operator_b.name
    r = client.get("/api/v1/registry/operators", query_string={"q": name}, headers=bearer(world.tokens[role]))
    assert r.status_code == 200 and r.json == []


def test_admin_and_inspector_list_every_operator(client, world):
    for role in ("admin", "inspector"):
        ids = {row["id"] for row in client.get("/api/v1/registry/operators", headers=bearer(world.tokens[role])).json}
        assert {world.operator_a.id, world.operator_b.id} <= ids


@pytest.mark.parametrize("role", ["operator", "agent"])
def test_another_operators_row_is_not_found_not_forbidden(client, world, role):
    headers = bearer(world.tokens[role])
    other = client.get(f"/api/v1/registry/operators/{world.operator_b.id}", headers=headers)
    missing = client.get("/api/v1/registry/operators/2000000000", headers=headers)
    assert other.status_code == 404
    assert other.json["reason"] == "registry.not_found"
    # Nothing tells "exists but not yours" apart from "does not exist".
    assert missing.status_code == 404
    assert set(other.json) == set(missing.json)
    assert other.json["message"] == missing.json["message"]
    assert world.operator_b.name not in other.get_data(as_text=True)
    assert world.operator_b.credit_code not in other.get_data(as_text=True)


def test_operator_b_sees_its_own_row_but_not_a(client, world):
    headers = bearer(world.tokens["operator_b"])
    assert client.get(f"/api/v1/registry/operators/{world.operator_b.id}", headers=headers).status_code == 200
    assert client.get(f"/api/v1/registry/operators/{world.operator_a.id}", headers=headers).status_code == 404


REGISTRY_PATCHES = {
    "towns": ("town", {"name": "改名镇"}),
    "villages": ("village", {"name": "改名村"}),
    "growers": ("grower", {"name": "改名户"}),
    "plots": ("plot", {"tree_count": 1}),
    "operators": ("operator_a", {"name": "改名陈皮公司"}),
    "nurseries": ("nursery", {"name": "改名苗圃"}),
}


@pytest.mark.parametrize("collection", sorted(REGISTRY_PATCHES))
@pytest.mark.parametrize("role", ["operator", "agent", "inspector"])
def test_non_admins_cannot_patch_registry_rows(client, session, world, collection, role):
    attr, change = REGISTRY_PATCHES[collection]
    row = getattr(world, attr)
    key = next(iter(change))
    before = getattr(row, key)
    r = client.patch(f"/api/v1/registry/{collection}/{row.id}", json=change, headers=bearer(world.tokens[role]))
    assert r.status_code == 403
    assert r.json["reason"] == "auth.forbidden"
    session.expire_all()
    assert getattr(row, key) == before
    # The same change by an admin goes through, so the 403 was the role and not the body.
    r = client.patch(f"/api/v1/registry/{collection}/{row.id}", json=change, headers=bearer(world.tokens["admin"]))
    assert r.status_code == 200, r.json
    assert r.json[key] == change[key]


# --- tokens and headers ------------------------------------------------------------------------
def test_a_revoked_users_token_is_refused(client, make):
    token = make.token("inspector", name="soon-gone")
    headers = bearer(token)
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    admin = bearer(make.token("admin"))
    user_id = client.get("/api/v1/auth/me", headers=headers).json["user_id"]
    assert client.post(f"/api/v1/auth/users/{user_id}/revoke", headers=admin).status_code == 200
    r = client.get("/api/v1/auth/me", headers=headers)
    assert r.status_code == 401
    assert r.json["reason"] == "auth.unauthenticated"


BAD_AUTHORIZATION = {
    "empty": "",
    "scheme only": "Bearer",
    "scheme and space": "Bearer ",
    "basic auth": "Basic YWRtaW46YWRtaW4=",
    "token scheme": "Token cp_abcdef",
    "no scheme": "cp_abcdefghijklmnopqrstuvwxyz",
    "unknown token": "Bearer cp_thisisnotarealtokenatall0123456789abcdefg",
    "two tokens": "Bearer cp_a cp_b",
    "oversized": "Bearer " + "A" * 100_000,
    "just over the cap": "Bearer " + "a" * 201,
    "non-ascii": "Bearer 陈皮陈皮陈皮",
    "latin-1": "Bearer caf\xe9",
    "tab separated": "Bearer\tcp_abc",
    "sql-ish": "Bearer ' OR 1=1 --",
}


@pytest.mark.parametrize("header", BAD_AUTHORIZATION.values(), ids=BAD_AUTHORIZATION.keys())
def test_bad_authorization_headers_get_a_json_401(client, world, header):
    r = client.get("/api/v1/registry/towns", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.is_json
    assert r.json["code"] == 401 and r.json["reason"] == "auth.unauthenticated"
    assert set(r.json) >= {"code", "status", "message", "reason"}


def test_the_stored_hash_or_prefix_is_not_a_token(client, session, world):
    from backend.auth.models import ApiToken

    row = session.query(ApiToken).filter_by(token_hash=auth_service.hash_token(world.tokens["admin"])).one()
    for fake in (row.token_hash, row.prefix):
        assert client.get("/api/v1/auth/me", headers=bearer(fake)).status_code == 401


def test_the_bearer_scheme_is_case_insensitive(client, world):
    r = client.get("/api/v1/auth/me", headers={"Authorization": "bearer " + world.tokens["inspector"]})
    assert r.status_code == 200 and r.json["role"] == "inspector"
