"""The chain's demo season: plausible, consistent with the live rules, and loaded once."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from backend.chain import demo, service as chain
from backend.chain.models import Alert, FruitTrade, Lot, LotInput, Sale
from backend.config import current_config


def test_a_demo_season_follows_the_chains_own_rules(session, make):
    village = make.village()
    plots = [make.plot(make.grower(village)) for _ in range(40)]
    plots += [make.plot(make.grower(village), verified_yield_kg=None) for _ in range(10)]
    for _ in range(4):
        make.operator()
    make.token("admin")
    counts = demo.load_chain_demo(session, season=2024, laundering=0.2)
    assert counts["trades"] >= 50 and counts["lots"] >= 1 and counts["alerts"] >= 1
    assert demo.load_chain_demo(session, season=2024, laundering=0.2) == counts  # a second load adds nothing
    # mass balance: no trade used beyond its weight; every lot within the peel ratio
    used = dict(session.execute(select(LotInput.trade_id, func.sum(LotInput.kg)).group_by(LotInput.trade_id)).all())
    weights = dict(session.execute(select(FruitTrade.id, FruitTrade.weight_kg)).all())
    assert all(Decimal(str(kg)) <= weights[t] for t, kg in used.items())
    ratio = current_config().CHAIN_MAX_PEEL_RATIO
    assert all(lot.output_kg <= lot.input_kg * ratio for lot in session.scalars(select(Lot)))
    # the over-quota alerts are exactly where the live quota check says a plot is over
    actor = make.chain_actor()
    over = {p.id for p in plots if chain.quota_status(session, actor, p.id, 2024)["remaining_kg"] < 0}
    alerted = set(session.scalars(select(Alert.plot_id).where(Alert.kind == "over_quota")))
    assert alerted == over and over
    # sales never exceed their lot, and declare its vintage
    for sale in session.scalars(select(Sale)):
        lot = session.get(Lot, sale.lot_id)
        assert sale.kg <= lot.output_kg and sale.vintage_year == lot.season
