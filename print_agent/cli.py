"""`chenpi-print-agent` / `python -m print_agent`: settings, logging, the state directory's lock,
then the agent's loop.

Exit status: 0 stopped by SIGTERM/SIGINT or `--once` done; 1 an unexpected error (logged); 2 bad
settings, no lp on PATH or an unwritable spool directory; 3 the API refused the
token (401/403); 4 the API refused the lease for another reason (wrong URL, bad printer name);
5 the state directory is unusable or another agent holds it."""
from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import shutil
import sys
from pathlib import Path

from .agent import Agent, current_job, log
from .api import Api, Rejected, Unauthorized
from .journal import Journal
from .settings import ConfigError, Settings, load

EXIT_CONFIG, EXIT_AUTH, EXIT_REJECTED, EXIT_STATE = 2, 3, 4, 5
LOG_MAX_BYTES, LOG_BACKUPS = 5 * 1024 * 1024, 5


class _JobFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job = current_job.get()
        return True


def setup_logging(log_file: Path | None) -> None:
    formatter = logging.Formatter("%(asctime)s %(levelname)s job=%(job)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    handlers: list[logging.Handler] = []
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(log_file, maxBytes=LOG_MAX_BYTES,
                                                             backupCount=LOG_BACKUPS, encoding="utf-8"))
        errors = logging.StreamHandler(sys.stderr)  # fatal problems also reach whoever started the agent
        errors.setLevel(logging.ERROR)
        handlers.append(errors)
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_JobFilter())
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _lock_state_dir(state_dir: Path):
    """Hold an exclusive lock on STATE_DIR/agent.lock for the process's life: two agents sharing one
    journal could each print a job the other is printing. The kernel drops it when we die."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fh = open(state_dir / "agent.lock", "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def _printer_ready(settings: Settings) -> str | None:
    """Why the agent could not print anything it leased (checked before leasing), or None."""
    if settings.output_dir is None:
        if shutil.which("lp") is None:
            return "lp is not on PATH: install the CUPS client (Debian: cups-client) or give --output-dir"
        return None
    try:
        settings.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the spool directory {settings.output_dir}: {exc.strerror or exc}"
    if not os.access(settings.output_dir, os.W_OK | os.X_OK):
        return f"the spool directory {settings.output_dir} is not writable"
    return None


def run(settings: Settings) -> int:
    problem = _printer_ready(settings)
    if problem:
        log.error("%s", problem)
        return EXIT_CONFIG
    try:
        lock = _lock_state_dir(settings.state_dir)
    except BlockingIOError:
        log.error("another print agent is running with the state directory %s; stop it first "
                  "(or give each printer its own --state-dir)", settings.state_dir)
        return EXIT_STATE
    except OSError as exc:
        log.error("cannot use the state directory %s: %s", settings.state_dir, exc.strerror or exc)
        return EXIT_STATE
    api = Api(settings.api, settings.token, settings.timeout)
    try:
        downloads = settings.state_dir / "downloads"
        downloads.mkdir(exist_ok=True)
        for stale in downloads.glob("job-*.pdf"):  # left by a crash; downloaded again if leased again
            stale.unlink(missing_ok=True)
        journal = Journal(settings.state_dir / "journal.jsonl")
        if journal.skipped:
            log.warning("journal: skipped %d unreadable line(s) (a torn write?)", journal.skipped)
        agent = Agent(settings, api, journal, downloads)
        agent.install_signal_handlers()
        try:
            return agent.run()
        except Unauthorized as exc:
            log.error("the API refused the token (%s): check --token / CHENPI_AGENT_TOKEN; it must be the token "
                      "of an `agent` user of this operator, not revoked", exc)
            return EXIT_AUTH
        except Rejected as exc:
            log.error("the API refused the agent: %s; check --api and --printer", exc)
            return EXIT_REJECTED
        except Exception:  # a bug: say so in the log (the journal keeps what was printed)
            log.exception("unexpected error; stopping")
            return 1
        finally:
            journal.close()
    except OSError as exc:
        log.error("cannot use the state directory %s: %s", settings.state_dir, exc)
        return EXIT_STATE
    finally:
        api.close()
        lock.close()


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load(argv)
    except ConfigError as exc:
        print(f"chenpi-print-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        setup_logging(settings.log_file)
    except OSError as exc:
        print(f"chenpi-print-agent: cannot write the log file {settings.log_file}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_CONFIG
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
