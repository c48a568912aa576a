"""Operations: liveness/readiness, request ids, the compose file and the serve command."""
from __future__ import annotations

import logging
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from backend import create_app
from backend.cli import main as cli_main
from backend.config import DEFAULTS, SETTINGS, Config

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz_and_readyz_answer_ok_when_everything_is_up(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["database"] == "ok" and ready.json["redis"] == "ok"


def test_readyz_names_redis_when_redis_is_down(app, client, monkeypatch):
    import redis as redis_lib

    dead = redis_lib.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    monkeypatch.setitem(app.extensions["chenpi_redis"], "client", dead)
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json["reason"] == "ops.not_ready"
    assert list(r.json["errors"]) == ["redis"]


def test_readyz_names_the_database_when_it_is_down(committed_db):
    """(committed_db: the app's session must not be the test's bound one here.)"""
    port = free_port()
    other = create_app(Config(DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{port}/nope", REDIS_URL=""))
    other.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"connect_timeout": 1}}
    r = other.test_client().get("/readyz")
    assert r.status_code == 503
    assert "database" in r.json["errors"] and "redis" not in r.json["errors"]


def test_every_response_carries_a_request_id_and_the_log_line_has_it(client, caplog):
    caplog.set_level(logging.INFO, logger="chenpi.request")
    r = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    assert any("abc-123" == getattr(rec, "request_id", None) and "/healthz 200" in rec.getMessage() for rec in caplog.records)
    hostile = client.get("/healthz", headers={"X-Request-ID": "x" * 500 + "<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-ID"])


def test_embedded_mode_says_so_at_start(caplog, tmp_path):
    caplog.set_level(logging.WARNING, logger="chenpi")
    create_app(Config(DATABASE_URL=f"sqlite:///{tmp_path}/x.db", REDIS_URL=""))
    assert any("embedded mode" in rec.getMessage() and "single process" in rec.getMessage() for rec in caplog.records)


# --- docker ------------------------------------------------------------------------------------
def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


def _cli_exists(argv: list[str]) -> bool:
    """True if `chenpi a b …` names a real command of the click group."""
    import click

    group = cli_main
    for word in argv:
        if word.startswith("-"):
            break
        if not isinstance(group, click.Group):
            break
        if word not in group.commands:
            return False
        group = group.commands[word]
    return True


def test_compose_has_the_services_and_their_commands_exist():
    services = _compose()["services"]
    assert {"api", "worker", "postgres", "redis"} <= set(services)
    for name, svc in services.items():
        command = svc.get("command")
        if not command:
            continue
        argv = command if isinstance(command, list) else shlex.split(command)
        if argv[0] == "chenpi":
            assert _cli_exists(argv[1:]), f"{name}: `{' '.join(argv)}` is not a chenpi command"
        elif argv[0] == "gunicorn":
            conf = argv[argv.index("-c") + 1]
            assert conf.startswith("python:")
            __import__(conf.removeprefix("python:"))
    assert services["worker"]["command"][:2] == ["chenpi", "worker"]


def test_compose_environment_uses_only_names_the_code_reads():
    compose = _compose()
    for name in ("api", "worker", "migrate"):
        env = compose["services"][name]["environment"]
        unknown = set(env) - set(DEFAULTS)
        assert not unknown, f"{name} sets variables the code never reads: {unknown}"
        assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"} <= set(env)
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")


def test_dockerfile_copies_paths_that_exist_and_runs_gunicorn_with_our_config():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    assert '"gunicorn", "-c", "python:backend.gunicorn_conf"' in text


def test_every_code_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name, _, _ in SETTINGS if f"`{name}`" not in readme]
    assert not missing, f"README's configuration table lacks {missing}"


def test_code_reads_no_environment_variable_outside_the_settings_table():
    pattern = re.compile(r"os\.environ(?:\.get)?\(?\[?[\"']([A-Z_]+)")
    for path in (ROOT / "backend").rglob("*.py"):
        for name in pattern.findall(path.read_text()):
            assert name in DEFAULTS, f"{path.relative_to(ROOT)} reads {name}, which backend.config.SETTINGS lacks"


def test_chenpi_serve_answers_health_checks(tmp_path):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/serve.db", "REDIS_URL": "", "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", str(port)], cwd=tmp_path,
                            env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"chenpi serve did not come up: {proc.stderr.read().decode()[-2000:] if proc.poll() is not None else 'timeout'}")
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize("value", ["", " "])
def test_web_concurrency_unset_is_one_worker_more_than_the_usable_cores(value):
    from backend.gunicorn_conf import worker_count

    assert worker_count(value) == len(os.sched_getaffinity(0)) + 1


@pytest.mark.parametrize("value, workers", [("1", 1), ("3", 3), (" 8 ", 8)])
def test_web_concurrency_takes_a_number(value, workers):
    from backend.gunicorn_conf import worker_count

    assert worker_count(value) == workers


@pytest.mark.parametrize("value", ["0", "-2", "two", "auto", "2.5"])
def test_web_concurrency_refuses_what_is_not_a_worker_count(value):
    from backend.gunicorn_conf import worker_count

    with pytest.raises(ValueError):
        worker_count(value)


def test_an_api_call_while_the_database_is_down_answers_503_not_500(committed_db):
    port = free_port()
    other = create_app(Config(DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{port}/nope", REDIS_URL=""))
    other.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"connect_timeout": 1}}
    r = other.test_client().get("/api/v1/auth/me", headers={"Authorization": "Bearer cp_whatever"})
    assert r.status_code == 503
    assert r.json["reason"] == "ops.not_ready" and "database" in r.json["errors"]
    assert r.headers["Retry-After"]
