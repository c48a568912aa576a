"""Rows per second importing 10,000 generated growers and 10,000 generated plots, from CSV and
from XLSX, on SQLite and on PostgreSQL (real imports: read, check every row, bulk INSERT, COMMIT).

    .venv/bin/python bench/bench_import.py [--backend sqlite|postgresql|both] [--rows 10000] [--repeat 3]

Set-up (not timed): a fresh migrated database with the demo data loaded, so references resolve
against 168 villages and 9,377 households. After each timed import the rows are deleted again.
PostgreSQL: BENCH_DATABASE_URL (default .../chenpi_bench) is dropped and re-created.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import random
import time
from decimal import Decimal

from _scratch import drop, migrated_app

CSV_GROWER_HEADER = ["户号", "户主", "电话", "身份证号", "村编码"]
CSV_PLOT_HEADER = ["地块编号", "户号", "面积(亩)", "株数", "种植年份", "核定产量(kg)", "经度", "纬度", "边界"]


def generate(session, n: int) -> dict[str, list[list]]:
    """n new growers in the demo villages and n new plots of demo households (10 % with a polygon)."""
    from sqlalchemy import select

    from backend.registry import demo, validators
    from backend.registry.models import Grower, Village

    rng = random.Random(7)
    villages = list(session.scalars(select(Village.code).order_by(Village.id)))
    households = list(session.scalars(select(Grower.household_code).order_by(Grower.id)))
    growers = [CSV_GROWER_HEADER]
    seen: set[str] = set()
    for i in range(n):
        body = f"440704{1950 + i % 50}{1 + i % 12:02d}{1 + i % 28:02d}{i // 1000 % 1000:03d}"
        while body in seen:
            body = str(int(body) + 1)
        seen.add(body)
        growers.append([f"BENCH{i:06d}", f"陈{i}", f"139{rng.randrange(10**8):08d}",
                        body + validators.id_check_char(body), rng.choice(villages)])
    plots = [CSV_PLOT_HEADER]
    for i in range(n):
        area = round(rng.uniform(0.5, 20), 2)
        lon, lat = round(rng.uniform(112.9, 113.2), 6), round(rng.uniform(22.3, 22.6), 6)
        boundary = json.dumps(demo._boundary(rng, lon, lat, Decimal(str(area)))) if i % 10 == 0 else ""
        plots.append([f"BENCH-{i:06d}", rng.choice(households), area, int(area * rng.randint(40, 80)),
                      rng.randint(1995, 2021), round(area * 2000, 3) if i % 2 else "", lon, lat, boundary])
    return {"growers": growers, "plots": plots}


def as_csv(rows: list[list]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def as_xlsx(rows: list[list]) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet()
    for row in rows:
        sheet.append([None if v == "" else v for v in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)

    from sqlalchemy import delete

    from backend.extensions import db
    from backend.registry import demo, importing
    from backend.registry.models import Grower, Plot

    for backend in backends:
        app, url, _ = migrated_app(backend)
        with app.app_context():
            demo.load_demo(db.session, progress=False)
            db.session.commit()
            tables = generate(db.session, args.rows)
            files = {(kind, fmt): (as_csv if fmt == "csv" else as_xlsx)(rows)
                     for kind, rows in tables.items() for fmt in ("csv", "xlsx")}
            for (kind, fmt), data in files.items():
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    report = importing.import_bytes(db.session, kind, data, f"{kind}.{fmt}")
                    db.session.commit()
                    times.append(time.perf_counter() - t0)
                    assert report.ok and report.inserted == args.rows, report.errors[:5]
                    model, column = (Grower, Grower.household_code) if kind == "growers" else (Plot, Plot.code)
                    db.session.execute(delete(model).where(column.like("BENCH%")))
                    db.session.commit()
                best = min(times)
                print(f"{backend:<10} {kind:<8} {fmt:<4} {len(data) / 2**20:5.2f} MB  {args.rows:,} rows: "
                      f"best {best:5.2f} s = {args.rows / best:7,.0f} rows/s  (runs: {', '.join(f'{t:.2f}' for t in times)} s)")
            db.session.remove()
            db.engine.dispose()
        drop(url)


if __name__ == "__main__":
    main()
