"""Field capture logic: receiving check-ins (one or a batch, idempotent on the phone's UUID),
photos (which may arrive before their check-in), flags, review, tasks, the map, and the two
functions other domains call: `suspicious_codes` (scans) and `unplanted_plots` (the chain).

Plain functions over a session; they raise catalogued AppErrors and flush (the request commits).
Tenancy: inspectors see their own check-ins and tasks, admins all, operators the approved
check-ins at their own premises; anything else is "not found".
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid as uuidlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import BinaryIO, Iterable

from marshmallow import ValidationError
from sqlalchemy import and_, exists, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased, selectinload

from .. import geo
from ..auth.models import User
from ..chain import service as chain_service
from ..config import current_config
from ..errors import AppError
from ..http import Actor
from ..pagination import paginate
from ..registry.models import Operator, Plot, Village
from ..storage import get_storage
from ..timeutil import SHANGHAI, as_utc, utcnow
from . import checklists, images
from .models import CODE_FINDING_KINDS, PREMISES_KINDS, Checkin, Finding, FindingCode, Photo, Task
from .schemas import MAX_BATCH, MAX_PHOTOS, CheckinIn

FUTURE_FLAG = timedelta(minutes=5)  # a device clock this far ahead is flagged
FUTURE_REJECT = timedelta(days=1)  # this far ahead is an error (a clock set to 2099)
EARLIEST = datetime(2020, 1, 1, tzinfo=timezone.utc)
PHOTO_TIME_TOLERANCE = timedelta(minutes=30)
PHOTO_GPS_MIN_TOLERANCE_M = 200.0
POOR_ACCURACY_M = 100.0

_checkin_schema = CheckinIn()
log = logging.getLogger(__name__)


# --- results of a sync -------------------------------------------------------------------------
@dataclass
class ItemResult:
    index: int
    uuid: str | None
    status: str  # created | existing | conflict | invalid
    code: int  # 201 | 200 | 409 | 422 (what the item would have answered alone)
    checkin: Checkin | None = None
    reason: str | None = None
    message: str | None = None
    errors: dict | None = None

    @classmethod
    def failed(cls, index: int, uuid: str | None, err: AppError) -> "ItemResult":
        status = "conflict" if err.status == 409 else "invalid"
        return cls(index, uuid, status, err.status, None, err.reason, err.message, err.errors or None)

    @classmethod
    def unexpected(cls, index: int, uuid: str | None, exc: BaseException) -> "ItemResult":
        """An item of a batch that raised something other than an AppError: logged, and that item
        alone is `invalid` (a bad item never blocks the good ones)."""
        log.error("fieldwork batch item %s (uuid %s) failed: %s", index, uuid, type(exc).__name__, exc_info=exc)
        return cls.failed(index, uuid, AppError("fieldwork.invalid", "This check-in could not be processed; it has been logged.",
                                                {"_schema": [f"Unexpected error ({type(exc).__name__}); the item was not stored."]}))

    def raise_if_failed(self) -> None:
        if self.status in ("conflict", "invalid"):
            error = AppError(self.reason, self.message, self.errors)
            raise error


def content_sha256(values: dict) -> str:
    """A digest of what the phone sent, canonicalised: the same visit resent (even with its time
    written in another offset) has the same digest; any change in content has another."""

    def canon(value):
        if isinstance(value, datetime):
            return as_utc(value).isoformat()
        if isinstance(value, uuidlib.UUID):
            return str(value)
        if isinstance(value, dict):
            return {str(k): canon(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [canon(v) for v in value]
        return value

    text = json.dumps(canon(values), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# --- receiving check-ins -----------------------------------------------------------------------
def receive_checkins(session: Session, actor: Actor, items: list) -> list[ItemResult]:
    """A batch from a phone, as sent: each item is validated and answered on its own."""
    if len(items) > MAX_BATCH:
        raise AppError("fieldwork.batch_too_large",
                       f"{len(items)} check-ins in one batch; at most {MAX_BATCH}. Nothing was stored: split the batch.",
                       {"items": [f"At most {MAX_BATCH} items, got {len(items)}."]})
    entries: list[tuple[int, dict | ItemResult]] = []
    for index, raw in enumerate(items):
        raw_uuid = raw.get("uuid") if isinstance(raw, dict) else None
        raw_uuid = raw_uuid if isinstance(raw_uuid, str) and len(raw_uuid) <= 64 else None
        if not isinstance(raw, dict):
            entries.append((index, ItemResult.failed(index, None, AppError(
                "fieldwork.invalid", "The item is not a JSON object.", {"_schema": ["Each item must be a JSON object."]}))))
            continue
        try:
            entries.append((index, _checkin_schema.load(raw)))
        except ValidationError as exc:
            entries.append((index, ItemResult.failed(index, raw_uuid, AppError("fieldwork.invalid", errors=exc.messages))))
        except Exception as exc:  # noqa: BLE001 - one item's surprise must not sink the batch
            entries.append((index, ItemResult.unexpected(index, raw_uuid, exc)))
    return receive_loaded(session, actor, entries, isolate=True)


class _Context:
    """What a batch needs from the database, fetched once for all its items."""

    def __init__(self, session: Session, actor: Actor, values: list[dict]):
        self.session, self.actor, self.now = session, actor, utcnow()
        self.config = current_config()
        uuids = {str(v["uuid"]) for v in values} | {str(v["replaces"]) for v in values if v["replaces"]}
        self.existing: dict[str, Checkin] = {}
        for chunk in _chunks(sorted(uuids)):
            self.existing.update({c.uuid: c for c in session.scalars(select(Checkin).where(Checkin.uuid.in_(chunk)))})
        replaced_ids = [c.id for c in self.existing.values()]
        self.taken: set[int] = set()
        for chunk in _chunks(replaced_ids):
            self.taken.update(session.scalars(select(Checkin.replaces_id).where(Checkin.replaces_id.in_(chunk))))
        plot_ids = {v["plot_id"] for v in values if v["plot_id"]} | {
            f["plot_id"] for v in values for f in v["findings"] if f["plot_id"]}
        self.plots = _by_id(session, Plot, plot_ids)
        self.operators = _by_id(session, Operator, {v["operator_id"] for v in values if v["operator_id"]})
        self.tasks = _by_id(session, Task, {v["task_id"] for v in values if v["task_id"]})
        self.new: dict[str, Checkin] = {}  # made in this batch, by UUID
        self.isolate = False  # a batch: an item's unexpected error fails that item only
        self.replaced_in_batch: set[str] = set()


def _by_id(session: Session, model, ids: set[int], *options) -> dict:
    rows = {}
    for chunk in _chunks(sorted(ids)):
        rows.update({r.id: r for r in session.scalars(select(model).where(model.id.in_(chunk)).options(*options))})
    return rows


def _chunks(values: list, size: int = 1000) -> Iterable[list]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def receive_loaded(session: Session, actor: Actor, entries: list[tuple[int, dict | ItemResult]],
                   isolate: bool = False) -> list[ItemResult]:
    """Check-ins already parsed by CheckinIn (or failed items), in the phone's order.

    With `isolate` (batches), an item raising anything but an AppError is logged and answered
    `invalid` on its own; the other items are still stored."""
    valid = [(i, v) for i, v in entries if not isinstance(v, ItemResult)]
    ctx = _Context(session, actor, [v for _, v in valid])
    ctx.isolate = isolate
    results: dict[int, ItemResult] = {i: v for i, v in entries if isinstance(v, ItemResult)}
    pending: list[tuple[int, Checkin]] = []
    for index, values in valid:
        uuid = str(values["uuid"])
        try:
            digest = content_sha256(values)
            prior = ctx.existing.get(uuid) or ctx.new.get(uuid)
            if prior is not None:
                results[index] = _resend(index, uuid, digest, prior, actor)
                continue
            row = _build(ctx, values, digest)
        except AppError as err:
            results[index] = ItemResult.failed(index, uuid, err)
            continue
        except Exception as exc:  # noqa: BLE001
            if not isolate:
                raise
            results[index] = ItemResult.unexpected(index, uuid, exc)
            continue
        ctx.new[uuid] = row
        pending.append((index, row))
        results[index] = ItemResult(index, uuid, "created", 201, row)

    if pending:
        _insert(session, ctx, pending, results)
        created = [results[i].checkin for i, _ in pending if results[i].status == "created"]
        _after_insert(session, ctx, created)
    decorate(session, [r.checkin for r in results.values() if r.checkin is not None])
    return [results[i] for i, _ in entries]


def _resend(index: int, uuid: str, digest: str, prior: Checkin, actor: Actor) -> ItemResult:
    if prior.inspector_id == actor.user_id and prior.content_sha256 == digest:
        return ItemResult(index, uuid, "existing", 200, prior)
    return ItemResult.failed(index, uuid, AppError(
        "fieldwork.conflict", errors={"uuid": [f"{uuid} was already received with different content. "
                                               "To change a check-in, send a new one with `replaces` naming it."]}))


def _insert(session: Session, ctx: _Context, pending: list[tuple[int, Checkin]], results: dict[int, ItemResult]) -> None:
    """All new rows in one flush; if a concurrent request took a UUID meanwhile, one by one."""
    try:
        with session.begin_nested():
            session.add_all([row for _, row in pending])
            session.flush()
        return
    except IntegrityError:
        pass
    except SQLAlchemyError:
        if not ctx.isolate:
            raise
    for index, row in pending:
        try:
            with session.begin_nested():
                if row.replaces is not None and row.replaces.id is None:
                    raise IntegrityError("replaced check-in was not stored", None, Exception())
                session.add(row)
                session.flush()
        except IntegrityError:
            other = session.scalar(select(Checkin).where(Checkin.uuid == row.uuid))
            if other is not None:
                results[index] = _resend(index, row.uuid, row.content_sha256, other, ctx.actor)
            else:
                results[index] = ItemResult.failed(index, row.uuid, AppError(
                    "fieldwork.already_replaced", errors={"replaces": ["Replaced meanwhile by another version."]}))
        except SQLAlchemyError as exc:
            if not ctx.isolate:
                raise
            results[index] = ItemResult.unexpected(index, row.uuid, exc)


def _build(ctx: _Context, values: dict, digest: str) -> Checkin:
    """A new Checkin from parsed values, or an AppError naming the fields."""
    errors: dict[str, list | dict] = {}
    kind = values["target_kind"]
    plot = operator = None
    if kind == "plot":
        plot = ctx.plots.get(values["plot_id"])
        if plot is None:
            raise AppError("fieldwork.unknown_target", errors={"plot_id": [f"No plot with id {values['plot_id']}."]})
    else:
        operator = ctx.operators.get(values["operator_id"])
        if operator is None:
            raise AppError("fieldwork.unknown_target", errors={"operator_id": [f"No operator with id {values['operator_id']}."]})

    captured = as_utc(values["captured_at"])
    if captured > ctx.now + FUTURE_REJECT:
        errors["captured_at"] = [f"{values['captured_at'].isoformat()} is in the future (received "
                                 f"{ctx.now.astimezone(SHANGHAI).isoformat(timespec='seconds')}); check the phone's clock."]
    elif captured < EARLIEST:
        errors["captured_at"] = [f"Before {EARLIEST.date()}; check the phone's clock."]

    template = checklists.template_for(kind, values["checklist_version"])
    if template is None:
        errors["checklist_version"] = [f"No {kind} checklist version {values['checklist_version']}; "
                                       f"the current one is {checklists.CURRENT[kind]}."]
    else:
        answer_errors = template.errors(values["answers"])
        if answer_errors:
            errors["answers"] = answer_errors

    findings = []
    for position, f in enumerate(values["findings"]):
        finding_errors = {}
        codes = list(dict.fromkeys(c for c in f["codes"]))
        finding_plot = f["plot_id"]
        if f["kind"] == "counterfeit_labels" and not codes:
            finding_errors["codes"] = ["List the label codes found."]
        if codes and f["kind"] not in CODE_FINDING_KINDS:
            finding_errors["codes"] = [f"Only counterfeit_labels and label_misuse findings carry codes."]
        if f["kind"] == "plot_not_planted":
            finding_plot = finding_plot or (plot.id if plot else None)
            if finding_plot is None:
                finding_errors["plot_id"] = ["Name the plot found not planted."]
            elif finding_plot not in ctx.plots:
                finding_errors["plot_id"] = [f"No plot with id {finding_plot}."]
        elif finding_plot is not None:
            finding_errors["plot_id"] = ["Only for plot_not_planted findings."]
        if finding_errors:
            errors.setdefault("findings", {})[position] = finding_errors
        findings.append(Finding(position=position, kind=f["kind"], note=f["note"], plot_id=finding_plot,
                                codes=[FindingCode(code=c) for c in codes]))

    task = None
    if values["task_id"]:
        task = ctx.tasks.get(values["task_id"])
        if task is None or task.assignee_id != ctx.actor.user_id:
            errors["task_id"] = [f"No task {values['task_id']} assigned to you."]
        elif task.state == "cancelled":
            errors["task_id"] = ["The task was cancelled."]
        elif (task.target_kind, task.plot_id, task.operator_id) != (kind, values["plot_id"], values["operator_id"]):
            errors["task_id"] = ["The task is for another target."]

    replaces = None
    if values["replaces"]:
        key = str(values["replaces"])
        replaces = ctx.existing.get(key) or ctx.new.get(key)
        if replaces is None or replaces.inspector_id != ctx.actor.user_id or key == str(values["uuid"]):
            errors["replaces"] = [f"No earlier check-in of yours with UUID {key}."]
            replaces = None
    if errors:
        raise AppError("fieldwork.invalid", errors=errors)
    if replaces is not None and (replaces.id in ctx.taken or replaces.uuid in ctx.replaced_in_batch):
        raise AppError("fieldwork.already_replaced", errors={"replaces": [
            f"{replaces.uuid} was already replaced; send an edit of its latest version."]})

    distance, flags = location_flags(values["lon"], values["lat"], values["accuracy_m"], plot, operator, ctx.config)
    flags += time_flags(captured, ctx.now, ctx.config)
    if replaces is not None:
        ctx.replaced_in_batch.add(replaces.uuid)
    return Checkin(
        uuid=str(values["uuid"]), content_sha256=digest, inspector_id=ctx.actor.user_id, replaces=replaces,
        task_id=task.id if task else None, target_kind=kind, plot_id=values["plot_id"], operator_id=values["operator_id"],
        premises=values["premises"], captured_at=captured, received_at=ctx.now, lat=values["lat"], lon=values["lon"],
        accuracy_m=values["accuracy_m"], altitude_m=values["altitude_m"], checklist=kind,
        checklist_version=values["checklist_version"], answers=values["answers"], note=values["note"],
        result=values["result"], photos_expected=values["photos_expected"], distance_m=distance, flags=flags,
        flag_count=len(flags), review_state="new", findings=findings,
    )


def _after_insert(session: Session, ctx: _Context, created: list[Checkin]) -> None:
    """Attach photos that arrived first, complete tasks, and tell the trade chain about plots found
    not planted (it flags trades on them from the visit's day on, those already recorded too)."""
    by_uuid = {c.uuid: c for c in created}
    for chunk in _chunks(sorted(by_uuid)):
        early = session.scalars(select(Photo).where(
            Photo.checkin_uuid.in_(chunk), Photo.checkin_id.is_(None), Photo.uploaded_by_id == ctx.actor.user_id))
        for photo in early:
            checkin = by_uuid[photo.checkin_uuid]
            photo.checkin_id = checkin.id
            photo.flags = photo_flags(photo, checkin, ctx.config)
            checkin.flag_count += len(photo.flags)
    for checkin in created:
        if checkin.task_id:
            task = ctx.tasks[checkin.task_id]
            if task.state == "open":
                task.state, task.done_at = "done", ctx.now
        for finding in checkin.findings:
            if finding.kind == "plot_not_planted" and finding.plot_id is not None:
                chain_service.record_plot_finding(  # idempotent: a re-synced or amended visit adds nothing
                    session, finding.plot_id, "unplanted", as_utc(checkin.captured_at).astimezone(SHANGHAI).date(),
                    user_id=checkin.inspector_id, note=finding.note, source="fieldwork")
    session.flush()


# --- flags -------------------------------------------------------------------------------------
def _flag(code: str, message: str) -> dict:
    return {"code": code, "message": message}


def location_flags(lon: float, lat: float, accuracy: float, plot: Plot | None, operator: Operator | None,
                   config) -> tuple[float | None, list[dict]]:
    """Distance to the target's registered location (0 inside a plot polygon) and the flags."""
    flags = []
    if accuracy > max(POOR_ACCURACY_M, config.GEOFENCE_RADIUS_M):
        flags.append(_flag("poor_accuracy", f"GPS accuracy {accuracy:.0f} m is too coarse to place the visit."))
    if plot is not None and plot.boundary:
        distance = geo.distance_to_geometry_m(plot.boundary, lon, lat)
        allowed, where = config.GEOFENCE_POLYGON_MARGIN_M, f"plot {plot.code}'s boundary"
    else:
        target = plot or operator
        if target is None or target.lon is None:
            flags.append(_flag("target_location_unknown", "The target has no registered location to compare with."))
            return None, flags
        distance = geo.haversine_m(lon, lat, target.lon, target.lat)
        where = f"plot {plot.code}'s registered point" if plot else f"{operator.name}'s registered location"
        allowed = config.GEOFENCE_RADIUS_M
    if distance - accuracy > allowed:
        flags.append(_flag("off_site", f"{distance:.0f} m from {where} (GPS accuracy {accuracy:.0f} m, "
                                       f"allowed {allowed:.0f} m)."))
    return round(distance, 1), flags


def time_flags(captured: datetime, received: datetime, config) -> list[dict]:
    flags = []
    if captured > received + FUTURE_FLAG:
        flags.append(_flag("captured_in_future", f"captured_at is {(captured - received)} ahead of the server's clock."))
    late = timedelta(hours=config.CHECKIN_LATE_SYNC_HOURS)
    if received - captured > late:
        hours = (received - captured).total_seconds() / 3600
        flags.append(_flag("late_sync", f"Received {hours:.0f} h after it was captured (over {config.CHECKIN_LATE_SYNC_HOURS:g} h)."))
    return flags


def photo_flags(photo: Photo, checkin: Checkin, config) -> list[dict]:
    """Compare a photo's EXIF time and GPS with its check-in's (phones that strip EXIF get none)."""
    flags = []
    if photo.exif_taken_at is not None:
        gap = abs(as_utc(photo.exif_taken_at) - as_utc(checkin.captured_at))
        if gap > PHOTO_TIME_TOLERANCE:
            flags.append(_flag("exif_time_mismatch", f"Photo {photo.uuid} was taken {gap} away from the check-in's time."))
    if photo.exif_lat is not None and photo.exif_lon is not None:
        distance = geo.haversine_m(photo.exif_lon, photo.exif_lat, checkin.lon, checkin.lat)
        allowed = max(PHOTO_GPS_MIN_TOLERANCE_M, config.GEOFENCE_RADIUS_M) + checkin.accuracy_m
        if distance > allowed:
            flags.append(_flag("exif_gps_mismatch", f"Photo {photo.uuid} was taken {distance:.0f} m from the check-in's position."))
    return flags


# --- reading -----------------------------------------------------------------------------------
def _visible(stmt, actor: Actor):
    if actor.is_admin:
        return stmt
    if actor.role == "inspector":
        return stmt.where(Checkin.inspector_id == actor.user_id)
    if actor.role == "operator" and actor.operator_id is not None:
        return stmt.where(Checkin.operator_id == actor.operator_id, Checkin.target_kind.in_(PREMISES_KINDS),
                          Checkin.review_state == "approved")
    return stmt.where(false())


def _not_replaced():
    newer = aliased(Checkin)
    return ~exists(select(newer.id).where(newer.replaces_id == Checkin.id))


def _not_found(uuid) -> AppError:
    return AppError("fieldwork.not_found", "No such check-in.", {"uuid": [f"No check-in {uuid}."]})


def get_checkin(session: Session, actor: Actor, uuid) -> Checkin:
    stmt = _visible(select(Checkin).where(Checkin.uuid == str(uuid)), actor)
    checkin = session.scalar(stmt.options(selectinload(Checkin.findings).selectinload(Finding.codes)))
    if checkin is None:
        raise _not_found(uuid)
    decorate(session, [checkin])
    return checkin


def list_checkins(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = _visible(select(Checkin), actor).order_by(Checkin.captured_at.desc(), Checkin.id.desc())
    for key in ("target_kind", "plot_id", "operator_id", "inspector_id", "result", "review_state"):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(Checkin, key) == filters[key])
    if filters.get("since"):
        stmt = stmt.where(Checkin.captured_at >= as_utc(filters["since"]))
    if filters.get("until"):
        stmt = stmt.where(Checkin.captured_at < as_utc(filters["until"]))
    if filters.get("flagged") is not None:
        stmt = stmt.where((Checkin.flag_count > 0) if filters["flagged"] else (Checkin.flag_count == 0))
    if not filters.get("include_replaced"):
        stmt = stmt.where(_not_replaced())
    stmt = stmt.options(selectinload(Checkin.findings).selectinload(Finding.codes))
    items, total = paginate(session, stmt, page, page_size)
    decorate(session, items)
    return items, total


def decorate(session: Session, checkins: list[Checkin]) -> None:
    """Attach what the output shows beside the row: photos, versions, all flags (3 queries)."""
    ids = [c.id for c in checkins if c.id is not None]
    photos: dict[int, list[Photo]] = defaultdict(list)
    uuids: dict[int, str] = {}
    replaced_by: dict[int, str] = {}
    for chunk in _chunks(ids):
        for photo in session.scalars(select(Photo).where(Photo.checkin_id.in_(chunk)).order_by(Photo.id)):
            photos[photo.checkin_id].append(photo)
        replaced_by.update(session.execute(select(Checkin.replaces_id, Checkin.uuid).where(Checkin.replaces_id.in_(chunk))).all())
    previous = [c.replaces_id for c in checkins if c.replaces_id]
    for chunk in _chunks(previous):
        uuids.update(session.execute(select(Checkin.id, Checkin.uuid).where(Checkin.id.in_(chunk))).all())
    for c in checkins:
        c.photo_rows = photos.get(c.id, [])
        c.photos_arrived = len(c.photo_rows)
        c.replaces_uuid = uuids.get(c.replaces_id)
        c.replaced_by_uuid = replaced_by.get(c.id)
        c.all_flags = list(c.flags or []) + [f for p in c.photo_rows for f in (p.flags or [])]


def review_checkin(session: Session, actor: Actor, uuid, state: str, note: str | None) -> Checkin:
    checkin = get_checkin(session, actor, uuid)
    checkin.review_state, checkin.review_note = state, note
    checkin.reviewed_by_id, checkin.reviewed_at = actor.user_id, utcnow()
    session.flush()
    return checkin


# --- photos ------------------------------------------------------------------------------------
def store_photo(session: Session, actor: Actor, checkin_uuid, photo_uuid, stream: BinaryIO) -> tuple[Photo, bool]:
    """Check, process and store one photo; (photo, created). A resend of the same file under the
    same UUID answers the stored photo; another file or check-in under that UUID is a 409."""
    config = current_config()
    checkin_uuid, photo_uuid = str(checkin_uuid), str(photo_uuid)
    data = stream.read(config.PHOTO_MAX_BYTES + 1)
    if len(data) > config.PHOTO_MAX_BYTES:
        raise AppError("fieldwork.photo_too_large", f"The photo is over the limit of {config.PHOTO_MAX_BYTES:,} bytes.",
                       {"file": [f"At most {config.PHOTO_MAX_BYTES:,} bytes."]})
    if not data:
        raise AppError("fieldwork.photo_unsupported", "The file is empty.", {"file": ["Empty file."]})
    sha = hashlib.sha256(data).hexdigest()
    existing = session.scalar(select(Photo).where(Photo.uuid == photo_uuid))
    if existing is not None:
        if existing.uploaded_by_id == actor.user_id and existing.checkin_uuid == checkin_uuid and existing.sha256 == sha:
            return existing, False
        raise AppError("fieldwork.photo_conflict", errors={"photo_uuid": [
            f"{photo_uuid} was already used for another file or check-in."]})
    checkin = session.scalar(select(Checkin).where(Checkin.uuid == checkin_uuid))
    if checkin is not None and checkin.inspector_id != actor.user_id:
        raise _not_found(checkin_uuid)  # someone else's check-in: as if it did not exist
    count = session.scalar(select(func.count()).select_from(Photo).where(
        Photo.checkin_uuid == checkin_uuid, Photo.uploaded_by_id == actor.user_id))
    if count >= MAX_PHOTOS:
        raise AppError("fieldwork.photo_limit", f"A check-in has at most {MAX_PHOTOS} photos.")
    try:
        processed = images.process(data, config.PHOTO_MAX_PIXELS)
    except images.ImageRejected as exc:
        raise AppError(exc.reason, exc.message, {"file": [exc.message]}) from None

    # Keys carry the file's digest, so two racing uploads of one UUID never overwrite each other.
    base = f"photos/{checkin_uuid}/{photo_uuid}-{sha[:16]}"
    storage = get_storage()
    keys = (f"{base}/original.{processed.extension}", f"{base}/normal.jpg", f"{base}/thumb.jpg")
    for key, payload in zip(keys, (data, processed.jpeg, processed.thumb)):
        storage.put(key, payload)
    photo = Photo(uuid=photo_uuid, checkin_uuid=checkin_uuid, uploaded_by_id=actor.user_id, received_at=utcnow(),
                  sha256=sha, size_bytes=len(data), format=processed.format, width=processed.width,
                  height=processed.height, original_key=keys[0], jpeg_key=keys[1], thumb_key=keys[2],
                  exif_taken_at=processed.taken_at, exif_lat=processed.lat, exif_lon=processed.lon, flags=[])
    if checkin is not None:
        photo.checkin_id = checkin.id
        photo.flags = photo_flags(photo, checkin, config)
    try:
        with session.begin_nested():
            session.add(photo)
            session.flush()
            if checkin is not None and photo.flags:
                # In SQL, not `checkin.flag_count += n`: photos of one check-in upload in parallel,
                # and a read-modify-write here would lose all but one of their increments.
                session.execute(update(Checkin).where(Checkin.id == checkin.id)
                                .values(flag_count=Checkin.flag_count + len(photo.flags))
                                # (no label view shows flag_count: backend/scans/viewcache.py)
                                .execution_options(synchronize_session=False, views_changed=()))
                session.expire(checkin, ["flag_count"])
    except IntegrityError:
        for key in keys:
            storage.delete(key)
        raise AppError("fieldwork.photo_conflict", errors={"photo_uuid": [f"{photo_uuid} was stored meanwhile."]}) from None
    return photo, True


def sweep_orphan_photos(session: Session, storage, older_than_s: float, dry_run: bool = False) -> list[str]:
    """Delete the photo files no `photos` row names that are older than `older_than_s`: those a
    request stored before its commit failed (a lost database, a killed worker) and its phone never
    sent again (a resend would have adopted them: the keys are the photo UUID and the file's
    digest). Younger files may belong to an upload still in flight. Returns the keys (deleted,
    or only listed with `dry_run`)."""
    named = {key.rsplit("/", 1)[0] for key in session.scalars(select(Photo.original_key))}
    cutoff = utcnow().timestamp() - older_than_s
    orphans = sorted(key for key, mtime in storage.listing("photos/")
                     if mtime < cutoff and key.rsplit("/", 1)[0] not in named)
    if not dry_run:
        for key in orphans:
            storage.delete(key)
    return orphans


def photo_status(session: Session, checkin_uuid) -> dict:
    """For the upload answer: how many photos the check-in expects and how many have arrived."""
    checkin = session.scalar(select(Checkin).where(Checkin.uuid == str(checkin_uuid)))
    arrived = session.scalar(select(func.count()).select_from(Photo).where(Photo.checkin_uuid == str(checkin_uuid)))
    return {"checkin_received": checkin is not None,
            "photos_expected": checkin.photos_expected if checkin else None, "photos_arrived": arrived}


def open_photo(session: Session, actor: Actor, photo_uuid, variant: str) -> tuple[BinaryIO, str]:
    """A stored photo file the actor may see: its uploader, admins, or whoever sees its check-in."""
    photo = session.scalar(select(Photo).where(Photo.uuid == str(photo_uuid)))
    visible = photo is not None and (actor.is_admin or photo.uploaded_by_id == actor.user_id)
    if photo is not None and not visible and photo.checkin_id is not None:
        visible = session.scalar(_visible(select(Checkin.id).where(Checkin.id == photo.checkin_id), actor)) is not None
    if not visible:
        raise AppError("fieldwork.not_found", "No such photo.", {"photo_uuid": [f"No photo {photo_uuid}."]})
    key = {"original": photo.original_key, "jpeg": photo.jpeg_key, "thumb": photo.thumb_key}[variant]
    mimetype = "image/jpeg" if variant != "original" else f"image/{photo.format.lower()}"
    return get_storage().open(key), mimetype


# --- links for other domains -------------------------------------------------------------------
def _counts():
    """Check-ins whose findings count: the latest version, not rejected on review."""
    return and_(Checkin.review_state != "rejected", _not_replaced())


_SUSPICIOUS_CODES = None  # the statement of suspicious_codes, built on first use


def _suspicious_codes_stmt():
    """Built once (an expanding IN parameter): the consumer resolver runs it on every scan, and
    building it (the aliased check-in of _not_replaced) cost more than running it."""
    global _SUSPICIOUS_CODES
    if _SUSPICIOUS_CODES is None:
        from sqlalchemy import bindparam

        _SUSPICIOUS_CODES = (
            select(FindingCode.code).distinct()
            .join(Finding, Finding.id == FindingCode.finding_id)
            .join(Checkin, Checkin.id == Finding.checkin_id)
            .where(FindingCode.code.in_(bindparam("codes", expanding=True)),
                   Finding.kind.in_(CODE_FINDING_KINDS), _counts()))
    return _SUSPICIOUS_CODES


def suspicious_codes(session: Session, codes: Iterable[str]) -> set[str]:
    """The label codes among `codes` that inspectors reported as counterfeit, seized or misused.

    Codes compare case-insensitively and trimmed; the answer holds them upper-cased. For the
    scans domain: a consumer scan of one of these warns and raises an alert.
    """
    wanted = sorted({c.strip().upper() for c in codes if isinstance(c, str) and c.strip()})
    found: set[str] = set()
    stmt = _suspicious_codes_stmt()
    for chunk in _chunks(wanted):
        found.update(session.scalars(stmt, {"codes": chunk}))
    return found


def unplanted_plots(session: Session, plot_ids: Iterable[int]) -> dict[int, datetime]:
    """Plots among `plot_ids` found not planted, each with the earliest such visit's captured_at
    (UTC). For the trade chain: fruit sold from such a plot after that time is suspect."""
    found: dict[int, datetime] = {}
    for chunk in _chunks(sorted(set(plot_ids))):
        rows = session.execute(
            select(Finding.plot_id, func.min(Checkin.captured_at))
            .join(Checkin, Checkin.id == Finding.checkin_id)
            .where(Finding.kind == "plot_not_planted", Finding.plot_id.in_(chunk), _counts())
            .group_by(Finding.plot_id))
        found.update({plot_id: as_utc(when) for plot_id, when in rows})
    return found


# --- tasks -------------------------------------------------------------------------------------
def create_task(session: Session, actor: Actor, values: dict) -> Task:
    assignee = session.get(User, values["assignee_id"])
    if assignee is None or assignee.role != "inspector" or not assignee.active:
        raise AppError("fieldwork.task_invalid", errors={"assignee_id": [f"No active inspector with id {values['assignee_id']}."]})
    if values["target_kind"] == "plot" and session.get(Plot, values["plot_id"]) is None:
        raise AppError("fieldwork.unknown_target", errors={"plot_id": [f"No plot with id {values['plot_id']}."]})
    if values["target_kind"] != "plot" and session.get(Operator, values["operator_id"]) is None:
        raise AppError("fieldwork.unknown_target", errors={"operator_id": [f"No operator with id {values['operator_id']}."]})
    task = Task(created_by_id=actor.user_id, state="open", **values)
    session.add(task)
    session.flush()
    return task


def _visible_tasks(stmt, actor: Actor):
    if actor.is_admin:
        return stmt
    return stmt.where(Task.assignee_id == actor.user_id) if actor.role == "inspector" else stmt.where(false())


def list_tasks(session: Session, actor: Actor, filters: dict, page: int, page_size: int):
    stmt = _visible_tasks(select(Task), actor).order_by(Task.due_date, Task.id)
    for key in ("state", "assignee_id"):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(Task, key) == filters[key])
    return paginate(session, stmt, page, page_size)


def cancel_task(session: Session, actor: Actor, task_id: int) -> Task:
    task = session.scalar(_visible_tasks(select(Task).where(Task.id == task_id), actor))
    if task is None:
        raise AppError("fieldwork.not_found", "No such task.", {"task_id": [f"No task {task_id}."]})
    if task.state == "open":
        task.state = "cancelled"
    session.flush()
    return task


def offline_pack(session: Session, actor: Actor) -> dict:
    """The inspector's open tasks, their targets' locations and the current checklists: what a
    phone downloads before going out of signal."""
    tasks = list(session.scalars(select(Task).where(Task.assignee_id == actor.user_id, Task.state == "open")
                                 .order_by(Task.due_date, Task.id)))
    # Village, town and grower eagerly, a few queries in all (not three per plot).
    plots = _by_id(session, Plot, {t.plot_id for t in tasks if t.plot_id},
                   selectinload(Plot.village).selectinload(Village.town), selectinload(Plot.grower))
    operators = _by_id(session, Operator, {t.operator_id for t in tasks if t.operator_id}, selectinload(Operator.town))
    return {
        "generated_at": utcnow(),
        "tasks": tasks,
        "plots": [{"id": p.id, "code": p.code, "lon": p.lon, "lat": p.lat, "boundary": p.boundary,
                   "village": p.village.name, "town": p.village.town.name, "grower": p.grower.name,
                   "area_mu": str(p.area_mu)} for p in plots.values()],
        "operators": [{"id": o.id, "name": o.name, "kind": o.kind, "address": o.address, "lon": o.lon, "lat": o.lat,
                       "town": o.town.name} for o in operators.values()],
        "checklists": [checklists.TEMPLATES[(name, version)].as_dict() for name, version in checklists.CURRENT.items()],
    }


# --- the map -----------------------------------------------------------------------------------
def map_features(session: Session, actor: Actor, filters: dict) -> dict:
    """Check-ins (latest versions) as a GeoJSON FeatureCollection, at the phone's GPS position."""
    town = func.coalesce(Village.town_id, Operator.town_id)
    stmt = (
        _visible(select(Checkin, town), actor)
        .outerjoin(Plot, Plot.id == Checkin.plot_id).outerjoin(Village, Village.id == Plot.village_id)
        .outerjoin(Operator, Operator.id == Checkin.operator_id)
        .where(_not_replaced()).order_by(Checkin.captured_at.desc(), Checkin.id.desc()).limit(filters["limit"])
    )
    if filters.get("town_id"):
        stmt = stmt.where(or_(Village.town_id == filters["town_id"], Operator.town_id == filters["town_id"]))
    for key in ("result", "review_state"):
        if filters.get(key):
            stmt = stmt.where(getattr(Checkin, key) == filters[key])
    if filters.get("since"):
        stmt = stmt.where(Checkin.captured_at >= as_utc(filters["since"]))
    if filters.get("until"):
        stmt = stmt.where(Checkin.captured_at < as_utc(filters["until"]))
    features = [
        {"type": "Feature", "id": c.uuid, "geometry": {"type": "Point", "coordinates": [c.lon, c.lat]},
         "properties": {"uuid": c.uuid, "captured_at": as_utc(c.captured_at).astimezone(SHANGHAI).isoformat(),
                        "target_kind": c.target_kind, "plot_id": c.plot_id, "operator_id": c.operator_id,
                        "town_id": town_id, "result": c.result, "review_state": c.review_state,
                        "inspector_id": c.inspector_id, "flag_count": c.flag_count, "accuracy_m": c.accuracy_m}}
        for c, town_id in session.execute(stmt)
    ]
    return {"type": "FeatureCollection", "features": features}
