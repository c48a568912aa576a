"""Handing a verified PDF to the printer: CUPS `lp`, or a spool directory (--output-dir)."""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ANSWER_MAX = 2000  # characters of the printer's answer sent back to the server


@dataclass
class Outcome:
    printed: bool
    answer: str


def clean_answer(text: str) -> str:
    """The answer as the server takes it: control characters (bar line breaks and tabs) replaced,
    at most ANSWER_MAX characters, never empty."""
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]", "?", text).strip()
    text = text if len(text) <= ANSWER_MAX else text[: ANSWER_MAX - 1] + "…"
    return text or "(no answer)"


def print_with_lp(printer: str, copies: int, title: str, pdf: Path, timeout: float) -> Outcome:
    """`lp -d PRINTER -n COPIES -t TITLE FILE`; its stdout (exit 0) or stderr (otherwise) is the answer.

    lp runs in a session of its own, so a Ctrl-C or a SIGTERM sent to the agent's process group
    does not kill it half-way: the agent waits for it and acknowledges what it said."""
    argv = ["lp", "-d", printer, "-n", str(copies), "-t", title, str(pdf)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    except FileNotFoundError:
        return Outcome(False, "lp not found on PATH: install the CUPS client (Debian: cups-client) or run the "
                              "agent with --output-dir")
    except PermissionError as exc:
        return Outcome(False, f"lp cannot be run: {exc}")
    except subprocess.TimeoutExpired:
        return Outcome(False, f"lp did not finish within {timeout:g} s and was stopped; check the printer and the "
                              "printed sheets before asking for a reprint")
    out, err = done.stdout.strip(), done.stderr.strip()
    if done.returncode == 0:
        return Outcome(True, clean_answer(out or "lp accepted the job"))
    return Outcome(False, clean_answer(err or out or f"lp exited with status {done.returncode}"))


def write_to_spool(directory: Path, name: str, pdf: Path) -> Outcome:
    """Copy the PDF into the spool directory atomically: a hidden temp file, fsync, rename, fsync
    the directory. A program watching the directory never sees a half-written file."""
    target = directory / name
    tmp = directory / f".{name}.part"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(pdf, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(1024 * 1024):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return Outcome(False, f"cannot write {target}: {exc.strerror or exc}")
    return Outcome(True, f"written to {target}")
