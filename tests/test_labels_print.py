"""Print jobs, server side: the operator queues a finished render, its print agent leases it and
acknowledges; a serial is never printed twice without a recorded reason."""
from __future__ import annotations

import hashlib
import json
import threading
import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import select, update

from backend.labels import jobs
from backend.labels.models import LabelReprint, PrintJob
from backend.timeutil import as_utc, utcnow

API = "/api/v1/labels"
LICENCE = {"licence_status": "active", "licence_no": "GI-0003", "licence_valid_from": date(2020, 1, 1),
           "licence_valid_until": date(2099, 12, 31)}


@pytest.fixture
def inline(monkeypatch):
    """Render jobs run in-process at enqueue (the real worker has its own tests)."""
    import backend.labels.service as service

    monkeypatch.setattr(service, "enqueue", lambda job_id: jobs.render_job(job_id))


def issue(client, make, quantity=6, operator=None):
    """A batch of `quantity` labels of a licensed operator, and its people's headers."""
    op = operator or make.operator(**LICENCE)
    people = {"op": make.auth(make.token("operator", op)), "admin": make.auth(make.token("admin")),
              "agent": make.auth(make.token("agent", op)), "agent2": make.auth(make.token("agent", op))}
    r = client.post(f"{API}/applications", json={"product": "新会陈皮 三年陈", "quantity": quantity}, headers=people["op"])
    r = client.post(f"{API}/applications/{r.json['id']}/approve", json={}, headers=people["admin"])
    assert r.status_code == 201, r.json
    return r.json, people


def render(client, batch, people, **range_):
    r = client.post(f"{API}/batches/{batch['id']}/renders", json=range_, headers=people["op"])
    assert r.status_code == 202, r.json
    job = client.get(f"{API}/renders/{r.json['id']}", headers=people["op"]).json
    assert job["status"] == "finished", job
    return job


def printed_world(client, make, quantity=6):
    batch, people = issue(client, make, quantity)
    return batch, render(client, batch, people), people


def labels(client, batch, people):
    r = client.get(f"{API}/batches/{batch['id']}/labels", headers=people["op"], query_string={"page_size": 100})
    return [(row["serial"], row["state"], row["print_count"]) for row in r.json]


def print_(client, render_id, headers, **body):
    return client.post(f"{API}/renders/{render_id}/print", json=body, headers=headers)


def lease(client, headers, printer="HP-LaserJet-前台"):
    return client.post(f"{API}/print-jobs/lease", json={"printer": printer}, headers=headers)


def ack(client, job_id, token, headers, outcome="printed", answer="request id is HP-7 (1 file(s))"):
    return client.post(f"{API}/print-jobs/{job_id}/ack", headers=headers,
                       json={"lease_token": token, "outcome": outcome, "printer_answer": answer})


def expire(session, job_id):
    session.execute(update(PrintJob).where(PrintJob.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()


# --- the whole path ----------------------------------------------------------------------------
def test_print_lease_ack_prints_every_label_once_and_the_queue_is_then_empty(client, make, inline):
    batch, rendered, people = printed_world(client, make, 6)
    r = print_(client, rendered["id"], people["op"])
    assert r.status_code == 201, r.json
    job = r.json
    assert (job["kind"], job["status"], job["copies"], job["first_serial"], job["last_serial"], job["labels"]) == \
        ("print", "queued", 1, 1, 6, 6)
    assert "lease_token" not in job and job["leases"] == 0

    leased = lease(client, people["agent"])
    assert leased.status_code == 200, leased.json
    got = leased.json
    assert got["id"] == job["id"] and got["status"] == "leased" and got["leases"] == 1
    assert got["printer"] == "HP-LaserJet-前台" and len(got["lease_token"]) >= 40
    assert got["pdf_url"] == f"/api/v1/labels/renders/{rendered['id']}/pdf"
    assert got["sha256"] == rendered["sha256"] and got["size"] == rendered["size"]
    pdf = client.get(got["pdf_url"], headers=people["agent"])
    assert pdf.status_code == 200 and hashlib.sha256(pdf.data).hexdigest() == got["sha256"]
    # the token is shown to the lessee only
    for view in (client.get(f"{API}/print-jobs/{job['id']}", headers=people["agent"]).json,
                 client.get(f"{API}/print-jobs", headers=people["op"]).json[0]):
        assert "lease_token" not in view and view["status"] == "leased"
    assert labels(client, batch, people) == [(s, "issued", 0) for s in range(1, 7)]

    done = ack(client, job["id"], got["lease_token"], people["agent"])
    assert done.status_code == 200, done.json
    assert done.json["status"] == "printed" and done.json["acked_at"] and "request id" in done.json["printer_answer"]
    assert labels(client, batch, people) == [(s, "printed", 1) for s in range(1, 7)]

    nothing = lease(client, people["agent"])
    assert nothing.status_code == 204 and nothing.data == b""


def test_the_oldest_waiting_job_is_leased_first(client, make, inline):
    batch, people = issue(client, make, 6)
    first = print_(client, render(client, batch, people, first=1, last=3)["id"], people["op"]).json
    second = print_(client, render(client, batch, people, first=4, last=6)["id"], people["op"]).json
    assert lease(client, people["agent"]).json["id"] == first["id"]
    assert lease(client, people["agent2"]).json["id"] == second["id"]
    assert lease(client, people["agent"]).status_code == 204


def test_an_expired_lease_returns_the_job_and_the_old_token_is_refused(client, session, make, inline):
    batch, rendered, people = printed_world(client, make, 3)
    job = print_(client, rendered["id"], people["op"]).json
    old = lease(client, people["agent"]).json
    assert lease(client, people["agent2"]).status_code == 204, "a live lease is not handed out twice"
    expire(session, job["id"])  # the first agent died without acknowledging
    new = lease(client, people["agent2"]).json
    assert new["id"] == job["id"] and new["leases"] == 2 and new["lease_token"] != old["lease_token"]
    late = ack(client, job["id"], old["lease_token"], people["agent"])
    assert late.status_code == 409 and late.json["reason"] == "labels.lease_invalid", late.json
    assert labels(client, batch, people) == [(s, "issued", 0) for s in range(1, 4)]
    assert ack(client, job["id"], new["lease_token"], people["agent2"]).status_code == 200
    assert labels(client, batch, people) == [(s, "printed", 1) for s in range(1, 4)]


def test_an_expired_lease_nobody_took_still_accepts_its_token(client, session, make, inline):
    batch, rendered, people = printed_world(client, make, 2)
    job = print_(client, rendered["id"], people["op"]).json
    leased = lease(client, people["agent"]).json
    expire(session, job["id"])
    r = ack(client, job["id"], leased["lease_token"], people["agent"], outcome="failed", answer="lp: paper jam")
    assert r.status_code == 200 and r.json["status"] == "failed" and r.json["printer_answer"] == "lp: paper jam"
    assert labels(client, batch, people) == [(1, "issued", 0), (2, "issued", 0)]


def test_an_ack_sent_twice_is_409_already_printed_and_counts_once(client, make, inline):
    batch, rendered, people = printed_world(client, make, 3)
    job = print_(client, rendered["id"], people["op"]).json
    token = lease(client, people["agent"]).json["lease_token"]
    assert ack(client, job["id"], token, people["agent"]).status_code == 200
    again = ack(client, job["id"], token, people["agent"])
    assert again.status_code == 409 and again.json["reason"] == "labels.already_printed"
    failed_too = ack(client, job["id"], token, people["agent"], outcome="failed")
    assert failed_too.status_code == 409 and failed_too.json["reason"] == "labels.already_printed"
    assert labels(client, batch, people) == [(s, "printed", 1) for s in range(1, 4)]


def test_a_wrong_token_or_a_job_never_leased_is_lease_invalid(client, make, inline):
    batch, rendered, people = printed_world(client, make, 2)
    job = print_(client, rendered["id"], people["op"]).json
    r = ack(client, job["id"], "made-up-token", people["agent"])
    assert r.status_code == 409 and r.json["reason"] == "labels.lease_invalid"
    lease(client, people["agent"])
    for token in ("made-up-token", "令牌", "\x00", " "):
        r = ack(client, job["id"], token, people["agent"])
        assert r.status_code == 409 and r.json["reason"] == "labels.lease_invalid" and "lease_token" in r.json["errors"]
    body = json.dumps({"lease_token": "\ud800", "outcome": "printed"})  # a lone surrogate, as JSON can carry it
    r = client.post(f"{API}/print-jobs/{job['id']}/ack", data=body,
                    headers={**people["agent"], "Content-Type": "application/json"})
    assert r.status_code == 409 and r.json["reason"] == "labels.lease_invalid"
    assert labels(client, batch, people) == [(1, "issued", 0), (2, "issued", 0)]


# --- tenancy -----------------------------------------------------------------------------------
def test_another_operators_agent_gets_none_of_its_jobs_and_404_on_them(client, make, inline):
    batch, rendered, people = printed_world(client, make, 3)
    job = print_(client, rendered["id"], people["op"]).json
    other_op = make.operator(**LICENCE)
    other_agent, other_operator = make.auth(make.token("agent", other_op)), make.auth(make.token("operator", other_op))
    assert lease(client, other_agent).status_code == 204
    assert client.get(f"{API}/print-jobs/{job['id']}", headers=other_agent).status_code == 404
    assert client.get(f"{API}/print-jobs", headers=other_agent).json == []
    token = lease(client, people["agent"]).json["lease_token"]
    stolen = ack(client, job["id"], token, other_agent)  # even holding the token
    assert stolen.status_code == 404 and stolen.json["reason"] == "labels.not_found"
    assert client.post(f"{API}/print-jobs/{job['id']}/cancel", headers=other_operator).status_code == 404
    assert client.post(f"{API}/print-jobs/{job['id']}/requeue", json={"reason": "x"}, headers=other_operator).status_code == 404
    assert print_(client, rendered["id"], other_operator, reprint=True, reason="x").status_code == 404
    assert labels(client, batch, people) == [(s, "issued", 0) for s in range(1, 4)]
    # the admin sees every operator's jobs, and may filter
    admin_view = client.get(f"{API}/print-jobs", headers=people["admin"], query_string={"operator_id": other_op.id})
    assert admin_view.status_code == 200 and admin_view.json == []
    assert [j["id"] for j in client.get(f"{API}/print-jobs", headers=people["admin"],
                                        query_string={"batch_id": batch["id"]}).json] == [job["id"]]


# --- printing twice ----------------------------------------------------------------------------
def test_a_first_print_of_printed_queued_or_failed_labels_is_refused(client, session, make, inline):
    batch, people = issue(client, make, 6)
    whole = render(client, batch, people)
    part = render(client, batch, people, first=5, last=6)
    job = print_(client, whole["id"], people["op"]).json
    for render_id in (whole["id"], part["id"]):  # queued: covered
        r = print_(client, render_id, people["op"])
        assert r.status_code == 409 and r.json["reason"] == "labels.already_printed", r.json
        assert str(job["id"]) in " ".join(r.json["errors"]["reprint"])
    token = lease(client, people["agent"]).json["lease_token"]
    ack(client, job["id"], token, people["agent"], outcome="failed", answer="half a sheet came out")
    r = print_(client, part["id"], people["op"])  # failed: may have printed some pages
    assert r.status_code == 409 and r.json["reason"] == "labels.already_printed"
    assert session.query(PrintJob).filter_by(batch_id=batch["id"]).count() == 1


def test_a_cancelled_job_does_not_cover_its_labels(client, make, inline):
    batch, rendered, people = printed_world(client, make, 2)
    job = print_(client, rendered["id"], people["op"]).json
    assert client.post(f"{API}/print-jobs/{job['id']}/cancel", headers=people["op"]).status_code == 200
    again = print_(client, rendered["id"], people["op"])
    assert again.status_code == 201 and again.json["kind"] == "print"


def test_a_first_print_of_labels_printed_by_another_render_is_refused(client, make, inline):
    batch, people = issue(client, make, 6)
    first = print_(client, render(client, batch, people, first=1, last=4)["id"], people["op"]).json
    token = lease(client, people["agent"]).json["lease_token"]
    ack(client, first["id"], token, people["agent"])
    overlapping = render(client, batch, people, first=4, last=6)
    r = print_(client, overlapping["id"], people["op"])
    assert r.status_code == 409 and r.json["reason"] == "labels.already_printed"
    assert "1 labels of serials 4–6 have been printed already." in r.json["errors"]["reprint"]
    fresh = render(client, batch, people, first=5, last=6)
    assert print_(client, fresh["id"], people["op"]).status_code == 201


@pytest.mark.parametrize("body", [{"reprint": True}, {"reprint": True, "reason": None}, {"reprint": True, "reason": "   "},
                                  {"reprint": True, "reason": ""}])
def test_a_reprint_without_a_reason_is_422_naming_reason(client, session, make, inline, body):
    batch, rendered, people = printed_world(client, make, 2)
    r = print_(client, rendered["id"], people["op"], **body)
    assert r.status_code == 422 and "reason" in r.json["errors"]["json"], r.json
    assert session.query(PrintJob).filter_by(batch_id=batch["id"]).count() == 0


def test_a_reprint_is_recorded_and_counts_a_second_print(client, session, make, inline):
    batch, rendered, people = printed_world(client, make, 3)
    first = print_(client, rendered["id"], people["op"]).json
    ack(client, first["id"], lease(client, people["agent"]).json["lease_token"], people["agent"])
    client.post(f"{API}/batches/{batch['id']}/activate", json={"first": 1, "last": 1, "pack_g": 500}, headers=people["op"])
    r = print_(client, rendered["id"], people["op"], reprint=True, reason="打印机卡纸，第一张损坏")
    assert r.status_code == 201 and r.json["kind"] == "reprint" and r.json["reason"] == "打印机卡纸，第一张损坏"
    [record] = session.scalars(select(LabelReprint).where(LabelReprint.batch_id == batch["id"])).all()
    assert (record.print_job_id, record.first_serial, record.last_serial, record.reason) == \
        (r.json["id"], 1, 3, "打印机卡纸，第一张损坏")
    from tests.factories import user_of

    assert record.requested_by == user_of(session, people["op"]["Authorization"].split()[1]).id
    ack(client, r.json["id"], lease(client, people["agent"]).json["lease_token"], people["agent"])
    states = labels(client, batch, people)
    assert states == [(1, "activated", 2), (2, "printed", 2), (3, "printed", 2)]  # activated stays activated


def test_several_copies_count_per_copy_and_are_recorded(client, session, make, inline):
    batch, rendered, people = printed_world(client, make, 2)
    job = print_(client, rendered["id"], people["op"], copies=3).json
    assert job["copies"] == 3 and job["kind"] == "print"
    [record] = session.scalars(select(LabelReprint).where(LabelReprint.print_job_id == job["id"])).all()
    assert "3 copies" in record.reason
    ack(client, job["id"], lease(client, people["agent"]).json["lease_token"], people["agent"])
    assert labels(client, batch, people) == [(1, "printed", 3), (2, "printed", 3)]


# --- states around printing --------------------------------------------------------------------
def test_printing_an_unfinished_render_or_a_voided_batch_is_409(client, session, make, monkeypatch):
    import backend.labels.service as service

    monkeypatch.setattr(service, "enqueue", lambda job_id: None)
    batch, people = issue(client, make, 3)
    queued = client.post(f"{API}/batches/{batch['id']}/renders", json={}, headers=people["op"]).json
    r = print_(client, queued["id"], people["op"])
    assert r.status_code == 409 and r.json["reason"] == "labels.render_not_ready"
    jobs.render_job(queued["id"])
    client.post(f"{API}/batches/{batch['id']}/void-batch", json={"reason": "作废"}, headers=people["op"])
    r = print_(client, queued["id"], people["op"], reprint=True, reason="x")
    assert r.status_code == 409 and r.json["reason"] == "labels.batch_voided"
    assert session.query(PrintJob).filter_by(batch_id=batch["id"]).count() == 0


def test_voiding_a_batch_cancels_its_open_print_jobs(client, make, inline):
    batch, people = issue(client, make, 4)
    queued = print_(client, render(client, batch, people, first=1, last=2)["id"], people["op"]).json
    leased = print_(client, render(client, batch, people, first=3, last=4)["id"], people["op"]).json
    lease(client, people["agent"])  # takes `queued` (the oldest)
    assert client.post(f"{API}/batches/{batch['id']}/void-batch", json={"reason": "作废"}, headers=people["op"]).status_code == 200
    statuses = {j["id"]: j["status"] for j in client.get(f"{API}/print-jobs", headers=people["op"]).json}
    assert statuses == {queued["id"]: "cancelled", leased["id"]: "cancelled"}
    assert lease(client, people["agent2"]).status_code == 204


def test_cancel_takes_a_queued_or_expired_job_and_not_a_live_lease(client, session, make, inline):
    batch, people = issue(client, make, 4)
    a = print_(client, render(client, batch, people, first=1, last=2)["id"], people["op"]).json
    b = print_(client, render(client, batch, people, first=3, last=4)["id"], people["op"]).json
    held = lease(client, people["agent"]).json  # a
    r = client.post(f"{API}/print-jobs/{a['id']}/cancel", headers=people["op"])
    assert r.status_code == 409 and r.json["reason"] == "labels.print_job_state", r.json
    r = client.post(f"{API}/print-jobs/{b['id']}/cancel", headers=people["admin"])
    assert r.status_code == 200 and r.json["status"] == "cancelled"
    again = client.post(f"{API}/print-jobs/{b['id']}/cancel", headers=people["op"])
    assert again.status_code == 409 and again.json["reason"] == "labels.print_job_state"
    expire(session, a["id"])
    assert client.post(f"{API}/print-jobs/{a['id']}/cancel", headers=people["op"]).json["status"] == "cancelled"
    assert lease(client, people["agent2"]).status_code == 204
    # the agent that held it did print: its late 'printed' is recorded, a late 'failed' is not
    r = ack(client, a["id"], held["lease_token"], people["agent"], outcome="failed")
    assert r.status_code == 409 and r.json["reason"] == "labels.lease_invalid"
    r = ack(client, a["id"], held["lease_token"], people["agent"])
    assert r.status_code == 200 and r.json["status"] == "printed"
    assert labels(client, batch, people)[:2] == [(1, "printed", 1), (2, "printed", 1)]
    # and now the range counts as printed
    assert print_(client, a["render_job_id"], people["op"]).json["reason"] == "labels.already_printed"


def test_requeue_makes_one_recorded_reprint_of_a_failed_job(client, session, make, inline):
    batch, rendered, people = printed_world(client, make, 3)
    job = print_(client, rendered["id"], people["op"], copies=2, reason="两份").json
    r = client.post(f"{API}/print-jobs/{job['id']}/requeue", json={"reason": "卡纸"}, headers=people["op"])
    assert r.status_code == 409 and r.json["reason"] == "labels.print_job_state"  # queued, not failed
    token = lease(client, people["agent"]).json["lease_token"]
    ack(client, job["id"], token, people["agent"], outcome="failed", answer="lp: printer offline")
    for body in ({}, {"reason": ""}, {"reason": 5}):
        r = client.post(f"{API}/print-jobs/{job['id']}/requeue", json=body, headers=people["op"])
        assert r.status_code == 422 and "reason" in r.json["errors"]["json"]
    r = client.post(f"{API}/print-jobs/{job['id']}/requeue", json={"reason": "卡纸，前半张已出"}, headers=people["op"])
    assert r.status_code == 201, r.json
    new = r.json
    assert (new["kind"], new["status"], new["retry_of_id"], new["copies"], new["render_job_id"]) == \
        ("reprint", "queued", job["id"], 2, rendered["id"])
    reasons = session.scalars(select(LabelReprint.reason).where(LabelReprint.print_job_id == new["id"])).all()
    assert reasons == ["卡纸，前半张已出"]
    twice = client.post(f"{API}/print-jobs/{job['id']}/requeue", json={"reason": "again"}, headers=people["admin"])
    assert twice.status_code == 409 and str(new["id"]) in twice.json["errors"]["status"][0]
    assert client.get(f"{API}/print-jobs/{job['id']}", headers=people["op"]).json["status"] == "failed"
    assert lease(client, people["agent"]).json["id"] == new["id"]


@pytest.mark.parametrize("state", ["lost", "stolen", "voided"])
def test_a_range_with_voided_lost_or_stolen_labels_is_not_printed_again(client, session, make, inline, state):
    batch, rendered, people = printed_world(client, make, 4)
    url = f"{API}/batches/{batch['id']}"
    if state == "voided":  # (before its first print: an issued label can be voided, or reported lost or stolen)
        r = client.post(f"{url}/void", json={"first": 2, "last": 3, "reason": "损坏"}, headers=people["op"])
    else:
        r = client.post(f"{url}/report", json={"first": 2, "last": 3, "state": state}, headers=people["op"])
    assert r.status_code == 200, r.json
    for body in ({}, {"reprint": True, "reason": "卡纸"}):
        r = print_(client, rendered["id"], people["op"], **body)
        assert r.status_code == 409 and r.json["reason"] == "labels.state_conflict", r.json
        [message] = r.json["errors"]["render_id"]
        assert f"2 ({state}), 3 ({state})" in message and "1 (" not in message
    assert session.query(PrintJob).filter_by(batch_id=batch["id"]).count() == 0
    ok = render(client, batch, people, first=4, last=4)  # the range around them prints
    assert print_(client, ok["id"], people["op"]).status_code == 201


def test_a_failed_job_whose_labels_were_reported_stolen_since_is_not_requeued(client, make, inline):
    batch, rendered, people = printed_world(client, make, 3)
    job = print_(client, rendered["id"], people["op"]).json
    ack(client, job["id"], lease(client, people["agent"]).json["lease_token"], people["agent"], outcome="failed")
    r = client.post(f"{API}/batches/{batch['id']}/report", json={"first": 3, "last": 3, "state": "stolen"},
                    headers=people["op"])
    assert r.status_code == 200, r.json
    r = client.post(f"{API}/print-jobs/{job['id']}/requeue", json={"reason": "卡纸"}, headers=people["op"])
    assert r.status_code == 409 and "3 (stolen)" in r.json["errors"]["print_job_id"][0]
    assert lease(client, people["agent"]).status_code == 204


@pytest.mark.parametrize("how", ["lost", "stolen", "void"])
def test_reporting_labels_dead_cancels_the_open_jobs_that_would_print_them(client, make, inline, how):
    batch, people = issue(client, make, 6)
    first_half, second_half = render(client, batch, people, first=1, last=3), render(client, batch, people, first=4, last=6)
    queued = print_(client, first_half["id"], people["op"]).json
    other = print_(client, second_half["id"], people["op"]).json
    url = f"{API}/batches/{batch['id']}"
    body = {"first": 2, "last": 2, **({"reason": "损坏"} if how == "void" else {"state": how})}
    r = client.post(f"{url}/{'void' if how == 'void' else 'report'}", json=body, headers=people["op"])
    assert r.status_code == 200 and r.json["cancelled_print_jobs"] == [queued["id"]], r.json
    assert client.get(f"{API}/print-jobs/{queued['id']}", headers=people["op"]).json["status"] == "cancelled"
    job = lease(client, people["agent"]).json  # the agent gets only the job of live labels
    assert job["id"] == other["id"]
    assert lease(client, people["agent"]).status_code == 204


def test_a_leased_job_whose_labels_are_reported_stolen_is_not_printed_after_its_next_renewal(client, make, inline):
    batch, rendered, people = printed_world(client, make, 3)
    job = print_(client, rendered["id"], people["op"]).json
    token = lease(client, people["agent"]).json["lease_token"]
    r = client.post(f"{API}/batches/{batch['id']}/report", json={"first": 1, "last": 1, "state": "stolen"},
                    headers=people["op"])
    assert r.json["cancelled_print_jobs"] == [job["id"]]
    r = client.post(f"{API}/print-jobs/{job['id']}/renew", json={"lease_token": token}, headers=people["agent"])
    assert r.status_code == 409 and r.json["reason"] == "labels.lease_invalid"


def test_a_waiting_job_over_labels_that_died_without_cancelling_it_is_cancelled_at_lease(client, session, make,
                                                                                      inline):
    """A job queued before reports cancelled the jobs covering them (or labels changed by SQL): the
    agent never gets it."""
    from backend.labels.models import Label

    batch, people = issue(client, make, 4)
    dead_job = print_(client, render(client, batch, people, first=1, last=2)["id"], people["op"]).json
    live_job = print_(client, render(client, batch, people, first=3, last=4)["id"], people["op"]).json
    session.execute(update(Label).where(Label.batch_id == batch["id"], Label.serial == 2).values(state="stolen"))
    session.commit()
    assert lease(client, people["agent"]).json["id"] == live_job["id"]
    assert client.get(f"{API}/print-jobs/{dead_job['id']}", headers=people["op"]).json["status"] == "cancelled"
    assert lease(client, people["agent"]).status_code == 204


def test_activating_labels_cancels_no_print_job(client, make, inline):
    batch, rendered, people = printed_world(client, make, 3)
    first = print_(client, rendered["id"], people["op"]).json
    ack(client, first["id"], lease(client, people["agent"]).json["lease_token"], people["agent"])
    again = print_(client, rendered["id"], people["op"], reprint=True, reason="卡纸").json
    r = client.post(f"{API}/batches/{batch['id']}/activate", json={"first": 1, "last": 3, "pack_g": 250},
                    headers=people["op"])
    assert r.status_code == 200 and r.json["cancelled_print_jobs"] == []
    assert lease(client, people["agent"]).json["id"] == again["id"]


# --- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("printer", [None, "", "   ", 7, ["p"], {"a": 1}, "x" * 201, "bad\x00name", "two\nlines",
                                     "\ud800"])
def test_a_bad_printer_name_is_422_and_leases_nothing(client, session, make, inline, printer):
    batch, rendered, people = printed_world(client, make, 1)
    job = print_(client, rendered["id"], people["op"]).json
    body = json.dumps({"printer": printer})  # ASCII-escaped, so a lone surrogate travels as JSON sends it
    r = client.post(f"{API}/print-jobs/lease", data=body, headers={**people["agent"], "Content-Type": "application/json"})
    assert r.status_code == 422 and "printer" in r.json["errors"]["json"], r.json
    assert client.get(f"{API}/print-jobs/{job['id']}", headers=people["op"]).json["status"] == "queued"


def test_a_unicode_printer_of_200_characters_is_kept(client, make, inline):
    batch, rendered, people = printed_world(client, make, 1)
    print_(client, rendered["id"], people["op"])
    name = ("打印机🖨" * 50)[:200]
    r = lease(client, people["agent"], printer=name)
    assert r.status_code == 200 and r.json["printer"] == name


@pytest.mark.parametrize("body", [
    {"outcome": "printed", "printer_answer": "x"},
    {"lease_token": "t", "outcome": "maybe"},
    {"lease_token": "t", "outcome": None},
    {"lease_token": 123, "outcome": "printed"},
    {"lease_token": "t" * 201, "outcome": "printed"},
    {"lease_token": "t", "outcome": "printed", "printer_answer": "a" * 4001},
    {"lease_token": "t", "outcome": "printed", "printer_answer": 42},
    {"lease_token": "t", "outcome": "printed", "printer_answer": "nul\x00byte"},
])
def test_a_bad_ack_is_422_and_changes_nothing(client, make, inline, body):
    batch, rendered, people = printed_world(client, make, 1)
    job = print_(client, rendered["id"], people["op"]).json
    lease(client, people["agent"])
    r = client.post(f"{API}/print-jobs/{job['id']}/ack", json=body, headers=people["agent"])
    assert r.status_code == 422, r.json
    assert client.get(f"{API}/print-jobs/{job['id']}", headers=people["op"]).json["status"] == "leased"


def test_a_long_unicode_printer_answer_is_kept_whole(client, make, inline):
    batch, rendered, people = printed_world(client, make, 1)
    job = print_(client, rendered["id"], people["op"]).json
    token = lease(client, people["agent"]).json["lease_token"]
    answer = ("打印机回复：缺纸\n" * 500)[:4000]
    r = ack(client, job["id"], token, people["agent"], outcome="failed", answer=answer)
    assert r.status_code == 200 and r.json["printer_answer"] == answer.strip()


@pytest.mark.parametrize("body", [{"copies": 0}, {"copies": 11}, {"copies": "2"}, {"copies": 1.5}, {"copies": 10**30},
                                  {"copies": True}, {"reprint": "yes please"}, {"reason": "x" * 2001}])
def test_a_bad_print_request_is_422(client, session, make, inline, body):
    batch, rendered, people = printed_world(client, make, 1)
    r = print_(client, rendered["id"], people["op"], **body)
    assert r.status_code == 422, r.json
    assert set(r.json["errors"]["json"]) <= set(body) | {"reason"}
    assert session.query(PrintJob).filter_by(batch_id=batch["id"]).count() == 0


def test_odd_requests_get_clear_4xx(client, make, inline):
    batch, rendered, people = printed_world(client, make, 1)
    r = client.post(f"{API}/print-jobs/lease", data="printer=x", headers=people["agent"])
    assert r.status_code == 415
    r = client.post(f"{API}/print-jobs/lease", data="{not json", headers={**people["agent"], "Content-Type": "application/json"})
    assert r.status_code == 400
    assert client.get(f"{API}/print-jobs/99999999", headers=people["op"]).status_code == 404
    assert client.get(f"{API}/print-jobs/2147483648", headers=people["op"]).status_code == 404
    assert client.post(f"{API}/renders/2147483647/print", json={}, headers=people["op"]).status_code == 404
    r = client.get(f"{API}/print-jobs", query_string={"status": "lost"}, headers=people["op"])
    assert r.status_code == 422 and "status" in r.json["errors"]["query"]


# --- a retried print request (client_uuid) -----------------------------------------------------
def test_a_retried_reprint_with_its_client_uuid_answers_the_same_job_and_prints_once(client, session, make, inline):
    batch, rendered, people = printed_world(client, make, 3)
    first = print_(client, rendered["id"], people["op"], client_uuid=str(uuid.uuid4()))
    assert first.status_code == 201
    again = print_(client, rendered["id"], people["op"], client_uuid=str(uuid.uuid4()))
    assert again.status_code == 409 and again.json["reason"] == "labels.already_printed"  # a new request: refused
    ack(client, first.json["id"], lease(client, people["agent"]).json["lease_token"], people["agent"])
    key = str(uuid.uuid4())
    body = {"reprint": True, "reason": "卡纸", "client_uuid": key}
    made = print_(client, rendered["id"], people["op"], **body)
    assert made.status_code == 201 and made.json["kind"] == "reprint"
    for spelling in (key, key.upper()):  # the answer was lost: the agent's retry
        retry = print_(client, rendered["id"], people["op"], **{**body, "client_uuid": spelling})
        assert retry.status_code == 200 and retry.json["id"] == made.json["id"], retry.json
    assert session.query(PrintJob).filter_by(batch_id=batch["id"]).count() == 2
    assert session.query(LabelReprint).filter_by(batch_id=batch["id"]).count() == 1
    job = lease(client, people["agent"]).json
    assert job["id"] == made.json["id"]
    ack(client, job["id"], job["lease_token"], people["agent"])
    assert lease(client, people["agent"]).status_code == 204
    assert labels(client, batch, people) == [(1, "printed", 2), (2, "printed", 2), (3, "printed", 2)]
    # a retry after the job was printed still answers it, and prints nothing more
    late = print_(client, rendered["id"], people["op"], **body)
    assert late.status_code == 200 and late.json["status"] == "printed"
    assert lease(client, people["agent"]).status_code == 204


def test_a_first_print_retried_with_its_client_uuid_is_not_already_printed(client, make, inline):
    batch, rendered, people = printed_world(client, make, 2)
    key = str(uuid.uuid4())
    made = print_(client, rendered["id"], people["op"], client_uuid=key)
    retry = print_(client, rendered["id"], people["op"], client_uuid=key)
    assert (made.status_code, retry.status_code) == (201, 200) and retry.json["id"] == made.json["id"]


def test_a_client_uuid_reused_for_other_content_or_by_another_operator_is_409(client, session, make, inline):
    batch, rendered, people = printed_world(client, make, 2)
    key = str(uuid.uuid4())
    made = print_(client, rendered["id"], people["op"], reprint=True, reason="卡纸", client_uuid=key)
    assert made.status_code == 201
    for other in ({"reprint": True, "reason": "another reason"}, {"reprint": True, "reason": "卡纸", "copies": 2}):
        r = print_(client, rendered["id"], people["op"], **other, client_uuid=key)
        assert r.status_code == 409 and r.json["reason"] == "labels.uuid_conflict" and "client_uuid" in r.json["errors"]
    _, theirs, them = printed_world(client, make, 1)  # another operator's render, the same UUID
    r = print_(client, theirs["id"], them["op"], reprint=True, reason="卡纸", client_uuid=key)
    assert r.status_code == 409 and r.json["reason"] == "labels.uuid_conflict"
    assert "id" not in r.json  # an error body: nothing of the other operator's job
    r = print_(client, rendered["id"], them["op"], reprint=True, reason="卡纸", client_uuid=key)
    assert r.status_code == 404  # not a way to see another operator's job
    assert session.query(PrintJob).filter_by(batch_id=batch["id"]).count() == 1


@pytest.mark.parametrize("key", ["not-a-uuid", 12345, "", "𝟙" * 36, "x" * 10_000])
def test_a_bad_client_uuid_is_422_naming_it(client, session, make, inline, key):
    batch, rendered, people = printed_world(client, make, 1)
    r = print_(client, rendered["id"], people["op"], client_uuid=key)
    assert r.status_code == 422 and list(r.json["errors"]["json"]) == ["client_uuid"], r.json
    assert session.query(PrintJob).filter_by(batch_id=batch["id"]).count() == 0


# --- two agents at once, on real PostgreSQL ----------------------------------------------------
@pytest.mark.real_servers
def test_agents_leasing_at_once_never_get_the_same_job(app, committed_db, make):
    from backend.auth import service as auth_service
    from backend.labels.service import request_print, request_render
    from tests.factories import actor_of, label_batch, user_of

    session = committed_db.session
    op = make.operator(**LICENCE)
    operator = actor_of(session, make.token("operator", op))
    batch = label_batch(session, op, 4)
    rendered = request_render(session, operator, batch.id, None, None)
    session.commit()
    jobs.render_job(rendered.id)
    expected = [request_print(session, operator, rendered.id, 1, True, f"race {n}")[0].id for n in range(24)]
    session.commit()
    agent_token = make.token("agent", op)
    agent = user_of(session, agent_token)
    tokens = [agent_token] + [auth_service.issue_token(session, agent) for _ in range(5)]
    session.commit()
    headers = [make.auth(t) for t in tokens]
    for h in headers:  # first use writes last_used_at; do it before the race
        assert app.test_client().get("/api/v1/auth/me", headers=h).status_code == 200
    barrier = threading.Barrier(len(headers))
    leased: list[list[int]] = [[] for _ in headers]
    errors: list = []

    def agent_loop(i):
        client = app.test_client()
        barrier.wait()
        while True:
            r = client.post(f"{API}/print-jobs/lease", json={"printer": f"P{i}"}, headers=headers[i])
            if r.status_code == 204:
                return
            if r.status_code != 200:
                errors.append((r.status_code, r.json))
                return
            leased[i].append(r.json["id"])

    threads = [threading.Thread(target=agent_loop, args=(i,)) for i in range(len(headers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    every = [job_id for got in leased for job_id in got]
    assert sorted(every) == sorted(expected), "each job leased exactly once"
    assert sum(1 for got in leased if got) >= 2, "the agents did run side by side"
    session.expire_all()
    rows = session.execute(select(PrintJob.leases, PrintJob.status).where(PrintJob.id.in_(expected))).all()
    assert set(rows) == {(1, "leased")}


# --- a cancelled job its agent may have printed ------------------------------------------------
def test_a_cancelled_job_that_was_leased_still_covers_its_labels(client, session, make, inline):
    """Leased, lease run out, cancelled: its agent may be printing it, so a first print is refused."""
    batch, rendered, people = printed_world(client, make, 3)
    job = print_(client, rendered["id"], people["op"]).json
    lease(client, people["agent"])
    expire(session, job["id"])
    assert client.post(f"{API}/print-jobs/{job['id']}/cancel", headers=people["op"]).status_code == 200
    r = print_(client, rendered["id"], people["op"])
    assert r.status_code == 409 and r.json["reason"] == "labels.already_printed", r.json
    assert f"{job['id']} (cancelled)" in " ".join(r.json["errors"]["reprint"])
    assert session.query(PrintJob).filter_by(batch_id=batch["id"]).count() == 1
    # a cancelled job no agent ever held covers nothing (test_a_cancelled_job_does_not_cover_its_labels)
    r = print_(client, rendered["id"], people["op"], reprint=True, reason="the first job was cancelled")
    assert r.status_code == 201 and r.json["kind"] == "reprint"


def test_a_late_printed_ack_of_a_cancelled_job_after_another_print_is_recorded_as_a_reprint(client, session, make,
                                                                                            inline):
    """Job 1 leased, lease run out, cancelled; the labels printed again (a reprint, agent 2); then job 1's
    late 'printed' ack: it counts, and that second print is recorded too."""
    batch, rendered, people = printed_world(client, make, 3)
    first = print_(client, rendered["id"], people["op"]).json
    held = lease(client, people["agent"]).json
    expire(session, first["id"])
    assert client.post(f"{API}/print-jobs/{first['id']}/cancel", headers=people["op"]).status_code == 200
    again = print_(client, rendered["id"], people["op"], reprint=True, reason="job 1 cancelled, print it now").json
    second = lease(client, people["agent2"]).json
    assert second["id"] == again["id"]
    assert ack(client, again["id"], second["lease_token"], people["agent2"]).status_code == 200
    assert labels(client, batch, people) == [(s, "printed", 1) for s in range(1, 4)]
    late = ack(client, first["id"], held["lease_token"], people["agent"])
    assert late.status_code == 200 and late.json["status"] == "printed"
    assert labels(client, batch, people) == [(s, "printed", 2) for s in range(1, 4)]
    records = session.execute(select(LabelReprint.print_job_id, LabelReprint.first_serial, LabelReprint.last_serial,
                                     LabelReprint.reason).where(LabelReprint.batch_id == batch["id"])
                              .order_by(LabelReprint.id)).all()
    assert records == [(again["id"], 1, 3, "job 1 cancelled, print it now"),
                       (first["id"], 1, 3, f"late acknowledgement of cancelled print job {first['id']}: printed again")]
    from tests.factories import user_of

    agent_user = user_of(session, people["agent"]["Authorization"].split()[1]).id
    assert session.scalar(select(LabelReprint.requested_by).where(LabelReprint.print_job_id == first["id"])) == agent_user


def test_a_late_printed_ack_of_a_cancelled_job_nobody_reprinted_is_a_first_print(client, session, make, inline):
    batch, rendered, people = printed_world(client, make, 2)
    job = print_(client, rendered["id"], people["op"]).json
    held = lease(client, people["agent"]).json
    expire(session, job["id"])
    client.post(f"{API}/print-jobs/{job['id']}/cancel", headers=people["op"])
    assert ack(client, job["id"], held["lease_token"], people["agent"]).status_code == 200
    assert labels(client, batch, people) == [(1, "printed", 1), (2, "printed", 1)]
    assert session.scalars(select(LabelReprint).where(LabelReprint.batch_id == batch["id"])).all() == []


# --- renewing a lease right before printing ----------------------------------------------------
def renew(client, job_id, token, headers):
    return client.post(f"{API}/print-jobs/{job_id}/renew", json={"lease_token": token}, headers=headers)


def test_renew_extends_a_held_lease_and_refuses_a_token_that_no_longer_holds(app, client, session, make, inline,
                                                                              monkeypatch):
    monkeypatch.setattr(app.config["CHENPI"], "PRINT_LEASE_SECONDS", 600)
    batch, rendered, people = printed_world(client, make, 2)
    job = print_(client, rendered["id"], people["op"]).json
    held = lease(client, people["agent"]).json
    assert 590 < held["lease_seconds_left"] <= 600
    session.execute(update(PrintJob).where(PrintJob.id == job["id"])
                    .values(lease_expires_at=utcnow() + timedelta(seconds=30)))
    session.commit()
    r = renew(client, job["id"], held["lease_token"], people["agent"])
    assert r.status_code == 200, r.json
    assert r.json["status"] == "leased" and r.json["lease_token"] == held["lease_token"]
    assert 590 < r.json["lease_seconds_left"] <= 600
    session.expire_all()
    assert as_utc(session.get(PrintJob, job["id"]).lease_expires_at) - utcnow() > timedelta(seconds=590)
    # a lease that ran out but nobody took still holds; the renewal makes it live again
    expire(session, job["id"])
    r = renew(client, job["id"], held["lease_token"], people["agent"])
    assert r.status_code == 200 and r.json["lease_seconds_left"] > 590
    assert lease(client, people["agent2"]).status_code == 204, "a renewed lease is not handed out"
    # a wrong token, another operator's agent, a lease taken by another agent: refused, nothing changes
    for token in ("made-up-token", "令牌", " "):
        r = renew(client, job["id"], token, people["agent"])
        assert r.status_code == 409 and r.json["reason"] == "labels.lease_invalid" and "lease_token" in r.json["errors"]
    other_agent = make.auth(make.token("agent", make.operator(**LICENCE)))
    r = renew(client, job["id"], held["lease_token"], other_agent)
    assert r.status_code == 404 and r.json["reason"] == "labels.not_found"
    expire(session, job["id"])
    taken = lease(client, people["agent2"]).json
    r = renew(client, job["id"], held["lease_token"], people["agent"])
    assert r.status_code == 409 and r.json["reason"] == "labels.lease_invalid"
    assert "leased again" in r.json["errors"]["lease_token"][0]
    assert renew(client, job["id"], taken["lease_token"], people["agent2"]).status_code == 200
    # acknowledged: the token no longer holds
    assert ack(client, job["id"], taken["lease_token"], people["agent2"]).status_code == 200
    r = renew(client, job["id"], taken["lease_token"], people["agent2"])
    assert r.status_code == 409 and r.json["reason"] == "labels.lease_invalid" and "printed" in r.json["errors"]["lease_token"][0]
    assert labels(client, batch, people) == [(1, "printed", 1), (2, "printed", 1)]


def test_renew_of_a_queued_or_cancelled_job_and_bad_bodies_are_refused(client, session, make, inline):
    batch, rendered, people = printed_world(client, make, 1)
    job = print_(client, rendered["id"], people["op"]).json
    r = renew(client, job["id"], "anything", people["agent"])  # queued: never leased
    assert r.status_code == 409 and r.json["reason"] == "labels.lease_invalid"
    held = lease(client, people["agent"]).json
    for body in ({}, {"lease_token": ""}, {"lease_token": 5}, {"lease_token": "t" * 201}, {"lease_token": None}):
        r = client.post(f"{API}/print-jobs/{job['id']}/renew", json=body, headers=people["agent"])
        assert r.status_code == 422 and "lease_token" in r.json["errors"]["json"], r.json
    r = renew(client, job["id"], held["lease_token"], people["op"])  # only agents renew
    assert r.status_code == 403
    assert renew(client, 2147483648, held["lease_token"], people["agent"]).status_code == 404
    expire(session, job["id"])
    assert client.post(f"{API}/print-jobs/{job['id']}/cancel", headers=people["op"]).status_code == 200
    r = renew(client, job["id"], held["lease_token"], people["agent"])
    assert r.status_code == 409 and r.json["reason"] == "labels.lease_invalid" and "cancelled" in r.json["errors"]["lease_token"][0]
