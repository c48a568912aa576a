"""Users and bearer tokens: stored hashed, last use recorded, revocable through the API and the
`chenpi users` CLI; the CLI's token works and its mistakes are reported plainly.

The CLI builds its own app from DATABASE_URL/REDIS_URL, so its tests point it at a scratch SQLite
file (copied from one migrated template) with the in-process Redis stand-in, and swap the shared
`db.session` for an ordinary one while it runs: the tests' session is bound to the rolled-back
test transaction, and the CLI must neither write into it nor commit it.
"""
from __future__ import annotations

import hashlib
import shutil
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from backend.auth import service as auth_service
from backend.auth.models import ApiToken, User
from backend.models import metadata
from backend.timeutil import as_utc, utcnow

ME = "/api/v1/auth/me"
USERS = "/api/v1/auth/users"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(make):
    return bearer(make.token("admin"))


# --- tokens in the database --------------------------------------------------------------------
def test_a_token_is_stored_only_as_its_sha256(client, session, admin, make):
    operator = make.operator()
    r = client.post(USERS, json={"name": "zhang.san", "role": "operator", "operator_id": operator.id}, headers=admin)
    assert r.status_code == 201, r.json
    token = r.json["token"]
    assert token.startswith("cp_") and len(token) >= 40
    row = session.scalar(select(ApiToken).join(User).where(User.name == "zhang.san"))
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.prefix == token[:10] and len(row.prefix) < len(token) // 3
    for table in metadata.sorted_tables:  # the plain token is in no column of any table
        for values in session.execute(select(table)).all():
            assert token not in " ".join(map(str, values)), table.name
    assert client.get(ME, headers=bearer(token)).json["name"] == "zhang.san"


def test_a_token_is_shown_once(client, admin):
    created = client.post(USERS, json={"name": "li.si", "role": "inspector"}, headers=admin).json
    listed = client.get(USERS, query_string={"page_size": 100}, headers=admin)
    assert listed.status_code == 200
    assert "li.si" in listed.get_data(as_text=True)
    assert created["token"] not in listed.get_data(as_text=True)
    assert all("token" not in user for user in listed.json)


def test_each_new_token_is_different(session, make):
    user = auth_service.create_user(session, "wang.wu", "inspector")
    tokens = {auth_service.issue_token(session, user) for _ in range(20)}
    assert len(tokens) == 20


# --- last use ----------------------------------------------------------------------------------
def _token_row(session, token: str) -> ApiToken:
    session.expire_all()
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == auth_service.hash_token(token)))


def test_last_used_at_is_set_on_first_use_and_refreshed_only_after_a_while(client, session, make):
    token = make.token("inspector")
    assert _token_row(session, token).last_used_at is None
    before = utcnow()
    assert client.get(ME, headers=bearer(token)).status_code == 200
    first = as_utc(_token_row(session, token).last_used_at)
    assert first is not None and before - timedelta(seconds=1) <= first <= utcnow() + timedelta(seconds=1)

    # A second call straight away does not write (reads must not write on every request)…
    assert client.get(ME, headers=bearer(token)).status_code == 200
    assert as_utc(_token_row(session, token).last_used_at) == first

    # …but once the stored time is older than the resolution, a call refreshes it.
    stale = utcnow() - auth_service.LAST_USED_RESOLUTION - timedelta(minutes=5)
    session.execute(update(ApiToken).where(ApiToken.id == _token_row(session, token).id).values(last_used_at=stale))
    session.commit()
    assert client.get(ME, headers=bearer(token)).status_code == 200
    assert as_utc(_token_row(session, token).last_used_at) > stale + timedelta(minutes=4)


def test_a_refused_request_still_records_the_tokens_use(client, session, make):
    """A valid token used on a route its role may not call was still used (audit)."""
    token = make.token("inspector")
    assert client.post(USERS, json={"name": "x", "role": "admin"}, headers=bearer(token)).status_code == 403
    assert _token_row(session, token).last_used_at is not None


def test_an_unknown_token_touches_nothing(client, session, make):
    token = make.token("inspector")
    assert client.get(ME, headers=bearer(token + "x")).status_code == 401
    assert _token_row(session, token).last_used_at is None


# --- revocation through the API ----------------------------------------------------------------
def test_revoking_a_user_revokes_all_its_tokens_and_only_its(client, session, admin, make):
    victim = auth_service.create_user(session, "chen.liu", "inspector")
    tokens = [auth_service.issue_token(session, victim) for _ in range(3)]
    bystander = make.token("inspector")
    session.commit()
    assert all(client.get(ME, headers=bearer(t)).status_code == 200 for t in tokens)

    r = client.post(f"{USERS}/{victim.id}/revoke", headers=admin)
    assert r.status_code == 200
    assert r.json["tokens_revoked"] == 3 and r.json["user"]["active"] is False
    for t in tokens:
        r = client.get(ME, headers=bearer(t))
        assert r.status_code == 401 and r.json["reason"] == "auth.unauthenticated"
    assert client.get(ME, headers=bearer(bystander)).status_code == 200
    session.expire_all()
    assert all(row.revoked_at is not None for row in session.scalars(select(ApiToken).where(ApiToken.user_id == victim.id)))

    again = client.post(f"{USERS}/{victim.id}/revoke", headers=admin)
    assert again.status_code == 200 and again.json["tokens_revoked"] == 0


def test_a_deactivated_users_unrevoked_token_is_refused(client, session, make):
    token = make.token("inspector", name="zhao.qi")
    session.execute(update(User).where(User.name == "zhao.qi").values(active=False))
    session.commit()
    assert client.get(ME, headers=bearer(token)).status_code == 401


def test_revoking_an_unknown_user_is_404(client, admin):
    r = client.post(f"{USERS}/2000000000/revoke", headers=admin)
    assert r.status_code == 404 and r.json["reason"] == "auth.user_not_found"
    assert "user_id" in r.json["errors"]


def test_an_admin_can_revoke_itself_and_is_then_locked_out(client, session, make):
    token = make.token("admin")
    me = client.get(ME, headers=bearer(token)).json
    assert client.post(f"{USERS}/{me['user_id']}/revoke", headers=bearer(token)).status_code == 200
    assert client.get(ME, headers=bearer(token)).status_code == 401


# --- creating users through the API ------------------------------------------------------------
@pytest.mark.parametrize("body, status, reason, field", [
    ({"name": "op1", "role": "operator"}, 422, "auth.operator_required", "operator_id"),
    ({"name": "ag1", "role": "agent", "operator_id": None}, 422, "auth.operator_required", "operator_id"),
    ({"name": "op2", "role": "operator", "operator_id": 2_000_000_000}, 422, "registry.invalid_reference", "operator_id"),
    ({"name": "in1", "role": "inspector", "operator_id": "OP"}, 422, "request.invalid", "operator_id"),
    ({"name": "root", "role": "superuser"}, 422, "request.invalid", "role"),
    ({"name": "has space", "role": "inspector"}, 422, "request.invalid", "name"),
    ({"name": "x" * 81, "role": "inspector"}, 422, "request.invalid", "name"),
    ({"name": "nul\x00", "role": "inspector"}, 422, "request.invalid", "name"),
    ({"role": "inspector"}, 422, "request.invalid", "name"),
])
def test_bad_user_bodies_are_refused_and_create_nothing(client, session, admin, body, status, reason, field):
    count = session.scalar(select(User.id).order_by(User.id.desc()).limit(1))
    r = client.post(USERS, json=body, headers=admin)
    assert r.status_code == status and r.json["reason"] == reason, r.json
    errors = r.json.get("errors", {})
    assert field in errors or field in errors.get("json", {}), errors
    session.expire_all()
    assert session.scalar(select(User.id).order_by(User.id.desc()).limit(1)) == count


def test_an_inspector_or_admin_cannot_belong_to_an_operator(client, admin, make):
    operator = make.operator()
    for role in ("inspector", "admin"):
        r = client.post(USERS, json={"name": f"{role}-x", "role": role, "operator_id": operator.id}, headers=admin)
        assert r.status_code == 422 and r.json["reason"] == "auth.operator_not_allowed"


def test_a_duplicate_user_name_is_409(client, admin):
    assert client.post(USERS, json={"name": "sun.ba", "role": "inspector"}, headers=admin).status_code == 201
    r = client.post(USERS, json={"name": "sun.ba", "role": "admin"}, headers=admin)
    assert r.status_code == 409 and r.json["reason"] == "auth.user_exists" and "name" in r.json["errors"]


def test_an_agent_token_says_who_it_is(client, admin, make):
    operator = make.operator()
    r = client.post(USERS, json={"name": "printer-1", "role": "agent", "operator_id": operator.id}, headers=admin)
    me = client.get(ME, headers=bearer(r.json["token"])).json
    assert me == {"user_id": r.json["id"], "name": "printer-1", "role": "agent", "operator_id": operator.id}


# --- the CLI -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory):
    """A SQLite file migrated once by `chenpi db upgrade`; each CLI test gets a copy."""
    path = tmp_path_factory.mktemp("cli") / "template.sqlite3"
    return path


class Cli:
    """Runs `chenpi …` in-process against its own SQLite file and keeps the last app it built."""

    def __init__(self, path, monkeypatch):
        import backend.cli

        self.env = {"DATABASE_URL": f"sqlite:///{path}", "REDIS_URL": "", "SECRET_KEY": "cli-test-secret",
                    "LOG_LEVEL": "WARNING"}
        self.app = None
        original = backend.cli._app

        def capture():
            self.app = original()
            return self.app

        monkeypatch.setattr(backend.cli, "_app", capture)
        self.runner = CliRunner()

    def __call__(self, *args: str):
        from backend.cli import main

        return self.runner.invoke(main, list(args), env=self.env, catch_exceptions=False)

    def get(self, path: str, token: str):
        """A request to the API served from the CLI's database."""
        return self.app.test_client().get(path, headers=bearer(token))


@pytest.fixture
def cli(migrated_sqlite, tmp_path, monkeypatch):
    from backend.extensions import db

    saved_session = db.session
    db.session = db._make_scoped_session({})  # an ordinary session for the CLI's own app
    try:
        if not migrated_sqlite.exists():
            first = Cli(migrated_sqlite, monkeypatch)
            result = first("db", "upgrade")
            assert result.exit_code == 0, result.output
            assert "database at head" in result.output
            _dispose(first.app)
        path = tmp_path / "cli.sqlite3"
        shutil.copy(migrated_sqlite, path)
        runner = Cli(path, monkeypatch)
        yield runner
        _dispose(runner.app)
    finally:
        db.session.remove()  # else its open transaction keeps locks on the test database
        db.session = saved_session


def _dispose(app) -> None:
    from backend.extensions import db

    if app is not None:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_users_create_prints_a_token_that_works(cli):
    result = cli("users", "create", "boss", "--role", "admin")
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("cp_")
    r = cli.get(ME, token)
    assert r.status_code == 200 and r.json["name"] == "boss" and r.json["role"] == "admin"


def test_an_operator_user_from_the_cli_is_bound_to_its_operator(cli):
    boss = cli("users", "create", "boss", "--role", "admin").output.strip().splitlines()[-1]
    town = cli.app.test_client().post("/api/v1/registry/towns", json={"name": "大泽镇", "code": "440705102"},
                                      headers=bearer(boss)).json
    from tests.factories import credit_code

    operator = cli.app.test_client().post("/api/v1/registry/operators", headers=bearer(boss), json={
        "name": "大泽陈皮厂", "credit_code": credit_code(424242), "kind": "processor", "town_id": town["id"]}).json
    result = cli("users", "create", "dz-clerk", "--role", "operator", "--operator", str(operator["id"]))
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert cli.get(ME, token).json["operator_id"] == operator["id"]
    listed = cli.get("/api/v1/registry/operators", token).json
    assert [o["id"] for o in listed] == [operator["id"]]


@pytest.mark.parametrize("role", ["operator", "agent"])
def test_an_operator_or_agent_user_without_operator_fails_clearly(cli, role):
    result = cli("users", "create", "nobody", "--role", role)
    assert result.exit_code != 0
    assert "must belong to an operator" in result.output and "operator_id" in result.output
    assert "Traceback" not in result.output
    assert "No user" in cli("users", "token", "nobody").output  # nothing was created


def test_an_operator_user_with_an_unknown_operator_fails_clearly(cli):
    result = cli("users", "create", "ghost", "--role", "operator", "--operator", "999")
    assert result.exit_code != 0 and "999" in result.output and "operator" in result.output


def test_an_inspector_with_an_operator_fails_clearly(cli):
    result = cli("users", "create", "insp", "--role", "inspector", "--operator", "1")
    assert result.exit_code != 0 and "operator" in result.output.lower()


def test_users_create_refuses_a_bad_role_and_a_taken_name(cli):
    assert cli("users", "create", "x", "--role", "root").exit_code != 0
    assert cli("users", "create", "dup", "--role", "inspector").exit_code == 0
    taken = cli("users", "create", "dup", "--role", "admin")
    assert taken.exit_code != 0 and "exists" in taken.output


def test_users_revoke_from_the_cli_locks_every_token_out(cli):
    first = cli("users", "create", "temp", "--role", "inspector").output.strip().splitlines()[-1]
    second = cli("users", "token", "temp").output.strip().splitlines()[-1]
    assert first != second
    assert cli.get(ME, first).status_code == 200 and cli.get(ME, second).status_code == 200
    result = cli("users", "revoke", "temp")
    assert result.exit_code == 0, result.output
    assert "2 token(s)" in result.output
    for token in (first, second):
        r = cli.get(ME, token)
        assert r.status_code == 401 and r.json["reason"] == "auth.unauthenticated"


def test_users_revoke_of_an_unknown_user_fails_clearly(cli):
    result = cli("users", "revoke", "nobody-at-all")
    assert result.exit_code != 0 and "nobody-at-all" in result.output


def test_the_cli_wrote_nothing_into_the_test_database(session, make, cli):
    """The CLI's own database is separate: the suite's transaction sees none of its users.
    (`session` is asked for before `cli`: set up after it, it would be the CLI's plain session.)"""
    make.token("inspector", name="suite-only")
    assert cli("users", "create", "cli-only", "--role", "inspector").exit_code == 0
    assert session.scalar(select(User).where(User.name == "cli-only")) is None
    assert session.scalar(select(User).where(User.name == "suite-only")) is not None  # the suite's own view
    assert "No user" in cli("users", "token", "suite-only").output
