"""The consumer resolver under load: GET /v/{code} (JSON, random over 10,000 issued, activated
labels) against a bare endpoint (/healthz, a constant) on the same gunicorn and Redis, in one run.

    .venv/bin/python bench/bench_scans.py [--labels 10000] [--rounds 5] [--seconds 4] [--connections 16] [--threads 2]

gunicorn runs backend/gunicorn_conf.py (gthread; workers: WEB_CONCURRENCY, else cores + 1; WEB_THREADS=4 unless set) on
PostgreSQL (BENCH_SCANS_DATABASE_URL, dropped and re-created) and a redis-server of its own on a
free port (or BENCH_SCANS_REDIS_URL, flushed); `chenpi scans drain` runs beside it as in
production, and the load generator is wrk (apt install wrk) on the same machine. The labels'
views are warmed in Redis before the load as an activation through the service warms them
(backend/scans/warming.py; --no-warm to leave them cold: each code's first scans read the database).

The load comes in rounds: the bare endpoint for --seconds, then the resolver, --rounds times.
Each wrk run opens its connections afresh, and which gunicorn worker accepts each one is a
lottery (every worker polls the one listening socket; a keep-alive connection stays where it
landed). Measured here, about half the bare runs left a worker without a connection, and the bare
endpoint, bound by the GIL of the workers it did reach, swung with the draw (2 workers: 2,365
req/s when one worker got every connection, 6,321 in the next run) while the resolver moved by
3 %. One pair of runs compared draws more than endpoints, so the ratio is the median of the
rounds' ratios (each round's draws are listed, as each worker's CPU seconds); the ratio of the
totals is reported beside it, and p99 is the median and the worst of the rounds'. Five rounds
of 4 s keep the resolver's load at 20 s in all (about 7 scans per code): much longer and many
codes pass SCAN_ALERT_SCANS, whose alerts refresh their views, a workload of its own.

Besides wrk's figures it reports CPU per request: the CPU time (utime + stime from /proc) of
the gunicorn workers, the drain, the Redis server (its own only) and the PostgreSQL backends
of the bench database over each run, divided by the requests wrk completed; also wrk's own CPU
per request, how busy the whole machine was (host_busy: 1.0 leaves no core idle) and each
gunicorn worker's CPU seconds. On a shared, loaded machine req/s swing with the neighbours; CPU
per request does much less. Target: the resolver at ≥ 50 % of the bare endpoint's requests per
second (the median round), with p99 under 50 ms in every round. The rate limit is lifted (one
load-generator address); request logging is at WARNING for both endpoints.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ["BENCH_DATABASE_URL"] = os.environ.get(
    "BENCH_SCANS_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/chenpi_bench_scans")

from _scratch import migrated_app  # noqa: E402

from backend.gunicorn_conf import worker_count  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("BENCH_SCANS_REDIS_URL", "")
TICK = os.sysconf("SC_CLK_TCK")


def setup(n_labels: int) -> tuple[str, list[str], object, int]:
    from sqlalchemy import select, update

    from backend.extensions import db
    from backend.labels.models import Label
    from backend.timeutil import utcnow
    from tests.factories import Factory, label_batch

    app, url, _ = migrated_app("postgresql")
    with app.app_context():
        s = db.session
        make = Factory(s)
        operator = make.operator()
        lot = make.lot(operator)
        batch = label_batch(s, operator, n_labels, lot=lot)
        s.execute(update(Label).where(Label.batch_id == batch.id).values(state="activated", activated_at=utcnow()))
        s.commit()
        codes = list(s.scalars(select(Label.code).where(Label.batch_id == batch.id)))
        batch_id = batch.id
    return url, codes, app, batch_id


def warm(app, r, batch_id: int, n_labels: int) -> int:
    """What an activation through the service does after its commit (backend/scans/warming.py, a
    job on the `low` queue): store the activated labels' views in the bench's Redis. The bench
    activates with one bulk UPDATE before its Redis exists, so it runs that job's work here."""
    from backend.extensions import db
    from backend.scans import warming

    with app.app_context():
        n = warming.warm(db.session, r, batch_id, 1, n_labels)
        db.session.rollback()
    return n


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wrk(url: str, seconds: int, connections: int, threads: int, script: str | None = None) -> dict:
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        args[1:1] = ["-s", script]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    host0 = _host_cpu()
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    host1 = _host_cpu()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": round(rps), "p50_ms": ms("50%"), "p90_ms": ms("90%"), "p99_ms": ms("99%"), "requests": total,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else None,
            # the load generator's own CPU, and how busy the whole machine was (1.0: no idle core time)
            "wrk_cpu_ms_per_request": round(1000 * wrk_cpu / max(total, 1), 3),
            "host_busy": round(1 - (host1[1] - host0[1]) / max(host1[0] - host0[0], 1), 3)}


def _host_cpu() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of the whole machine, from /proc/stat's first line (user nice
    system idle iowait irq softirq steal; guest time is already in user and nice)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return sum(values), values[3] + values[4]


def _proc_cpu(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used so far) of a process, from /proc; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            got = _proc_cpu(int(entry))
            if got and got[0] == pid:
                out.append(int(entry))
    return out


class CpuMeter:
    """CPU seconds of the processes serving the run, by role: gunicorn workers (the master's
    children), the drain, Redis and the PostgreSQL backends connected to the bench database."""

    def __init__(self, gunicorn_pid: int, drain_pid: int | None, redis_pid: int | None, db_url: str):
        import sqlalchemy as sa

        self.gunicorn, self.drain, self.redis = gunicorn_pid, drain_pid, redis_pid
        self.dbname = sa.engine.make_url(db_url).database
        self.pg = sa.create_engine(sa.engine.make_url(db_url).set(database="postgres"), poolclass=sa.pool.NullPool)

    def _pids(self) -> dict[str, list[int]]:
        import sqlalchemy as sa

        with self.pg.connect() as conn:
            backends = list(conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"),
                                         {"d": self.dbname}).scalars())
        return {"gunicorn": _children(self.gunicorn),
                "drain": [self.drain, *_children(self.drain)] if self.drain else [],
                "redis": [self.redis] if self.redis else [], "postgres": backends}

    def snapshot(self) -> dict[str, dict[int, float]]:
        return {role: {pid: got[1] for pid in pids if (got := _proc_cpu(pid))} for role, pids in self._pids().items()}

    @staticmethod
    def deltas(before: dict, after: dict, role: str) -> list[float]:
        """CPU seconds of each process of `role` between two snapshots (a process new since
        `before` counts whole)."""
        return [t - before.get(role, {}).get(pid, 0.0) for pid, t in after.get(role, {}).items()]

    @staticmethod
    def used(before: dict, after: dict) -> dict[str, float]:
        """CPU seconds per role between two snapshots."""
        return {role: round(sum(CpuMeter.deltas(before, after, role)), 2) for role in after}

    @staticmethod
    def per_worker(before: dict, after: dict) -> list[float]:
        """CPU seconds of each gunicorn worker between two snapshots, smallest first: an uneven
        split of wrk's connections leaves one worker bound by its GIL."""
        return sorted(round(s, 2) for s in CpuMeter.deltas(before, after, "gunicorn"))


def per_request(cpu: dict[str, float], requests: int) -> dict:
    ms = {role: round(1000 * s / max(requests, 1), 3) for role, s in cpu.items()}
    ms["total"] = round(sum(ms.values()), 3)
    return ms


def combined(runs: list[dict]) -> dict:
    """One endpoint's figures over every round: the mean of the rounds' requests per second, the
    median p50, the median and worst p99, mean host_busy, CPU per request over all the rounds' requests."""
    requests = sum(x["requests"] for x in runs)
    cpu = {role: round(sum(x["cpu_s"][role] for x in runs), 2) for role in runs[0]["cpu_s"]}
    return {"rps": round(statistics.mean(x["rps"] for x in runs)), "requests": requests,
            "p50_ms": statistics.median(x["p50_ms"] for x in runs),
            "p99_ms": statistics.median(x["p99_ms"] for x in runs), "p99_ms_max": max(x["p99_ms"] for x in runs),
            "non_2xx": sum(x["non_2xx"] for x in runs),
            "socket_errors": [x["socket_errors"] for x in runs if x["socket_errors"]] or None,
            "wrk_cpu_ms_per_request": round(sum(x["wrk_cpu_ms_per_request"] * x["requests"] for x in runs)
                                            / max(requests, 1), 3),
            "host_busy": round(statistics.mean(x["host_busy"] for x in runs), 3),
            "cpu_s": cpu, "cpu_ms_per_request": per_request(cpu, requests)}


def drained(r, drain, limit_s: float = 120) -> float | None:
    """Wait until the drain has emptied the scan stream; the seconds it took (None: no drain)."""
    if drain is None:
        return None
    started = time.perf_counter()
    while r.xlen("scans:{stream}") and time.perf_counter() - started < limit_s:
        time.sleep(0.05)
    return round(time.perf_counter() - started, 2)


def start_redis() -> tuple[subprocess.Popen, str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (or set BENCH_SCANS_REDIS_URL)")
    port = free_port()
    proc = subprocess.Popen([exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"redis://127.0.0.1:{port}/0"


def _sets(r) -> int:
    return int(r.info("commandstats").get("cmdstat_set", {}).get("calls", 0))


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=4, help="length of each endpoint's run in a round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of (bare endpoint, resolver)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-drain", action="store_true", help="Do not run the stream drain during the load")
    ap.add_argument("--no-warm", action="store_true", help="Do not warm the label views as an activation would")
    a = ap.parse_args()
    if a.rounds < 1 or a.seconds < 1:
        ap.error("--rounds and --seconds must be at least 1")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt install wrk)")

    t0 = time.perf_counter()
    db_url, codes, app, batch_id = setup(a.labels)
    print(f"setup: {len(codes):,} activated labels in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    import redis

    redis_proc, redis_url = (None, REDIS_URL) if REDIS_URL else start_redis()
    r = redis.Redis.from_url(redis_url)
    for _ in range(100):
        try:
            r.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    r.flushdb()
    warmed = 0
    if not a.no_warm:
        t1 = time.perf_counter()
        warmed = warm(app, r, batch_id, len(codes))
        print(f"warmed {warmed:,} label views in {time.perf_counter() - t1:.1f} s", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scans-"))
    script = tmp / "codes.lua"
    script.write_text(
        "local codes = {" + ",".join(f'"{c}"' for c in codes) + "}\n"
        "math.randomseed(os.time())\n"
        "wrk.headers['Accept'] = 'application/json'\n"
        "request = function() return wrk.format('GET', '/v/' .. codes[math.random(#codes)]) end\n")
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url, "SECRET_KEY": "bench-secret",
           "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "WARNING", "SCAN_RATE_PER_MIN": "1000000000",
           "PYTHONPATH": str(ROOT)}
    if not env.get("WEB_CONCURRENCY", "").strip():  # (gunicorn reads it as a number when set)
        env.pop("WEB_CONCURRENCY", None)
    env.setdefault("WEB_THREADS", "4")
    gunicorn = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-c", "python:backend.gunicorn_conf"],
                                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    drain = None if a.no_drain else subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "scans", "drain"], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        wrk(base + "/healthz", 3, a.connections, a.threads)
        wrk(base + "/", 5, a.connections, a.threads, str(script))  # warm-up: pools, origin cache
        meter = CpuMeter(gunicorn.pid, drain.pid if drain else None, redis_proc.pid if redis_proc else None, db_url)
        load = [loadavg()]
        sets_before, scans_before = _sets(r), int(r.get("scans:{all}:n") or 0)
        rounds = []
        for _ in range(a.rounds):  # bare, then resolver, each on wrk's fresh connections
            drained(r, drain)  # (the last resolver run's tail is not the bare endpoint's load)
            before = meter.snapshot()
            bare = wrk(base + "/healthz", a.seconds, a.connections, a.threads)
            middle = meter.snapshot()
            resolver = wrk(base + "/", a.seconds, a.connections, a.threads, str(script))
            after = meter.snapshot()
            for run, (s0, s1) in ((bare, (before, middle)), (resolver, (middle, after))):
                run["cpu_s"] = CpuMeter.used(s0, s1)
                run["gunicorn_workers_cpu_s"] = CpuMeter.per_worker(s0, s1)
            rounds.append({"bare": bare, "resolver": resolver, "ratio": round(resolver["rps"] / max(bare["rps"], 1), 3)})
            load.append(loadavg())
        scans_run = int(r.get("scans:{all}:n") or 0) - scans_before
        bare, resolver = combined([x["bare"] for x in rounds]), combined([x["resolver"] for x in rounds])
        # Every scan's count script runs one SET (NX, the first-scan time); a scan whose label view
        # was not cached runs one more (storing the view it read from the database).
        resolver["view_cache_misses"] = round((_sets(r) - sets_before - scans_run) / max(scans_run, 1), 3)
        scans_sent = r.get("scans:{all}:n")
        drained_after_s = drained(r, drain)
    finally:
        for proc in (gunicorn, drain):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=30)
    import sqlalchemy as sa

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        events = conn.execute(sa.text("SELECT count(*) FROM scan_events")).scalar()
    ratios = [x["ratio"] for x in rounds]
    ratio = round(statistics.median(ratios), 3)
    result = {
        "labels": len(codes), "workers": worker_count(env.get("WEB_CONCURRENCY", "")), "threads": int(env["WEB_THREADS"]),
        "connections": a.connections, "rounds": a.rounds, "seconds": a.seconds, "cpus": os.cpu_count(),
        "views_warmed": warmed, "load_average": load, "bare": bare, "resolver": resolver,
        "round_ratios": ratios,
        "ratio": ratio,
        "ratio_of_totals": round(resolver["requests"] / max(bare["requests"], 1), 3),
        "cpu_ratio": round(bare["cpu_ms_per_request"]["total"] / resolver["cpu_ms_per_request"]["total"], 3),
        "target_met": ratio >= 0.5 and resolver["p99_ms_max"] < 50,
        "scans_counted": int(scans_sent or 0), "scan_events_in_db": events, "drain_caught_up_s": drained_after_s,
        "rounds_detail": [{"ratio": x["ratio"], **{side: {k: x[side][k] for k in (
            "rps", "p99_ms", "host_busy", "gunicorn_workers_cpu_s")} for side in ("bare", "resolver")}} for x in rounds],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
