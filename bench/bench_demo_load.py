"""Seconds to load the seed-scale demo data (11 towns, 168 villages, 9,377 households and their
plots, 2,092 operators, 30 nurseries) on SQLite and on PostgreSQL.

    .venv/bin/python bench/bench_demo_load.py [--backend sqlite|postgresql|both] [--repeat N]

PostgreSQL: BENCH_DATABASE_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/chenpi_bench)
is dropped and re-created for every run. Each run starts from an empty, migrated database; the
figure is load_demo + COMMIT (the migrations are timed apart).
"""
from __future__ import annotations

import argparse
import time

from _scratch import drop, migrated_app


def run_once(backend: str) -> tuple[float, float, float, dict]:
    from backend.extensions import db
    from backend.registry import demo

    app, url, migrate_s = migrated_app(backend)
    with app.app_context():
        t0 = time.perf_counter()
        demo.build_demo()
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        counts = demo.load_demo(db.session, progress=False)
        db.session.commit()
        load_s = time.perf_counter() - t0
        db.session.remove()
        db.engine.dispose()
    drop(url)
    return migrate_s, build_s, load_s, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    for backend in backends:
        loads = []
        for i in range(args.repeat):
            migrate_s, build_s, load_s, counts = run_once(backend)
            loads.append(load_s)
            rows = sum(v for k, v in counts.items() if k != "plot_area_mu")
            print(f"{backend:<10} run {i + 1}: load_demo+commit {load_s:6.2f} s  (of which building rows {build_s:.2f} s; "
                  f"migrations {migrate_s:.2f} s)  {rows:,} rows, {rows / load_s:,.0f} rows/s")
        print(f"{backend:<10} demo load: best {min(loads):.2f} s, median {sorted(loads)[len(loads) // 2]:.2f} s  "
              f"[{', '.join(f'{k} {v:,}' for k, v in counts.items())}]")


if __name__ == "__main__":
    main()
