"""Labels API under /api/v1/labels: applications (申领), batches and ranges, render jobs, print
jobs (for the print agent) and counters. Parse, call the service, serialize; nothing else."""
from __future__ import annotations

from flask import Response, after_this_request, send_file
from flask.views import MethodView

from ..extensions import db
from ..errors import AppError
from ..http import Blueprint, ErrorBody, current_actor, one_page
from . import schemas as s
from . import service

blp = Blueprint("labels", __name__, url_prefix="/api/v1/labels",
                description="Certification-trademark labels: applications, batches, ranges, rendering and printing")


def _batch_out(batch):
    out = {c: getattr(batch, c) for c in s.LabelBatchOut._declared_fields if c != "counts"}
    out["counts"] = service.state_counts(db.session, batch.id)
    return out


# --- applications ------------------------------------------------------------------------------
@blp.route("/applications", endpoint="applications")
class Applications(MethodView):
    @blp.roles("admin", "operator")
    @blp.arguments(s.LabelApplicationQuery, location="query")
    @blp.response(200, s.LabelApplicationOut(many=True))
    @blp.paginate()
    @blp.doc(summary="List label applications: operators their own, admins all")
    def get(self, filters, pagination_parameters):
        return one_page(pagination_parameters, service.list_applications, current_actor(), filters)

    @blp.roles("operator", "admin")
    @blp.arguments(s.LabelApplicationIn)
    @blp.response(201, s.LabelApplicationOut)
    @blp.alt_response(200, schema=s.LabelApplicationOut, description="Already had: the same client_uuid and content")
    @blp.alt_response(409, schema=ErrorBody, description="client_uuid used with different content")
    @blp.alt_response(422, schema=ErrorBody, description="No active licence, over the limit, a lot not yours, a template the texts do not fit")
    @blp.doc(summary="Apply for labels (申领); the operator needs an active, in-date trademark licence")
    def post(self, values):
        application, created = service.apply(db.session, current_actor(), values)
        return application, 201 if created else 200


@blp.route("/applications/<int:application_id>", endpoint="application")
class ApplicationItem(MethodView):
    @blp.roles("admin", "operator")
    @blp.response(200, s.LabelApplicationOut)
    @blp.doc(summary="Read an application")
    def get(self, application_id):
        return service.get_application(db.session, current_actor(), application_id)


@blp.route("/applications/<int:application_id>/approve", endpoint="application_approve")
class ApplicationApprove(MethodView):
    @blp.roles("admin")
    @blp.arguments(s.LabelApproveIn)
    @blp.response(201, s.LabelBatchOut)
    @blp.alt_response(409, schema=ErrorBody, description="Already approved or rejected")
    @blp.alt_response(422, schema=ErrorBody, description="More than applied for, over the yearly limit, or no licence")
    @blp.doc(summary="Approve (all or fewer) and issue the batch of serialized labels")
    def post(self, values, application_id):
        return _batch_out(service.approve(db.session, current_actor(), application_id, values["quantity"]))


@blp.route("/applications/<int:application_id>/reject", endpoint="application_reject")
class ApplicationReject(MethodView):
    @blp.roles("admin")
    @blp.arguments(s.LabelRejectIn)
    @blp.response(200, s.LabelApplicationOut)
    @blp.alt_response(409, schema=ErrorBody, description="Already approved or rejected")
    @blp.doc(summary="Reject an application with a reason")
    def post(self, values, application_id):
        return service.reject(db.session, current_actor(), application_id, values["reason"])


# --- batches and ranges ------------------------------------------------------------------------
@blp.route("/batches", endpoint="batches")
class Batches(MethodView):
    @blp.roles("admin", "operator", "agent")
    @blp.arguments(s.LabelBatchQuery, location="query")
    @blp.response(200, s.LabelBatchOut(many=True))
    @blp.paginate()
    @blp.doc(summary="List label batches: operators and agents their operator's, admins all")
    def get(self, filters, pagination_parameters):
        items = one_page(pagination_parameters, service.list_batches, current_actor(), filters)
        return [_batch_out(b) for b in items]


@blp.route("/batches/<int:batch_id>", endpoint="batch")
class BatchItem(MethodView):
    @blp.roles("admin", "operator", "agent")
    @blp.response(200, s.LabelBatchOut)
    @blp.doc(summary="Read a batch with its label counts per state")
    def get(self, batch_id):
        return _batch_out(service.get_batch(db.session, current_actor(), batch_id))


@blp.route("/batches/<int:batch_id>/labels", endpoint="batch_labels")
class BatchLabels(MethodView):
    @blp.roles("admin", "operator")
    @blp.arguments(s.LabelQuery, location="query")
    @blp.response(200, s.LabelOut(many=True))
    @blp.paginate()
    @blp.doc(summary="The batch's labels in serial order (filter by state and serial range)")
    def get(self, filters, pagination_parameters, batch_id):
        return one_page(pagination_parameters, service.list_labels, current_actor(), batch_id, filters)


@blp.route("/batches/<int:batch_id>/activate", endpoint="batch_activate")
class BatchActivate(MethodView):
    @blp.roles("operator", "admin")
    @blp.arguments(s.LabelActivateIn)
    @blp.response(200, s.LabelRangeOut)
    @blp.alt_response(409, schema=ErrorBody, description="Some labels of the range are not printed (nothing changed)")
    @blp.doc(summary="Activate printed labels first…last: applied to product, bound to a lot and pack size")
    def post(self, values, batch_id):
        return service.change_range(db.session, current_actor(), batch_id, "activate", values["first"],
                                    values["last"], lot_id=values["lot_id"], pack_g=values["pack_g"])


@blp.route("/batches/<int:batch_id>/void", endpoint="batch_void")
class BatchVoid(MethodView):
    @blp.roles("operator", "admin")
    @blp.arguments(s.LabelVoidIn)
    @blp.response(200, s.LabelRangeOut)
    @blp.alt_response(409, schema=ErrorBody, description="Some labels are already voided, lost or stolen (nothing changed)")
    @blp.doc(summary="Void labels first…last (a damaged sheet)")
    def post(self, values, batch_id):
        return service.change_range(db.session, current_actor(), batch_id, "void", values["first"], values["last"])


@blp.route("/batches/<int:batch_id>/void-batch", endpoint="batch_void_all")
class BatchVoidAll(MethodView):
    @blp.roles("admin", "operator")
    @blp.arguments(s.LabelVoidIn)
    @blp.response(200, s.LabelBatchOut)
    @blp.alt_response(409, schema=ErrorBody, description="Already voided")
    @blp.doc(summary="Void the whole batch: its issued and printed labels become voided; it can no longer be rendered")
    def post(self, values, batch_id):
        return _batch_out(service.void_batch(db.session, current_actor(), batch_id))


@blp.route("/batches/<int:batch_id>/report", endpoint="batch_report")
class BatchReport(MethodView):
    @blp.roles("operator", "admin")
    @blp.arguments(s.LabelReportIn)
    @blp.response(200, s.LabelRangeOut)
    @blp.alt_response(409, schema=ErrorBody, description="Some labels are already activated, voided or reported")
    @blp.doc(summary="Report labels first…last lost or stolen (label stock, not yet on products)")
    def post(self, values, batch_id):
        return service.change_range(db.session, current_actor(), batch_id, values["state"], values["first"], values["last"])


# --- render jobs -------------------------------------------------------------------------------
def _enqueue_after_commit(job_id: int) -> None:
    """The request commits inside dispatch; this runs after it, and only for a successful answer,
    so a worker never sees a job whose row is not committed."""

    @after_this_request
    def _enqueue(response):
        if response.status_code < 400:
            service.enqueue(job_id)
        return response


@blp.route("/batches/<int:batch_id>/renders", endpoint="batch_renders")
class BatchRenders(MethodView):
    @blp.roles("operator", "admin")
    @blp.arguments(s.LabelRenderIn)
    @blp.response(202, s.LabelRenderOut)
    @blp.alt_response(409, schema=ErrorBody, description="The batch is voided")
    @blp.doc(summary="Render the batch (or serials first…last) to PDF on a worker; poll the job for progress")
    def post(self, values, batch_id):
        job = service.request_render(db.session, current_actor(), batch_id, values["first"], values["last"])
        _enqueue_after_commit(job.id)
        return job


@blp.route("/renders/<int:render_id>", endpoint="render")
class RenderItem(MethodView):
    @blp.roles("operator", "admin", "agent")
    @blp.response(200, s.LabelRenderOut)
    @blp.doc(summary="A render job's status and progress (pages done / total)")
    def get(self, render_id):
        from ..config import current_config

        job = service.get_render(db.session, current_actor(), render_id)
        if job.status in ("queued", "running"):  # a dead worker's job goes back to the queue
            service.requeue_abandoned(db.session, current_config().RENDER_STALE_SECONDS)
        return job


@blp.route("/renders/<int:render_id>/pdf", endpoint="render_pdf")
class RenderPdf(MethodView):
    @blp.roles("operator", "admin", "agent")
    @blp.response(200, description="The PDF (Digest and ETag carry its SHA-256)")
    @blp.alt_response(409, schema=ErrorBody, description="Not rendered yet")
    @blp.doc(summary="Download the rendered PDF")
    def get(self, render_id):
        from ..storage import get_storage

        job = service.get_render(db.session, current_actor(), render_id)
        if job.status != "finished":
            raise AppError("labels.render_not_ready", errors={"status": [f"The render job is {job.status}."]})
        response = send_file(get_storage().open(job.storage_key), mimetype="application/pdf", as_attachment=True,
                             download_name=f"labels-{job.batch_id:06d}-{job.first_serial}-{job.last_serial}.pdf",
                             etag=job.sha256, conditional=True)
        response.headers["X-Content-SHA256"] = job.sha256
        return response


# --- print jobs (the print agent's queue) ------------------------------------------------------
@blp.route("/renders/<int:render_id>/print", endpoint="render_print")
class RenderPrint(MethodView):
    @blp.roles("operator", "admin")
    @blp.arguments(s.PrintRequestIn)
    @blp.response(201, s.PrintJobOut)
    @blp.alt_response(200, schema=s.PrintJobOut, description="Already had: the same client_uuid and content")
    @blp.alt_response(404, schema=ErrorBody, description="No such render job of yours")
    @blp.alt_response(409, schema=ErrorBody, description="Not rendered yet, the batch is voided, labels of the range are voided, lost or stolen (labels.state_conflict), the labels are printed or queued already (ask for a reprint), or client_uuid used with different content")
    @blp.doc(summary="Queue a finished render for the operator's print agent; a reprint needs a reason and is recorded")
    def post(self, values, render_id):
        job, created = service.request_print(db.session, current_actor(), render_id, values["copies"],
                                             values["reprint"], values["reason"],
                                             str(values["client_uuid"]) if values["client_uuid"] else None)
        return job, 201 if created else 200


@blp.route("/print-jobs", endpoint="print_jobs")
class PrintJobs(MethodView):
    @blp.roles("operator", "admin", "agent")
    @blp.arguments(s.PrintJobQuery, location="query")
    @blp.response(200, s.PrintJobOut(many=True))
    @blp.paginate()
    @blp.doc(summary="Print jobs, newest first: operators and agents their operator's, admins all")
    def get(self, filters, pagination_parameters):
        return one_page(pagination_parameters, service.list_print_jobs, current_actor(), filters)


@blp.route("/print-jobs/lease", endpoint="print_job_lease")
class PrintJobLease(MethodView):
    @blp.roles("agent")
    @blp.arguments(s.PrintLeaseIn)
    @blp.response(200, s.PrintJobLeaseOut)
    @blp.alt_response(204, description="No print job is waiting")
    @blp.doc(summary="Lease the oldest waiting print job of the agent's operator (or one whose lease expired)")
    def post(self, values):
        job = service.lease_print_job(db.session, current_actor(), values["printer"])
        return job if job is not None else Response(status=204)


@blp.route("/print-jobs/<int:print_job_id>", endpoint="print_job")
class PrintJobItem(MethodView):
    @blp.roles("operator", "admin", "agent")
    @blp.response(200, s.PrintJobOut)
    @blp.alt_response(404, schema=ErrorBody, description="No such print job of yours")
    @blp.doc(summary="A print job")
    def get(self, print_job_id):
        return service.get_print_job(db.session, current_actor(), print_job_id)


@blp.route("/print-jobs/<int:print_job_id>/ack", endpoint="print_job_ack")
class PrintJobAck(MethodView):
    @blp.roles("agent")
    @blp.arguments(s.PrintAckIn)
    @blp.response(200, s.PrintJobOut)
    @blp.alt_response(404, schema=ErrorBody, description="No such print job of yours")
    @blp.alt_response(409, schema=ErrorBody, description="labels.lease_invalid (not leased to this token) or labels.already_printed (acknowledged already)")
    @blp.doc(summary="The agent's answer: printed (every label's print count goes up) or failed")
    def post(self, values, print_job_id):
        return service.ack_print_job(db.session, current_actor(), print_job_id, values["lease_token"],
                                     values["outcome"], values["printer_answer"])


@blp.route("/print-jobs/<int:print_job_id>/renew", endpoint="print_job_renew")
class PrintJobRenew(MethodView):
    @blp.roles("agent")
    @blp.arguments(s.PrintRenewIn)
    @blp.response(200, s.PrintJobLeaseOut)
    @blp.alt_response(404, schema=ErrorBody, description="No such print job of yours")
    @blp.alt_response(409, schema=ErrorBody, description="labels.lease_invalid: the token no longer holds (leased again, acknowledged or cancelled): do not print")
    @blp.doc(summary="Extend the lease by PRINT_LEASE_SECONDS from now; the agent asks right before printing")
    def post(self, values, print_job_id):
        return service.renew_print_job(db.session, current_actor(), print_job_id, values["lease_token"])


@blp.route("/print-jobs/<int:print_job_id>/cancel", endpoint="print_job_cancel")
class PrintJobCancel(MethodView):
    @blp.roles("operator", "admin")
    @blp.response(200, s.PrintJobOut)
    @blp.alt_response(404, schema=ErrorBody, description="No such print job of yours")
    @blp.alt_response(409, schema=ErrorBody, description="Leased to an agent (not expired), or already acknowledged")
    @blp.doc(summary="Cancel a queued print job (or one whose lease expired)")
    def post(self, print_job_id):
        return service.cancel_print_job(db.session, current_actor(), print_job_id)


@blp.route("/print-jobs/<int:print_job_id>/requeue", endpoint="print_job_requeue")
class PrintJobRequeue(MethodView):
    @blp.roles("operator", "admin")
    @blp.arguments(s.PrintRequeueIn)
    @blp.response(201, s.PrintJobOut)
    @blp.alt_response(404, schema=ErrorBody, description="No such print job of yours")
    @blp.alt_response(409, schema=ErrorBody, description="The job is not failed, was requeued already, its batch is voided, or labels of its range are voided, lost or stolen")
    @blp.doc(summary="Print a failed job again: a new reprint job, recorded with the reason (it may have printed part of its pages)")
    def post(self, values, print_job_id):
        return service.requeue_print_job(db.session, current_actor(), print_job_id, values["reason"])


# --- label counters (累计用标量), under /api/v1/stats ---------------------------------------------
stats_blp = Blueprint("label_stats", __name__, url_prefix="/api/v1/stats",
                      description="Label counters (累计用标量) for the dashboards")


@stats_blp.route("/labels", endpoint="label_counters")
class LabelCounters(MethodView):
    @stats_blp.roles("admin", "inspector", "operator")
    @stats_blp.arguments(s.LabelCounterQuery, location="query")
    @stats_blp.response(200, s.LabelCounterOut(many=True))
    @stats_blp.doc(summary="Labels applied for, approved, issued, printed, activated, voided, lost or stolen, by year, operator or town; an operator sees its own")
    def get(self, args):
        return service.label_counters(db.session, current_actor(), args.pop("group_by"), args)
