"""The demo data set: the seed's real scale, valid by the registry's own rules, deterministic,
loaded once, and demo users whose tokens work."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, or_, select

from backend.registry import demo, schemas, service, validators
from backend.registry.models import MAX_TREES_PER_MU, Grower, Nursery, Operator, Plot, Town, Village

REAL_TOWNS = {"会城街道", "大泽镇", "司前镇", "罗坑镇", "双水镇", "崖门镇", "沙堆镇", "古井镇", "三江镇", "睦洲镇", "大鳌镇"}


def _outside_bbox(model):
    lon_min, lat_min, lon_max, lat_max = validators.XINHUI_BBOX
    return select(func.count()).select_from(model).where(
        model.lon.is_not(None),
        or_(model.lon < lon_min, model.lon > lon_max, model.lat < lat_min, model.lat > lat_max),
    )


def test_full_scale_demo_is_the_seeds_registry_and_obeys_every_rule(session):
    counts = demo.load_demo(session, progress=False)
    assert {k: counts[k] for k in ("towns", "villages", "growers", "operators")} == {
        "towns": 11, "villages": 168, "growers": 9_377, "operators": 2_092}
    assert 25 <= counts["nurseries"] <= 35
    assert counts["plots"] >= counts["growers"]
    assert abs(counts["plot_area_mu"] - 140_000) < 1_400  # about 14万亩

    assert set(session.scalars(select(Town.name))) == REAL_TOWNS
    assert all(len(code) >= 9 and code.startswith("440705") for code in session.scalars(select(Town.code)))
    for model in (Town, Village, Plot, Operator, Nursery):
        assert session.scalar(_outside_bbox(model)) == 0, model.__name__

    # rules, checked by the database and again here
    assert session.scalar(select(func.count()).select_from(Plot).where(
        Plot.tree_count > MAX_TREES_PER_MU * Plot.area_mu)) == 0
    per_plot = session.execute(select(func.min(Plot.area_mu), func.max(Plot.area_mu))).one()
    assert per_plot[0] > 0 and per_plot[1] < 200
    for code in session.scalars(select(Operator.credit_code)):
        assert validators.credit_code_error(code) is None, code
        assert code[:8] in ("91440705", "92440705", "93440705")
    kinds = dict(session.execute(select(Operator.kind, func.count()).group_by(Operator.kind)).all())
    assert set(kinds) == {"enterprise", "cooperative", "shop", "processor"}
    active = session.scalars(select(Operator).where(Operator.licence_status == "active")).all()
    assert active and all(o.licence_no and o.licence_valid_until > o.licence_valid_from for o in active)
    growers = session.execute(select(Grower.id_number_hash, Grower.id_number_masked, Grower.phone)).all()
    assert all(h and len(h) == 64 and m[4:14] == "*" * 10 for h, m, _ in growers)
    assert sum(1 for *_, phone in growers if phone and validators.phone_error(phone) is None) > 0.9 * len(growers)

    # the plots with a polygon pass the service's own plot rules (point inside, area within tolerance)
    shaped = [p for p in session.scalars(select(Plot)) if p.boundary]
    assert len(shaped) > 1000
    for plot in shaped:
        service.check_plot_rules({"area_mu": plot.area_mu, "tree_count": plot.tree_count, "lon": plot.lon,
                                  "lat": plot.lat, "boundary": plot.boundary, "planting_year": plot.planting_year})
    assert session.scalar(select(func.count()).where(Plot.verified_yield_kg.is_not(None))) > 5000

    # determinism: the loaded rows are exactly what a fresh build gives
    built = demo.build_demo()
    first = session.scalars(select(Plot).order_by(Plot.id).limit(3)).all()
    assert [(p.code, p.area_mu, p.tree_count, p.lon, p.lat) for p in first] == [
        (b["code"], b["area_mu"], b["tree_count"], b["lon"], b["lat"]) for b in built.plots[:3]]
    assert session.scalar(select(Operator.credit_code).order_by(Operator.id).limit(1)) == built.operators[0]["credit_code"]

    # idempotent: a second call loads nothing
    assert demo.load_demo(session, progress=False) == counts


def test_build_is_deterministic_and_every_row_passes_the_api_input_schemas():
    one, two = demo.build_demo(scale=0.03), demo.build_demo(scale=0.03)
    assert one == two
    assert len(one.villages) == 168 and len(one.growers) == round(9_377 * 0.03)
    village_ids = {v["code"]: i + 1 for i, v in enumerate(one.villages)}
    for grower in one.growers:
        schemas.GrowerIn().load({**{k: v for k, v in grower.items() if k != "village_code"}, "village_id": 1})
    for plot in one.plots:
        values = {k: v for k, v in plot.items() if k not in ("household_code", "village_code")}
        values = {**values, "area_mu": str(values["area_mu"]), "grower_id": 1,
                  "village_id": village_ids[plot["village_code"]],
                  "verified_yield_kg": None if values["verified_yield_kg"] is None else str(values["verified_yield_kg"])}
        service.check_plot_rules(schemas.PlotIn().load(values))
    for op in one.operators:
        values = {k: v for k, v in op.items() if k != "town_code"}
        values = {**values, "town_id": 1, **{k: values[k] and values[k].isoformat()
                                             for k in ("licence_valid_from", "licence_valid_until")}}
        service.check_operator_rules(schemas.OperatorIn().load(values))
    total = sum(p["area_mu"] for p in one.plots)
    assert isinstance(total, Decimal) and abs(float(total) / (140_000 * len(one.growers) / 9_377) - 1) < 0.01


def test_demo_tokens_make_the_four_demo_users_and_their_tokens_work(session, client):
    demo.load_demo(session, progress=False, scale=0.01)
    tokens = demo.demo_tokens(session)
    session.commit()
    assert {name: role for name, (role, _) in tokens.items()} == {
        "demo-admin": "admin", "demo-operator": "operator", "demo-agent": "agent", "demo-inspector": "inspector"}
    first_operator = session.scalar(select(Operator.id).where(Operator.licence_status == "active")
                                    .order_by(Operator.id).limit(1))
    assert first_operator is not None
    for name, (role, token) in tokens.items():
        me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json["role"] == role, me.json
        if role in ("operator", "agent"):
            assert me.json["operator_id"] == first_operator
    again = demo.demo_tokens(session)
    assert set(again) == set(tokens) and all(again[n][1] != tokens[n][1] for n in tokens)


def test_the_labels_demo_takes_a_batch_along_the_label_path_and_its_urls_resolve(session, client):
    from backend.chain import demo as chain_demo
    from backend.labels import demo as labels_demo
    from backend.labels.models import Label, PrintJob, RenderJob

    demo.load_demo(session, progress=False, scale=0.02)
    chain_demo.load_chain_demo(session)
    session.commit()
    loaded = labels_demo.load_labels_demo(session)
    assert loaded is not None
    operator = session.get(Operator, loaded.operator_id)
    assert operator.licence_status == "active" and operator.kind != "shop"
    states = dict(session.execute(select(Label.state, func.count()).where(Label.batch_id == loaded.batch_id)
                                  .group_by(Label.state)).all())
    assert states == {"activated": 24, "printed": 22, "voided": 2, "issued": 48}
    assert session.scalar(select(func.min(Label.print_count)).where(Label.batch_id == loaded.batch_id,
                                                                     Label.serial <= 48)) == 1
    jobs = session.execute(select(PrintJob.status, RenderJob.first_serial, RenderJob.last_serial)
                           .join(RenderJob, PrintJob.render_job_id == RenderJob.id)
                           .where(PrintJob.batch_id == loaded.batch_id).order_by(PrintJob.id)).all()
    assert [tuple(j) for j in jobs] == [("printed", 1, 48), ("queued", 49, 96)]  # the second for a print agent
    assert set(session.scalars(select(RenderJob.status).where(RenderJob.batch_id == loaded.batch_id))) == {"finished"}
    activated = session.scalars(select(Label).where(Label.batch_id == loaded.batch_id, Label.state == "activated")).all()
    assert all(l.lot_id == loaded.lot_id and l.pack_g == 250 for l in activated)
    for verdict, url in loaded.urls.items():
        assert url.startswith("HTTPS://TRACE.EXAMPLE.CN/V/"), url
        r = client.get("/V/" + url.rsplit("/", 1)[1], headers={"Accept": "application/json"})
        assert r.status_code == 200 and r.json["verdict"] == verdict, (verdict, r.json)
    assert labels_demo.load_labels_demo(session) == loaded  # loaded once
    assert session.scalar(select(func.count()).select_from(Label)) == 96


def test_the_served_demo_answers_its_label_urls(tmp_path):
    """`chenpi demo` as a new user runs it (embedded SQLite, served by gunicorn): the label URLs
    it prints resolve. A transaction the loader left open would lock every served request out."""
    import json
    import os
    import re
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/demo.sqlite3", REDIS_URL="", PUBLIC_BASE_URL=base,
               STORAGE_DIR=str(tmp_path / "storage"), LOG_LEVEL="WARNING",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = tmp_path / "demo.out"
    with open(out, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "demo", "--scale", "0.02", "--port", str(port)],
                                env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, out.read_text()[-3000:]
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        urls = dict(re.findall(r"^\s+(genuine|inactive|voided)\s+(\S+)$", out.read_text(), re.M))
        assert set(urls) == {"genuine", "inactive", "voided"}, out.read_text()[-3000:]
        for verdict, url in urls.items():
            assert url.upper().startswith(base.upper() + "/V/"), url
            request = urllib.request.Request(base + "/V/" + url.rsplit("/", 1)[1], headers={"Accept": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as r:
                assert r.status == 200 and json.load(r)["verdict"] == verdict
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
