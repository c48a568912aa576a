"""The scratch-off PIN (the optional second layer of a label): which batches have one, and its
verification, once.

A batch has PINs when its template has a `pin` box; each label's PIN is `codes.make_pin` of the
batch's key, id and the label's serial, derived again whenever it is needed (render, check), so
nothing secret is stored. What is stored is the first correct verification (`pin_verified_at`,
and a keyed hash of the device, as the scan log keeps it) and how many correct ones followed.
"""
from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ...timeutil import as_utc, utcnow
from .. import codes, templates
from ..models import Label
from .keys import key_for

_has_pin: dict[str, tuple[float, object, bool]] = {}  # slug -> (checked at, (path, mtime_ns), has a pin box)
_has_pin_lock = threading.Lock()
#: how long an answer stands before the template file is looked at again (the resolver asks on
#: every scan; resolving the templates folder and a stat cost ~0.2 ms, more than the rest of it)
RECHECK_S = 5.0


def template_has_pin(slug: str) -> bool:
    """Whether template `slug` has a scratch-off PIN box (so its labels carry PINs).

    Cached per process; the file is looked at again (a stat, re-read if it changed) at most
    every RECHECK_S seconds. A template that is missing or invalid has no box: its batch
    cannot render.
    """
    now = time.monotonic()
    hit = _has_pin.get(slug)
    if hit is not None and now - hit[0] < RECHECK_S:
        return hit[2]
    path = templates.templates_dir() / f"{slug}.toml"
    try:
        stamp = (str(path), path.stat().st_mtime_ns)
    except OSError:
        stamp = None
    if hit is not None and hit[1] == stamp:
        value = hit[2]
    elif stamp is None:
        value = False
    else:
        try:
            value = templates.load(path).pin is not None
        except Exception:  # noqa: BLE001 - an invalid template prints nothing, so no PIN either
            value = False
    with _has_pin_lock:
        if len(_has_pin) > 1000:
            _has_pin.clear()
        _has_pin[slug] = (now, stamp, value)
    return value


def expected_pin(code: str, batch_id: int, serial: str | int) -> str:
    """The PIN printed on the label with canonical `code`, of batch `batch_id`, with `serial`
    (its number, or the printed form BBBBBB-SSSSSS the resolver's LabelView carries).

    The key id is the code's first character: issuing makes every code of a batch under the
    batch's key (`codes.make_codes(batch.key_id, …)`), and the PIN is made under the same key."""
    number = serial if isinstance(serial, int) else codes.parse_serial(serial)[1]
    key_id = code[0]
    return codes.make_pin(key_id, key_for(key_id), batch_id, number)


def pin_matches(label, pin: str) -> bool:
    """Whether `pin` (8 ASCII digits, `codes.normalise_pin`) is the PIN of `label` (the
    resolver's LabelView: code, batch_id, serial); constant time."""
    expected = expected_pin(label.code, label.batch_id, label.serial)
    return hmac.compare_digest(pin.encode("ascii"), expected.encode("ascii"))


@dataclass(frozen=True)
class Verification:
    first: bool  # this was the label's first correct PIN
    verified_at: datetime  # the first correct verification (UTC)
    same_device: bool  # the first verification came from the same device as this one
    repeats: int  # correct verifications after the first, this one included


def record_verification(session: Session, label_id: int, code: str, device: str,
                        known_verified: bool = False) -> Verification:
    """Record a correct PIN: the first one sets `pin_verified_at`, later ones count.

    Race-safe: the first is a conditional UPDATE … WHERE pin_verified_at IS NULL, so of two
    concurrent first verifications exactly one updates the row (on PostgreSQL the other waits
    for its row lock, then finds the condition false) and the other answers "already verified".
    `known_verified`: the caller's current view of the label already has a first verification
    (it is never undone), so only the repeat is counted.

    The resolver's cached view of a label shows `pin_verified_at` but not the repeats: each
    statement says which views it changes (execution option `views_changed`, read by
    scans.viewcache), the first verification this code's alone, a repeat none, so a PIN check
    never makes other labels' cached views stale. Flushes nothing else; the caller commits.
    """
    now = utcnow()
    if not known_verified:
        done = session.execute(
            update(Label).where(Label.id == label_id, Label.pin_verified_at.is_(None))
            .values(pin_verified_at=now, pin_device=device)
            .execution_options(synchronize_session=False, views_changed=(code,)))
        if done.rowcount == 1:
            return Verification(True, now, True, 0)
    session.execute(update(Label).where(Label.id == label_id).values(pin_repeats=Label.pin_repeats + 1)
                    .execution_options(synchronize_session=False, views_changed=()))
    at, first_device, repeats = session.execute(
        select(Label.pin_verified_at, Label.pin_device, Label.pin_repeats).where(Label.id == label_id)).one()
    return Verification(False, as_utc(at), hmac.compare_digest(first_device or "", device), repeats)
