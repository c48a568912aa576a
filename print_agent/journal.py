"""The journal that keeps the agent from printing a job twice.

One JSON object a line in `STATE_DIR/journal.jsonl`, each written and fsynced before the agent
goes on:

    {"job": 7, "sha256": "…", "event": "sending", "at": "…"}                 before lp is called
    {"job": 7, "sha256": "…", "event": "sent", "answer": "request id is …"}  lp returned 0
    {"job": 7, "sha256": "…", "event": "failed", "answer": "lp: …"}           lp failed
    {"job": 7, "sha256": "…", "event": "acked", "outcome": "printed", "answer": "…"}

A job is known by its id and its PDF's SHA-256 (a server restored from a backup may hand out an
id again, never with the same PDF). A torn last line (the machine lost power mid-write) is
skipped. On start the journal is compacted to the last line of each job."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

EVENTS = ("sending", "sent", "failed", "acked")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self.last: dict[tuple[int, str], dict] = {}
        self.skipped = 0
        if path.exists():
            with open(path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        entry = json.loads(line)
                        key = (int(entry["job"]), str(entry["sha256"]))
                        if entry["event"] not in EVENTS:
                            raise ValueError(entry["event"])
                    except (ValueError, KeyError, TypeError):
                        self.skipped += 1
                        continue
                    self.last[key] = entry
        self._compact()
        self._fh = open(path, "a", encoding="utf-8")

    def _compact(self) -> None:
        """Rewrite the journal with the last line of each job (atomically: temp file, fsync, rename)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for entry in self.last.values():
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def state(self, job_id: int, sha256: str) -> dict | None:
        """The last thing the journal says about this job, or None if it never reached lp."""
        return self.last.get((job_id, sha256))

    def ids_with_other_pdf(self, job_id: int, sha256: str) -> list[str]:
        return [sha for (jid, sha) in self.last if jid == job_id and sha != sha256]

    def record(self, job_id: int, sha256: str, event: str, **fields) -> dict:
        assert event in EVENTS, event
        entry = {"job": job_id, "sha256": sha256, "event": event,
                 "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **fields}
        self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.last[(job_id, sha256)] = entry
        return entry

    def close(self) -> None:
        self._fh.close()
