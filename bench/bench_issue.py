"""Issuing label batches: codes per second for 10,000 and 100,000 labels, on PostgreSQL and SQLite.

    .venv/bin/python bench/bench_issue.py                  # PostgreSQL (BENCH_DATABASE_URL) and SQLite
    .venv/bin/python bench/bench_issue.py --backend postgresql --sizes 10000 100000

Each size is issued twice on a fresh database (the second batch meets a table that already holds
codes, as in production); the time covers `issue_batch` (code derivation, the collision handling,
the bulk insert) and the commit. Printed beside it: deriving the codes alone (`codes.make_codes`),
so the database's share is visible.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scratch import drop, migrated_app  # noqa: E402


def run(backend: str, sizes: list[int], repeat: int) -> list[dict]:
    from backend.auth import service as auth
    from backend.extensions import db
    from backend.labels import codes
    from backend.labels.models import LabelApplication
    from backend.labels.service import issue_batch
    from backend.labels.service.keys import active_key
    from tests.factories import Factory

    app, url, _ = migrated_app(backend)
    results = []
    try:
        with app.app_context():
            s = db.session
            operator = Factory(s).operator()
            admin = auth.create_user(s, "bench-admin", "admin", None)
            s.commit()
            key_id, key = active_key()
            for n in sizes:
                for attempt in range(repeat):
                    application = LabelApplication(operator_id=operator.id, product="新会陈皮", template="a4-3x8-70x37",
                                                   quantity=n, year=2026, status="approved", approved_quantity=n,
                                                   applied_by=admin.id, decided_by=admin.id)
                    s.add(application)
                    s.commit()
                    start = time.perf_counter()
                    batch = issue_batch(s, application, n, admin.id)
                    s.commit()
                    seconds = time.perf_counter() - start
                    start = time.perf_counter()
                    codes.make_codes(key_id, key, batch.id, range(1, n + 1))
                    derive = time.perf_counter() - start
                    results.append({"backend": backend, "labels": n, "run": attempt + 1, "seconds": seconds,
                                    "codes_per_s": n / seconds, "derive_seconds": derive,
                                    "collisions": batch.collisions})
                    r = results[-1]
                    print(f"{backend:<10} {n:>7,} labels, run {r['run']}: {seconds:6.2f} s = {r['codes_per_s']:>8,.0f} "
                          f"codes/s (deriving the codes alone {derive:.2f} s; {batch.collisions} collisions)",
                          flush=True)
    finally:
        drop(url)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), action="append")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    for backend in args.backend or ["postgresql", "sqlite"]:
        run(backend, args.sizes, args.repeat)


if __name__ == "__main__":
    main()
