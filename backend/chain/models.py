"""The trade chain's tables: fruit trades, their corrections, alerts, plot findings, warehouses,
peel lots, the fruit that went into them, and lot corrections.

History is append-only: a trade row is never updated or deleted. A correction is a row of its
own pointing at the trade it voids (and at the replacement trade, if any); a trade is current
while no correction points at it.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..alert_review import ALERT_STATES
from ..extensions import db
from ..timeutil import utcnow

STAGES = ("gan_qing", "wei_hong", "da_hong")  # 柑青, 微红 (二红), 大红
ALERT_KINDS = ("over_quota", "stage_window", "grower_mismatch", "village_mismatch", "plot_unplanted")
FINDING_KINDS = ("unplanted", "planted")
LOT_KINDS = ("production", "split", "merge", "purchase")  # made from fruit, or from other lots
BUYER_KINDS = ("operator", "retail", "export")


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class FruitTrade(db.Model):
    """新会柑交易: one sale of a plot's fruit to an operator. Never updated; see TradeCorrection."""

    __tablename__ = "chain_fruit_trades"
    __table_args__ = (
        CheckConstraint("weight_kg > 0", name="weight_positive"),
        CheckConstraint("price_per_kg >= 0", name="price_nonnegative"),
        CheckConstraint(_in_list("stage", STAGES), name="stage"),
        Index("ix_chain_fruit_trades_plot_season", "plot_id", "season"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    plot_id: Mapped[int] = mapped_column(ForeignKey("plots.id"))
    grower_id: Mapped[int] = mapped_column(ForeignKey("growers.id"), index=True)  # the plot's grower at trade time
    village_id: Mapped[int] = mapped_column(ForeignKey("villages.id"), index=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    trade_date: Mapped[date] = mapped_column(Date)
    stage: Mapped[str] = mapped_column(String(12))
    season: Mapped[int] = mapped_column(Integer)  # harvest year (大红 in January: the year before)
    weight_kg: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    price_per_kg: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    correction: Mapped["TradeCorrection | None"] = relationship(
        primaryjoin="FruitTrade.id == TradeCorrection.trade_id", uselist=False, viewonly=True, lazy="joined"
    )
    replaces: Mapped["TradeCorrection | None"] = relationship(
        primaryjoin="FruitTrade.id == TradeCorrection.replacement_id", uselist=False, viewonly=True, lazy="joined"
    )


class TradeCorrection(db.Model):
    """A correction voids one trade (once), with who, when and why, and may name its replacement."""

    __tablename__ = "chain_trade_corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    trade_id: Mapped[int] = mapped_column(ForeignKey("chain_fruit_trades.id"), unique=True)
    replacement_id: Mapped[int | None] = mapped_column(ForeignKey("chain_fruit_trades.id"), unique=True)
    reason: Mapped[str] = mapped_column(String(500))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Alert(db.Model):
    """A plausibility alert: stored with its evidence, listed for staff, never dropped; staff
    acknowledge it and resolve it with a note (alert_review)."""

    __tablename__ = "chain_alerts"
    __table_args__ = (CheckConstraint(_in_list("kind", ALERT_KINDS), name="kind"),
                      CheckConstraint(_in_list("state", ALERT_STATES), name="state"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    plot_id: Mapped[int | None] = mapped_column(ForeignKey("plots.id"), index=True)
    trade_id: Mapped[int | None] = mapped_column(ForeignKey("chain_fruit_trades.id"), index=True)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), index=True)
    evidence: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    state: Mapped[str] = mapped_column(String(12), default="open", server_default="open", index=True)
    note: Mapped[str | None] = mapped_column(Text)
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PlotFinding(db.Model):
    """What an inspector found on a plot (fieldwork calls chain.service.record_plot_finding).

    Append-only; the latest finding on or before a date is the plot's state on that date.
    """

    __tablename__ = "chain_plot_findings"
    __table_args__ = (CheckConstraint(_in_list("kind", FINDING_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plot_id: Mapped[int] = mapped_column(ForeignKey("plots.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    found_on: Mapped[date] = mapped_column(Date)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Warehouse(db.Model):
    """仓库: where an operator keeps its peel lots."""

    __tablename__ = "chain_warehouses"
    __table_args__ = (UniqueConstraint("operator_id", "name", name="uq_chain_warehouses_operator_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Lot(db.Model):
    """批次: dried peel an operator made from fruit it bought. Age is computed from harvest_date."""

    __tablename__ = "chain_lots"
    __table_args__ = (
        CheckConstraint("output_kg > 0", name="output_positive"),
        CheckConstraint("input_kg > 0", name="input_positive"),
        CheckConstraint(_in_list("stage", STAGES), name="stage"),
        CheckConstraint("production_date >= harvest_date", name="produced_after_harvest"),
        CheckConstraint(_in_list("kind", LOT_KINDS), name="kind"),
        CheckConstraint("kind = 'purchase' OR warehouse_id IS NOT NULL", name="stored"),
        UniqueConstraint("operator_id", "code", name="uq_chain_lots_operator_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(12), default="production")
    # Where the lot is now (moves are logged in chain_lot_moves); a purchase arrives unstored.
    warehouse_id: Mapped[int | None] = mapped_column(ForeignKey("chain_warehouses.id"), index=True)
    stage: Mapped[str] = mapped_column(String(12))
    season: Mapped[int] = mapped_column(Integer)
    harvest_date: Mapped[date] = mapped_column(Date)  # the latest trade date of its fruit
    production_date: Mapped[date] = mapped_column(Date)  # made, split, merged or received on
    input_kg: Mapped[Decimal] = mapped_column(Numeric(12, 3))  # fruit kg; for lots made of lots, their peel kg
    output_kg: Mapped[Decimal] = mapped_column(Numeric(12, 3))  # peel kg the lot started with
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    inputs: Mapped[list["LotInput"]] = relationship(order_by="LotInput.id", lazy="selectin")
    sources: Mapped[list["LotSource"]] = relationship(
        primaryjoin="Lot.id == LotSource.lot_id", order_by="LotSource.id", lazy="selectin", viewonly=True
    )
    correction: Mapped["LotCorrection | None"] = relationship(
        primaryjoin="Lot.id == LotCorrection.lot_id", uselist=False, viewonly=True, lazy="joined"
    )


class LotInput(db.Model):
    """kg of one fruit trade that went into one lot."""

    __tablename__ = "chain_lot_inputs"
    __table_args__ = (
        CheckConstraint("kg > 0", name="kg_positive"),
        UniqueConstraint("lot_id", "trade_id", name="uq_chain_lot_inputs_lot_trade"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("chain_lots.id"), index=True)
    trade_id: Mapped[int] = mapped_column(ForeignKey("chain_fruit_trades.id"), index=True)
    kg: Mapped[Decimal] = mapped_column(Numeric(12, 3))


class LotCorrection(db.Model):
    """Voids a lot (once), with who, when and why; its fruit becomes available again."""

    __tablename__ = "chain_lot_corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    lot_id: Mapped[int] = mapped_column(ForeignKey("chain_lots.id"), unique=True)
    reason: Mapped[str] = mapped_column(String(500))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LotSource(db.Model):
    """kg of peel taken from one lot into another (a split, a merge, or a sale to an operator)."""

    __tablename__ = "chain_lot_sources"
    __table_args__ = (
        CheckConstraint("kg > 0", name="kg_positive"),
        CheckConstraint("lot_id > source_lot_id", name="older_source"),  # so lineage has no cycles
        UniqueConstraint("lot_id", "source_lot_id", name="uq_chain_lot_sources_lot_source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("chain_lots.id"), index=True)
    source_lot_id: Mapped[int] = mapped_column(ForeignKey("chain_lots.id"), index=True)
    kg: Mapped[Decimal] = mapped_column(Numeric(12, 3))


class LotMove(db.Model):
    """A lot moved between an operator's warehouses (the log; Lot.warehouse_id is where it is)."""

    __tablename__ = "chain_lot_moves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    lot_id: Mapped[int] = mapped_column(ForeignKey("chain_lots.id"), index=True)
    from_warehouse_id: Mapped[int | None] = mapped_column(ForeignKey("chain_warehouses.id"))
    to_warehouse_id: Mapped[int] = mapped_column(ForeignKey("chain_warehouses.id"))
    moved_on: Mapped[date] = mapped_column(Date)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Sale(db.Model):
    """销售: peel sold from a lot, declaring the vintage year sold. A sale to an operator moves the
    kg into a new lot the buyer owns (its 企业收购); retail and export sales name a destination."""

    __tablename__ = "chain_sales"
    __table_args__ = (
        CheckConstraint("kg > 0", name="kg_positive"),
        CheckConstraint("price_per_kg IS NULL OR price_per_kg >= 0", name="price_nonnegative"),
        CheckConstraint(_in_list("buyer_kind", BUYER_KINDS), name="buyer_kind"),
        CheckConstraint("(buyer_kind = 'operator') = (buyer_operator_id IS NOT NULL)", name="buyer_operator"),
        CheckConstraint("(buyer_kind = 'operator') = (received_lot_id IS NOT NULL)", name="received_lot"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    lot_id: Mapped[int] = mapped_column(ForeignKey("chain_lots.id"), index=True)
    seller_operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    sale_date: Mapped[date] = mapped_column(Date)
    kg: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    vintage_year: Mapped[int] = mapped_column(Integer)  # the harvest year the sale claims
    claimed_age_years: Mapped[int | None] = mapped_column(Integer)
    price_per_kg: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    buyer_kind: Mapped[str] = mapped_column(String(12))
    buyer_operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), index=True)
    destination: Mapped[str | None] = mapped_column(String(200))
    received_lot_id: Mapped[int | None] = mapped_column(ForeignKey("chain_lots.id"), unique=True)
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    correction: Mapped["SaleCorrection | None"] = relationship(
        primaryjoin="Sale.id == SaleCorrection.sale_id", uselist=False, viewonly=True, lazy="joined"
    )


class SaleCorrection(db.Model):
    """Voids a sale (once), with who, when and why; the kg return to the lot (and a purchase's
    lot, unused, is voided with it)."""

    __tablename__ = "chain_sale_corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    sale_id: Mapped[int] = mapped_column(ForeignKey("chain_sales.id"), unique=True)
    reason: Mapped[str] = mapped_column(String(500))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SeedlingSale(db.Model):
    """种苗销售: seedlings a nursery sold to a grower household (and the plot they are for)."""

    __tablename__ = "chain_seedling_sales"
    __table_args__ = (CheckConstraint("count > 0", name="count_positive"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    nursery_id: Mapped[int] = mapped_column(ForeignKey("nurseries.id"), index=True)
    grower_id: Mapped[int] = mapped_column(ForeignKey("growers.id"), index=True)
    plot_id: Mapped[int | None] = mapped_column(ForeignKey("plots.id"), index=True)
    variety: Mapped[str] = mapped_column(String(60))
    count: Mapped[int] = mapped_column(Integer)
    sale_date: Mapped[date] = mapped_column(Date)
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
