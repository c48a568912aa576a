"""A bounded schemathesis run over /api/openapi.json: every operation, with an admin token
(or, where admins may not call, a token of the first role that may).

It runs through WSGI against the test app (so on the rolled-back test transaction, PostgreSQL or
SQLite) and asserts that nothing answers 5xx, that responses match their documented schema and
content type, and that invalid input is refused with a 4xx.

It is part of the suite. To skip it you must say so: `-m "not fuzz"` or CHENPI_SKIP_FUZZ=1.
For a deeper, slower run: CHENPI_FUZZ_EXAMPLES=200 CHENPI_FUZZ_SEED=random, and
CHENPI_FUZZ_COVERAGE=1 adds schemathesis' coverage phase (boundary values of every field).
The seed is fixed by default so that CI runs the same cases each time.
"""
from __future__ import annotations

import os
import random

import pytest
import schemathesis
from schemathesis.checks import load_all_checks

load_all_checks()
from schemathesis.specs.openapi import checks as oa  # noqa: E402  (registered by load_all_checks)
from schemathesis.checks import not_a_server_error  # noqa: E402

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.skipif(os.environ.get("CHENPI_SKIP_FUZZ") == "1", reason="CHENPI_SKIP_FUZZ=1 was set"),
]

MAX_EXAMPLES = int(os.environ.get("CHENPI_FUZZ_EXAMPLES", "6"))
_seed = os.environ.get("CHENPI_FUZZ_SEED", "20221230")
SEED = random.randrange(2**32) if _seed == "random" else int(_seed)

CHECKS = [
    not_a_server_error,
    oa.status_code_conformance,
    oa.content_type_conformance,
    oa.response_schema_conformance,
    oa.negative_data_rejection,
]


def real_value(path: str, name: str, world):
    """The access matrix's value for a path parameter (tests/test_access.py, PATH_PARAMS), or None."""
    from tests.test_access import PATH_PARAMS

    before = path.split("{" + name + "}")[0].rstrip("/").rsplit("/", 1)[-1]
    for key in (f"{before}/{{{name}}}", f"{{{name}}}"):
        if key in PATH_PARAMS:
            return PATH_PARAMS[key](world)
    return None


@pytest.fixture
def world(make, session):
    """The access matrix's rows and tokens: half the generated ids are made to name a real row."""
    from tests.test_access import PATH_PARAMS, build_world

    world = build_world(make, session)
    for value in PATH_PARAMS.values():
        value(world)  # rows made on first use are made now, before the fuzzer changes anything
    return world


@pytest.fixture
def api_schema(app, world):
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        # Unknown query parameters are ignored (as most APIs do), so they are not "invalid input".
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "allow-x00": True, "allow-extra-parameters": True},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": os.environ.get("CHENPI_FUZZ_COVERAGE") == "1"},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
        "suppress-health-check": ["all"],
    })
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, config=config)

    @schema.auth(refresh_interval=None)
    class RoleToken:
        """An admin token, or for operations admins may not call, one of the first allowed role."""

        def get(self, case, context):
            roles = case.operation.definition.raw.get("x-roles") or ["admin"]
            return world.tokens["admin" if "admin" in roles or roles == ["public"] else roles[0]]

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    @schema.hook
    def map_path_parameters(context, path_parameters):
        # Deterministic in the drawn value (so Hypothesis can replay): even ids within the
        # documented range become real rows; out-of-range ones stay, as negative cases.
        for name, value in list((path_parameters or {}).items()):
            if isinstance(value, int) and not isinstance(value, bool) and value % 2 == 0 and 0 <= value < 2**31:
                real = real_value(context.operation.path, name, world)
                if real is not None:
                    path_parameters[name] = real
        return path_parameters

    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_no_operation_fails_on_generated_input(case):
    case.call_and_validate(checks=CHECKS)
