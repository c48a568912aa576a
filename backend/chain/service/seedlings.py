"""种苗销售: seedling sales from licensed nurseries to grower households, and their totals."""
from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ...http import Actor
from ...pagination import paginate
from ...registry.models import Grower, Nursery, Plot, Village
from .. import rules
from ..models import SeedlingSale
from .common import _bad_ref, _not_found, _replay, _rule

__all__ = ["record_seedling_sale", "get_seedling_sale", "list_seedling_sales", "seedling_counters"]


def record_seedling_sale(session: Session, actor: Actor, values: dict) -> tuple[SeedlingSale, bool]:
    client_uuid = str(values["client_uuid"])
    keys = ("nursery_id", "grower_id", "plot_id", "variety", "count", "sale_date")
    digest = rules.content_hash({k: values.get(k) for k in keys})
    if (earlier := _replay(session, SeedlingSale, client_uuid, digest, actor, lambda _: None)) is not None:
        return earlier, False
    if session.get(Nursery, values["nursery_id"]) is None:
        raise _bad_ref("nursery_id", "nursery", values["nursery_id"])
    if session.get(Grower, values["grower_id"]) is None:
        raise _bad_ref("grower_id", "grower", values["grower_id"])
    if values.get("plot_id") is not None:
        plot = session.get(Plot, values["plot_id"])
        if plot is None:
            raise _bad_ref("plot_id", "plot", values["plot_id"])
        if plot.grower_id != values["grower_id"]:
            raise _rule("plot_id", f"Plot {plot.code} is not grower {values['grower_id']}'s.")
    if values["sale_date"] > rules.today():
        raise _rule("sale_date", "Cannot be in the future.")
    if values["sale_date"] < rules.EARLIEST_DATE:
        raise _rule("sale_date", f"Cannot be before {rules.EARLIEST_DATE.isoformat()}.")
    sale = SeedlingSale(client_uuid=client_uuid, content_hash=digest, recorded_by=actor.user_id,
                        **{k: values.get(k) for k in keys})
    session.add(sale)
    session.flush()
    return sale, True


def get_seedling_sale(session: Session, actor: Actor, sale_id: int) -> SeedlingSale:
    sale = session.get(SeedlingSale, sale_id)
    if sale is None:
        raise _not_found("seedling sale", sale_id)
    return sale


def list_seedling_sales(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = select(SeedlingSale).order_by(SeedlingSale.id)
    for key in ("nursery_id", "grower_id", "plot_id"):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(SeedlingSale, key) == filters[key])
    if filters.get("year") is not None:
        stmt = stmt.where(SeedlingSale.sale_date.between(date(filters["year"], 1, 1), date(filters["year"], 12, 31)))
    return paginate(session, stmt, page, page_size)


def seedling_counters(session: Session, actor: Actor, group_by: str) -> list[dict]:
    """Seedlings sold per nursery, per town (where the grower lives) or per year."""
    year = func.extract("year", SeedlingSale.sale_date)
    key = {"nursery": SeedlingSale.nursery_id, "town": Village.town_id, "year": year}[group_by]
    stmt = (select(key.label("key"), func.sum(SeedlingSale.count), func.count(SeedlingSale.id))
            .join(Grower, Grower.id == SeedlingSale.grower_id).join(Village, Village.id == Grower.village_id)
            .group_by(key).order_by(key))
    return [{"key": int(k) if group_by == "year" else k, "seedlings": int(total), "sales": n}
            for k, total, n in session.execute(stmt)]
