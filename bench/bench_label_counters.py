"""Label counters (GET /api/v1/stats/labels) on 100,000 labels, SQLite and PostgreSQL.

    .venv/bin/python bench/bench_label_counters.py [--backend sqlite|postgresql|both] [--labels N]

20 operators in 4 towns, one batch each per year (2025, 2026), N labels in all; a third of them
printed, a sixth activated, some voided, lost and stolen. Times `labels.service.label_counters`
for each group_by (median and max of 10 runs; an operator's own view as well) and checks the sums
against the numbers the set-up made.

PostgreSQL: BENCH_LABEL_COUNTERS_DATABASE_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/chenpi_bench_label_counters), dropped and re-created.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ["BENCH_DATABASE_URL"] = os.environ.get(
    "BENCH_LABEL_COUNTERS_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/chenpi_bench_label_counters")

from _scratch import drop, migrated_app  # noqa: E402


def run(backend: str, n_labels: int) -> dict:
    from sqlalchemy import update

    from backend.auth import service as auth_service
    from backend.extensions import db
    from backend.http import Actor
    from backend.labels.models import Label, LabelApplication
    from backend.labels.service import issue_batch, label_counters
    from backend.timeutil import utcnow
    from tests.factories import Factory

    app, url, _ = migrated_app(backend)
    out: dict = {"backend": backend, "labels": n_labels}
    with app.app_context():
        s = db.session
        make = Factory(s)
        admin_user = auth_service.create_user(s, "bench-admin", "admin", None)
        s.commit()
        towns = [make.town() for _ in range(4)]
        operators = [make.operator(towns[i % 4]) for i in range(20)]
        per_batch = n_labels // (len(operators) * 2)
        t0 = time.perf_counter()
        for op in operators:
            for year in (2025, 2026):
                a = LabelApplication(operator_id=op.id, product="新会陈皮", template="a4-3x8-70x37",
                                     quantity=per_batch + 10, year=year, status="approved",
                                     approved_quantity=per_batch, applied_by=admin_user.id)
                s.add(a)
                s.flush()
                batch = issue_batch(s, a, per_batch, admin_user.id)
                third, sixth = per_batch // 3, per_batch // 6
                s.execute(update(Label).where(Label.batch_id == batch.id, Label.serial <= third)
                          .values(print_count=1, state="printed"))
                s.execute(update(Label).where(Label.batch_id == batch.id, Label.serial <= sixth)
                          .values(state="activated", activated_at=utcnow(), pack_g=500))
                s.execute(update(Label).where(Label.batch_id == batch.id, Label.serial.between(third + 1, third + 10))
                          .values(state="voided"))
                s.execute(update(Label).where(Label.batch_id == batch.id, Label.serial.between(third + 11, third + 12))
                          .values(state="lost"))
                s.commit()
        out["setup_s"] = round(time.perf_counter() - t0, 1)
        if backend == "postgresql":
            s.execute(db.text("ANALYZE"))
            s.commit()
        admin = Actor(admin_user.id, "bench-admin", "admin")
        op_user = auth_service.create_user(s, "bench-op", "operator", operators[0].id)
        s.commit()
        operator = Actor(op_user.id, "bench-op", "operator", operators[0].id)
        for name, actor, group_by in (("year", admin, "year"), ("operator", admin, "operator"),
                                      ("town", admin, "town"), ("own (operator)", operator, "year")):
            times = []
            for _ in range(10):
                t = time.perf_counter()
                rows = label_counters(s, actor, group_by, {})
                times.append(time.perf_counter() - t)
                s.rollback()
            out[f"{name}_ms"] = {"median": round(statistics.median(times) * 1000, 1), "max": round(max(times) * 1000, 1),
                                 "rows": len(rows)}
        total = label_counters(s, admin, "year", {})
        assert sum(r["issued"] for r in total) == per_batch * 40
        assert sum(r["printed"] for r in total) == (per_batch // 3) * 40
        assert sum(r["applied"] for r in total) == (per_batch + 10) * 40
    drop(url)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--labels", type=int, default=100_000)
    args = parser.parse_args()
    for backend in (("sqlite", "postgresql") if args.backend == "both" else (args.backend,)):
        print(json.dumps(run(backend, args.labels), ensure_ascii=False))


if __name__ == "__main__":
    main()
