"""`chenpi labels …`: the label path from the command line, acting as a named user with the
same roles and tenancy as the API."""
from __future__ import annotations

from datetime import date

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import backend.cli
from backend.auth.models import User
from backend.labels.models import Label, LabelApplication, LabelBatch, RenderJob

LICENCE = {"licence_status": "active", "licence_no": "GI-0042", "licence_valid_from": date(2020, 1, 1),
           "licence_valid_until": date(2099, 12, 31)}


@pytest.fixture
def chenpi(app, committed_db, monkeypatch):
    """Invoke `chenpi ARGS…` on the test app; returns (exit code, output)."""
    monkeypatch.setattr(backend.cli, "_app", lambda: app)
    runner = CliRunner()

    def invoke(*args):
        committed_db.session.remove()  # on SQLite an open transaction here would lock the command out
        result = runner.invoke(backend.cli.main, [str(a) for a in args])
        committed_db.session.remove()  # see what the command committed
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    return invoke


@pytest.fixture
def people(make, committed_db):
    operator = make.operator(**LICENCE)
    other = make.operator(**LICENCE)
    make.token("admin", name="cli-admin")
    make.token("operator", operator, name="cli-op")
    make.token("operator", other, name="cli-other")
    return {"operator": operator.id, "other": other.id}


def test_apply_approve_render_and_status_from_the_command_line(chenpi, people, committed_db):
    code, out = chenpi("labels", "apply", "--as", "cli-op", "--product", "新会陈皮 三年陈 250 g", "-n", 30)
    assert code == 0, out
    application = committed_db.session.scalars(select(LabelApplication)).one()
    assert (application.operator_id, application.quantity, application.status) == (people["operator"], 30, "applied")
    assert f"application {application.id}" in out

    code, out = chenpi("labels", "approve", "--as", "cli-admin", application.id, "-n", 24)
    assert code == 0, out
    batch = committed_db.session.scalars(select(LabelBatch)).one()
    assert (batch.quantity, batch.first_serial, batch.last_serial) == (24, 1, 24)
    assert committed_db.session.query(Label).filter_by(batch_id=batch.id).count() == 24

    code, out = chenpi("labels", "render", "--as", "cli-op", batch.id, "--no-wait")
    assert code == 0, out
    job = committed_db.session.scalars(select(RenderJob)).one()
    assert (job.batch_id, job.first_serial, job.last_serial, job.pages_total) == (batch.id, 1, 24, 1)

    code, out = chenpi("labels", "status", "--as", "cli-op", batch.id)
    assert code == 0 and "24 issued" in out, out


def test_the_whole_path_apply_to_activate(chenpi, people, make, committed_db):
    """apply → approve → render → print (the agent's lease and ack) → activate, from `chenpi`."""
    from backend.labels import service
    from backend.labels.jobs import render_job
    from backend.registry.models import Operator
    from tests.factories import actor_of

    assert chenpi("labels", "apply", "--as", "cli-op", "--product", "新会陈皮 五年陈", "-n", 24)[0] == 0
    application = committed_db.session.scalars(select(LabelApplication)).one()
    assert chenpi("labels", "approve", "--as", "cli-admin", application.id)[0] == 0
    batch_id = committed_db.session.scalars(select(LabelBatch.id)).one()
    assert chenpi("labels", "render", "--as", "cli-op", batch_id, "--no-wait")[0] == 0
    render_id = committed_db.session.scalars(select(RenderJob.id)).one()
    assert render_job(render_id)["status"] == "finished"  # the worker's part (done already in embedded mode)
    committed_db.session.remove()

    code, out = chenpi("labels", "activate", "--as", "cli-op", batch_id, "--first", 1, "--last", 10)
    assert code != 0 and "not printed" in out, out  # labels are printed before they are activated
    code, out = chenpi("labels", "print", "--as", "cli-op", render_id)
    assert code == 0 and "print job" in out, out
    code, out = chenpi("labels", "print", "--as", "cli-op", render_id)
    assert code != 0 and "reprint" in out, out  # never twice without asking for a reprint
    code, out = chenpi("labels", "print", "--as", "cli-op", render_id, "--reprint")
    assert code != 0 and "reason" in out, out

    agent = actor_of(committed_db.session, make.token("agent", committed_db.session.get(Operator, people["operator"])))
    job = service.lease_print_job(committed_db.session, agent, "Zebra-GK420d")
    service.ack_print_job(committed_db.session, agent, job.id, job.lease_token, "printed", "lp: request id Zebra-1")
    committed_db.session.commit()

    code, out = chenpi("labels", "activate", "--as", "cli-op", batch_id, "--first", 1, "--last", 10)
    assert code == 0 and "10 label(s) activated" in out, out
    code, out = chenpi("labels", "status", "--as", "cli-op", batch_id)
    assert code == 0 and "10 activated" in out and "14 printed" in out, out
    code, out = chenpi("labels", "print", "--as", "cli-op", render_id, "--reprint", "--reason", "卡纸 第一页")
    assert code == 0 and "(reprint)" in out, out

def test_the_command_line_obeys_roles_and_tenancy(chenpi, people, committed_db):
    code, out = chenpi("labels", "apply", "--as", "cli-op", "--product", "陈皮", "-n", 5)
    assert code == 0, out
    application = committed_db.session.scalars(select(LabelApplication)).one()
    # an operator cannot approve, and another operator cannot see the application at all
    code, out = chenpi("labels", "approve", "--as", "cli-op", application.id)
    assert code != 0 and "may not do this" in out and "admin" in out, out
    code, out = chenpi("labels", "approve", "--as", "cli-other", application.id)
    assert code != 0, out
    assert committed_db.session.get(LabelApplication, application.id).status == "applied"
    code, out = chenpi("labels", "approve", "--as", "cli-admin", application.id)
    assert code == 0, out
    batch = committed_db.session.scalars(select(LabelBatch)).one()
    code, out = chenpi("labels", "status", "--as", "cli-other", batch.id)
    assert code != 0 and "No such" in out, out
    code, out = chenpi("labels", "render", "--as", "cli-other", batch.id, "--no-wait")
    assert code != 0 and committed_db.session.query(RenderJob).count() == 0, out


def test_bad_input_is_a_clear_error_and_writes_nothing(chenpi, people, committed_db):
    code, out = chenpi("labels", "apply", "--as", "nobody", "--product", "陈皮", "-n", 5)
    assert code != 0 and "nobody" in out, out
    code, out = chenpi("labels", "apply", "--as", "cli-op", "--product", "陈皮", "-n", 0)
    assert code != 0 and "quantity" in out.lower(), out
    code, out = chenpi("labels", "apply", "--as", "cli-op", "--product", "陈皮", "-n", 5, "--lot", 999999)
    assert code != 0 and "lot_id" in out, out
    code, out = chenpi("labels", "approve", "--as", "cli-admin", 424242)
    assert code != 0 and "No such" in out, out
    assert committed_db.session.query(LabelApplication).count() == 0
    assert committed_db.session.query(User).filter_by(name="nobody").count() == 0


def test_apply_with_a_gtin_stores_it_in_14_digits_and_a_bad_one_is_refused_naming_the_option(chenpi, people,
                                                                                          committed_db):
    for bad, says in (("6901234567891", "check digit"), ("69012345", "check digit"), ("12ab", "digits only")):
        code, out = chenpi("labels", "apply", "--as", "cli-op", "--product", "新会陈皮", "-n", 5, "--gtin", bad)
        assert code == 2 and "--gtin" in out and says in out, out
    assert committed_db.session.query(LabelApplication).count() == 0
    code, out = chenpi("labels", "apply", "--as", "cli-op", "--product", "新会陈皮", "-n", 5, "--gtin", "690-1234-567892")
    assert code == 0, out
    assert committed_db.session.scalars(select(LabelApplication.gtin)).one() == "06901234567892"
