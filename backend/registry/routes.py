"""Registry routes under /api/v1/registry. Every resource has the same four routes:
list (filters, pagination), create, read, update; admins write, the listed roles read."""
from __future__ import annotations

from flask.views import MethodView

from ..extensions import db
from ..http import Blueprint, current_actor, one_page
from . import schemas as s
from . import service

blp = Blueprint("registry", __name__, url_prefix="/api/v1/registry", description="The registry (一库)")

READ_ALL = ("admin", "operator", "inspector")


def crud_routes(name: str, what: str, schema_in, schema_out, query, list_fn, get_fn, save_fn, read_roles):
    """Register `/{name}` (GET list, POST) and `/{name}/{id}` (GET, PATCH) for one resource."""
    # Its own class, so the OpenAPI document names the partial input apart from the full one.
    schema_patch = type(schema_in.__name__.removesuffix("In") + "Patch", (schema_in,), {})

    @blp.route(f"/{name}", endpoint=f"{name}_collection")
    class Collection(MethodView):
        @blp.roles(*read_roles)
        @blp.arguments(query, location="query")
        @blp.response(200, schema_out(many=True))
        @blp.paginate()
        @blp.doc(summary=f"List {name}")
        def get(self, filters, pagination_parameters):
            return one_page(pagination_parameters, list_fn, current_actor(), filters)

        @blp.roles("admin")
        @blp.arguments(schema_in)
        @blp.response(201, schema_out)
        @blp.doc(summary=f"Register a {what}")
        def post(self, values):
            return save_fn(db.session, values)

    @blp.route(f"/{name}/<int:row_id>", endpoint=f"{name}_item")
    class Item(MethodView):
        @blp.roles(*read_roles)
        @blp.response(200, schema_out)
        @blp.doc(summary=f"Read a {what}")
        def get(self, row_id):
            return get_fn(db.session, current_actor(), row_id)

        @blp.roles("admin")
        @blp.arguments(schema_patch(partial=True))
        @blp.response(200, schema_out)
        @blp.doc(summary=f"Update a {what}")
        def patch(self, values, row_id):
            return save_fn(db.session, values, get_fn(db.session, current_actor(), row_id))

    return Collection, Item


crud_routes("towns", "town", s.TownIn, s.TownOut, s.TownQuery,
            service.list_towns, service.get_town, service.save_town, READ_ALL)
crud_routes("villages", "village", s.VillageIn, s.VillageOut, s.VillageQuery,
            service.list_villages, service.get_village, service.save_village, READ_ALL)
crud_routes("growers", "grower household", s.GrowerIn, s.GrowerOut, s.GrowerQuery,
            service.list_growers, service.get_grower, service.save_grower, ("admin", "inspector"))
crud_routes("plots", "plot", s.PlotIn, s.PlotOut, s.PlotQuery,
            service.list_plots, service.get_plot, service.save_plot, READ_ALL)
crud_routes("operators", "operator", s.OperatorIn, s.OperatorOut, s.OperatorQuery,
            service.list_operators, service.get_operator, service.save_operator, READ_ALL + ("agent",))
crud_routes("nurseries", "nursery", s.NurseryIn, s.NurseryOut, s.NurseryQuery,
            service.list_nurseries, service.get_nursery, service.save_nursery, READ_ALL)


# --- bulk import -------------------------------------------------------------------------------
from ..errors import AppError  # noqa: E402
from ..http import ErrorBody  # noqa: E402
from . import importing  # noqa: E402

MAX_ERRORS_SHOWN = 1000  # a report of every bad row of a 200,000-row file is the CLI's job


@blp.route("/imports/<any(growers, plots, operators):kind>", endpoint="imports")
class Import(MethodView):
    @blp.roles("admin")
    @blp.arguments(s.ImportQuery, location="query")
    @blp.arguments(s.ImportFileIn, location="files")
    @blp.response(200, s.ImportReportOut)
    @blp.alt_response(413, schema=ErrorBody, description="The file is over the size or row cap")
    @blp.alt_response(415, schema=ErrorBody, description="The file is neither CSV nor XLSX")
    @blp.alt_response(422, schema=s.ImportErrorBody, description="Bad rows (nothing imported) or an unreadable file")
    @blp.doc(summary="Import growers, plots or operators from a CSV or XLSX file (all or nothing)")
    def post(self, query, files, kind):
        upload = files["file"]
        report = importing.import_stream(db.session, kind, upload.stream, upload.filename, dry_run=query["dry_run"])
        if report.errors:
            shown = report.errors[:MAX_ERRORS_SHOWN]
            more = f" The first {len(shown)} are listed." if len(shown) < len(report.errors) else ""
            raise AppError(
                "registry.import_invalid",
                f"{len(report.errors)} problem(s) in {report.rows} row(s); nothing was imported.{more}",
                errors=importing.errors_as_dicts(shown),
            )
        return report
