"""Trade-chain routes under /api/v1/chain: fruit trades, their corrections, plot quotas, alerts,
warehouses and peel lots.

Operators record and read their own rows, admins everything, inspectors read (and review the
plausibility alerts with the admins). Writes carry a
client UUID: the first answer is 201, a retry with the same content 200, other content 409.
"""
from __future__ import annotations

from flask import jsonify
from flask.views import MethodView

from ..alert_review import AlertAckIn, AlertResolveIn
from ..extensions import db
from ..http import Blueprint, ErrorBody, current_actor, one_page
from . import schemas as s
from . import service

blp = Blueprint("chain", __name__, url_prefix="/api/v1/chain", description="The trade chain: fruit trades, lots, alerts")

READ = ("admin", "operator", "inspector")
WRITE = ("admin", "operator")
STAFF = ("admin", "inspector")


def _created(row, created: bool):
    return row, (201 if created else 200)


@blp.route("/trades")
class Trades(MethodView):
    @blp.roles(*READ)
    @blp.arguments(s.TradeQuery, location="query")
    @blp.response(200, s.TradeOut(many=True))
    @blp.paginate()
    @blp.doc(summary="List fruit trades (current ones; history=true for the audit view)")
    def get(self, filters, pagination_parameters):
        return one_page(pagination_parameters, service.list_trades, current_actor(), filters)

    @blp.roles(*WRITE)
    @blp.arguments(s.TradeIn)
    @blp.response(201, s.TradeOut)
    @blp.alt_response(200, schema=s.TradeOut, description="A retry of the same client_uuid and content")
    @blp.doc(summary="Record a fruit trade (新会柑交易)")
    def post(self, values):
        return _created(*service.create_trade(db.session, current_actor(), values))


@blp.route("/trades/<int:trade_id>")
class Trade(MethodView):
    @blp.roles(*READ)
    @blp.response(200, s.TradeOut)
    @blp.doc(summary="Read a fruit trade")
    def get(self, trade_id):
        return service.get_trade(db.session, current_actor(), trade_id)


@blp.route("/trades/<int:trade_id>/corrections")
class TradeCorrections(MethodView):
    @blp.roles(*WRITE)
    @blp.arguments(s.CorrectionIn)
    @blp.response(201, s.CorrectionOut)
    @blp.alt_response(200, schema=s.CorrectionOut, description="A retry of the same client_uuid and content")
    @blp.doc(summary="Correct a trade: void it, or supersede it with a replacement (append-only)")
    def post(self, values, trade_id):
        correction, created = service.correct_trade(db.session, current_actor(), trade_id, values)
        return _created(service.correction_view(db.session, correction), created)


@blp.route("/plots/<int:plot_id>/quota")
class PlotQuota(MethodView):
    @blp.roles(*STAFF)
    @blp.arguments(s.QuotaQuery, location="query")
    @blp.response(200, s.QuotaOut)
    @blp.doc(summary="A plot's fruit quota for a season, and how much of it current trades used")
    def get(self, args, plot_id):
        return service.quota_status(db.session, current_actor(), plot_id, args.get("season"))


@blp.route("/alerts")
class Alerts(MethodView):
    @blp.roles(*STAFF)
    @blp.arguments(s.AlertQuery, location="query")
    @blp.response(200, s.AlertOut(many=True))
    @blp.paginate()
    @blp.doc(summary="Plausibility alerts, newest first")
    def get(self, filters, pagination_parameters):
        return one_page(pagination_parameters, service.list_alerts, current_actor(), filters)


@blp.route("/alerts/<int:chain_alert_id>")
class AlertItem(MethodView):
    @blp.roles(*STAFF)
    @blp.response(200, s.AlertOut)
    @blp.alt_response(404, schema=ErrorBody, description="No such alert")
    @blp.doc(summary="A plausibility alert")
    def get(self, chain_alert_id):
        return service.get_alert(db.session, current_actor(), chain_alert_id)


@blp.route("/alerts/<int:chain_alert_id>/acknowledge")
class AlertAcknowledge(MethodView):
    @blp.roles(*STAFF)
    @blp.arguments(AlertAckIn)
    @blp.response(200, s.AlertOut)
    @blp.alt_response(404, schema=ErrorBody, description="No such alert")
    @blp.alt_response(409, schema=ErrorBody, description="chain.alert_resolved: resolved already")
    @blp.doc(summary="Acknowledge a plausibility alert (seen; it stays open until resolved)")
    def post(self, values, chain_alert_id):
        return service.acknowledge_alert(db.session, current_actor(), chain_alert_id, values.get("note"))


@blp.route("/alerts/<int:chain_alert_id>/resolve")
class AlertResolve(MethodView):
    @blp.roles(*STAFF)
    @blp.arguments(AlertResolveIn)
    @blp.response(200, s.AlertOut)
    @blp.alt_response(404, schema=ErrorBody, description="No such alert")
    @blp.alt_response(409, schema=ErrorBody, description="chain.alert_resolved: resolved already")
    @blp.doc(summary="Resolve a plausibility alert with a note of what was found and done")
    def post(self, values, chain_alert_id):
        return service.resolve_alert(db.session, current_actor(), chain_alert_id, values["note"])


# --- warehouses --------------------------------------------------------------------------------
@blp.route("/warehouses")
class Warehouses(MethodView):
    @blp.roles(*READ)
    @blp.arguments(s.WarehouseQuery, location="query")
    @blp.response(200, s.WarehouseOut(many=True))
    @blp.paginate()
    @blp.doc(summary="List warehouses")
    def get(self, filters, pagination_parameters):
        return one_page(pagination_parameters, service.list_warehouses, current_actor(), filters)

    @blp.roles(*WRITE)
    @blp.arguments(s.WarehouseIn)
    @blp.response(201, s.WarehouseOut)
    @blp.doc(summary="Register a warehouse (仓库)")
    def post(self, values):
        return service.create_warehouse(db.session, current_actor(), values)


@blp.route("/warehouses/<int:warehouse_id>")
class WarehouseItem(MethodView):
    @blp.roles(*READ)
    @blp.response(200, s.WarehouseOut)
    @blp.doc(summary="Read a warehouse")
    def get(self, warehouse_id):
        return service.get_warehouse(db.session, current_actor(), warehouse_id)

    @blp.roles(*WRITE)
    @blp.arguments(s.WarehousePatch)
    @blp.response(200, s.WarehouseOut)
    @blp.doc(summary="Rename a warehouse or change its address")
    def patch(self, values, warehouse_id):
        return service.update_warehouse(db.session, current_actor(), warehouse_id, values)


# --- peel lots ---------------------------------------------------------------------------------
@blp.route("/lots")
class Lots(MethodView):
    @blp.roles(*READ)
    @blp.arguments(s.LotQuery, location="query")
    @blp.response(200, s.LotOut(many=True))
    @blp.paginate()
    @blp.doc(summary="List peel lots (current ones; history=true includes voided lots)")
    def get(self, filters, pagination_parameters):
        items = one_page(pagination_parameters, service.list_lots, current_actor(), filters)
        return service.annotate(db.session, items)

    @blp.roles(*WRITE)
    @blp.arguments(s.LotIn)
    @blp.response(201, s.LotOut)
    @blp.alt_response(200, schema=s.LotOut, description="A retry of the same client_uuid and content")
    @blp.doc(summary="Make a peel lot (批次) from bought fruit")
    def post(self, values):
        lot, created = service.create_lot(db.session, current_actor(), values)
        return _created(service.annotate(db.session, lot), created)


@blp.route("/lots/<int:lot_id>")
class LotItem(MethodView):
    @blp.roles(*READ)
    @blp.response(200, s.LotOut)
    @blp.doc(summary="Read a peel lot, with its age computed from its harvest date")
    def get(self, lot_id):
        return service.annotate(db.session, service.get_lot(db.session, current_actor(), lot_id))


@blp.route("/lots/<int:lot_id>/void")
class LotVoid(MethodView):
    @blp.roles(*WRITE)
    @blp.arguments(s.LotVoidIn)
    @blp.response(201, s.LotOut)
    @blp.alt_response(200, schema=s.LotOut, description="A retry of the same client_uuid and content")
    @blp.doc(summary="Void a lot (append-only); its fruit or peel is free again. Refused while lots or sales draw on it")
    def post(self, values, lot_id):
        lot, created = service.void_lot(db.session, current_actor(), lot_id, values)
        return _created(service.annotate(db.session, lot), created)



# --- storage and circulation -------------------------------------------------------------------
@blp.route("/lots/<int:lot_id>/moves")
class LotMoves(MethodView):
    @blp.roles(*READ)
    @blp.response(200, s.MoveOut(many=True))
    @blp.doc(summary="A lot's moves between warehouses")
    def get(self, lot_id):
        return service.list_moves(db.session, current_actor(), lot_id)

    @blp.roles(*WRITE)
    @blp.arguments(s.MoveIn)
    @blp.response(201, s.MoveOut)
    @blp.alt_response(200, schema=s.MoveOut, description="A retry of the same client_uuid and content")
    @blp.doc(summary="Move a lot to another of its operator's warehouses (or store a purchase)")
    def post(self, values, lot_id):
        return _created(*service.move_lot(db.session, current_actor(), lot_id, values))


@blp.route("/lots/<int:lot_id>/split")
class LotSplit(MethodView):
    @blp.roles(*WRITE)
    @blp.arguments(s.SplitIn)
    @blp.response(201, s.LotOut(many=True))
    @blp.alt_response(200, schema=s.LotOut(many=True), description="A retry of the same client_uuid and content")
    @blp.doc(summary="Split part of a lot into sub-lots (分装); the lot keeps the rest")
    def post(self, values, lot_id):
        lots, created = service.split_lot(db.session, current_actor(), lot_id, values)
        return _created(service.annotate(db.session, lots), created)


@blp.route("/merges")
class Merges(MethodView):
    @blp.roles(*WRITE)
    @blp.arguments(s.MergeIn)
    @blp.response(201, s.LotOut)
    @blp.alt_response(200, schema=s.LotOut, description="A retry of the same client_uuid and content")
    @blp.doc(summary="Merge kg of several lots of one stage into a new lot; its vintage is the youngest source's")
    def post(self, values):
        lot, created = service.merge_lots(db.session, current_actor(), values)
        return _created(service.annotate(db.session, lot), created)


@blp.route("/lots/<int:lot_id>/sales")
class LotSales(MethodView):
    @blp.roles(*WRITE)
    @blp.arguments(s.SaleIn)
    @blp.response(201, s.SaleOut)
    @blp.alt_response(200, schema=s.SaleOut, description="A retry of the same client_uuid and content")
    @blp.doc(summary="Sell peel from a lot, declaring the vintage year; to an operator it becomes the buyer's lot")
    def post(self, values, lot_id):
        return _created(*service.sell(db.session, current_actor(), lot_id, values))


@blp.route("/sales")
class Sales(MethodView):
    @blp.roles(*READ)
    @blp.arguments(s.SaleQuery, location="query")
    @blp.response(200, s.SaleOut(many=True))
    @blp.paginate()
    @blp.doc(summary="Sales, and purchases from other operators (企业收购): an operator sees both sides of its own")
    def get(self, filters, pagination_parameters):
        return one_page(pagination_parameters, service.list_sales, current_actor(), filters)


@blp.route("/sales/<int:sale_id>")
class SaleItem(MethodView):
    @blp.roles(*READ)
    @blp.response(200, s.SaleOut)
    @blp.doc(summary="Read a sale (seller and buyer both may)")
    def get(self, sale_id):
        return service.get_sale(db.session, current_actor(), sale_id)


@blp.route("/sales/<int:sale_id>/void")
class SaleVoid(MethodView):
    @blp.roles(*WRITE)
    @blp.arguments(s.LotVoidIn)
    @blp.response(201, s.SaleOut)
    @blp.alt_response(200, schema=s.SaleOut, description="A retry of the same client_uuid and content")
    @blp.doc(summary="Void a sale (the seller's correction, append-only); its kg return to the lot")
    def post(self, values, sale_id):
        return _created(*service.void_sale(db.session, current_actor(), sale_id, values))


# --- trace -------------------------------------------------------------------------------------
@blp.route("/lots/<int:lot_id>/trace")
class LotTrace(MethodView):
    @blp.roles(*READ)
    @blp.response(200, s.TraceOut)
    @blp.doc(summary="Trace a lot back to its fruit trades, plots, growers, villages and towns, with kg shares")
    def get(self, lot_id):
        # The service builds exactly TraceOut's shape; answering it as is skips a marshmallow pass
        # over hundreds of rows (flask-smorest returns a Response untouched).
        return jsonify(service.trace_lot(db.session, current_actor(), lot_id))



@blp.route("/lots/<int:lot_id>/epcis")
class LotEpcis(MethodView):
    @blp.roles(*READ)
    @blp.response(200, description="A GS1 EPCIS 2.0 JSON-LD document (EPCISDocument)",
                  content_type="application/ld+json")
    @blp.doc(summary="The lot's history as GS1 EPCIS 2.0 JSON-LD events (harvest, transformation, shipping, receiving)")
    def get(self, lot_id):
        response = jsonify(service.epcis_document(db.session, current_actor(), lot_id))
        response.mimetype = "application/ld+json"
        return response


@blp.route("/plots/<int:plot_id>/forward")
class PlotForward(MethodView):
    @blp.roles(*STAFF)
    @blp.response(200, s.ForwardOut)
    @blp.doc(summary="Trace forward from a plot: its trades, every lot its fruit reached, every sale from those lots")
    def get(self, plot_id):
        return jsonify(service.trace_forward(db.session, current_actor(), plot_id=plot_id))


@blp.route("/growers/<int:grower_id>/forward")
class GrowerForward(MethodView):
    @blp.roles(*STAFF)
    @blp.response(200, s.ForwardOut)
    @blp.doc(summary="Trace forward from a grower household: all its plots' trades, lots and sales")
    def get(self, grower_id):
        return jsonify(service.trace_forward(db.session, current_actor(), grower_id=grower_id))


# --- counters ----------------------------------------------------------------------------------
@blp.route("/counters/trades")
class TradeCounters(MethodView):
    @blp.roles(*READ)
    @blp.arguments(s.TradeCounterQuery, location="query")
    @blp.response(200, s.CounterOut(many=True))
    @blp.doc(summary="Cumulative fruit trade volume (kg, count, value) by town, village, operator, plot, grower, season or stage")
    def get(self, args):
        return service.trade_counters(db.session, current_actor(), args.pop("group_by"), args)


@blp.route("/counters/sales")
class SaleCounters(MethodView):
    @blp.roles(*READ)
    @blp.arguments(s.SaleCounterQuery, location="query")
    @blp.response(200, s.CounterOut(many=True))
    @blp.doc(summary="Peel sold (kg, count, value) by vintage year, buyer kind, seller, buyer or destination")
    def get(self, args):
        return service.sale_counters(db.session, current_actor(), args.pop("group_by"), args)



@blp.route("/inventory")
class Inventory(MethodView):
    @blp.roles(*READ)
    @blp.arguments(s.InventoryQuery, location="query")
    @blp.response(200, s.InventoryOut(many=True))
    @blp.doc(summary="Peel in stock by operator, vintage year and stage (an operator sees its own)")
    def get(self, args):
        return service.inventory(db.session, current_actor(), args)



# --- seedling sales ----------------------------------------------------------------------------
@blp.route("/seedling-sales")
class SeedlingSales(MethodView):
    @blp.roles(*STAFF)
    @blp.arguments(s.SeedlingQuery, location="query")
    @blp.response(200, s.SeedlingSaleOut(many=True))
    @blp.paginate()
    @blp.doc(summary="Seedling sales (种苗销售)")
    def get(self, filters, pagination_parameters):
        return one_page(pagination_parameters, service.list_seedling_sales, current_actor(), filters)

    @blp.roles("admin")
    @blp.arguments(s.SeedlingSaleIn)
    @blp.response(201, s.SeedlingSaleOut)
    @blp.alt_response(200, schema=s.SeedlingSaleOut, description="A retry of the same client_uuid and content")
    @blp.doc(summary="Record seedlings a nursery sold to a grower household")
    def post(self, values):
        return _created(*service.record_seedling_sale(db.session, current_actor(), values))


@blp.route("/seedling-sales/<int:seedling_sale_id>")
class SeedlingSaleItem(MethodView):
    @blp.roles(*STAFF)
    @blp.response(200, s.SeedlingSaleOut)
    @blp.doc(summary="Read a seedling sale")
    def get(self, seedling_sale_id):
        return service.get_seedling_sale(db.session, current_actor(), seedling_sale_id)


@blp.route("/counters/seedlings")
class SeedlingCounters(MethodView):
    @blp.roles(*STAFF)
    @blp.arguments(s.SeedlingCounterQuery, location="query")
    @blp.response(200, s.SeedlingCounterOut(many=True))
    @blp.doc(summary="Seedlings sold per nursery, town (of the grower) or year")
    def get(self, args):
        return service.seedling_counters(db.session, current_actor(), args["group_by"])
