"""Issued labels and `lookup_label`, the one query the consumer resolver makes."""
from __future__ import annotations

import pytest
from sqlalchemy import event, select

from backend.labels import codes
from backend.labels.models import Label
from backend.labels.service import issuing, lookup_label
from backend.labels.service.keys import key_for
from tests.factories import label_batch


def test_a_batch_has_one_label_per_serial_with_the_code_make_code_derives(make, session):
    operator = make.operator()
    batch = label_batch(session, operator, 25)
    labels = session.scalars(select(Label).where(Label.batch_id == batch.id).order_by(Label.serial)).all()
    assert [l.serial for l in labels] == list(range(1, 26))
    from backend.labels.service.keys import active_key

    key_id, key = active_key()
    assert batch.key_id == key_id
    assert all(l.code == codes.make_code(key_id, key, batch.id, l.serial) and l.variant == 0 for l in labels)
    assert all(l.state == "issued" and l.print_count == 0 for l in labels)


def test_lookup_finds_a_label_by_its_canonical_code_in_one_query(make, session):
    operator = make.operator()
    lot = make.lot(operator)
    batch = label_batch(session, operator, 3, lot=lot)
    label = session.scalars(select(Label).where(Label.batch_id == batch.id, Label.serial == 2)).one()
    statements = []
    listener = lambda *a, **k: statements.append(a[2])  # noqa: E731
    event.listen(session.get_bind(), "before_cursor_execute", listener)
    try:
        view = lookup_label(session, codes.parse(codes.display(label.code).lower()).code)
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", listener)
    assert len(statements) == 1
    assert view.label_id == label.id and view.code == label.code
    assert view.serial == codes.format_serial(batch.id, 2)
    assert (view.operator_id, view.operator_name, view.credit_code) == (operator.id, operator.name, operator.credit_code)
    assert view.state == "issued" and view.activated_at is None
    assert view.lot_id == lot.id and view.lot_code == lot.code and view.harvest_year == lot.season
    assert view.batch_id == batch.id and view.product == batch.product
    with pytest.raises(Exception):
        view.state = "activated"  # frozen


def test_an_unknown_code_is_none(session):
    code = codes.make_code("1", b"another key of sixteen bytes!", 1, 1)
    assert lookup_label(session, code) is None


def test_colliding_codes_are_re_derived_with_a_variant(make, session, monkeypatch):
    """Force collisions: every serial's variant-0 code is the same string."""
    real = codes.make_code

    def clashing(key_id, key, batch_id, serial, *, variant=0):
        return real(key_id, key, 0, 0) if variant == 0 else real(key_id, key, batch_id, serial, variant=variant)

    def clashing_many(key_id, key, batch_id, serials, *, variant=0):
        return [clashing(key_id, key, batch_id, s, variant=variant) for s in serials]

    monkeypatch.setattr(codes, "make_code", clashing)
    monkeypatch.setattr(codes, "make_codes", clashing_many)
    first = label_batch(session, make.operator(), 3)
    second = label_batch(session, make.operator(), 2)
    rows = session.execute(select(Label.batch_id, Label.serial, Label.variant)
                           .where(Label.batch_id.in_([first.id, second.id])).order_by(Label.id)).all()
    # the first label of the first batch keeps variant 0; every other label needed variant 1
    assert [r.variant for r in rows] == [0, 1, 1, 1, 1]
    assert first.collisions == 2 and second.collisions == 2
    assert len({l.code for l in session.scalars(select(Label))}) == session.query(Label).count()


def test_a_batch_whose_code_is_taken_is_checked_code_by_code_and_written_once(make, session, monkeypatch):
    """The bulk insert is optimistic on PostgreSQL: a batch with one code already in the table
    falls back to checking every code, and only that label takes a variant."""
    first = label_batch(session, make.operator(), 2)
    taken = session.scalar(select(Label.code).where(Label.batch_id == first.id, Label.serial == 1))
    real = codes.make_codes

    def one_taken(key_id, key, batch_id, serials, *, variant=0):
        made = real(key_id, key, batch_id, serials, variant=variant)
        return [taken if s == 2 and variant == 0 else c for s, c in zip(serials, made)]

    monkeypatch.setattr(codes, "make_codes", one_taken)
    second = label_batch(session, make.operator(), 4)
    rows = session.execute(select(Label.serial, Label.code, Label.variant).where(Label.batch_id == second.id)
                           .order_by(Label.serial)).all()
    key_id, key = second.key_id, key_for(second.key_id)
    assert [(r.serial, r.variant) for r in rows] == [(1, 0), (2, 1), (3, 0), (4, 0)]
    assert rows[1].code == codes.make_code(key_id, key, second.id, 2, variant=1) != taken
    assert [r.code for r in rows if r.variant == 0] == real(key_id, key, second.id, [1, 3, 4])
    assert second.collisions == 1
