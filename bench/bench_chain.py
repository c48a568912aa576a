"""The trade chain: fruit-trade ingest rate and trace-back latency, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_chain.py [--backend sqlite|postgresql|both] [--trades N] [--lot-trades N]

- ingest: N trades through `chain.service.create_trade` (every check, the plot lock and the alert
  checks), one transaction each as a request would commit, spread over 200 plots;
- trace: `chain.service.trace_lot` for a lot made from --lot-trades trades (default 500) on 50
  plots, then for a lot bought from it after a split and a merge; p50/p95/max of 50 runs.

PostgreSQL: BENCH_CHAIN_DATABASE_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/chenpi_bench_chain)
is dropped and re-created for every run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from datetime import date
from decimal import Decimal

os.environ["BENCH_DATABASE_URL"] = os.environ.get(
    "BENCH_CHAIN_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/chenpi_bench_chain")

from _scratch import drop, migrated_app  # noqa: E402


def _percentiles(samples: list[float]) -> dict:
    samples = sorted(samples)
    return {"p50_ms": round(statistics.median(samples) * 1000, 2),
            "p95_ms": round(samples[int(len(samples) * 0.95) - 1] * 1000, 2),
            "max_ms": round(samples[-1] * 1000, 2)}


def run(backend: str, n_trades: int, lot_trades: int) -> dict:
    from backend.chain import service as chain
    from backend.extensions import db
    from backend.http import Actor
    from tests.factories import Factory

    app, url, _ = migrated_app(backend)
    out: dict = {"backend": backend}
    with app.app_context():
        s = db.session
        make = Factory(s)
        operator = make.operator()
        buyer = make.operator()
        admin = make.chain_actor()
        me = make.chain_actor(operator)
        village = make.village()
        plots = [make.plot(make.grower(village), verified_yield_kg=Decimal("1000000")) for _ in range(200)]
        s.commit()

        # ingest
        t0 = time.perf_counter()
        trades = []
        for n in range(n_trades):
            trade, _ = chain.create_trade(s, me, {
                "client_uuid": uuid.uuid4(), "operator_id": None, "plot_id": plots[n % len(plots)].id,
                "trade_date": date(2025, 11, 1), "stage": "wei_hong", "weight_kg": Decimal("100"),
                "price_per_kg": Decimal("8.5"), "grower_id": None, "village_id": None})
            s.commit()
            trades.append(trade.id)
        seconds = time.perf_counter() - t0
        out["ingest"] = {"trades": n_trades, "seconds": round(seconds, 2), "trades_per_s": round(n_trades / seconds)}

        # a lot from `lot_trades` trades, then split → merge → sold to another operator
        warehouse = make.warehouse(operator)
        lot, _ = chain.create_lot(s, me, {
            "client_uuid": uuid.uuid4(), "operator_id": None, "code": "BENCH", "warehouse_id": warehouse.id,
            "stage": "wei_hong", "production_date": date(2025, 12, 1), "output_kg": Decimal(lot_trades * 5),
            "inputs": [{"trade_id": t, "kg": Decimal("100")} for t in trades[:lot_trades]]})
        s.commit()
        [part], _ = chain.split_lot(s, me, lot.id, {"client_uuid": uuid.uuid4(), "split_on": date(2025, 12, 2),
                                                    "parts": [{"code": "PART", "kg": Decimal(100)}]})
        other, _ = chain.create_lot(s, me, {
            "client_uuid": uuid.uuid4(), "operator_id": None, "code": "OTHER", "warehouse_id": warehouse.id,
            "stage": "wei_hong", "production_date": date(2025, 12, 1), "output_kg": Decimal(5),
            "inputs": [{"trade_id": trades[lot_trades], "kg": Decimal("100")}]})
        merged, _ = chain.merge_lots(s, me, {
            "client_uuid": uuid.uuid4(), "operator_id": None, "code": "MERGED", "warehouse_id": warehouse.id,
            "merged_on": date(2025, 12, 3), "sources": [{"lot_id": part.id, "kg": Decimal(50)},
                                                        {"lot_id": other.id, "kg": Decimal(5)}]})
        sale, _ = chain.sell(s, me, merged.id, {
            "client_uuid": uuid.uuid4(), "sale_date": date(2025, 12, 4), "kg": Decimal(10), "vintage_year": 2025,
            "claimed_age_years": None, "price_per_kg": None, "buyer_kind": "operator", "buyer_operator_id": buyer.id,
            "destination": None})
        s.commit()
        staff = Actor(admin.user_id, admin.name, "admin")
        for name, lot_id in (("trace_production_lot", lot.id), ("trace_bought_lot", sale.received_lot_id)):
            samples = []
            for _ in range(55):
                s.remove()
                t0 = time.perf_counter()
                result = chain.trace_lot(db.session, staff, lot_id)
                samples.append(time.perf_counter() - t0)
            out[name] = {"trades": len(result["trades"]), "plots": len(result["plots"]), **_percentiles(samples[5:])}
        token = make.token("admin")
        client = app.test_client()
        samples = []
        for _ in range(55):
            t0 = time.perf_counter()
            r = client.get(f"/api/v1/chain/lots/{lot.id}/trace", headers={"Authorization": f"Bearer {token}"})
            samples.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.json
        out["trace_api_production_lot"] = _percentiles(samples[5:])
        db.session.remove()
        db.engine.dispose()
    drop(url)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--trades", type=int, default=2000)
    parser.add_argument("--lot-trades", type=int, default=500)
    args = parser.parse_args()
    for backend in (("sqlite", "postgresql") if args.backend == "both" else (args.backend,)):
        print(run(backend, max(args.trades, args.lot_trades + 1), args.lot_trades))


if __name__ == "__main__":
    main()
