"""The print agent (print_agent/, issue 3 part 6) as a real process against a real test server.

The Flask app runs in a thread on a free port (werkzeug's make_server) over committed data; the
agent runs as `python -m print_agent` in a subprocess with `backend` made unimportable; a
stand-in `lp` first on PATH records what it was given (argv, the file's SHA-256) and prints,
fails or hangs as the test asks."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[1]
API = "/api/v1/labels"
PRINTER = "Zebra_ZT410"
LICENCE = {"licence_status": "active", "licence_no": "GI-0009", "licence_valid_from": date(2020, 1, 1),
           "licence_valid_until": date(2099, 12, 31)}
INTERRUPTED = "interrupted while sending to the printer; check the printed sheets before asking for a reprint"
# Run the agent's __main__ with `backend` unimportable: any import of it raises ImportError.
RUN_AGENT = ("import runpy, sys; sys.modules['backend'] = None; "
             "runpy.run_module('print_agent', run_name='__main__', alter_sys=True)")

FAKE_LP = r'''#!{python}
"""Stand-in for CUPS lp: records argv and the file's SHA-256, then does what FAKE_LP_MODE says."""
import hashlib, json, os, sys, time
path = sys.argv[-1]
record = {{"argv": sys.argv[1:], "pid": os.getpid(), "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest()}}
with open(os.environ["FAKE_LP_LOG"], "a") as log:
    log.write(json.dumps(record) + "\n")
mode = os.environ.get("FAKE_LP_MODE", "ok")
if mode == "fail":
    sys.stderr.write("lp: Error - The printer or class does not exist.\n")
    sys.exit(1)
if mode == "sleep":
    time.sleep(60)
if mode == "slow":
    time.sleep(1.5)
if mode.startswith("wait"):
    time.sleep(float(mode[4:]))
print("request id is {printer}-42 (1 file(s))")
'''


# --- the server, the lp stand-in, the agent ----------------------------------------------------
class LiveServer:
    def __init__(self, app, port: int = 0):
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def short_lease(app, monkeypatch):
    monkeypatch.setattr(app.config["CHENPI"], "PRINT_LEASE_SECONDS", 2)


@pytest.fixture
def live(app, committed_db, short_lease):
    servers = []

    def start(port: int = 0) -> LiveServer:
        server = LiveServer(app, port)
        servers.append(server)
        return server

    start.servers = servers
    yield start
    for server in servers:
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    """Runs the real agent process; `lp` on its PATH is the stand-in writing to lp_log."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.bin.mkdir()
        lp = self.bin / "lp"
        lp.write_text(FAKE_LP.format(python=sys.executable, printer=PRINTER))
        lp.chmod(0o755)
        self.lp_log = tmp / "lp.jsonl"
        self.state = tmp / "state"
        self.log_file = tmp / "agent.log"
        self.procs: list[subprocess.Popen] = []

    def env(self, lp_mode: str = "ok", **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHENPI_AGENT_")}
        env.update({"PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}", "FAKE_LP_LOG": str(self.lp_log),
                    "FAKE_LP_MODE": lp_mode, **extra})
        return env

    def start(self, api: str, token: str, *args: str, lp_mode: str = "ok", env: dict | None = None) -> subprocess.Popen:
        argv = [sys.executable, "-c", RUN_AGENT, "--api", api, "--token", token, "--printer", PRINTER,
                "--state-dir", str(self.state), "--log-file", str(self.log_file), "--poll", "0.2",
                "--backoff-max", "0.5", "--timeout", "10", *args]
        proc = subprocess.Popen(argv, cwd=self.tmp, env={**self.env(lp_mode), **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def run(self, api: str, token: str, *args: str, lp_mode: str = "ok", env: dict | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess:
        proc = self.start(api, token, *args, lp_mode=lp_mode, env=env)
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def lp_calls(self) -> list[dict]:
        if not self.lp_log.exists():
            return []
        return [json.loads(line) for line in self.lp_log.read_text().splitlines()]

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def wait_for(self, condition, what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; agent log:\n{self.log()}")
            time.sleep(0.05)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        for call in self.lp_calls():  # a hanging lp outlives a killed agent (it has its own session)
            try:
                os.kill(call["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path)
    yield a
    a.cleanup()


@pytest.fixture
def inline_render(monkeypatch):
    """Render jobs run in the request that asks for them (the real worker has its own tests)."""
    import backend.labels.service as service
    from backend.labels import jobs

    monkeypatch.setattr(service, "enqueue", lambda job_id: jobs.render_job(job_id))


def queue_print_job(client, make, quantity: int = 4, copies: int = 1) -> dict:
    """An operator with an issued, rendered batch and a print job queued for its agent."""
    op = make.operator(**LICENCE)
    people = {"op": make.auth(make.token("operator", op)), "admin": make.auth(make.token("admin"))}
    agent_token = make.token("agent", op)
    r = client.post(f"{API}/applications", json={"product": "新会陈皮 十年陈 250 g", "quantity": quantity},
                    headers=people["op"])
    assert r.status_code == 201, r.json
    batch = client.post(f"{API}/applications/{r.json['id']}/approve", json={}, headers=people["admin"])
    assert batch.status_code == 201, batch.json
    render = client.post(f"{API}/batches/{batch.json['id']}/renders", json={}, headers=people["op"])
    assert render.status_code == 202, render.json
    render = client.get(f"{API}/renders/{render.json['id']}", headers=people["op"]).json
    assert render["status"] == "finished", render
    job = client.post(f"{API}/renders/{render['id']}/print", json={"copies": copies}, headers=people["op"])
    assert job.status_code == 201, job.json
    return {"job": job.json, "render": render, "batch": batch.json, "agent_token": agent_token, "operator": op,
            **people}


def job_row(job_id: int):
    from backend.extensions import db
    from backend.labels.models import PrintJob

    db.session.rollback()  # a fresh snapshot: the server thread committed since
    return db.session.get(PrintJob, job_id, populate_existing=True)


def print_counts(batch_id: int) -> list[int]:
    from backend.extensions import db
    from backend.labels.models import Label

    db.session.rollback()
    return list(db.session.scalars(select(Label.print_count).where(Label.batch_id == batch_id).order_by(Label.serial)))


# --- tests -------------------------------------------------------------------------------------
def test_the_agent_never_imports_backend():
    """Static check beside the runtime one (every agent run below has `backend` unimportable)."""
    pattern = re.compile(r"^\s*(from|import)\s+backend\b", re.M)
    offenders = [p.name for p in (ROOT / "print_agent").glob("*.py") if pattern.search(p.read_text())]
    assert not offenders


@pytest.mark.real_servers
def test_once_prints_one_job_with_lp_and_acks_it_printed(client, make, live, agent, inline_render):
    setup = queue_print_job(client, make, quantity=4)
    server = live()
    done = agent.run(server.url, setup["agent_token"], "--once")
    assert done.returncode == 0, agent.log() + done.stderr
    [call] = agent.lp_calls()
    job_id = setup["job"]["id"]
    assert call["argv"][:6] == ["-d", PRINTER, "-n", "1", "-t", f"chenpi job {job_id}"]
    assert call["sha256"] == setup["render"]["sha256"]
    row = job_row(job_id)
    assert row.status == "printed" and row.printer == PRINTER and row.leases == 1
    assert row.printer_answer == f"request id is {PRINTER}-42 (1 file(s))"
    assert print_counts(setup["batch"]["id"]) == [1, 1, 1, 1]
    # every log line carries a timestamp and the job id
    lines = [line for line in agent.log().splitlines() if f"job={job_id} " in line]
    assert any("acknowledged printed" in line for line in lines)
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line) for line in agent.log().splitlines())
    # the journal says what happened, and the downloaded PDF is gone
    events = [json.loads(line)["event"] for line in (agent.state / "journal.jsonl").read_text().splitlines()]
    assert events == ["sending", "sent", "acked"]
    assert list((agent.state / "downloads").iterdir()) == []
    # nothing more waits: --once exits 0 without printing
    again = agent.run(server.url, setup["agent_token"], "--once")
    assert again.returncode == 0 and len(agent.lp_calls()) == 1


@pytest.mark.real_servers
def test_spool_mode_writes_the_pdf_atomically_and_calls_no_lp(client, make, live, agent, inline_render, tmp_path):
    setup = queue_print_job(client, make, quantity=3, copies=2)
    server = live()
    spool = tmp_path / "spool"
    done = agent.run(server.url, setup["agent_token"], "--once", "--output-dir", str(spool))
    assert done.returncode == 0, agent.log() + done.stderr
    job_id = setup["job"]["id"]
    assert [p.name for p in spool.iterdir()] == [f"job-{job_id}-print.pdf"]  # no temp file left
    assert hashlib.sha256((spool / f"job-{job_id}-print.pdf").read_bytes()).hexdigest() == setup["render"]["sha256"]
    assert agent.lp_calls() == []
    row = job_row(job_id)
    assert row.status == "printed" and str(spool) in row.printer_answer and "2 copies" in row.printer_answer
    assert print_counts(setup["batch"]["id"]) == [2, 2, 2]


@pytest.mark.real_servers
def test_agent_killed_while_lp_runs_acks_failed_interrupted_without_printing_again(client, make, live, agent,
                                                                                   inline_render):
    setup = queue_print_job(client, make)
    server = live()
    first = agent.start(server.url, setup["agent_token"], lp_mode="sleep")
    agent.wait_for(lambda: len(agent.lp_calls()) == 1, "lp to be called")
    first.kill()
    first.wait(5)
    assert job_row(setup["job"]["id"]).status == "leased"
    # restarted: the lease runs out (2 s), the job is leased again, the journal answers it
    second = agent.start(server.url, setup["agent_token"])
    agent.wait_for(lambda: job_row(setup["job"]["id"]).status != "leased", "the job to be acknowledged")
    row = job_row(setup["job"]["id"])
    assert row.status == "failed" and row.printer_answer == INTERRUPTED and row.leases == 2
    assert len(agent.lp_calls()) == 1
    assert print_counts(setup["batch"]["id"]) == [0, 0, 0, 0]
    second.send_signal(signal.SIGTERM)
    assert second.wait(5) == 0
    assert "not printing it again" in agent.log()


@pytest.mark.real_servers
def test_agent_killed_before_its_ack_arrived_acks_printed_from_the_journal(client, make, live, agent, inline_render,
                                                                           monkeypatch):
    import backend.labels.service as service
    from flask import abort

    setup = queue_print_job(client, make)
    original, arrived, release = service.ack_print_job, threading.Event(), threading.Event()
    calls = []

    def ack_that_never_arrives_the_first_time(*args, **kwargs):
        calls.append(args[-2])  # the outcome
        if len(calls) == 1:
            arrived.set()
            release.wait(20)
            abort(503)  # the agent is gone by now; nothing is written
        return original(*args, **kwargs)

    monkeypatch.setattr(service, "ack_print_job", ack_that_never_arrives_the_first_time)
    server = live()
    first = agent.start(server.url, setup["agent_token"])
    assert arrived.wait(20), agent.log()
    first.kill()
    first.wait(5)
    release.set()
    assert len(agent.lp_calls()) == 1 and job_row(setup["job"]["id"]).status == "leased"
    second = agent.start(server.url, setup["agent_token"])
    agent.wait_for(lambda: job_row(setup["job"]["id"]).status != "leased", "the job to be acknowledged")
    row = job_row(setup["job"]["id"])
    assert row.status == "printed" and row.leases == 2
    assert row.printer_answer == f"request id is {PRINTER}-42 (1 file(s))"  # lp's answer, from the journal
    assert calls == ["printed", "printed"]
    assert len(agent.lp_calls()) == 1
    assert print_counts(setup["batch"]["id"]) == [1, 1, 1, 1]
    second.send_signal(signal.SIGTERM)
    assert second.wait(5) == 0


@pytest.mark.real_servers
def test_api_down_at_start_is_retried_with_backoff_until_it_comes_up(client, make, live, agent, inline_render):
    setup = queue_print_job(client, make)
    port = free_port()
    proc = agent.start(f"http://127.0.0.1:{port}", setup["agent_token"], "--once")
    agent.wait_for(lambda: agent.log().count("lease failed") >= 3, "three failed leases")
    assert proc.poll() is None and "Connection refused" in agent.log()
    live(port)
    assert proc.wait(20) == 0, agent.log()
    assert len(agent.lp_calls()) == 1 and job_row(setup["job"]["id"]).status == "printed"


@pytest.mark.real_servers
def test_sigterm_while_lp_runs_lets_lp_finish_and_acks_before_exiting(client, make, live, agent, inline_render):
    setup = queue_print_job(client, make)
    server = live()
    proc = agent.start(server.url, setup["agent_token"], lp_mode="slow")
    agent.wait_for(lambda: len(agent.lp_calls()) == 1, "lp to be called")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, agent.log()
    row = job_row(setup["job"]["id"])
    assert row.status == "printed" and row.printer_answer == f"request id is {PRINTER}-42 (1 file(s))"
    assert len(agent.lp_calls()) == 1 and print_counts(setup["batch"]["id"]) == [1, 1, 1, 1]


def test_sigterm_while_backing_off_exits_0_promptly(agent):
    proc = agent.start(f"http://127.0.0.1:{free_port()}", "token", "--backoff-max", "60")
    agent.wait_for(lambda: agent.log().count("lease failed") >= 3, "three failed leases (the waits grow to seconds)")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    assert time.monotonic() - started < 3
    assert "SIGTERM" in agent.log() and agent.log().rstrip().endswith("stopped")


@pytest.mark.real_servers
def test_a_tampered_pdf_is_not_printed_and_is_acked_failed(client, make, live, agent, inline_render):
    from backend.storage import get_storage

    setup = queue_print_job(client, make)
    path = get_storage().path(job_row(setup["job"]["id"]).render.storage_key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    server = live()
    done = agent.run(server.url, setup["agent_token"], "--once")
    assert done.returncode == 0, agent.log()
    assert agent.lp_calls() == []
    row = job_row(setup["job"]["id"])
    assert row.status == "failed" and "does not match" in row.printer_answer and setup["render"]["sha256"] in row.printer_answer
    assert print_counts(setup["batch"]["id"]) == [0, 0, 0, 0]


@pytest.mark.real_servers
def test_lp_failing_acks_failed_with_its_stderr(client, make, live, agent, inline_render):
    setup = queue_print_job(client, make)
    server = live()
    done = agent.run(server.url, setup["agent_token"], "--once", lp_mode="fail")
    assert done.returncode == 0, agent.log()
    assert len(agent.lp_calls()) == 1
    row = job_row(setup["job"]["id"])
    assert row.status == "failed" and row.printer_answer == "lp: Error - The printer or class does not exist."
    assert print_counts(setup["batch"]["id"]) == [0, 0, 0, 0]


@pytest.mark.real_servers
def test_a_bad_token_exits_non_zero_saying_so(make, live, agent):
    server = live()
    done = agent.run(server.url, "not-a-token", "--once")
    assert done.returncode == 3
    assert "refused the token" in done.stderr and "401" in done.stderr
    operator_token = make.token("operator")  # a real token, but not an agent's
    done = agent.run(server.url, operator_token, "--once")
    assert done.returncode == 3 and "403" in done.stderr


def test_plain_http_is_refused_off_localhost_and_settings_come_from_file_and_env(agent, tmp_path):
    done = agent.run("http://trace.example.cn", "t", "--once")
    assert done.returncode == 2 and "plain http" in done.stderr and "--insecure-http" in done.stderr
    # no lp to print with: refused before leasing anything
    (tmp_path / "empty").mkdir()
    done = agent.run("https://trace.example.cn", "t", "--once", env={"PATH": str(tmp_path / "empty")})
    assert done.returncode == 2 and "lp is not on PATH" in done.stderr
    config = tmp_path / "agent.toml"
    config.write_text('api = "https://trace.example.cn"\nprinter = "P1"\npoll = "soon"\n')
    proc = subprocess.run([sys.executable, "-c", RUN_AGENT, "--config", str(config)], env=agent.env(),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "poll" in proc.stderr and str(config) in proc.stderr
    # the token from the environment, the rest from the file; the API is down: retries until SIGTERM
    config.write_text(f'api = "http://127.0.0.1:{free_port()}"\nprinter = "P1"\nstate-dir = "{agent.state}"\n'
                      f'log_file = "{agent.log_file}"\nbackoff_max = 0.5\n')
    proc = subprocess.Popen([sys.executable, "-c", RUN_AGENT, "--config", str(config)],
                            env=agent.env(CHENPI_AGENT_TOKEN="from-env"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    agent.procs.append(proc)
    agent.wait_for(lambda: "lease failed" in agent.log(), "a failed lease")
    assert "printer P1" in agent.log()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(5) == 0
    # a second agent on the same state directory is refused while the first runs
    first = agent.start(f"http://127.0.0.1:{free_port()}", "t")
    agent.wait_for(lambda: agent.log().count("agent started") >= 2, "the first agent to start")
    second = agent.run(f"http://127.0.0.1:{free_port()}", "t", timeout=10)
    assert second.returncode == 5 and "another print agent" in second.stderr
    first.send_signal(signal.SIGTERM)
    assert first.wait(5) == 0


def test_the_journal_skips_a_torn_line_and_keeps_the_last_word_on_each_job(tmp_path):
    from print_agent.journal import Journal

    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.record(7, "a" * 64, "sending")
    journal.record(7, "a" * 64, "sent", answer="request id is P-1")
    journal.record(8, "b" * 64, "sending")
    journal.close()
    with open(path, "a") as fh:
        fh.write('{"job": 8, "sha256": "' + "b" * 64 + '", "event": "se')  # the power went out mid-write
    again = Journal(path)
    assert again.skipped == 1
    assert again.state(7, "a" * 64)["answer"] == "request id is P-1"
    assert again.state(8, "b" * 64)["event"] == "sending"
    assert again.state(7, "c" * 64) is None  # the same id with another PDF is another job
    again.close()
    assert len(path.read_text().splitlines()) == 2  # compacted: the last line of each job


def test_settings_keep_the_token_out_of_argv_and_normalise_the_api_url(tmp_path):
    from print_agent.settings import ConfigError, load

    s = load(["--api", "https://trace.example.cn/api/v1/", "--printer", "P1"],
             {"CHENPI_AGENT_TOKEN": "tok", "CHENPI_AGENT_POLL": "2.5", "CHENPI_AGENT_ONCE": "yes"})
    assert (s.api, s.token, s.poll, s.once) == ("https://trace.example.cn", "tok", 2.5, True)
    for argv, env, word in ((["--api", "https://x.cn", "--printer", "P1"], {}, "token is required"),
                            (["--api", "https://x.cn", "--printer=-d", "--token", "t"], {}, "printer"),
                            (["--api", "ftp://x.cn", "--printer", "P", "--token", "t"], {}, "https://"),
                            (["--api", "https://x.cn", "--printer", "P", "--token", "t"], {"CHENPI_AGENT_POLL": "-1"}, "poll")):
        with pytest.raises(ConfigError, match=word):
            load(argv, env)


def test_compose_runs_the_agent_under_the_agent_profile_with_settings_it_reads():
    import tomllib

    import yaml
    from print_agent.settings import ENV_PREFIX, KEYS

    service = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]["print-agent"]
    assert service["profiles"] == ["agent"] and service["command"][0] == "chenpi-print-agent"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["chenpi-print-agent"] == "print_agent.cli:main"
    unknown = {name for name in service["environment"] if name.removeprefix(ENV_PREFIX).lower() not in KEYS}
    assert not unknown
    spool = service["command"][service["command"].index("--output-dir") + 1]
    assert any(volume.endswith(":" + spool) for volume in service["volumes"])


# --- the lease, right before printing ----------------------------------------------------------
def journal_events(agent) -> list[tuple[int, str]]:
    path = agent.state / "journal.jsonl"
    if not path.exists():
        return []
    return [(entry["job"], entry["event"]) for entry in map(json.loads, path.read_text().splitlines())]


def slow_pdf(monkeypatch, hold):
    """The first PDF download waits in the server until hold(); later ones are served at once."""
    import backend.labels.service as service

    original, arrived, calls = service.get_render, threading.Event(), []

    def get_render(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            arrived.set()
            hold()
        return original(*args, **kwargs)

    monkeypatch.setattr(service, "get_render", get_render)
    return arrived


@pytest.mark.real_servers
def test_a_download_outlasting_the_lease_while_another_agent_printed_the_job_is_not_printed(
        app, client, make, live, agent, inline_render, monkeypatch):
    """Reproduces the reviewer's case: the download takes longer than the lease, another agent of the
    operator leases the job, prints it and acknowledges; the first agent's renewal is refused and it
    does not call lp (before the fix it printed the labels a second time)."""
    setup = queue_print_job(client, make)
    job_id = setup["job"]["id"]
    release = threading.Event()
    arrived = slow_pdf(monkeypatch, lambda: release.wait(20))
    server = live()
    proc = agent.start(server.url, setup["agent_token"], "--once")
    try:
        assert arrived.wait(20), agent.log()
        other = make.auth(make.token("agent", setup["operator"]))  # a second agent of the operator
        deadline = time.monotonic() + 10
        while (taken := client.post(f"{API}/print-jobs/lease", json={"printer": "P2"}, headers=other)).status_code == 204:
            assert time.monotonic() < deadline, "the 2 s lease never ran out"
            time.sleep(0.1)
        assert taken.status_code == 200 and taken.json["id"] == job_id and taken.json["leases"] == 2
        done = client.post(f"{API}/print-jobs/{job_id}/ack", headers=other,
                           json={"lease_token": taken.json["lease_token"], "outcome": "printed", "printer_answer": "P2"})
        assert done.status_code == 200, done.json
    finally:
        release.set()
    assert proc.wait(20) == 0, agent.log()
    assert agent.lp_calls() == []
    assert journal_events(agent) == []  # nothing says "sending": nothing went to the printer
    assert "the lease is no longer ours" in agent.log() and "not printing" in agent.log()
    row = job_row(job_id)
    assert row.status == "printed" and row.printer_answer == "P2" and row.leases == 2
    assert print_counts(setup["batch"]["id"]) == [1, 1, 1, 1]


@pytest.mark.real_servers
def test_a_download_outlasting_the_lease_nobody_took_renews_it_and_prints_once(client, make, live, agent,
                                                                             inline_render, monkeypatch):
    setup = queue_print_job(client, make)
    job_id = setup["job"]["id"]
    slow_pdf(monkeypatch, lambda: time.sleep(2.5))  # past the 2 s lease
    server = live()
    done = agent.run(server.url, setup["agent_token"], "--once")
    assert done.returncode == 0, agent.log()
    assert len(agent.lp_calls()) == 1
    assert journal_events(agent) == [(job_id, "sending"), (job_id, "sent"), (job_id, "acked")]
    row = job_row(job_id)
    assert row.status == "printed" and row.leases == 1
    assert print_counts(setup["batch"]["id"]) == [1, 1, 1, 1]


@pytest.mark.real_servers
def test_a_renewal_answered_too_late_is_not_trusted_and_the_job_is_printed_on_its_next_lease(
        client, make, live, agent, inline_render, monkeypatch):
    """The renewal's answer takes 1.6 s of the 2 s lease: less than the safety margin (1 s) is left by
    the agent's own clock, so it does not print; the job comes back and is printed once."""
    import backend.labels.service as service

    setup = queue_print_job(client, make)
    job_id = setup["job"]["id"]
    original, calls = service.renew_print_job, []

    def slow_renewal(*args, **kwargs):
        job = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            time.sleep(1.6)
        return job

    monkeypatch.setattr(service, "renew_print_job", slow_renewal)
    server = live()
    first = agent.run(server.url, setup["agent_token"], "--once")
    assert first.returncode == 0, agent.log()
    assert agent.lp_calls() == [] and journal_events(agent) == []
    assert re.search(r"only -?\d+\.\d s of the renewed lease are left \(printing needs 1\.0 s\): not printing",
                     agent.log()), agent.log()
    assert job_row(job_id).status == "leased"
    time.sleep(0.5)  # the renewed lease runs out: the job is leased again
    second = agent.run(server.url, setup["agent_token"], "--once")
    assert second.returncode == 0, agent.log()
    assert len(agent.lp_calls()) == 1
    row = job_row(job_id)
    assert row.status == "printed" and row.leases == 2
    assert print_counts(setup["batch"]["id"]) == [1, 1, 1, 1]


@pytest.mark.real_servers
def test_a_slow_lp_keeps_the_lease_so_no_other_agent_takes_the_job(client, make, live, agent, inline_render):
    setup = queue_print_job(client, make)
    job_id = setup["job"]["id"]
    server = live()
    proc = agent.start(server.url, setup["agent_token"], "--once", lp_mode="wait3")  # lp takes 3 s, the lease 2 s
    agent.wait_for(lambda: len(agent.lp_calls()) == 1, "lp to be called")
    other = make.auth(make.token("agent", setup["operator"]))
    while proc.poll() is None:
        r = client.post(f"{API}/print-jobs/lease", json={"printer": "P2"}, headers=other)
        assert r.status_code == 204, "the job was leased to another agent while lp ran"
        time.sleep(0.2)
    assert proc.returncode == 0, agent.log()
    row = job_row(job_id)
    assert row.status == "printed" and row.leases == 1 and len(agent.lp_calls()) == 1


@pytest.mark.real_servers
def test_an_ack_refused_as_already_printed_after_our_lp_ran_is_an_error_naming_the_job(client, make, live, agent,
                                                                                     inline_render, monkeypatch):
    import backend.labels.service as service
    from backend.errors import AppError

    setup = queue_print_job(client, make)
    job_id = setup["job"]["id"]

    def another_agent_acked_first(*args, **kwargs):
        raise AppError("labels.already_printed", errors={"print_job_id": [
            f"Print job {job_id} was acknowledged as printed already."]})

    monkeypatch.setattr(service, "ack_print_job", another_agent_acked_first)
    server = live()
    done = agent.run(server.url, setup["agent_token"], "--once")
    assert done.returncode == 0, agent.log()
    assert len(agent.lp_calls()) == 1
    [line] = [line for line in agent.log().splitlines() if " ERROR " in line]
    assert f"job={job_id} " in line and f"job {job_id} was acknowledged as printed by another lease" in line
    assert "serials 1-4 may have been printed twice" in line
    assert "ERROR" in done.stderr  # errors also reach stderr with --log-file


def test_the_lease_left_comes_from_the_server_never_from_the_local_wall_clock():
    import requests
    from print_agent.agent import safety_margin
    from print_agent.api import lease_seconds_left

    response = requests.Response()
    response.headers["Date"] = "Sat, 28 Nov 2026 02:00:00 GMT"
    assert lease_seconds_left({"lease_seconds_left": 299.5, "lease_expires_at": "2000-01-01T00:00:00+08:00"},
                              response) == 299.5
    # an older server: lease_expires_at (Asia/Shanghai) minus its Date header, less a second for its resolution
    assert lease_seconds_left({"lease_expires_at": "2026-11-28T10:05:00+08:00"}, response) == 299.0
    for job in ({}, {"lease_expires_at": "soon"}, {"lease_expires_at": "2026-11-28T10:05:00"},
                {"lease_seconds_left": True, "lease_expires_at": None}):
        assert lease_seconds_left(job, response) is None
    assert lease_seconds_left({"lease_expires_at": "2026-11-28T10:05:00+08:00"}, requests.Response()) is None
    response.headers["Date"] = "yesterday"
    assert lease_seconds_left({"lease_expires_at": "2026-11-28T10:05:00+08:00"}, response) is None
    assert (safety_margin(300), safety_margin(30), safety_margin(3600), safety_margin(2)) == (30, 10, 360, 1)
