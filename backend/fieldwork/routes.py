"""Field capture routes under /api/v1/fieldwork: check-ins (one, or a batch from a phone that was
offline), photos, review, tasks, the inspector's offline pack and the map."""
from __future__ import annotations

from flask import send_file
from flask.views import MethodView

from ..extensions import db
from ..http import Blueprint, ErrorBody, current_actor, one_page
from . import checklists, service
from . import schemas as s

blp = Blueprint("fieldwork", __name__, url_prefix="/api/v1/fieldwork",
                description="Inspectors' field capture: check-ins with GPS, photos, findings and tasks")

READERS = ("admin", "inspector", "operator")


@blp.route("/checklists", endpoint="checklists")
class Checklists(MethodView):
    @blp.roles("admin", "inspector")
    @blp.response(200, s.ChecklistOut(many=True))
    @blp.doc(summary="Checklist templates, every version (each target kind's current one is marked)")
    def get(self):
        return [{**t.as_dict(), "current": checklists.CURRENT[t.name] == t.version}
                for t in checklists.TEMPLATES.values()]


@blp.route("/checkins", endpoint="checkins")
class Checkins(MethodView):
    @blp.roles(*READERS)
    @blp.arguments(s.CheckinQuery, location="query")
    @blp.response(200, s.CheckinOut(many=True))
    @blp.paginate()
    @blp.doc(summary="List check-ins: inspectors their own, operators approved ones at their premises, admins all")
    def get(self, filters, pagination_parameters):
        return one_page(pagination_parameters, service.list_checkins, current_actor(), filters)

    @blp.roles("inspector")
    @blp.arguments(s.CheckinIn)
    @blp.response(201, s.CheckinOut)
    @blp.alt_response(200, schema=s.CheckinOut, description="Already had: the same UUID with the same content")
    @blp.alt_response(409, schema=ErrorBody, description="The UUID was used with different content, or `replaces` names a replaced version")
    @blp.doc(summary="Send one check-in (idempotent on its UUID)")
    def post(self, values):
        [result] = service.receive_loaded(db.session, current_actor(), [(0, values)])
        result.raise_if_failed()
        return result.checkin, result.code


@blp.route("/checkins/batch", endpoint="checkins_batch")
class CheckinBatch(MethodView):
    @blp.roles("inspector")
    @blp.arguments(s.BatchIn)
    @blp.response(200, s.BatchOut)
    @blp.alt_response(413, schema=ErrorBody, description=f"More than {s.MAX_BATCH} items (nothing stored)")
    @blp.doc(summary=f"Sync up to {s.MAX_BATCH} check-ins made offline; each item is answered on its own",
             description="Each item answers `created` (201), `existing` (200: the same UUID and content, sent before "
                         "or earlier in this batch), `conflict` (409) or `invalid` (422, with field errors). A bad "
                         "item never blocks the others; resending the whole batch creates nothing twice.")
    def post(self, body):
        results = service.receive_checkins(db.session, current_actor(), body["items"])
        counts = {k: sum(r.status == k for r in results) for k in ("created", "existing", "conflict", "invalid")}
        return {**counts, "items": results}


@blp.route("/checkins/<uuid:checkin_uuid>", endpoint="checkin")
class CheckinItem(MethodView):
    @blp.roles(*READERS)
    @blp.response(200, s.CheckinOut)
    @blp.doc(summary="Read a check-in, with its photos (expected and arrived) and, for admins, its flags")
    def get(self, checkin_uuid):
        return service.get_checkin(db.session, current_actor(), checkin_uuid)


@blp.route("/checkins/<uuid:checkin_uuid>/review", endpoint="checkin_review")
class CheckinReview(MethodView):
    @blp.roles("admin")
    @blp.arguments(s.ReviewIn)
    @blp.response(200, s.CheckinOut)
    @blp.doc(summary="Set a check-in's review state (new, approved, has_issues, rejected)")
    def post(self, values, checkin_uuid):
        return service.review_checkin(db.session, current_actor(), checkin_uuid, values["review_state"], values["review_note"])


@blp.route("/checkins/<uuid:checkin_uuid>/photos/<uuid:photo_uuid>", endpoint="checkin_photo")
class CheckinPhoto(MethodView):
    @blp.roles("inspector")
    @blp.arguments(s.PhotoUploadIn, location="files")
    @blp.response(201, s.PhotoUploadOut)
    @blp.alt_response(200, schema=s.PhotoUploadOut, description="Already had: the same photo UUID and file")
    @blp.alt_response(404, schema=ErrorBody, description="The check-in is someone else's")
    @blp.alt_response(409, schema=ErrorBody, description="The photo UUID was used for another file or check-in")
    @blp.alt_response(413, schema=ErrorBody, description="Over the size cap, or too many pixels")
    @blp.alt_response(415, schema=ErrorBody, description="Not a JPEG, PNG or WebP image")
    @blp.doc(summary="Upload a photo of a check-in (multipart, field `file`); it may come before the check-in")
    def put(self, files, checkin_uuid, photo_uuid):
        photo, created = service.store_photo(db.session, current_actor(), checkin_uuid, photo_uuid, files["file"].stream)
        return {"photo": photo, **service.photo_status(db.session, checkin_uuid)}, 201 if created else 200


@blp.route("/photos/<uuid:photo_uuid>/<any(original, jpeg, thumb):variant>", endpoint="photo_file")
class PhotoFile(MethodView):
    @blp.roles(*READERS)
    @blp.doc(summary="A photo file: the original, the normalised JPEG or the thumbnail",
             responses={"200": {"description": "The image", "content": {"image/jpeg": {}}}})
    def get(self, photo_uuid, variant):
        stream, mimetype = service.open_photo(db.session, current_actor(), photo_uuid, variant)
        return send_file(stream, mimetype=mimetype, max_age=3600)


@blp.route("/tasks", endpoint="tasks")
class Tasks(MethodView):
    @blp.roles("admin", "inspector")
    @blp.arguments(s.TaskQuery, location="query")
    @blp.response(200, s.TaskOut(many=True))
    @blp.paginate()
    @blp.doc(summary="List tasks: inspectors their own, admins all")
    def get(self, filters, pagination_parameters):
        return one_page(pagination_parameters, service.list_tasks, current_actor(), filters)

    @blp.roles("admin")
    @blp.arguments(s.TaskIn)
    @blp.response(201, s.TaskOut)
    @blp.doc(summary="Assign an inspection task to an inspector")
    def post(self, values):
        return service.create_task(db.session, current_actor(), values)


@blp.route("/tasks/<int:task_id>/cancel", endpoint="task_cancel")
class TaskCancel(MethodView):
    @blp.roles("admin")
    @blp.response(200, s.TaskOut)
    @blp.doc(summary="Cancel an open task")
    def post(self, task_id):
        return service.cancel_task(db.session, current_actor(), task_id)


@blp.route("/offline-pack", endpoint="offline_pack")
class OfflinePack(MethodView):
    @blp.roles("inspector")
    @blp.response(200, s.OfflinePackOut)
    @blp.doc(summary="What the phone needs offline: open tasks, their targets' locations, current checklists")
    def get(self):
        return service.offline_pack(db.session, current_actor())


@blp.route("/map", endpoint="map")
class Map(MethodView):
    @blp.roles("admin")
    @blp.arguments(s.MapQuery, location="query")
    @blp.response(200, s.MapOut)
    @blp.doc(summary="Check-ins as GeoJSON for the industry map, filterable by town, date, result")
    def get(self, filters):
        return service.map_features(db.session, current_actor(), filters)
