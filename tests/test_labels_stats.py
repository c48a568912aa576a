"""Label counters (累计用标量): applied, approved, issued, printed, activated, voided, lost or stolen,
per year, operator and town, against numbers worked out by hand for two operators in two towns
over two years."""
from __future__ import annotations

import pytest
from sqlalchemy import event, update

from backend.auth.models import User
from backend.labels.models import Label, LabelApplication
from backend.labels.service import issue_batch
from backend.timeutil import utcnow

STATS = "/api/v1/stats/labels"
METRICS = ("applied", "approved", "issued", "printed", "activated", "voided", "lost_or_stolen")


def application(session, operator, year: int, quantity: int, status: str = "approved", approved: int | None = None):
    """An application of `operator` in `year`; approved ones get their batch (serials 1…approved)."""
    admin = session.query(User).filter_by(role="admin").first()
    row = LabelApplication(operator_id=operator.id, product="新会陈皮", template="a4-3x8-70x37", quantity=quantity,
                           year=year, status=status, applied_by=admin.id,
                           approved_quantity=(approved or quantity) if status == "approved" else None,
                           reason="材料不全" if status == "rejected" else None)
    session.add(row)
    session.flush()
    batch = issue_batch(session, row, row.approved_quantity, admin.id) if status == "approved" else None
    session.commit()
    return batch


def set_labels(session, batch, serials, **values):
    session.execute(update(Label).where(Label.batch_id == batch.id, Label.serial.in_(list(serials))).values(**values))
    session.commit()


@pytest.fixture
def world(make, session):
    """Operator 1 (town 1) in 2025 and 2026, operator 2 (town 2) in 2026; the expected counts below."""
    make.token("admin")
    town1, town2 = make.town(), make.town()
    op1, op2 = make.operator(town1), make.operator(town2)
    now = utcnow()
    # op1, 2025: 10 applied, 8 approved; labels 1-6 printed, 1-3 activated (3 voided since), 6 lost, 7 stolen
    a1 = application(session, op1, 2025, 10, approved=8)
    set_labels(session, a1, range(1, 7), print_count=1, state="printed")
    set_labels(session, a1, range(1, 4), state="activated", activated_at=now, pack_g=500)
    set_labels(session, a1, [3], state="voided")
    set_labels(session, a1, [6], state="lost")
    set_labels(session, a1, [7], state="stolen")
    application(session, op1, 2025, 5, status="rejected")
    # op1, 2026: 4 applied and approved, the whole batch voided
    a3 = application(session, op1, 2026, 4)
    set_labels(session, a3, range(1, 5), state="voided")
    # op2, 2026: 20 approved, all printed (some twice), 10 activated; 7 more applied, not decided yet
    b1 = application(session, op2, 2026, 20)
    set_labels(session, b1, range(1, 21), print_count=1, state="printed")
    set_labels(session, b1, range(1, 3), print_count=2)
    set_labels(session, b1, range(1, 11), state="activated", activated_at=now, pack_g=250)
    application(session, op2, 2026, 7, status="applied")
    people = {"admin": make.auth(make.token("admin")), "inspector": make.auth(make.token("inspector")),
              "op1": make.auth(make.token("operator", op1)), "op2": make.auth(make.token("operator", op2)),
              "agent1": make.auth(make.token("agent", op1))}
    return {"town1": town1, "town2": town2, "op1": op1, "op2": op2, "people": people}


def row(**numbers):
    return {m: numbers.get(m, 0) for m in METRICS}


OP1_2025 = row(applied=15, approved=8, issued=8, printed=6, activated=3, voided=1, lost_or_stolen=2)
OP1_2026 = row(applied=4, approved=4, issued=4, voided=4)
OP2_2026 = row(applied=27, approved=20, issued=20, printed=20, activated=10)
OP1 = {m: OP1_2025[m] + OP1_2026[m] for m in METRICS}


def get(client, headers, **query):
    r = client.get(STATS, query_string=query, headers=headers)
    assert r.status_code == 200, r.json
    return r.json


def test_by_year_the_default(client, world):
    rows = get(client, world["people"]["admin"])
    assert rows == [{"year": 2025, **OP1_2025}, {"year": 2026, **{m: OP1_2026[m] + OP2_2026[m] for m in METRICS}}]


def test_by_operator_and_by_town(client, world):
    op1, op2 = world["op1"], world["op2"]
    assert get(client, world["people"]["admin"], group_by="operator") == [
        {"operator_id": op1.id, "operator_name": op1.name, **OP1},
        {"operator_id": op2.id, "operator_name": op2.name, **OP2_2026}]
    t1, t2 = world["town1"], world["town2"]
    assert get(client, world["people"]["inspector"], group_by="town") == [
        {"town_id": t1.id, "town_name": t1.name, **OP1}, {"town_id": t2.id, "town_name": t2.name, **OP2_2026}]


def test_filters_combine(client, world):
    admin = world["people"]["admin"]
    op1, op2 = world["op1"], world["op2"]
    assert get(client, admin, group_by="operator", year=2026) == [
        {"operator_id": op1.id, "operator_name": op1.name, **OP1_2026},
        {"operator_id": op2.id, "operator_name": op2.name, **OP2_2026}]
    assert get(client, admin, town_id=world["town2"].id) == [{"year": 2026, **OP2_2026}]
    assert get(client, admin, operator_id=op1.id, year=2025, group_by="town") == [
        {"town_id": world["town1"].id, "town_name": world["town1"].name, **OP1_2025}]
    assert get(client, admin, year=2024) == []


def test_an_operator_sees_only_its_own_and_naming_another_finds_nothing(client, world):
    op1 = world["people"]["op1"]
    assert get(client, op1) == [{"year": 2025, **OP1_2025}, {"year": 2026, **OP1_2026}]
    assert get(client, op1, group_by="operator") == [
        {"operator_id": world["op1"].id, "operator_name": world["op1"].name, **OP1}]
    assert get(client, op1, operator_id=world["op2"].id) == []
    assert get(client, op1, town_id=world["town2"].id, group_by="town") == []
    assert get(client, world["people"]["op2"], group_by="town") == [
        {"town_id": world["town2"].id, "town_name": world["town2"].name, **OP2_2026}]


def test_agents_may_not_read_counters(client, world):
    r = client.get(STATS, headers=world["people"]["agent1"])
    assert r.status_code == 403 and r.json["reason"] == "auth.forbidden"


@pytest.mark.parametrize("query", [{"group_by": "village"}, {"group_by": ""}, {"year": "二〇二六"}, {"year": "1999"},
                                   {"year": "9" * 5000}, {"town_id": "-1"}, {"operator_id": "0"},
                                   {"operator_id": "1e3"}, {"town_id": "2147483648"}])
def test_bad_queries_are_422_naming_the_field(client, world, query):
    r = client.get(STATS, query_string=query, headers=world["people"]["admin"])
    assert r.status_code == 422 and set(r.json["errors"]["query"]) == set(query), r.json


def test_two_queries_whatever_the_number_of_labels(app, client, session, world, make):
    """The counters are SQL aggregates: the statement count does not grow with labels or batches."""
    from backend.extensions import db
    from backend.labels.service import label_counters
    from tests.factories import actor_of

    admin = actor_of(session, world["people"]["admin"]["Authorization"].split()[1])
    statements = []

    def count(_conn, _cursor, statement, *_args):
        if not statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT")):  # the test's transaction
            statements.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        for group_by in ("year", "operator", "town"):
            statements.clear()
            label_counters(db.session, admin, group_by, {})
            assert len(statements) == 2, statements
        for _ in range(3):
            application(session, world["op2"], 2026, 50)
        statements.clear()
        rows = label_counters(db.session, admin, "operator", {})
        assert len(statements) == 2
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert rows[1]["issued"] == 20 + 150
