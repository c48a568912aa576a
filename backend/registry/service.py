"""Registry logic: create, read, update and list, with the rules a clerk would expect enforced.

Every function takes a session and plain values, raises catalogued AppErrors, and flushes (the
request commits). Operators and agents see only their own operator row.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from ..config import current_config
from ..errors import AppError, invalid_reference, not_found
from ..http import Actor
from ..pagination import paginate
from . import validators
from .models import MAX_TREES_PER_MU, Grower, Nursery, Operator, Plot, Town, Village

POLYGON_AREA_TOLERANCE = 2.0  # declared area and drawn polygon may differ by this factor


# --- shared helpers ----------------------------------------------------------------------------
def _get(session: Session, model, row_id: int, what: str):
    row = session.get(model, row_id)
    if row is None:
        raise not_found(what, "id", row_id)
    return row


def _require(session: Session, model, row_id: int | None, field: str, what: str):
    """Fetch a referenced row or raise 422 naming the referencing field."""
    if row_id is None:
        return None
    row = session.get(model, row_id)
    if row is None:
        raise invalid_reference(field, what, row_id)
    return row


def _unique(session: Session, column, value, field: str, exclude_id: int | None = None,
            shown: str | None = None) -> None:
    """409 naming `field` if another row has `value`; the message quotes `shown` (default: the value)."""
    if value is None:
        return
    stmt = select(column.class_.id).where(column == value)
    if exclude_id is not None:
        stmt = stmt.where(column.class_.id != exclude_id)
    if session.scalar(stmt.limit(1)) is not None:
        raise AppError("registry.duplicate", errors={field: [f"{shown or repr(value)} is already registered."]})


def _rule(field: str, message: str) -> AppError:
    return AppError("registry.rule_violation", errors={field: [message]})


def _check_point(values: dict, required: bool = False) -> None:
    lon, lat = values.get("lon"), values.get("lat")
    if (lon is None) != (lat is None):
        raise _rule("lon" if lon is None else "lat", "Give both lon and lat, or neither.")
    if lon is None:
        if required:
            raise _rule("lon", "A location is required.")
        return
    err = validators.point_error(lon, lat)
    if err:
        raise _rule("lon", err)


def _apply(row, values: dict):
    for key, value in values.items():
        setattr(row, key, value)
    return row


def _search(stmt, q: str | None, *columns):
    if q:  # a literal substring: %, _ and \\ in q match themselves
        stmt = stmt.where(or_(*(c.icontains(q, autoescape=True) for c in columns)))
    return stmt


# --- towns -------------------------------------------------------------------------------------
def list_towns(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = _search(select(Town).order_by(Town.id), filters.get("q"), Town.name, Town.code)
    return paginate(session, stmt, page, page_size)


def get_town(session: Session, actor: Actor, town_id: int) -> Town:
    return _get(session, Town, town_id, "town")


def save_town(session: Session, values: dict, town: Town | None = None) -> Town:
    exclude = town.id if town else None
    _unique(session, Town.name, values.get("name"), "name", exclude)
    _unique(session, Town.code, values.get("code"), "code", exclude)
    _check_point(_merged(town, values, ("lon", "lat")))
    town = _apply(town or Town(), values)
    session.add(town)
    session.flush()
    return town


# --- villages ----------------------------------------------------------------------------------
def list_villages(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = select(Village).order_by(Village.id)
    if filters.get("town_id"):
        stmt = stmt.where(Village.town_id == filters["town_id"])
    stmt = _search(stmt, filters.get("q"), Village.name, Village.code)
    return paginate(session, stmt, page, page_size)


def get_village(session: Session, actor: Actor, village_id: int) -> Village:
    return _get(session, Village, village_id, "village")


def save_village(session: Session, values: dict, village: Village | None = None) -> Village:
    merged = _merged(village, values, ("town_id", "name", "lon", "lat"))
    _require(session, Town, values.get("town_id"), "town_id", "town")
    _unique(session, Village.code, values.get("code"), "code", village.id if village else None)
    if "name" in values or "town_id" in values:
        clash = select(Village.id).where(Village.town_id == merged["town_id"], Village.name == merged["name"])
        if village:
            clash = clash.where(Village.id != village.id)
        if session.scalar(clash) is not None:
            raise AppError("registry.duplicate", errors={"name": [f"{merged['name']!r} already exists in this town."]})
    _check_point(merged)
    village = _apply(village or Village(), values)
    session.add(village)
    session.flush()
    return village


def _merged(row, values: dict, keys: tuple[str, ...]) -> dict:
    """The values a row will have after an update: new ones over the current ones."""
    return {k: values[k] if k in values else getattr(row, k, None) for k in keys}


# --- growers -----------------------------------------------------------------------------------
def list_growers(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = select(Grower).options(selectinload(Grower.village)).order_by(Grower.id)  # town_id in the output
    if filters.get("village_id"):
        stmt = stmt.where(Grower.village_id == filters["village_id"])
    if filters.get("town_id"):
        stmt = stmt.join(Village, Village.id == Grower.village_id).where(Village.town_id == filters["town_id"])
    stmt = _search(stmt, filters.get("q"), Grower.name, Grower.household_code)
    return paginate(session, stmt, page, page_size)


def get_grower(session: Session, actor: Actor, grower_id: int) -> Grower:
    return _get(session, Grower, grower_id, "grower")


def grower_values(values: dict) -> dict:
    """Replace a plain ID number by its keyed hash and masked form (the number is never stored)."""
    values = dict(values)
    if "id_number" in values:
        number = values.pop("id_number")
        values["id_number_hash"] = validators.hash_id_number(number, current_config().SECRET_KEY) if number else None
        values["id_number_masked"] = validators.mask_id_number(number) if number else None
    return values


def save_grower(session: Session, values: dict, grower: Grower | None = None) -> Grower:
    values = grower_values(values)
    exclude = grower.id if grower else None
    _require(session, Village, values.get("village_id"), "village_id", "village")
    _unique(session, Grower.household_code, values.get("household_code"), "household_code", exclude)
    # The stored form is a keyed hash of the number: never send it back, not even in an error.
    _unique(session, Grower.id_number_hash, values.get("id_number_hash"), "id_number", exclude,
            shown="This ID number")
    grower = _apply(grower or Grower(), values)
    session.add(grower)
    session.flush()
    return grower


# --- plots -------------------------------------------------------------------------------------
def list_plots(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = select(Plot).options(selectinload(Plot.village)).order_by(Plot.id)  # town_id in the output
    for key in ("grower_id", "village_id"):
        if filters.get(key):
            stmt = stmt.where(getattr(Plot, key) == filters[key])
    if filters.get("town_id"):
        stmt = stmt.join(Village, Village.id == Plot.village_id).where(Village.town_id == filters["town_id"])
    stmt = _search(stmt, filters.get("q"), Plot.code)
    return paginate(session, stmt, page, page_size)


def get_plot(session: Session, actor: Actor, plot_id: int) -> Plot:
    return _get(session, Plot, plot_id, "plot")


def check_plot_rules(values: dict, this_year: int | None = None) -> None:
    """The plot rules that need no database: density, planting year, location and polygon."""
    area, trees = values.get("area_mu"), values.get("tree_count")
    if area is not None and trees is not None and Decimal(trees) > MAX_TREES_PER_MU * Decimal(area):
        raise _rule("tree_count", f"{trees} trees on {area} 亩 exceeds {MAX_TREES_PER_MU} trees per 亩.")
    year = values.get("planting_year")
    if year is not None and year > (this_year or date.today().year):
        raise _rule("planting_year", "Cannot be in the future.")
    _check_point(values, required=True)
    boundary = values.get("boundary")
    if boundary is not None:
        if not validators.polygon_contains(boundary, values["lon"], values["lat"]):
            raise _rule("lon", "The plot's point lies outside its boundary polygon.")
        drawn_mu = validators.polygon_area_m2(boundary) / validators.M2_PER_MU
        declared = float(area)
        if not (declared / POLYGON_AREA_TOLERANCE <= drawn_mu <= declared * POLYGON_AREA_TOLERANCE):
            raise _rule("boundary", f"The polygon covers {drawn_mu:.2f} 亩 but area_mu says {declared}.")


def save_plot(session: Session, values: dict, plot: Plot | None = None) -> Plot:
    merged = _merged(plot, values, ("area_mu", "tree_count", "planting_year", "lon", "lat", "boundary"))
    _require(session, Grower, values.get("grower_id"), "grower_id", "grower")
    _require(session, Village, values.get("village_id"), "village_id", "village")
    _unique(session, Plot.code, values.get("code"), "code", plot.id if plot else None)
    check_plot_rules(merged)
    plot = _apply(plot or Plot(), values)
    session.add(plot)
    session.flush()
    return plot


# --- operators (tenant rows) -------------------------------------------------------------------
def list_operators(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = select(Operator).order_by(Operator.id)
    if actor.role in ("operator", "agent"):
        stmt = stmt.where(Operator.id == actor.operator_id)
    for key in ("town_id", "kind", "licence_status"):
        if filters.get(key):
            stmt = stmt.where(getattr(Operator, key) == filters[key])
    stmt = _search(stmt, filters.get("q"), Operator.name, Operator.credit_code)
    return paginate(session, stmt, page, page_size)


def get_operator_row(session: Session, operator_id: int, field: str = "id") -> Operator:
    """An operator by id for internal use (no tenancy check); 422 naming `field` if missing."""
    return _require(session, Operator, operator_id, field, "operator")


def get_operator(session: Session, actor: Actor, operator_id: int) -> Operator:
    """An operator as `actor` may see it: another operator's row is reported as not found."""
    if not actor.sees_operator(operator_id):
        raise not_found("operator", "id", operator_id)
    return _get(session, Operator, operator_id, "operator")


def check_operator_rules(values: dict) -> None:
    start, end = values.get("licence_valid_from"), values.get("licence_valid_until")
    if start and end and end < start:
        raise _rule("licence_valid_until", "Must not be before licence_valid_from.")
    if values.get("licence_status") == "active" and not (values.get("licence_no") and end):
        raise _rule("licence_no", "An active licence needs licence_no and licence_valid_until.")
    _check_point(values)


def save_operator(session: Session, values: dict, operator: Operator | None = None) -> Operator:
    merged = _merged(operator, values, ("licence_status", "licence_no", "licence_valid_from", "licence_valid_until", "lon", "lat"))
    _require(session, Town, values.get("town_id"), "town_id", "town")
    _unique(session, Operator.credit_code, values.get("credit_code"), "credit_code", operator.id if operator else None)
    check_operator_rules(merged)
    operator = _apply(operator or Operator(), values)
    session.add(operator)
    session.flush()
    return operator


# --- nurseries ---------------------------------------------------------------------------------
def list_nurseries(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = select(Nursery).order_by(Nursery.id)
    if filters.get("town_id"):
        stmt = stmt.where(Nursery.town_id == filters["town_id"])
    stmt = _search(stmt, filters.get("q"), Nursery.name)
    return paginate(session, stmt, page, page_size)


def get_nursery(session: Session, actor: Actor, nursery_id: int) -> Nursery:
    return _get(session, Nursery, nursery_id, "nursery")


def save_nursery(session: Session, values: dict, nursery: Nursery | None = None) -> Nursery:
    merged = _merged(nursery, values, ("town_id", "village_id", "lon", "lat"))
    _require(session, Town, values.get("town_id"), "town_id", "town")
    village = _require(session, Village, merged.get("village_id"), "village_id", "village")
    if village is not None and village.town_id != merged["town_id"]:
        raise _rule("village_id", "The village is not in the nursery's town.")
    _unique(session, Nursery.credit_code, values.get("credit_code"), "credit_code", nursery.id if nursery else None)
    _check_point(merged)
    nursery = _apply(nursery or Nursery(), values)
    session.add(nursery)
    session.flush()
    return nursery
