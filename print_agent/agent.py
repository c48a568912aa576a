"""The agent's loop: lease → download → verify SHA-256 → renew the lease → print (lp or spool) →
acknowledge.

Never printing twice rests on the journal (journal.py): "sending" is on disk before lp is called
and "sent"/"failed" after it returns, so a job leased again after a crash or a lost ack is
answered from the journal, never printed again. A lease the agent gives up on (a signal before
printing, the API gone mid-download) simply expires on the server and the job is leased again.

And on the lease: a download that outlasts it (the API down, backing off) may see the job leased
and printed by another agent of the operator meanwhile. So right before printing the agent renews
the lease; if the server refuses (the token no longer holds), or the renewed lease has less than
a safety margin left by the agent's monotonic clock, it does not print and writes nothing to the
journal: the job is left to whoever leases it next. While lp runs, the lease is renewed every
third of its length, so a slow lp does not let it run out either.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import signal
import threading
import time
from pathlib import Path

import tenacity

from .api import Api, Rejected, Unauthorized, Unavailable
from .journal import Journal
from .printing import Outcome, clean_answer, print_with_lp, write_to_spool
from .settings import Settings

log = logging.getLogger("print_agent")
current_job: contextvars.ContextVar[str] = contextvars.ContextVar("current_job", default="-")

INTERRUPTED = ("interrupted while sending to the printer; check the printed sheets before asking for a reprint")
BACKOFF_MIN = 0.5  # seconds before the first retry; doubled each time (plus jitter) up to backoff_max


def safety_margin(lease_seconds: float) -> float:
    """Lease time that must be left to start printing: max(10 s, 10 % of the lease), but at most
    half of it (a lease of a few seconds, as in tests, still lets a job through)."""
    return min(max(10.0, 0.1 * lease_seconds), 0.5 * lease_seconds)


class Stopped(Exception):
    """SIGTERM/SIGINT arrived while the agent was waiting; it stops without starting anything new."""


class BadJob(Exception):
    """The server's job is unusable (missing or malformed fields)."""


@contextlib.contextmanager
def job_context(job_id):
    token = current_job.set(str(job_id))
    try:
        yield
    finally:
        current_job.reset(token)


def _check_job(job: dict) -> dict:
    """The fields the agent relies on, checked; BadJob names what is wrong."""
    problems = []
    if not isinstance(job.get("copies"), int) or isinstance(job.get("copies"), bool) or not 1 <= job["copies"] <= 10000:
        problems.append(f"copies {job.get('copies')!r}")
    if not isinstance(job.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", job["sha256"]):
        problems.append(f"sha256 {job.get('sha256')!r}")
    if not isinstance(job.get("size"), int) or isinstance(job.get("size"), bool) or job["size"] <= 0:
        problems.append(f"size {job.get('size')!r}")
    if not isinstance(job.get("pdf_url"), str) or not job["pdf_url"]:
        problems.append(f"pdf_url {job.get('pdf_url')!r}")
    if problems:
        raise BadJob("the server sent a job with bad fields: " + ", ".join(problems))
    kind = job.get("kind") if isinstance(job.get("kind"), str) and re.fullmatch(r"[a-z]{1,20}", job["kind"]) else "print"
    return {**job, "kind": kind}


class Agent:
    def __init__(self, settings: Settings, api: Api, journal: Journal, downloads: Path):
        self.settings = settings
        self.api = api
        self.journal = journal
        self.downloads = downloads
        self.stopping = threading.Event()
        self._interruptible = False  # True while waiting on the network/sleeping: a signal aborts the wait

    # --- signals -------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        if self.stopping.is_set():
            log.warning("%s again: still finishing the current step", name)
        else:
            log.info("%s: stopping after the current step", name)
        self.stopping.set()
        if self._interruptible:
            self._interruptible = False
            raise Stopped(name)

    @contextlib.contextmanager
    def interruptible(self):
        """A signal during this block aborts it at once (only used around waits that change nothing)."""
        if self.stopping.is_set():
            raise Stopped("stopping")
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def _sleep(self, seconds: float) -> None:
        if self.stopping.wait(seconds):
            raise Stopped("stopping")

    def _retrying(self, fn, what: str, *, interruptible: bool):
        """fn() retried with capped exponential backoff and jitter while the API is unavailable."""
        def before_sleep(state: tenacity.RetryCallState) -> None:
            log.warning("%s failed (attempt %d): %s; retrying in %.1f s", what, state.attempt_number,
                        state.outcome.exception(), state.next_action.sleep if state.next_action else 0)

        def attempt():
            if interruptible:
                with self.interruptible():
                    return fn()
            return fn()

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Unavailable),
            wait=tenacity.wait_exponential_jitter(initial=BACKOFF_MIN, max=self.settings.backoff_max,
                                                  jitter=BACKOFF_MIN),
            sleep=self._sleep, before_sleep=before_sleep, reraise=True)
        return retrying(attempt)

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> int:
        s = self.settings
        log.info("agent started: api %s, printer %s, %s, state %s", s.api, s.printer,
                 f"spool directory {s.output_dir}" if s.output_dir else "printing with lp", s.state_dir)
        try:
            while not self.stopping.is_set():
                job = self._retrying(lambda: self.api.lease(s.printer), "lease", interruptible=True)
                if job is None:
                    if s.once:
                        log.info("no print job waiting")
                        return 0
                    self._sleep(s.poll)
                    continue
                self.handle(job)
                if s.once:
                    return 0
        except Stopped:
            pass
        log.info("stopped")
        return 0

    def handle(self, job: dict) -> None:
        job_id, lease_token = job.get("id"), job.get("lease_token")
        with job_context(job_id):
            if not isinstance(job_id, int) or not isinstance(lease_token, str) or not lease_token:
                log.error("the server sent a job without id or lease_token (%r); leaving it to its lease expiry",
                          {k: job.get(k) for k in ("id", "lease_token")})
                return
            try:
                job = _check_job(job)
            except BadJob as exc:
                log.error("%s", exc)
                self.ack(job, Outcome(False, str(exc)))
                return
            log.info("leased %s job: serials %s-%s, %s copies, %s bytes, lease until %s", job["kind"],
                     job.get("first_serial"), job.get("last_serial"), job["copies"], job["size"],
                     job.get("lease_expires_at"))
            known = self.journal.state(job_id, job["sha256"])
            if known is not None:
                self.answer_from_journal(job, known)
                return
            others = self.journal.ids_with_other_pdf(job_id, job["sha256"])
            if others:
                log.warning("the journal knows job %s with another PDF (%s…): the server's ids were reset? "
                            "treating this as a new job", job_id, others[0][:12])
            pdf = self.downloads / f"job-{job_id}.pdf"
            try:
                verified = self.fetch(job, pdf)
                if verified is not None:
                    self.ack(job, verified)
                    return
                if self.stopping.is_set():
                    log.info("stopping before printing; the lease expires and the job will be leased again")
                    return
                job = self.renew_before_printing(job)
                if job is None:
                    return
                outcome = self.send_to_printer(job, pdf)
                self.ack(job, outcome, after_lp=True)
            finally:
                pdf.unlink(missing_ok=True)

    def fetch(self, job: dict, pdf: Path) -> Outcome | None:
        """Download and verify; None when the PDF is exactly the job's, else the failure to ack."""
        try:
            got = self._retrying(lambda: self.api.download(job["pdf_url"], pdf, job["size"]), "download",
                                 interruptible=True)
        except Rejected as exc:
            log.error("cannot download the PDF: %s", exc)
            return Outcome(False, f"cannot download the PDF: {exc}")
        if not got.complete or got.size != job["size"] or got.sha256 != job["sha256"]:
            detail = (f"more than the job's {job['size']} bytes" if not got.complete
                      else f"{got.size} bytes with SHA-256 {got.sha256}")
            message = (f"downloaded PDF does not match the job (expected {job['size']} bytes with SHA-256 "
                       f"{job['sha256']}, got {detail}); not printed")
            log.error("%s", message)
            return Outcome(False, message)
        log.info("downloaded and verified %s bytes, SHA-256 %s", got.size, got.sha256)
        return None

    def renew_before_printing(self, job: dict) -> dict | None:
        """The job with its lease renewed and enough of it left to print, or None: do not print.

        The server refuses the renewal once our token no longer holds (the lease ran out and another
        agent leased the job, or it was cancelled); a renewal answered so late that less than the
        safety margin is left (counted on our monotonic clock from before the request) is not
        trusted either. Nothing is written to the journal, so the job is simply leased again."""
        try:
            renewed = self._retrying(lambda: self.api.renew(job["id"], job["lease_token"]), "renew",
                                     interruptible=True)
        except Rejected as exc:
            log.warning("the lease is no longer ours (%s): not printing; the job is left to whoever leases it "
                        "next", exc)
            return None
        # the lease's length: what a fresh lease or renewal had left when the server answered
        known = [x for x in (job.get("_lease_seconds"), renewed.get("_lease_seconds")) if x is not None]
        job = {**job, "_lease_seconds": max(known) if known else None,
               "_lease_deadline": renewed.get("_lease_deadline")}
        if job["_lease_deadline"] is None or job["_lease_seconds"] is None:
            log.warning("lease renewed, but the server did not say how long it lasts; printing")
            return job
        left, margin = job["_lease_deadline"] - time.monotonic(), safety_margin(job["_lease_seconds"])
        if left < margin:
            log.warning("only %.1f s of the renewed lease are left (printing needs %.1f s): not printing; the job "
                        "will be leased again", left, margin)
            return None
        return job

    @contextlib.contextmanager
    def lease_kept(self, job: dict):
        """Renew the lease every third of its length while the block (lp) runs, in a thread."""
        seconds = job.get("_lease_seconds")
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            yield
            return
        done = threading.Event()
        context = contextvars.copy_context()

        def keep() -> None:
            while not done.wait(max(0.5, seconds / 3)):
                try:
                    self.api.renew(job["id"], job["lease_token"])
                except Rejected as exc:
                    log.error("the lease was lost while the job was being printed (%s): another agent may print "
                              "job %s too; check the printed sheets", exc, job["id"])
                    return
                except Exception as exc:  # the API is down: try again at the next turn
                    log.warning("renewing the lease while printing failed: %s", exc)

        thread = threading.Thread(target=context.run, args=(keep,), name="lease-keeper", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(self.settings.timeout + 5)

    def send_to_printer(self, job: dict, pdf: Path) -> Outcome:
        s = self.settings
        job_id, sha = job["id"], job["sha256"]
        self.journal.record(job_id, sha, "sending")
        with self.lease_kept(job):
            if s.output_dir:
                outcome = write_to_spool(s.output_dir, f"job-{job_id}-{job['kind']}.pdf", pdf)
                if outcome.printed and job["copies"] > 1:
                    outcome.answer += f" ({job['copies']} copies asked for: the spool's printer makes them)"
            else:
                outcome = print_with_lp(s.printer, job["copies"], f"chenpi job {job_id}", pdf, s.lp_timeout)
        self.journal.record(job_id, sha, "sent" if outcome.printed else "failed", answer=outcome.answer)
        (log.info if outcome.printed else log.error)("%s: %s", "sent to the printer" if outcome.printed
                                                     else "printing failed", outcome.answer)
        return outcome

    def answer_from_journal(self, job: dict, known: dict) -> None:
        event = known["event"]
        if event == "sending":
            outcome = Outcome(False, INTERRUPTED)
        elif event == "sent":
            outcome = Outcome(True, known.get("answer") or "printed")
        elif event == "failed":
            outcome = Outcome(False, known.get("answer") or "printing failed")
        else:  # acked before, and yet leased again: answer the same
            outcome = Outcome(known.get("outcome") == "printed", known.get("answer") or "")
        log.warning("job already in the journal (%s at %s): not printing it again; acknowledging %s",
                    event, known.get("at"), "printed" if outcome.printed else "failed")
        self.ack(job, outcome, after_lp=True)  # the journal knows only jobs handed to lp

    def ack(self, job: dict, outcome: Outcome, *, after_lp: bool = False) -> None:
        """Acknowledge the outcome. `after_lp`: our lp (or spool) was given the job, so a server that
        says another ack came first means the labels may have been printed twice."""
        result = "printed" if outcome.printed else "failed"
        job_id, sha, answer = job["id"], job.get("sha256"), clean_answer(outcome.answer)
        attempts = 0

        def send():
            nonlocal attempts
            attempts += 1
            return self.api.ack(job_id, job["lease_token"], result, answer)

        try:
            self._retrying(send, "ack", interruptible=False)
        except Stopped:
            log.warning("stopping before the ack reached the server; the journal will answer the job when it is "
                        "leased again")
            raise
        except Unauthorized:
            raise
        except Rejected as exc:
            if exc.reason == "labels.already_printed" and after_lp:
                log.error("job %s was acknowledged as printed by another lease, and we sent it to the printer too: "
                          "serials %s-%s may have been printed twice; check the sheets and record a reprint (%s)%s",
                          job_id, job.get("first_serial"), job.get("last_serial"), exc,
                          " (an earlier attempt of this ack failed; if it reached the server, the ack was ours and "
                          "nothing was printed twice)" if attempts > 1 else "")
            elif exc.reason == "labels.already_printed":
                log.info("the server already had this job's ack: %s", exc)
            elif exc.reason == "labels.lease_invalid":
                log.warning("lease lost before the ack (%s); the journal will answer the job when it is leased "
                            "again", exc)
                return
            else:
                log.error("the server refused the ack: %s", exc)
                return
        else:
            log.info("acknowledged %s", result)
        if isinstance(sha, str) and self.journal.state(job_id, sha) is not None:
            self.journal.record(job_id, sha, "acked", outcome=result, answer=answer)
