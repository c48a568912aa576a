"""Warming the resolver's label view cache at activation (backend/scans/warming.py): after an
activation commits, a job on the `low` queue stores the activated labels' views, tagged as a
reader would, so their first scans read no database — and a change committed later still shows
at once."""
from __future__ import annotations

from sqlalchemy import select

from backend.extensions import redis
from backend.labels.models import Label
from backend.scans import viewcache, warming
from tests.factories import actor_of
from tests.scans_support import activated_codes
from tests.test_scans_viewcache import batch_of, reads, scan


def run_low_jobs() -> int:
    """Run what the activation queued on `low` (the embedded mode already ran it in-process)."""
    queue = redis.queue("low")
    if redis.embedded:
        return 0
    jobs = queue.jobs
    for job in jobs:
        job.perform()
    queue.empty()
    return len(jobs)


def activate(session, make, code, first=None, last=None):
    from backend.labels.service.ranges import change_range

    change_range(session, actor_of(session, make.token("admin")), batch_of(session, code), "activate", first, last)
    session.commit()
    run_low_jobs()


def test_activated_labels_are_scanned_first_without_the_database(client, make, session):
    codes = activated_codes(make, session, 4, state="printed")
    run_low_jobs()  # whatever making the codes queued
    activate(session, make, codes[0], 1, 3)
    for code in codes[:3]:
        assert 3600 < redis.client.ttl(viewcache.view_key(code)) <= warming.warm_ttl()
    assert not redis.client.exists(viewcache.view_key(codes[3]))  # outside the activated range
    answer, n = reads(client, codes[1])
    assert n == 0 and answer["verdict"] == "genuine" and answer["label"]["state"] == "activated"
    assert answer["label"]["lot"]  # the lot bound at activation


def test_a_warmed_view_goes_stale_like_any_other(client, make, session):
    from backend.labels.service.ranges import change_range

    codes = activated_codes(make, session, 2, state="printed")
    activate(session, make, codes[0])
    assert reads(client, codes[0])[1] == 0
    change_range(session, actor_of(session, make.token("admin")), batch_of(session, codes[0]), "void", 2, 2)
    session.commit()
    assert scan(client, codes[1])["verdict"] == "voided"


def test_a_change_committed_while_the_job_reads_leaves_entries_that_never_match(client, make, session, monkeypatch):
    codes = activated_codes(make, session, 2, state="printed")
    real = warming._values

    def racing(s, batch_id, first, last):  # the batch changes after the job read its counters
        redis.client.incr(viewcache.dep_key("b", batch_id))
        return real(s, batch_id, first, last)

    monkeypatch.setattr(warming, "_values", racing)
    activate(session, make, codes[0])
    assert redis.client.exists(viewcache.view_key(codes[0]))
    answer, n = reads(client, codes[0])
    assert n == 1 and answer["verdict"] == "genuine"


def test_warming_stores_what_a_reader_would(make, session):
    """The warmed entry is the one a reader stores after two reads of the database."""
    from backend.scans.service import find_label_reported

    codes = activated_codes(make, session, 1)
    batch_id = batch_of(session, codes[0])
    assert warming.warm(session, redis.client, batch_id, 1, 1, ttl=100) == 1
    warmed = redis.client.get(viewcache.view_key(codes[0]))
    redis.client.delete(viewcache.view_key(codes[0]))
    for _ in range(2):
        viewcache.through(redis.client, codes[0], lambda: find_label_reported(session, codes[0]))
    assert redis.client.get(viewcache.view_key(codes[0])) == warmed


def test_a_code_s_counter_lives_as_long_as_its_warmed_view(make, session):
    [code] = activated_codes(make, session, 1)
    session.scalar(select(Label).where(Label.code == code)).state = "stolen"  # a bump: the counter exists
    session.commit()
    assert redis.client.ttl(viewcache.gen_key(code)) > warming.warm_ttl()
