"""The RQ worker `chenpi worker` runs: RQ's own Worker with two additions.

- The work horse (RQ forks one per job) starts with a fresh database connection pool: pooled
  connections copied from the worker must never be used by two processes.
- On the `render` queue, RQ's periodic maintenance also hands render jobs abandoned by a dead
  worker back to the queue (`labels.service.requeue_abandoned`). RQ's own recovery is too late for
  that: a dead worker's job leaves RQ's started registry only when its entry expires (90 s) and
  the next registry cleanup runs (every 10 minutes). An idle worker wakes from its queue wait
  every half RENDER_STALE_SECONDS to run maintenance; a busy one runs it between jobs.
"""
from __future__ import annotations

import logging

from rq import Worker

log = logging.getLogger("chenpi.worker")


class AppWorker(Worker):
    """Needs the app context (`chenpi` pushes it) for the database and the settings."""

    def __init__(self, *args, render_stale_seconds: float | None = None, **kwargs):
        self.render_stale_seconds = render_stale_seconds
        if render_stale_seconds is not None:
            beat = max(1, int(render_stale_seconds // 2))
            # the queue wait (worker_ttl - 15) ends every `beat` seconds, so maintenance can run
            kwargs.setdefault("maintenance_interval", beat)
            kwargs.setdefault("worker_ttl", beat + 15)
        super().__init__(*args, **kwargs)

    def run_maintenance_tasks(self):
        super().run_maintenance_tasks()
        if self.render_stale_seconds is not None:
            self.requeue_abandoned_renders()

    def requeue_abandoned_renders(self) -> list[int]:
        from .extensions import db
        from .labels.service import requeue_abandoned

        try:
            again = requeue_abandoned(db.session, self.render_stale_seconds)
        except Exception:  # noqa: BLE001 - the database may be down for a moment: try at the next round
            log.exception("could not look for abandoned render jobs")
            return []
        finally:
            db.session.remove()  # no connection or transaction stays open in the worker between rounds
        if again:
            log.warning("re-enqueued label render jobs abandoned by a dead worker: %s", again)
        return again

    def main_work_horse(self, job, queue):
        from .extensions import db

        for engine in db.engines.values():
            engine.dispose(close=False)  # the worker's pooled connections stay the worker's
        super().main_work_horse(job, queue)
