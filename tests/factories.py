"""Factories that build valid registry rows and users through the services (never raw SQL).

Every factory call commits. In the tests that only releases a savepoint (the test's outer
transaction is still rolled back at the end), but it matters: requests share the test's session,
and a request that fails rolls the session back, which would otherwise take the factory's
uncommitted rows (users, tokens) with it.
"""
from __future__ import annotations

import itertools
from decimal import Decimal

from backend.auth import service as auth_service
from backend.registry import service as registry
from backend.registry.validators import credit_check_char, id_check_char

_seq = itertools.count(1)


def credit_code(n: int) -> str:
    """A valid 统一社会信用代码 for a Xinhui (440705) enterprise, distinct for each n."""
    body = f"91440705{n:09d}"
    return body + credit_check_char(body)


def id_number(n: int) -> str:
    body = f"44070519{60 + n % 40:02d}0101{n % 1000:03d}"
    return body + id_check_char(body)


class Factory:
    def __init__(self, session):
        self.session = session

    def _done(self, result):
        self.session.commit()
        return result

    def nursery(self, town=None, **kw):
        n = next(_seq)
        town = town or self.town()
        values = {"name": f"测试苗圃{n}", "credit_code": None, "licence_no": f"苗{n:05d}", "town_id": town.id,
                  "village_id": None, "address": None, "lon": 113.03, "lat": 22.52, **kw}
        return self._done(registry.save_nursery(self.session, values))

    def town(self, **kw):
        n = next(_seq)
        values = {"name": f"测试镇{n}", "code": f"{440705000 + n}", "lon": 113.03, "lat": 22.52, **kw}
        return self._done(registry.save_town(self.session, values))

    def village(self, town=None, **kw):
        n = next(_seq)
        town = town or self.town()
        values = {"town_id": town.id, "name": f"测试村{n}", "code": f"{440705000000 + n}", "lon": 113.03, "lat": 22.52, **kw}
        return self._done(registry.save_village(self.session, values))

    def grower(self, village=None, **kw):
        n = next(_seq)
        village = village or self.village()
        values = {"household_code": f"HH{n:06d}", "name": f"户主{n}", "phone": f"138{n:08d}",
                  "id_number": id_number(n), "village_id": village.id, **kw}
        return self._done(registry.save_grower(self.session, values))

    def plot(self, grower=None, **kw):
        n = next(_seq)
        grower = grower or self.grower()
        values = {"code": f"PL{n:06d}", "grower_id": grower.id, "village_id": grower.village_id,
                  "area_mu": Decimal("5.00"), "tree_count": 300, "planting_year": 2015,
                  "verified_yield_kg": Decimal("15000.000"), "lon": 113.03, "lat": 22.52, "boundary": None, **kw}
        return self._done(registry.save_plot(self.session, values))

    def operator(self, town=None, **kw):
        n = next(_seq)
        town = town or self.town()
        values = {"name": f"测试陈皮有限公司{n}", "credit_code": credit_code(n), "kind": "enterprise",
                  "town_id": town.id, "address": "会城街道", "licence_status": "none", **kw}
        return self._done(registry.save_operator(self.session, values))

    def token(self, role: str, operator=None, name: str | None = None) -> str:
        """A new user with `role` (bound to `operator` for operator/agent) and its bearer token."""
        if role in ("operator", "agent") and operator is None:
            operator = self.operator()
        user = auth_service.create_user(self.session, name or f"{role}{next(_seq)}", role,
                                        operator.id if operator is not None and role in ("operator", "agent") else None)
        return self._done(auth_service.issue_token(self.session, user))

    @staticmethod
    def auth(token: str) -> dict:
        return {"Authorization": f"Bearer {token}"}

    # --- the trade chain (backend/chain) -------------------------------------------------------
    def chain_actor(self, operator=None):
        """An Actor for chain services: the operator's own user, or a factory admin."""
        from backend.http import Actor

        role = "operator" if operator is not None else "admin"
        user = auth_service.create_user(self.session, f"chain-{role}{next(_seq)}", role,
                                        operator.id if operator is not None else None)
        return Actor(user_id=user.id, name=user.name, role=role, operator_id=user.operator_id)

    def trade(self, operator=None, plot=None, **kw):
        """A current fruit trade (default: 1,000 kg of 微红 fruit on 2025-11-01 at 8.50 CNY/kg)."""
        import uuid
        from datetime import date

        from backend.chain import service as chain

        operator = operator or self.operator()
        plot = plot or self.plot()
        values = {"client_uuid": uuid.uuid4(), "operator_id": operator.id, "plot_id": plot.id,
                  "trade_date": date(2025, 11, 1), "stage": "wei_hong", "weight_kg": Decimal("1000.000"),
                  "price_per_kg": Decimal("8.50"), "grower_id": None, "village_id": None, **kw}
        trade, _ = chain.create_trade(self.session, self.chain_actor(), values)
        self.session.commit()
        return trade

    def warehouse(self, operator=None, **kw):
        from backend.chain import service as chain

        operator = operator or self.operator()
        values = {"name": f"仓库{next(_seq)}", "address": "新会区会城", "operator_id": operator.id, **kw}
        warehouse = chain.create_warehouse(self.session, self.chain_actor(), values)
        self.session.commit()
        return warehouse

    def lot(self, operator=None, trades=None, **kw):
        """A current lot: by default 50 kg of peel from a new 1,000 kg trade (5 %)."""
        import uuid
        from datetime import date

        from backend.chain import service as chain

        operator = operator or self.operator()
        trades = trades or [self.trade(operator)]
        values = {"client_uuid": uuid.uuid4(), "operator_id": operator.id, "code": f"LOT{next(_seq):06d}",
                  "warehouse_id": kw.pop("warehouse_id", None) or self.warehouse(operator).id,
                  "stage": trades[0].stage, "production_date": date(2025, 12, 1),
                  "inputs": [{"trade_id": t.id, "kg": t.weight_kg} for t in trades],
                  "output_kg": sum(t.weight_kg for t in trades) * Decimal("0.05"), **kw}
        lot, _ = chain.create_lot(self.session, self.chain_actor(), values)
        self.session.commit()
        return lot

    def sale(self, lot, **kw):
        """A retail sale of 1 kg from `lot`, declaring the lot's own vintage."""
        import uuid
        from datetime import date

        from backend.chain import service as chain

        values = {"client_uuid": uuid.uuid4(), "sale_date": date(2025, 12, 20), "kg": Decimal("1"),
                  "vintage_year": lot.season, "claimed_age_years": None, "price_per_kg": Decimal("300"),
                  "buyer_kind": "retail", "buyer_operator_id": None, "destination": "江门市 零售", **kw}
        sale, _ = chain.sell(self.session, self.chain_actor(), lot.id, values)
        self.session.commit()
        return sale

    def seedling_sale(self, nursery=None, grower=None, **kw):
        import uuid
        from datetime import date

        from backend.chain import service as chain

        nursery = nursery or self.nursery()
        grower = grower or self.grower()
        values = {"client_uuid": uuid.uuid4(), "nursery_id": nursery.id, "grower_id": grower.id, "plot_id": None,
                  "variety": "茶枝柑", "count": 200, "sale_date": date(2025, 3, 1), **kw}
        sale, _ = chain.record_seedling_sale(self.session, self.chain_actor(), values)
        self.session.commit()
        return sale


def world_row(world, name: str):
    """Chain rows for tests/test_access.py's World, built on first use and kept on the world."""
    cache = world.__dict__.setdefault("_chain_rows", {})
    if name not in cache:
        from backend.extensions import db

        make = Factory(db.session)
        if name == "trade":
            cache[name] = make.trade(world.operator_a, world.plot)
        elif name == "warehouse":
            cache[name] = make.warehouse(world.operator_a)
        elif name == "lot":
            cache[name] = make.lot(world.operator_a, warehouse_id=world_row(world, "warehouse").id)
        elif name == "sale":
            cache[name] = make.sale(world_row(world, "lot"))
        elif name == "seedling_sale":
            cache[name] = make.seedling_sale(world.nursery, world.grower, plot_id=world.plot.id)
        elif name == "alert":  # a plausibility alert on operator A's trade
            from backend.chain.models import Alert

            trade = world_row(world, "trade")
            cache[name] = Alert(kind="over_quota", plot_id=world.plot.id, trade_id=trade.id,
                                operator_id=world.operator_a.id, evidence={"quota_kg": "1"})
            db.session.add(cache[name])
            db.session.commit()
    return cache[name]


# --- fieldwork (appended by the field-capture work) ----------------------------------------------
def user_of(session, token: str):
    """The User behind a bearer token made by `Factory.token`."""
    from sqlalchemy import select

    from backend.auth.models import ApiToken

    return session.scalar(select(ApiToken).where(ApiToken.token_hash == auth_service.hash_token(token))).user


def actor_of(session, token: str):
    from backend.http import Actor

    user = user_of(session, token)
    return Actor(user.id, user.name, user.role, user.operator_id)


def checkin_json(plot=None, operator=None, kind: str | None = None, **kw) -> dict:
    """A valid check-in body as a phone sends it (plot target unless `operator` is given)."""
    import uuid
    from datetime import timedelta

    from backend.timeutil import SHANGHAI, utcnow

    captured = (utcnow() - timedelta(hours=1)).astimezone(SHANGHAI).isoformat(timespec="seconds")
    if operator is not None:
        kind = kind or "operator"
        answers = {"operator": {"licence_displayed": True, "label_stock_secured": True, "purchase_records_kept": True},
                   "warehouse": {"storage_condition": "good", "lots_labelled": True, "vintage_records_kept": True},
                   "shop": {"gi_labels_present": True, "vintage_claims_plausible": True, "suspect_products": False}}[kind]
        target = {"target_kind": kind, "operator_id": operator.id}
    else:
        answers = {"planted": True, "tree_count_estimate": 300, "harvest_stage": "微红皮"}
        target = {"target_kind": "plot", "plot_id": plot.id}
    lon = plot.lon if plot is not None else (operator.lon or 113.03)
    lat = plot.lat if plot is not None else (operator.lat or 22.52)
    return {"uuid": str(uuid.uuid4()), **target, "captured_at": captured, "lat": lat, "lon": lon,
            "accuracy_m": 8.0, "altitude_m": 12.5, "checklist_version": 1, "answers": answers, "result": "pass", **kw}


def jpeg_bytes(size=(64, 48), exif: dict | None = None, orientation: int | None = None) -> bytes:
    """A small JPEG, optionally with EXIF time/GPS ({'taken': 'YYYY:MM:DD HH:MM:SS', 'lat': .., 'lon': ..})."""
    import io

    from PIL import Image

    img = Image.new("RGB", size, (200, 120, 40))
    info = Image.Exif()
    if orientation:
        info[0x0112] = orientation
    exif = exif or {}
    if "taken" in exif:
        info.get_ifd(0x8769)[36867] = exif["taken"]
        if "offset" in exif:
            info.get_ifd(0x8769)[36881] = exif["offset"]
    if "lat" in exif:
        def dms(value):
            value = abs(value)
            d = int(value)
            m = int((value - d) * 60)
            return (float(d), float(m), round((value - d - m / 60) * 3600, 4))

        info.get_ifd(0x8825).update({1: "N" if exif["lat"] >= 0 else "S", 2: dms(exif["lat"]),
                                     3: "E" if exif["lon"] >= 0 else "W", 4: dms(exif["lon"])})
    out = io.BytesIO()
    img.save(out, "JPEG", exif=info, quality=80)
    return out.getvalue()


def fieldwork_access_rows(world) -> dict:
    """Rows the access matrix needs for the fieldwork routes, made once per world: an approved
    check-in at operator A's warehouse by the world's inspector, a photo of it, and a task."""
    import io
    from datetime import date

    from backend.extensions import db
    from backend.fieldwork import service as fieldwork

    if "_fieldwork_rows" in world.__dict__:
        return world.__dict__["_fieldwork_rows"]
    session = db.session
    inspector = actor_of(session, world.tokens["inspector"])
    admin = actor_of(session, world.tokens["admin"])
    body = checkin_json(operator=world.operator_a, kind="warehouse", premises="一号仓")
    [result] = fieldwork.receive_checkins(session, inspector, [body])
    fieldwork.review_checkin(session, admin, body["uuid"], "approved", None)
    import uuid as uuidlib

    photo, _ = fieldwork.store_photo(session, inspector, body["uuid"], str(uuidlib.uuid4()), io.BytesIO(jpeg_bytes()))
    task = fieldwork.create_task(session, admin, {"assignee_id": inspector.user_id, "target_kind": "plot",
                                                  "plot_id": world.plot.id, "operator_id": None, "premises": None,
                                                  "due_date": date(2030, 1, 1), "instructions": "巡查"})
    session.commit()
    rows = {"checkin_uuid": body["uuid"], "photo_uuid": photo.uuid, "task_id": task.id}
    world.__dict__["_fieldwork_rows"] = rows
    return rows


# --- labels (appended by the labels work) ---------------------------------------------------------
def label_batch(session, operator, quantity: int = 10, *, lot=None, product: str = "新会陈皮 (大红皮)",
                template: str = "a4-3x8-70x37", printed: bool = False):
    """An approved application of `operator` and its issued batch of `quantity` labels (committed);
    with `printed`, every label printed once (state printed, print_count 1), ready to activate."""
    from backend.auth.models import User
    from backend.labels.models import LabelApplication
    from backend.labels.service import issue_batch

    admin = session.query(User).filter_by(role="admin").first() or auth_service.create_user(
        session, f"label-admin{next(_seq)}", "admin", None)
    session.flush()
    application = LabelApplication(operator_id=operator.id, product=product, lot_id=lot.id if lot else None,
                                   template=template, quantity=quantity, year=2026, status="approved",
                                   approved_quantity=quantity, applied_by=admin.id, decided_by=admin.id)
    session.add(application)
    session.flush()
    batch = issue_batch(session, application, quantity, admin.id)
    if printed:
        from sqlalchemy import update

        from backend.labels.models import Label

        session.execute(update(Label).where(Label.batch_id == batch.id).values(state="printed", print_count=1))
    session.commit()
    return batch


def labels_world_row(world, name: str):
    """Label rows of operator A for tests/test_access.py's World, made on first use."""
    cache = world.__dict__.setdefault("_label_rows", {})
    if not cache:
        from backend.extensions import db

        from backend.http import Actor
        from backend.labels.service import request_render

        batch = label_batch(db.session, world.operator_a, 3)
        admin = Actor(batch.created_by, "label-admin", "admin")
        render = request_render(db.session, admin, batch.id, None, None)
        db.session.commit()
        from backend.labels.jobs import render_job

        render_job(render.id)  # in-process: the PDF is there for the download route
        cache.update(batch=batch.id, application=batch.application_id, render=render.id)
    return cache[name]


# --- print jobs (appended by the print-jobs work) -------------------------------------------------
def print_job_world_row(world) -> int:
    """A queued reprint job of operator A's world render (tests/test_access.py), made on first use.
    A reprint, so it is made whatever the access walk printed before."""
    cache = world.__dict__.setdefault("_label_rows", {})
    if "print_job" not in cache:
        from backend.extensions import db
        from backend.labels.service import request_print

        render_id = labels_world_row(world, "render")
        operator = actor_of(db.session, world.tokens["operator"])
        job, _ = request_print(db.session, operator, render_id, 1, True, "access matrix")
        db.session.commit()
        cache["print_job"] = job.id
    return cache["print_job"]
