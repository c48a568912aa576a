"""Field capture: a 500-item offline batch sync through the API, and photo processing.

    .venv/bin/python bench/bench_fieldwork.py [--backend sqlite|postgresql|both] [--repeat 3] [--photos 5]

Batch: POST /api/v1/fieldwork/checkins/batch with 500 new check-ins (each with a finding and
two label codes; a third of them target plots with a boundary polygon), timed end to end
through Flask's test client including the commit; then the same batch resent (all `existing`).
Target: under 2 s for the 500 new ones.
Photos: a 12-megapixel (4000×3000) camera-like JPEG with EXIF time, GPS and an orientation;
`images.process` alone (verify, decode, upright, normalised JPEG, thumbnail, EXIF), then the
whole upload route (plus SHA-256, three files written to storage, the row).

PostgreSQL: BENCH_FIELDWORK_DATABASE_URL (default .../chenpi_bench_fieldwork) is dropped and
re-created; never the tests' database.
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend import create_app  # noqa: E402
from backend.config import Config  # noqa: E402
from backend.migrations import upgrade  # noqa: E402

PG_URL = os.environ.get("BENCH_FIELDWORK_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/chenpi_bench_fieldwork")


def fresh_database(backend: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{Path(tempfile.mkdtemp(prefix='chenpi-bench-fw-')) / 'bench.sqlite3'}"
    url = sa.engine.make_url(PG_URL)
    if url.database in ("test", "postgres"):
        raise SystemExit(f"refusing to drop {url.database!r}: point BENCH_FIELDWORK_DATABASE_URL at a scratch database")
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()
    return url.render_as_string(hide_password=False)


def setup(backend: str):
    logging.getLogger("alembic").setLevel(logging.WARNING)
    url = fresh_database(backend)
    upgrade(url)
    logging.getLogger("chenpi").setLevel(logging.ERROR)
    app = create_app(Config(DATABASE_URL=url, REDIS_URL="", STORAGE_DIR=tempfile.mkdtemp(prefix="chenpi-bench-fw-files-")))
    from tests.factories import Factory

    from backend.extensions import db

    with app.app_context():
        make = Factory(db.session)
        town = make.town()
        village = make.village(town)
        plots = [make.plot(make.grower(village), lon=113.0 + i * 0.001, lat=22.5) for i in range(20)]
        half = 0.0006
        for i in range(10):  # polygons around half of them
            lon, lat = 113.1 + i * 0.01, 22.55
            ring = [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half], [lon - half, lat + half], [lon - half, lat - half]]
            plots.append(make.plot(make.grower(village), lon=lon, lat=lat, area_mu=Decimal("15.00"),
                                   boundary={"type": "Polygon", "coordinates": [ring]}))
        token = make.token("inspector")
        plot_refs = [(p.id, p.lon, p.lat) for p in plots]
    return app, url, token, plot_refs


def batch(plot_refs, n: int = 500) -> list[dict]:
    from backend.timeutil import SHANGHAI, utcnow

    captured = (utcnow() - timedelta(hours=3)).astimezone(SHANGHAI).isoformat(timespec="seconds")
    items = []
    for i in range(n):
        plot_id, lon, lat = plot_refs[i % len(plot_refs)]
        items.append({
            "uuid": str(uuid.uuid4()), "target_kind": "plot", "plot_id": plot_id, "captured_at": captured,
            "lat": lat + 0.0001, "lon": lon, "accuracy_m": 6.5, "altitude_m": 4.0, "checklist_version": 1,
            "answers": {"planted": True, "tree_count_estimate": 300, "harvest_stage": "大红皮", "remarks": "正常"},
            "findings": [{"kind": "counterfeit_labels", "note": "门店发现", "codes": [f"B{i:07d}X", f"B{i:07d}Y"]}],
            "note": "例行巡查", "result": "pass", "photos_expected": 2,
        })
    return items


def bench_batch(backend: str, repeat: int) -> None:
    app, url, token, plot_refs = setup(backend)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    created, resent = [], []
    for _ in range(repeat):
        items = batch(plot_refs)
        t0 = time.perf_counter()
        r = client.post("/api/v1/fieldwork/checkins/batch", json={"items": items}, headers=headers)
        created.append(time.perf_counter() - t0)
        assert r.status_code == 200 and r.json["created"] == 500, r.json
        t0 = time.perf_counter()
        r = client.post("/api/v1/fieldwork/checkins/batch", json={"items": items}, headers=headers)
        resent.append(time.perf_counter() - t0)
        assert r.json["existing"] == 500
    print(f"{backend:10s} 500-item batch, new:    best {min(created):.3f} s, median {statistics.median(created):.3f} s "
          f"({500 / min(created):,.0f} check-ins/s)")
    print(f"{backend:10s} 500-item batch, resent: best {min(resent):.3f} s, median {statistics.median(resent):.3f} s")
    if backend == "postgresql":
        admin = sa.create_engine(sa.engine.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        from backend.extensions import db

        with app.app_context():
            db.engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(url).database}" WITH (FORCE)'))


def camera_jpeg() -> bytes:
    """A 4000×3000 JPEG with photographic-ish content (gradients and noise), EXIF time, GPS, orientation."""
    from PIL import Image

    w, h = 4000, 3000
    base = Image.radial_gradient("L").resize((w, h))
    noise = Image.effect_noise((w, h), 40)
    img = Image.merge("RGB", (base, noise, Image.linear_gradient("L").resize((w, h))))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[36867] = "2026:11:27 10:00:00"
    exif.get_ifd(0x8825).update({1: "N", 2: (22.0, 31.0, 12.0), 3: "E", 4: (113.0, 1.0, 48.0)})
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def bench_photos(n: int) -> None:
    from backend.fieldwork import images

    data = camera_jpeg()
    images.process(data, 60_000_000)  # warm up
    t0 = time.perf_counter()
    for _ in range(n):
        images.process(data, 60_000_000)
    per = (time.perf_counter() - t0) / n
    print(f"photo      12 MP JPEG ({len(data) / 1e6:.1f} MB), images.process: {per * 1000:.0f} ms each, {1 / per:.2f} photos/s per core")

    app, url, token, plot_refs = setup("sqlite")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    checkin = batch(plot_refs, 1)[0]
    client.post("/api/v1/fieldwork/checkins", json=checkin, headers=headers)
    t0 = time.perf_counter()
    for _ in range(n):
        r = client.put(f"/api/v1/fieldwork/checkins/{checkin['uuid']}/photos/{uuid.uuid4()}", headers=headers,
                       data={"file": (io.BytesIO(data), "IMG.jpg")}, content_type="multipart/form-data")
        assert r.status_code == 201, r.json
    per = (time.perf_counter() - t0) / n
    print(f"photo      12 MP JPEG, whole upload route (sqlite, files written): {per * 1000:.0f} ms each, {1 / per:.2f} photos/s per process")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--photos", type=int, default=5)
    args = parser.parse_args()
    for backend in (("sqlite", "postgresql") if args.backend == "both" else (args.backend,)):
        bench_batch(backend, args.repeat)
    bench_photos(args.photos)


if __name__ == "__main__":
    main()
