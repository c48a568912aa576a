"""The registry (一库) through its HTTP API: create, read, update and list for towns, villages,
growers, plots, operators and nurseries, and every kind of bad input a clerk, a spreadsheet or
an attacker sends. Each error is checked for its status, the one JSON shape, its `reason` and the
field it names; a failed request leaves every table as it was."""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from datetime import date
from http import HTTPStatus

import pytest
from sqlalchemy import func, select

from backend.models import metadata
from backend.registry.models import Grower, Nursery, Operator, Plot, Town, Village
from backend.registry.validators import credit_check_char, id_check_char

API = "/api/v1/registry"
MODELS = {"towns": Town, "villages": Village, "growers": Grower, "plots": Plot, "operators": Operator,
          "nurseries": Nursery}
LOCATIONS = ("json", "query", "files", "form", "path", "headers")


# --- helpers -----------------------------------------------------------------------------------
def credit_code(n: int) -> str:
    """A valid 统一社会信用代码 of a 农民专业合作社 (93…), apart from the factory's 91… codes."""
    body = f"93440705{n:09d}"
    return body + credit_check_char(body)


def id_number(n: int) -> str:
    """A valid 居民身份证号码 from 440781 (apart from the factory's 440705 numbers)."""
    body = f"44078119{70 + n % 30:02d}0202{n % 1000:03d}"
    return body + id_check_char(body)


def error_fields(body: dict) -> set[str]:
    """Field names an error body names, whether flat ({field: [...]}) or by location ({json: {...}})."""
    names = set()
    for key, value in (body.get("errors") or {}).items():
        if key in LOCATIONS and isinstance(value, dict):
            names |= set(value)
        else:
            names.add(key)
    return names


def assert_error(r, status: int, reason: str | tuple[str, ...], field: str | None = None) -> dict:
    """The response is the one error shape with this status, reason (or one of these) and field."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.get_data(as_text=True)[:500]}"
    assert r.is_json, r.get_data(as_text=True)[:200]
    body = r.json
    assert body["code"] == status
    assert body["status"] == HTTPStatus(status).phrase
    assert isinstance(body["message"], str) and body["message"]
    assert body["reason"] in ((reason,) if isinstance(reason, str) else reason), body
    if field is not None:
        assert field in error_fields(body), f"{field!r} not named in {body.get('errors')}"
    return body


def table_counts(session) -> dict[str, int]:
    """Rows in every table, in one round trip."""
    tables = metadata.sorted_tables
    row = session.execute(select(*(select(func.count()).select_from(t).scalar_subquery().label(t.name)
                                   for t in tables))).one()
    return dict(zip((t.name for t in tables), row))


@contextmanager
def nothing_written(session):
    """Every table has the same number of rows after the block as before."""
    before = table_counts(session)
    yield
    session.expire_all()
    assert table_counts(session) == before


@pytest.fixture(scope="module")
def seeded(app):
    """One row of each resource and an admin token, committed once for this module (every test
    still runs in its own rolled-back transaction on top) and removed when the module is done.
    Building them per test cost more round trips than most tests make."""
    from types import SimpleNamespace

    from backend.extensions import db
    from tests.factories import Factory

    with app.app_context():
        make = Factory(db.session)
        town = make.town()
        village = make.village(town)
        grower = make.grower(village)
        rows = {"town": town, "village": village, "grower": grower, "plot": make.plot(grower),
                "operator": make.operator(town), "nursery": make.nursery(town)}
        token = make.token("admin")
        rows = {name: SimpleNamespace(id=row.id) for name, row in rows.items()}
        db.session.remove()
    yield rows, token
    with app.app_context():
        with db.engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture
def admin(seeded):
    return {"Authorization": f"Bearer {seeded[1]}"}


@pytest.fixture
def base(seeded):
    """The seeded rows by resource name in the singular (town, village, grower, plot, operator, nursery)."""
    return dict(seeded[0])


SINGULAR = {"towns": "town", "villages": "village", "growers": "grower", "plots": "plot", "operators": "operator",
            "nurseries": "nursery"}


def valid(resource: str, base: dict, n: int) -> dict:
    """A valid create body for `resource`, distinct for each n."""
    town, village, grower = base["town"], base["village"], base["grower"]
    return {
        "towns": {"name": f"接口镇{n}", "code": f"4407{n:05d}", "lon": 113.05, "lat": 22.5},
        "villages": {"town_id": town.id, "name": f"接口村{n}", "code": f"4407059{n:05d}", "lon": 113.05, "lat": 22.5},
        "growers": {"household_code": f"api{n:05d}", "name": f"户主甲{n}", "phone": f"1390000{n:04d}",
                    "id_number": id_number(500 + n), "village_id": village.id},
        "plots": {"code": f"api-pl{n}", "grower_id": grower.id, "village_id": village.id, "area_mu": "2.50",
                  "tree_count": 150, "planting_year": 2010, "verified_yield_kg": "7500.000", "lon": 113.05, "lat": 22.5},
        "operators": {"name": f"接口陈皮合作社{n}", "credit_code": credit_code(9000 + n), "kind": "cooperative",
                      "town_id": town.id, "address": "大泽镇", "contact_phone": "0750-6312345", "lon": 113.05,
                      "lat": 22.5, "licence_status": "active", "licence_no": f"GI-{n}",
                      "licence_valid_from": "2024-01-01", "licence_valid_until": "2027-12-31"},
        "nurseries": {"name": f"接口苗圃{n}", "credit_code": credit_code(9500 + n), "licence_no": f"苗-{n}",
                      "town_id": town.id, "village_id": village.id, "address": "司前镇", "lon": 113.05, "lat": 22.5},
    }[resource]


# What a PATCH changes, and the list filters each resource offers (filter → the base row it names).
CHANGES = {
    "towns": {"name": "改名镇"},
    "villages": {"name": "改名村", "lon": 113.1, "lat": 22.6},
    "growers": {"phone": "0750-1234567"},
    "plots": {"tree_count": 120, "area_mu": "3.00"},
    "operators": {"kind": "shop", "address": "会城街道新会大道1号"},
    "nurseries": {"licence_no": "苗-改"},
}
FILTERS = {
    "villages": {"town_id": "town"},
    "growers": {"village_id": "village", "town_id": "town"},
    "plots": {"grower_id": "grower", "village_id": "village", "town_id": "town"},
    "operators": {"town_id": "town"},
    "nurseries": {"town_id": "town"},
}
# The field each resource is found by with ?q=
SEARCHED = {"towns": "name", "villages": "name", "growers": "household_code", "plots": "code",
            "operators": "credit_code", "nurseries": "name"}


# --- create / read / update / list -------------------------------------------------------------
@pytest.mark.parametrize("resource", sorted(MODELS))
def test_create_read_update_round_trip(client, admin, base, resource):
    body = valid(resource, base, 1)
    r = client.post(f"{API}/{resource}", json=body, headers=admin)
    assert r.status_code == 201, r.json
    created = r.json
    for key, value in body.items():
        if key == "id_number":
            continue
        expected = value.upper() if key in ("household_code", "code") and isinstance(value, str) else value
        assert created[key] == expected, key
    assert created["created_at"].endswith("+08:00")  # shown in Asia/Shanghai

    r = client.get(f"{API}/{resource}/{created['id']}", headers=admin)
    assert r.status_code == 200 and r.json == created

    change = CHANGES[resource]
    r = client.patch(f"{API}/{resource}/{created['id']}", json=change, headers=admin)
    assert r.status_code == 200, r.json
    updated = client.get(f"{API}/{resource}/{created['id']}", headers=admin).json
    for key, value in created.items():
        if key in change:
            assert updated[key] == change[key]
        elif key != "updated_at":
            assert updated[key] == value, f"PATCH of {list(change)} changed {key}"


@pytest.mark.parametrize("resource", sorted(MODELS))
def test_list_paginates_with_an_x_pagination_header(client, admin, base, resource):
    ids = [client.post(f"{API}/{resource}", json=valid(resource, base, n), headers=admin).json["id"] for n in (1, 2, 3)]
    total = client.get(f"{API}/{resource}", headers=admin).json
    r1 = client.get(f"{API}/{resource}", query_string={"page_size": 2}, headers=admin)
    assert r1.status_code == 200 and len(r1.json) == 2
    meta = json.loads(r1.headers["X-Pagination"])
    assert meta["total"] == len(total) and meta["total_pages"] == math.ceil(len(total) / 2)
    assert meta["page"] == 1 and meta["next_page"] == 2
    pages = [r1.json]
    for page in range(2, meta["total_pages"] + 1):
        pages.append(client.get(f"{API}/{resource}", query_string={"page_size": 2, "page": page}, headers=admin).json)
    seen = [row["id"] for p in pages for row in p]
    assert seen == sorted(seen) and len(set(seen)) == len(total)
    assert set(ids) <= set(seen)
    beyond = client.get(f"{API}/{resource}", query_string={"page_size": 2, "page": 1000}, headers=admin)
    assert beyond.status_code == 200 and beyond.json == []


@pytest.mark.parametrize("resource", sorted(MODELS))
def test_list_searches_by_q(client, admin, base, resource):
    rows = [client.post(f"{API}/{resource}", json=valid(resource, base, n), headers=admin).json for n in (11, 12)]
    needle = rows[1][SEARCHED[resource]]
    r = client.get(f"{API}/{resource}", query_string={"q": needle.lower()}, headers=admin)
    assert r.status_code == 200
    assert [row["id"] for row in r.json] == [rows[1]["id"]]


@pytest.mark.parametrize("resource", sorted(FILTERS))
def test_list_filters_by_reference(client, admin, make, base, resource):
    mine = client.post(f"{API}/{resource}", json=valid(resource, base, 21), headers=admin).json
    other_town = make.town()
    other_village = make.village(other_town)
    other_base = {"town": other_town, "village": other_village, "grower": make.grower(other_village)}
    theirs = client.post(f"{API}/{resource}", json=valid(resource, other_base, 22), headers=admin).json
    assert theirs["id"], theirs
    for param, row in FILTERS[resource].items():
        r = client.get(f"{API}/{resource}", query_string={param: base[row].id}, headers=admin)
        ids = [x["id"] for x in r.json]
        assert mine["id"] in ids and theirs["id"] not in ids, param


def test_operators_filter_by_kind_and_licence_status(client, admin, base):
    shop = client.post(f"{API}/operators", json={**valid("operators", base, 31), "kind": "shop",
                                                 "licence_status": "none"}, headers=admin).json
    coop = client.post(f"{API}/operators", json=valid("operators", base, 32), headers=admin).json
    by_kind = [x["id"] for x in client.get(f"{API}/operators?kind=shop", headers=admin).json]
    by_licence = [x["id"] for x in client.get(f"{API}/operators?licence_status=active", headers=admin).json]
    assert shop["id"] in by_kind and coop["id"] not in by_kind
    assert coop["id"] in by_licence and shop["id"] not in by_licence


@pytest.mark.parametrize("query, field", [
    ({"page": 0}, "page"), ({"page_size": 0}, "page_size"), ({"page_size": 101}, "page_size"),
    ({"page": "1e3"}, "page"), ({"town_id": "abc"}, "town_id"), ({"town_id": 2**63}, "town_id"),
    ({"town_id": "-1"}, "town_id"), ({"town_id": "1" + "0" * 5000}, "town_id"), ({"town_id": "٣"}, "town_id"),
    ({"town_id": "0"}, "town_id"),
    ({"q": "a\x00b"}, "q"), ({"q": "x" * 101}, "q"), ({"kind": "bank"}, "kind"),
])
def test_bad_list_parameters_are_422_naming_the_parameter(client, admin, query, field):
    r = client.get(f"{API}/operators", query_string=query, headers=admin)
    assert_error(r, 422, "request.invalid", field)


def test_search_text_is_not_a_like_pattern(client, admin, base):
    r = client.get(f"{API}/operators", query_string={"q": "%_%"}, headers=admin)
    assert r.status_code == 200  # neither a 500 nor an error; wildcards are dropped
    r = client.get(f"{API}/operators", query_string={"q": "no-such-operator-anywhere"}, headers=admin)
    assert r.json == []


# --- requests that are not JSON objects -------------------------------------------------------
BAD_BODIES = {
    "truncated JSON": ('{"name": ', "application/json", 400, "request.bad_json"),
    "trailing garbage": ('{"name": "a"} x', "application/json", 400, "request.bad_json"),
    "invalid UTF-8": (b'{"name": "\xff\xfe"}', "application/json", 400, "request.bad_json"),
    "nested 100,000 deep": ("[" * 100_000 + "]" * 100_000, "application/json", 400, "request.bad_json"),
    "a 5,000-digit integer": ('{"lon": 1' + "0" * 5000 + "}", "application/json", 400, "request.bad_json"),
    "an array": ("[1, 2]", "application/json", 422, "request.invalid"),
    "a string": ('"town"', "application/json", 422, "request.invalid"),
    "null": ("null", "application/json", 422, "request.invalid"),
    "text/plain": ('{"name": "会城街道", "code": "440705001"}', "text/plain", 415, "request.unsupported_media"),
    "form-encoded": ("name=x&code=440705001", "application/x-www-form-urlencoded", 415, "request.unsupported_media"),
    "XML": ("<town><name>x</name></town>", "application/xml", 415, "request.unsupported_media"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_a_body_that_is_not_a_json_object_is_refused(client, session, admin, base, case):
    data, content_type, status, reason = BAD_BODIES[case]
    with nothing_written(session):
        for resource in MODELS:
            r = client.post(f"{API}/{resource}", data=data, content_type=content_type, headers=admin)
            assert_error(r, status, reason)
            r = client.patch(f"{API}/{resource}/{base[SINGULAR[resource]].id}", data=data,
                             content_type=content_type, headers=admin)
            assert_error(r, status, reason)


def test_a_json_body_with_a_charset_or_a_json_suffix_is_accepted(client, admin):
    body = json.dumps({"name": "沙堆镇", "code": "440705010"})
    r = client.post(f"{API}/towns", data=body, content_type="application/json; charset=utf-8", headers=admin)
    assert r.status_code == 201
    r = client.patch(f"{API}/towns/{r.json['id']}", data=json.dumps({"name": "沙堆"}),
                     content_type="application/merge-patch+json", headers=admin)
    assert r.status_code == 200 and r.json["name"] == "沙堆"


def test_an_oversized_body_is_413(client, session, admin, app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = '{"name": "' + "镇" * (limit // 3 + 10) + '", "code": "440705011"}'
    with nothing_written(session):
        r = client.post(f"{API}/towns", data=body.encode(), content_type="application/json", headers=admin)
        assert_error(r, 413, "request.too_large")


# --- field-level bad input, every resource ----------------------------------------------------
@pytest.mark.parametrize("value, why", [
    ("名\x00字", "NUL"), ("名\x07字", "BEL"), ("名\x1b[31m字", "escape sequence"), ("名\n字", "newline"),
("名\x7f", "DEL"), ("", "empty"), ("   ", "blank"), ("名" * 201, "too long"),
    (12345, "a number"), (["名字"], "a list"), ({"zh": "名字"}, "an object"), (None, "null"), (True, "a boolean"),
])
def test_bad_names_are_422_naming_the_field(client, session, admin, base, value, why):
    with nothing_written(session):
        for resource in MODELS:
            field = {"plots": "code"}.get(resource, "name")
            body = {**valid(resource, base, 41), field: value}
            assert_error(client.post(f"{API}/{resource}", json=body, headers=admin), 422, "request.invalid", field)
            r = client.patch(f"{API}/{resource}/{base[SINGULAR[resource]].id}", json={field: value}, headers=admin)
            assert_error(r, 422, "request.invalid", field)


def test_a_lone_surrogate_is_refused(client, session, admin):
    with nothing_written(session):
        r = client.post(f"{API}/towns", data='{"name": "a\\ud800b", "code": "440705012"}',
                        content_type="application/json", headers=admin)
        assert_error(r, 422, "request.invalid", "name")


def test_unknown_and_read_only_fields_are_refused_by_name(client, session, admin, base):
    with nothing_written(session):
        for resource in MODELS:
            for field in ("colour", "id", "created_at", "updated_at"):
                r = client.post(f"{API}/{resource}", json={**valid(resource, base, 42), field: 7}, headers=admin)
                assert_error(r, 422, "request.invalid", field)
                r = client.patch(f"{API}/{resource}/{base[SINGULAR[resource]].id}", json={field: 7}, headers=admin)
                assert_error(r, 422, "request.invalid", field)
        r = client.post(f"{API}/growers", json={**valid("growers", base, 42), "id_number_masked": "4407**"},
                        headers=admin)
        assert_error(r, 422, "request.invalid", "id_number_masked")


REQUIRED = {"towns": {"name", "code"}, "villages": {"town_id", "name", "code"},
            "growers": {"household_code", "name", "village_id"},
            "plots": {"code", "grower_id", "village_id", "area_mu", "tree_count", "lon", "lat"},
            "operators": {"name", "credit_code", "kind", "town_id"}, "nurseries": {"name", "town_id"}}


def test_missing_required_fields_are_each_named(client, session, admin):
    with nothing_written(session):
        for resource, required in REQUIRED.items():
            body = assert_error(client.post(f"{API}/{resource}", json={}, headers=admin), 422, "request.invalid")
            assert error_fields(body) == required, resource


@pytest.mark.parametrize("resource, field", [
    ("villages", "town_id"), ("growers", "village_id"), ("plots", "grower_id"), ("plots", "village_id"),
    ("operators", "town_id"), ("nurseries", "town_id"), ("nurseries", "village_id"),
])
@pytest.mark.parametrize("value, status, reason", [
    (2_000_000_000, 422, "registry.invalid_reference"),  # fits the column, names no row
    (0, 422, "request.invalid"), (-1, 422, "request.invalid"), (2**31, 422, "request.invalid"),
    (2**63, 422, "request.invalid"), (10**30, 422, "request.invalid"), ("1", 422, "request.invalid"),
    (1.5, 422, "request.invalid"), (True, 422, "request.invalid"),
])
def test_references_must_name_an_existing_row(client, session, admin, base, resource, field, value, status, reason):
    body = {**valid(resource, base, 44), field: value}
    with nothing_written(session):
        assert_error(client.post(f"{API}/{resource}", json=body, headers=admin), status, reason, field)


@pytest.mark.parametrize("resource, field", [
    ("villages", "town_id"), ("growers", "village_id"), ("plots", "grower_id"), ("operators", "town_id"),
    ("nurseries", "town_id"),
])
def test_a_patch_to_an_unknown_reference_is_422(client, session, admin, base, resource, field):
    row_id = client.post(f"{API}/{resource}", json=valid(resource, base, 45), headers=admin).json["id"]
    with nothing_written(session):
        r = client.patch(f"{API}/{resource}/{row_id}", json={field: 2_000_000_000}, headers=admin)
        assert_error(r, 422, "registry.invalid_reference", field)
    assert client.get(f"{API}/{resource}/{row_id}", headers=admin).json[field] != 2_000_000_000


@pytest.mark.parametrize("row_id", ["2000000000", "0", str(2**31), str(2**63), "1" + "0" * 5000, "-1", "abc", "1.5",
                                    "1e3", "%EF%BC%91"])
def test_unknown_and_out_of_range_ids_in_the_path_are_404(client, session, admin, row_id):
    with nothing_written(session):
        for resource in MODELS:
            for method in ("GET", "PATCH"):
                r = client.open(f"{API}/{resource}/{row_id}", method=method, json={} if method == "PATCH" else None,
                                headers=admin)
                assert_error(r, 404, ("registry.not_found", "request.not_found"))


def test_delete_and_put_are_not_offered(client, session, admin, base):
    with nothing_written(session):
        for resource in MODELS:
            for method in ("DELETE", "PUT"):
                r = client.open(f"{API}/{resource}/{base[SINGULAR[resource]].id}", method=method, json={},
                                headers=admin)
                assert_error(r, 405, "request.method_not_allowed")


# --- points: numbers, NaN, Xinhui's bounding box ----------------------------------------------
@pytest.mark.parametrize("resource", ["towns", "villages", "plots", "operators", "nurseries"])
@pytest.mark.parametrize("raw, field, reason", [
    ('"lon": NaN, "lat": 22.5', "lon", "request.invalid"),
    ('"lon": Infinity, "lat": 22.5', "lon", "request.invalid"),
    ('"lon": 113.0, "lat": -Infinity', "lat", "request.invalid"),
    ('"lon": 1e400, "lat": 22.5', "lon", "request.invalid"),
    ('"lon": 9223372036854775808, "lat": 22.5', "lon", "request.invalid"),
    ('"lon": 181, "lat": 22.5', "lon", "request.invalid"),
    ('"lon": 120.0, "lat": 22.5', "lon", "registry.rule_violation"),  # a real place, but not Xinhui
    ('"lon": 113.0, "lat": 30.0', "lon", "registry.rule_violation"),
    ('"lon": 0, "lat": 0', "lon", "registry.rule_violation"),
])
def test_points_must_be_finite_and_inside_xinhui(client, session, admin, base, resource, raw, field, reason):
    body = {k: v for k, v in valid(resource, base, 46).items() if k not in ("lon", "lat")}
    data = json.dumps(body, ensure_ascii=False)[:-1] + ", " + raw + "}"
    with nothing_written(session):
        r = client.post(f"{API}/{resource}", data=data.encode(), content_type="application/json", headers=admin)
        assert_error(r, 422, reason, field)


@pytest.mark.parametrize("resource", ["towns", "villages", "operators", "nurseries"])
def test_lon_without_lat_is_refused(client, session, admin, base, resource):
    body = {**valid(resource, base, 47), "lat": None}
    with nothing_written(session):
        assert_error(client.post(f"{API}/{resource}", json=body, headers=admin), 422, "registry.rule_violation", "lat")
        body = {k: v for k, v in valid(resource, base, 48).items() if k != "lon"}
        assert_error(client.post(f"{API}/{resource}", json=body, headers=admin), 422, "registry.rule_violation", "lon")


def test_a_point_is_optional_but_then_neither_half(client, admin, base):
    body = {k: v for k, v in valid("operators", base, 49).items() if k not in ("lon", "lat")}
    r = client.post(f"{API}/operators", json=body, headers=admin)
    assert r.status_code == 201 and r.json["lon"] is None and r.json["lat"] is None


def test_a_plot_needs_a_point(client, session, admin, base):
    body = {k: v for k, v in valid("plots", base, 50).items() if k != "lat"}
    with nothing_written(session):
        assert_error(client.post(f"{API}/plots", json=body, headers=admin), 422, "request.invalid", "lat")


def test_patching_half_a_point_checks_it_against_the_stored_half(client, session, admin, base):
    town = client.post(f"{API}/towns", json=valid("towns", base, 51), headers=admin).json
    with nothing_written(session):
        r = client.patch(f"{API}/towns/{town['id']}", json={"lat": None}, headers=admin)
        assert_error(r, 422, "registry.rule_violation", "lat")
        r = client.patch(f"{API}/towns/{town['id']}", json={"lat": 35.0}, headers=admin)
        assert_error(r, 422, "registry.rule_violation", "lon")
    assert client.get(f"{API}/towns/{town['id']}", headers=admin).json["lat"] == 22.5
    r = client.patch(f"{API}/towns/{town['id']}", json={"lon": None, "lat": None}, headers=admin)
    assert r.status_code == 200 and r.json["lon"] is None


# --- towns and villages ------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["name", "code"])
def test_a_duplicate_town_is_409_naming_the_field(client, session, admin, base, field):
    first = valid("towns", base, 52)
    assert client.post(f"{API}/towns", json=first, headers=admin).status_code == 201
    clash = {**valid("towns", base, 53), field: first[field]}
    with nothing_written(session):
        assert_error(client.post(f"{API}/towns", json=clash, headers=admin), 409, "registry.duplicate", field)


def test_renaming_a_town_onto_another_is_409_and_onto_itself_is_fine(client, session, admin, base):
    a = client.post(f"{API}/towns", json=valid("towns", base, 54), headers=admin).json
    b = client.post(f"{API}/towns", json=valid("towns", base, 55), headers=admin).json
    with nothing_written(session):
        r = client.patch(f"{API}/towns/{b['id']}", json={"name": a["name"]}, headers=admin)
        assert_error(r, 409, "registry.duplicate", "name")
    assert client.patch(f"{API}/towns/{b['id']}", json={"name": b["name"], "code": b["code"]},
                        headers=admin).status_code == 200


@pytest.mark.parametrize("code", ["44070", "4407050000001", "44070A", "४४०७०५"])
def test_a_town_code_is_6_to_12_ascii_digits(client, session, admin, code):
    with nothing_written(session):
        r = client.post(f"{API}/towns", json={"name": "崖门镇", "code": code}, headers=admin)
        assert_error(r, 422, "request.invalid", "code")


def test_a_village_name_is_unique_within_its_town_only(client, session, admin, make, base):
    body = valid("villages", base, 56)
    assert client.post(f"{API}/villages", json=body, headers=admin).status_code == 201
    with nothing_written(session):
        r = client.post(f"{API}/villages", json={**body, "code": "440705999001"}, headers=admin)
        assert_error(r, 409, "registry.duplicate", "name")
        r = client.post(f"{API}/villages", json={**valid("villages", base, 57), "code": body["code"]}, headers=admin)
        assert_error(r, 409, "registry.duplicate", "code")
    other = make.town()
    r = client.post(f"{API}/villages", json={**body, "code": "440705999002", "town_id": other.id}, headers=admin)
    assert r.status_code == 201


def test_moving_a_village_into_a_town_with_that_name_is_409(client, session, admin, make, base):
    other = make.town()
    clash = make.village(other)
    mine = client.post(f"{API}/villages", json={**valid("villages", base, 58), "name": clash.name}, headers=admin).json
    with nothing_written(session):
        r = client.patch(f"{API}/villages/{mine['id']}", json={"town_id": other.id}, headers=admin)
        assert_error(r, 409, "registry.duplicate", "name")


# --- growers and the ID number ----------------------------------------------------------------
def test_the_id_number_is_never_returned_or_stored_in_clear(client, session, admin, base):
    number = id_number(777)
    body = {**valid("growers", base, 59), "id_number": number}
    created = client.post(f"{API}/growers", json=body, headers=admin)
    assert created.status_code == 201
    texts = [created.get_data(as_text=True),
             client.get(f"{API}/growers/{created.json['id']}", headers=admin).get_data(as_text=True),
             client.get(f"{API}/growers", headers=admin).get_data(as_text=True),
             client.patch(f"{API}/growers/{created.json['id']}", json={"name": "改名"}, headers=admin).get_data(as_text=True)]
    for text in texts:
        assert number not in text and number[6:14] not in text  # nor the birth date inside it
        assert "id_number_hash" not in text
    assert created.json["id_number_masked"] == number[:4] + "*" * 10 + number[-4:]
    row = session.get(Grower, created.json["id"])
    stored = " ".join(str(getattr(row, c.key)) for c in Grower.__table__.columns)
    assert number not in stored and number[6:14] not in stored
    assert row.id_number_hash and len(row.id_number_hash) == 64


def test_a_duplicate_id_number_is_409_without_echoing_it(client, session, admin, base):
    number = id_number(778)
    assert client.post(f"{API}/growers", json={**valid("growers", base, 60), "id_number": number},
                       headers=admin).status_code == 201
    row_hash = session.scalar(select(Grower.id_number_hash).where(Grower.household_code == "API00060"))
    with nothing_written(session):
        r = client.post(f"{API}/growers", json={**valid("growers", base, 61), "id_number": number.lower()},
                        headers=admin)
        assert_error(r, 409, "registry.duplicate", "id_number")
    assert number not in r.get_data(as_text=True) and row_hash not in r.get_data(as_text=True)


def test_a_lower_case_x_in_an_id_number_is_the_same_number(client, admin, base):
    n = next(i for i in range(800, 900) if id_number(i).endswith("X"))
    r = client.post(f"{API}/growers", json={**valid("growers", base, 62), "id_number": id_number(n).lower()},
                    headers=admin)
    assert r.status_code == 201, r.json
    assert r.json["id_number_masked"].endswith("X")


@pytest.mark.parametrize("number, why", [
    ("44070519800101001", "17 characters"), ("4407051980010100123", "19 characters"),
    ("44070519800101001A", "letter check"), ("4407051980O101001X", "letter O inside"),
    (id_number(5).translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789X"}), "full-width digits"),
])
def test_a_malformed_id_number_is_422(client, session, admin, base, number, why):
    with nothing_written(session):
        r = client.post(f"{API}/growers", json={**valid("growers", base, 63), "id_number": number}, headers=admin)
        assert_error(r, 422, "request.invalid", "id_number")


def test_an_id_number_with_a_wrong_check_character_is_422(client, session, admin, base):
    good = id_number(779)
    wrong = good[:17] + next(c for c in "0123456789X" if c != id_check_char(good[:17]))
    with nothing_written(session):
        r = client.post(f"{API}/growers", json={**valid("growers", base, 64), "id_number": wrong}, headers=admin)
        assert_error(r, 422, "request.invalid", "id_number")


@pytest.mark.parametrize("phone", ["12345", "2380000000", "1380000000a", "138 0000 0000", "+86-1380000",
                                   "１３８０００００００１"])
def test_a_bad_phone_is_422(client, session, admin, base, phone):
    with nothing_written(session):
        r = client.post(f"{API}/growers", json={**valid("growers", base, 65), "phone": phone}, headers=admin)
        assert_error(r, 422, "request.invalid", "phone")


def test_a_duplicate_household_code_is_409_even_in_another_case(client, session, admin, base):
    assert client.post(f"{API}/growers", json=valid("growers", base, 66), headers=admin).status_code == 201
    clash = {**valid("growers", base, 67), "household_code": valid("growers", base, 66)["household_code"].upper()}
    with nothing_written(session):
        assert_error(client.post(f"{API}/growers", json=clash, headers=admin), 409, "registry.duplicate",
                     "household_code")


def test_town_filter_and_town_id_of_a_grower_follow_its_village(client, admin, base):
    g = client.post(f"{API}/growers", json=valid("growers", base, 68), headers=admin).json
    assert g["town_id"] == base["town"].id


# --- plots -------------------------------------------------------------------------------------
def square(lon: float, lat: float, mu: float) -> dict:
    """A GeoJSON square of about `mu` 亩 centred on (lon, lat)."""
    side_m = math.sqrt(mu * 10000 / 15)
    dlon = side_m / (111_320 * math.cos(math.radians(lat))) / 2
    dlat = side_m / 110_540 / 2
    ring = [[lon - dlon, lat - dlat], [lon + dlon, lat - dlat], [lon + dlon, lat + dlat], [lon - dlon, lat + dlat],
            [lon - dlon, lat - dlat]]
    return {"type": "Polygon", "coordinates": [ring]}


def test_a_plot_with_a_matching_polygon_is_stored_with_it(client, admin, base):
    body = {**valid("plots", base, 69), "boundary": square(113.05, 22.5, 2.5)}
    r = client.post(f"{API}/plots", json=body, headers=admin)
    assert r.status_code == 201, r.json
    assert r.json["boundary"]["type"] == "Polygon"
    multi = {"type": "MultiPolygon", "coordinates": [square(113.05, 22.5, 1.2)["coordinates"],
                                                      square(113.06, 22.5, 1.2)["coordinates"]]}
    r = client.post(f"{API}/plots", json={**valid("plots", base, 70), "boundary": multi}, headers=admin)
    assert r.status_code == 201, r.json


@pytest.mark.parametrize("change, field, reason", [
    ({"area_mu": "-1"}, "area_mu", "request.invalid"),
    ({"area_mu": "0"}, "area_mu", "request.invalid"),
    ({"area_mu": "0.001"}, "area_mu", "request.invalid"),  # rounds to 0.00 亩
    ({"area_mu": "100000.01"}, "area_mu", "request.invalid"),
    ({"area_mu": "1e100000"}, "area_mu", "request.invalid"),
    ({"area_mu": "NaN"}, "area_mu", "request.invalid"),
    ({"area_mu": "sNaN"}, "area_mu", "request.invalid"),
    ({"area_mu": "-Infinity"}, "area_mu", "request.invalid"),
    ({"area_mu": "2.5 亩"}, "area_mu", "request.invalid"),
    ({"area_mu": 2**63}, "area_mu", "request.invalid"),
    ({"area_mu": None}, "area_mu", "request.invalid"),
    ({"tree_count": -1}, "tree_count", "request.invalid"),
    ({"tree_count": 2**63}, "tree_count", "request.invalid"),
    ({"tree_count": 10**30}, "tree_count", "request.invalid"),
    ({"tree_count": 150.5}, "tree_count", "request.invalid"),
    ({"tree_count": "150"}, "tree_count", "request.invalid"),
    ({"tree_count": 201}, "tree_count", "registry.rule_violation"),  # 2.5 亩 × 80 = 200
    ({"planting_year": date.today().year + 1}, "planting_year", "registry.rule_violation"),
    ({"planting_year": 1949}, "planting_year", "request.invalid"),
    ({"planting_year": 2**63}, "planting_year", "request.invalid"),
    ({"verified_yield_kg": "-0.001"}, "verified_yield_kg", "request.invalid"),
    ({"verified_yield_kg": "100000000.001"}, "verified_yield_kg", "request.invalid"),
    ({"verified_yield_kg": "Infinity"}, "verified_yield_kg", "request.invalid"),
    ({"verified_yield_kg": 2**63}, "verified_yield_kg", "request.invalid"),
    ({"code": "地块 1\x00"}, "code", "request.invalid"),
])
def test_bad_plot_numbers_are_refused(client, session, admin, base, change, field, reason):
    body = {**valid("plots", base, 71), **change}
    with nothing_written(session):
        assert_error(client.post(f"{API}/plots", json=body, headers=admin), 422, reason, field)


def test_exactly_80_trees_per_mu_is_allowed(client, admin, base):
    r = client.post(f"{API}/plots", json={**valid("plots", base, 72), "tree_count": 200}, headers=admin)
    assert r.status_code == 201
    r = client.post(f"{API}/plots", json={**valid("plots", base, 73), "planting_year": date.today().year},
                    headers=admin)
    assert r.status_code == 201


def test_area_finer_than_two_places_is_refused_not_rounded(client, admin, base):
    r = client.post(f"{API}/plots", json={**valid("plots", base, 74), "area_mu": "2.505"}, headers=admin)
    assert r.status_code == 422 and "area_mu" in r.json["errors"]["json"]
    r = client.post(f"{API}/plots", json={**valid("plots", base, 75), "area_mu": 3}, headers=admin)
    assert r.status_code == 201 and r.json["area_mu"] == "3.00"


def self_intersecting() -> dict:
    ring = [[113.05, 22.5], [113.051, 22.501], [113.051, 22.5], [113.05, 22.501], [113.05, 22.5]]
    return {"type": "Polygon", "coordinates": [ring]}


def too_many_points() -> dict:
    n = 5001
    ring = [[113.05 + 0.0003 * math.cos(2 * math.pi * i / n), 22.5 + 0.0003 * math.sin(2 * math.pi * i / n)]
            for i in range(n)]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


BAD_BOUNDARIES = {
    "self-intersecting (bow tie)": self_intersecting(),
    "a Point": {"type": "Point", "coordinates": [113.05, 22.5]},
    "a Feature": {"type": "Feature", "geometry": square(113.05, 22.5, 2.5), "properties": {}},
    "no type": {"coordinates": square(113.05, 22.5, 2.5)["coordinates"]},
    "coordinates a string": {"type": "Polygon", "coordinates": "113.05,22.5"},
    "coordinates empty": {"type": "Polygon", "coordinates": []},
    "an empty ring": {"type": "Polygon", "coordinates": [[]]},
    "ring of two points": {"type": "Polygon", "coordinates": [[[113.05, 22.5], [113.051, 22.5]]]},
    "unclosed-looking flat ring": {"type": "Polygon", "coordinates": [[[113.05, 22.5], [113.051, 22.5], [113.052, 22.5],
                                                                        [113.05, 22.5]]]},
    "positions not nested": {"type": "Polygon", "coordinates": [113.05, 22.5]},
    "booleans as numbers": {"type": "Polygon", "coordinates": [[[True, 22.5], [113.051, 22.5], [113.051, 22.501],
                                                                [True, 22.5]]]},
    "strings as numbers": {"type": "Polygon", "coordinates": [[["113.05", "22.5"], ["113.051", "22.5"],
                                                                ["113.051", "22.501"], ["113.05", "22.5"]]]},
    "too many points": too_many_points(),
    "outside Xinhui": square(116.4, 39.9, 2.5),
    "a huge integer": {"type": "Polygon", "coordinates": [[[10**400, 22.5], [113.051, 22.5], [113.051, 22.501],
                                                            [10**400, 22.5]]]},
    "MultiPolygon nested too shallow": {"type": "MultiPolygon", "coordinates": [[[113.05, 22.5]]]},
    "a list": [square(113.05, 22.5, 2.5)],
}


@pytest.mark.parametrize("case", sorted(BAD_BOUNDARIES))
def test_invalid_geojson_is_422_naming_boundary(client, session, admin, base, case):
    body = {**valid("plots", base, 76), "boundary": BAD_BOUNDARIES[case]}
    with nothing_written(session):
        assert_error(client.post(f"{API}/plots", json=body, headers=admin), 422, "request.invalid", "boundary")


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_polygon_coordinates_are_422(client, session, admin, base, raw):
    body = {**valid("plots", base, 77), "boundary": "BOUNDARY"}
    ring = f"[[{raw}, 22.5], [113.051, 22.5], [113.051, 22.501], [{raw}, 22.5]]"
    data = json.dumps(body, ensure_ascii=False).replace('"BOUNDARY"', '{"type": "Polygon", "coordinates": [%s]}' % ring)
    with nothing_written(session):
        r = client.post(f"{API}/plots", data=data.encode(), content_type="application/json", headers=admin)
        assert_error(r, 422, "request.invalid", "boundary")


def test_the_point_must_lie_inside_the_polygon(client, session, admin, base):
    body = {**valid("plots", base, 78), "boundary": square(113.10, 22.55, 2.5)}
    with nothing_written(session):
        assert_error(client.post(f"{API}/plots", json=body, headers=admin), 422, "registry.rule_violation", "lon")


def test_the_polygon_must_roughly_match_the_declared_area(client, session, admin, base):
    body = {**valid("plots", base, 79), "boundary": square(113.05, 22.5, 25)}  # 25 亩 drawn, 2.5 declared
    with nothing_written(session):
        assert_error(client.post(f"{API}/plots", json=body, headers=admin), 422, "registry.rule_violation", "boundary")


def test_a_duplicate_plot_code_is_409_whatever_its_case(client, session, admin, base):
    assert client.post(f"{API}/plots", json=valid("plots", base, 80), headers=admin).status_code == 201
    clash = {**valid("plots", base, 81), "code": valid("plots", base, 80)["code"].upper()}
    with nothing_written(session):
        assert_error(client.post(f"{API}/plots", json=clash, headers=admin), 409, "registry.duplicate", "code")


@pytest.mark.parametrize("change, field", [
    ({"area_mu": "1.00"}, "tree_count"),            # 150 stored trees on 1 亩
    ({"tree_count": 201}, "tree_count"),            # on the stored 2.5 亩
    ({"lon": 120.0}, "lon"),                        # with the stored lat
    ({"boundary": "far"}, "lon"),                   # the stored point is outside the new polygon
    ({"boundary": "big"}, "boundary"),              # 25 亩 drawn against the stored 2.5
    ({"area_mu": "20.00"}, "boundary"),             # the stored polygon no longer matches
])
def test_a_plot_patch_is_checked_against_the_stored_values(client, session, admin, base, change, field):
    created = client.post(f"{API}/plots", json={**valid("plots", base, 82), "boundary": square(113.05, 22.5, 2.5)},
                          headers=admin).json
    polygons = {"far": square(113.10, 22.55, 2.5), "big": square(113.05, 22.5, 25)}
    change = {k: polygons.get(v, v) if k == "boundary" else v for k, v in change.items()}
    with nothing_written(session):
        r = client.patch(f"{API}/plots/{created['id']}", json=change, headers=admin)
        assert_error(r, 422, "registry.rule_violation", field)
    session.expire_all()
    assert client.get(f"{API}/plots/{created['id']}", headers=admin).json == created


def test_a_plot_patch_that_keeps_the_rules_goes_through(client, admin, base):
    created = client.post(f"{API}/plots", json=valid("plots", base, 83), headers=admin).json
    r = client.patch(f"{API}/plots/{created['id']}", json={"area_mu": "1.90", "tree_count": 152}, headers=admin)
    assert r.status_code == 200 and r.json["tree_count"] == 152


# --- operators and the 统一社会信用代码 ------------------------------------------------------------
def test_a_lower_case_credit_code_is_stored_upper_case(client, admin, base):
    code = next(credit_code(n) for n in range(9100, 9200) if any(c.isalpha() for c in credit_code(n)))
    r = client.post(f"{API}/operators", json={**valid("operators", base, 84), "credit_code": f"  {code.lower()} "},
                    headers=admin)
    assert r.status_code == 201, r.json
    assert r.json["credit_code"] == code


def _with_check(first17: str) -> str:
    return first17 + credit_check_char(first17)


@pytest.mark.parametrize("code, why", [
    ("91440705MA4W1234", "16 characters"),
    (_with_check("91440705MA4W12345") + "0", "19 characters"),
    ("", "empty"),
    ("91440705MA4W12345I", "I is not in the alphabet"),
    ("9144070OMA4W12345X", "O in the region part"),
    ("91440705MA4W1234SZ", "S and Z are not in the alphabet"),
    ("914407O5MA4W123450", "region code with a letter"),
    ("９１４４０７０５ＭＡ４Ｗ１２３４５Ｘ", "full-width characters"),
    ("91４４０７０５MA4W12345X", "full-width digits in the region part"),
    (12345678901234567, "a number"),
])
def test_a_malformed_credit_code_is_422(client, session, admin, base, code, why):
    with nothing_written(session):
        r = client.post(f"{API}/operators", json={**valid("operators", base, 85), "credit_code": code}, headers=admin)
        assert_error(r, 422, "request.invalid", "credit_code")


def test_a_credit_code_with_a_wrong_check_character_is_422_and_says_which(client, session, admin, base):
    good = credit_code(9201)
    wrong = good[:17] + next(c for c in "0123456789ABCDEFGHJKLMNPQRTUWXY" if c != good[17])
    with nothing_written(session):
        r = client.post(f"{API}/operators", json={**valid("operators", base, 86), "credit_code": wrong}, headers=admin)
        body = assert_error(r, 422, "request.invalid", "credit_code")
    assert good[17] in json.dumps(body["errors"], ensure_ascii=False)


def test_the_standards_worked_example_passes_the_check():
    """GB 32100's own worked example guards the check algorithm against drifting with the factory."""
    from backend.registry.validators import credit_code_error

    assert credit_code_error("91350100M000100Y43") is None  # the GB 32100 standard's worked example
    assert credit_code_error("91350100M000100Y44") is not None


def test_a_duplicate_credit_code_is_409_in_any_case(client, session, admin, base):
    code = credit_code(9202)
    assert client.post(f"{API}/operators", json={**valid("operators", base, 87), "credit_code": code},
                       headers=admin).status_code == 201
    with nothing_written(session):
        r = client.post(f"{API}/operators", json={**valid("operators", base, 88), "credit_code": code.lower()},
                        headers=admin)
        assert_error(r, 409, "registry.duplicate", "credit_code")


@pytest.mark.parametrize("change, field, reason", [
    ({"kind": "bank"}, "kind", "request.invalid"),
    ({"kind": "Enterprise"}, "kind", "request.invalid"),
    ({"licence_status": "valid"}, "licence_status", "request.invalid"),
    ({"licence_valid_from": "2024-02-30"}, "licence_valid_from", "request.invalid"),
    ({"licence_valid_until": "31/12/2027"}, "licence_valid_until", "request.invalid"),
    ({"licence_valid_until": "2023-12-31"}, "licence_valid_until", "registry.rule_violation"),
    ({"licence_no": None}, "licence_no", "registry.rule_violation"),  # an active licence needs its number
    ({"licence_valid_until": None}, "licence_no", "registry.rule_violation"),
    ({"contact_phone": "110"}, "contact_phone", "request.invalid"),
    ({"address": "地址\x00"}, "address", "request.invalid"),
    ({"address": "地" * 301}, "address", "request.invalid"),
])
def test_bad_operator_fields_are_refused(client, session, admin, base, change, field, reason):
    with nothing_written(session):
        r = client.post(f"{API}/operators", json={**valid("operators", base, 89), **change}, headers=admin)
        assert_error(r, 422, reason, field)


@pytest.mark.parametrize("change, field", [
    ({"licence_valid_until": "2023-06-30"}, "licence_valid_until"),  # before the stored valid_from
    ({"licence_no": None}, "licence_no"),                            # the stored status is active
    ({"lon": None}, "lon"),                                          # the stored lat stays
])
def test_an_operator_patch_is_checked_against_the_stored_values(client, session, admin, base, change, field):
    created = client.post(f"{API}/operators", json=valid("operators", base, 90), headers=admin).json
    with nothing_written(session):
        r = client.patch(f"{API}/operators/{created['id']}", json=change, headers=admin)
        assert_error(r, 422, "registry.rule_violation", field)
    assert client.get(f"{API}/operators/{created['id']}", headers=admin).json == created


def test_suspending_a_licence_keeps_its_dates(client, admin, base):
    created = client.post(f"{API}/operators", json=valid("operators", base, 91), headers=admin).json
    r = client.patch(f"{API}/operators/{created['id']}", json={"licence_status": "suspended"}, headers=admin)
    assert r.status_code == 200
    assert r.json["licence_valid_until"] == "2027-12-31" and r.json["licence_status"] == "suspended"


# --- nurseries ---------------------------------------------------------------------------------
def test_a_nurserys_village_must_be_in_its_town(client, session, admin, make, base):
    elsewhere = make.village(make.town())
    another_town = make.town()
    with nothing_written(session):
        r = client.post(f"{API}/nurseries", json={**valid("nurseries", base, 92), "village_id": elsewhere.id},
                        headers=admin)
        assert_error(r, 422, "registry.rule_violation", "village_id")
    created = client.post(f"{API}/nurseries", json=valid("nurseries", base, 93), headers=admin).json
    with nothing_written(session):
        r = client.patch(f"{API}/nurseries/{created['id']}", json={"town_id": another_town.id}, headers=admin)
        assert_error(r, 422, "registry.rule_violation", "village_id")


def test_a_nurserys_credit_code_is_optional_but_checked_and_unique(client, session, admin, base):
    body = {k: v for k, v in valid("nurseries", base, 94).items() if k != "credit_code"}
    assert client.post(f"{API}/nurseries", json=body, headers=admin).status_code == 201
    assert client.post(f"{API}/nurseries", json={**body, "name": "另一苗圃"}, headers=admin).status_code == 201
    with nothing_written(session):
        r = client.post(f"{API}/nurseries", json={**body, "credit_code": "91440705MA4W12345I"}, headers=admin)
        assert_error(r, 422, "request.invalid", "credit_code")
    taken = valid("nurseries", base, 95)
    assert client.post(f"{API}/nurseries", json=taken, headers=admin).status_code == 201
    with nothing_written(session):
        r = client.post(f"{API}/nurseries", json={**body, "credit_code": taken["credit_code"]}, headers=admin)
        assert_error(r, 409, "registry.duplicate", "credit_code")


# --- the database's own constraints are the last line ------------------------------------------
def test_a_duplicate_that_slips_past_the_service_is_a_409_and_writes_nothing(client, session, admin, base, monkeypatch):
    """Two clerks registering the same code at once both pass the service's check; the unique
    constraint stops the second, and the request still answers in the one error shape."""
    from backend.registry import service

    first = client.post(f"{API}/towns", json=valid("towns", base, 96), headers=admin).json
    monkeypatch.setattr(service, "_unique", lambda *args, **kwargs: None)
    with nothing_written(session):
        r = client.post(f"{API}/towns", json={**valid("towns", base, 97), "code": first["code"]}, headers=admin)
        assert_error(r, 409, "request.conflict")
    r = client.patch(f"{API}/towns/{first['id']}", json={"name": "会城街道"}, headers=admin)
    assert r.status_code == 200  # the session is usable after the failed flush
    assert client.get(f"{API}/towns/{first['id']}", headers=admin).json["name"] == "会城街道"


def test_a_plot_without_a_boundary_stores_sql_null(make, session):
    import sqlalchemy as sa

    from backend.registry.models import Plot

    plot = make.plot(boundary=None)
    session.flush()
    assert session.scalar(sa.select(sa.func.count()).select_from(Plot).where(Plot.id == plot.id, Plot.boundary.is_(None))) == 1
