from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import utcnow

OPERATOR_KINDS = ("enterprise", "cooperative", "shop", "processor")
LICENCE_STATUSES = ("none", "active", "suspended", "revoked", "expired")
MAX_TREES_PER_MU = 80  # growing rules of the GI standard


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _point_pair(prefix: str = "") -> str:
    return f"({prefix}lon IS NULL) = ({prefix}lat IS NULL)"


class Town(Timestamps, db.Model):
    """镇/街: one of Xinhui's 11 towns and sub-districts (银湖湾滨海新区 optionally a 12th)."""

    __tablename__ = "towns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (CheckConstraint(_point_pair(), name="point_pair"),)


class Village(Timestamps, db.Model):
    """村/社区 within a town."""

    __tablename__ = "villages"
    __table_args__ = (
        UniqueConstraint("town_id", "name", name="uq_villages_town_name"),
        CheckConstraint(_point_pair(), name="point_pair"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    town_id: Mapped[int] = mapped_column(ForeignKey("towns.id"), index=True)
    name: Mapped[str] = mapped_column(String(40))
    code: Mapped[str] = mapped_column(String(16), unique=True)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)

    town: Mapped[Town] = relationship()


class Grower(Timestamps, db.Model):
    """种植户: a grower household. The ID number is kept only as a keyed hash and a masked form."""

    __tablename__ = "growers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(60))
    phone: Mapped[str | None] = mapped_column(String(20))
    id_number_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    id_number_masked: Mapped[str | None] = mapped_column(String(18))
    village_id: Mapped[int] = mapped_column(ForeignKey("villages.id"), index=True)

    village: Mapped[Village] = relationship()


class Plot(Timestamps, db.Model):
    """地块: a grower's orchard plot, with its verified yield quota (现场核定产量)."""

    __tablename__ = "plots"
    __table_args__ = (
        CheckConstraint("area_mu > 0", name="area_positive"),
        CheckConstraint("tree_count >= 0", name="trees_nonnegative"),
        CheckConstraint(f"tree_count <= {MAX_TREES_PER_MU} * area_mu", name="trees_per_mu"),
        CheckConstraint("planting_year IS NULL OR planting_year BETWEEN 1950 AND 2100", name="planting_year"),
        CheckConstraint("verified_yield_kg IS NULL OR verified_yield_kg >= 0", name="yield_nonnegative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    grower_id: Mapped[int] = mapped_column(ForeignKey("growers.id"), index=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("villages.id"), index=True)
    area_mu: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    tree_count: Mapped[int] = mapped_column(Integer)
    planting_year: Mapped[int | None] = mapped_column(Integer)
    verified_yield_kg: Mapped[Decimal | None] = mapped_column(Numeric(12, 3))
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    boundary: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))  # no polygon: SQL NULL, not JSON null

    grower: Mapped[Grower] = relationship()
    village: Mapped[Village] = relationship()


class Operator(Timestamps, db.Model):
    """陈皮经营者: a business that buys fruit, makes and stores peel, and uses the trademark."""

    __tablename__ = "operators"
    __table_args__ = (
        CheckConstraint(_in_list("kind", OPERATOR_KINDS), name="kind"),
        CheckConstraint(_in_list("licence_status", LICENCE_STATUSES), name="licence_status"),
        CheckConstraint(
            "licence_valid_until IS NULL OR licence_valid_from IS NULL OR licence_valid_until >= licence_valid_from",
            name="licence_dates",
        ),
        CheckConstraint(_point_pair(), name="point_pair"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    town_id: Mapped[int] = mapped_column(ForeignKey("towns.id"), index=True)
    address: Mapped[str | None] = mapped_column(String(300))
    contact_phone: Mapped[str | None] = mapped_column(String(20))
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    licence_status: Mapped[str] = mapped_column(String(16), default="none")
    licence_no: Mapped[str | None] = mapped_column(String(40))
    licence_valid_from: Mapped[date | None] = mapped_column(Date)
    licence_valid_until: Mapped[date | None] = mapped_column(Date)

    town: Mapped[Town] = relationship()


class Nursery(Timestamps, db.Model):
    """种苗 supplier: a licensed seedling nursery."""

    __tablename__ = "nurseries"
    __table_args__ = (CheckConstraint(_point_pair(), name="point_pair"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    credit_code: Mapped[str | None] = mapped_column(String(18), unique=True)
    licence_no: Mapped[str | None] = mapped_column(String(40))
    town_id: Mapped[int] = mapped_column(ForeignKey("towns.id"), index=True)
    village_id: Mapped[int | None] = mapped_column(ForeignKey("villages.id"), index=True)
    address: Mapped[str | None] = mapped_column(String(300))
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)

    town: Mapped[Town] = relationship()
