"""Input and output schemas of the trade chain. Single fields are checked here; rules needing the
database or the clock (dates, quotas, mass balance) are the service's."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..alert_review import AlertReviewOut
from ..fields import Code, Id, LocalDateTime, Quantity, Text
from .models import ALERT_KINDS, ALERT_STATES, BUYER_KINDS, LOT_KINDS, STAGES

STAGE_DOC = "Harvest stage: gan_qing 柑青 (~Aug 8–Oct 23), wei_hong 微红 (~Oct 8–Nov 22), da_hong 大红 (~Nov 22–Jan 6)"


def QueryId(**kwargs) -> fields.Integer:
    """A row id in a query string (always text there, so not strict like fields.Id)."""
    return fields.Integer(validate=validate.Range(min=1, max=2**31 - 1), **kwargs)


def Season(**kwargs) -> fields.Integer:
    return fields.Integer(validate=validate.Range(min=2000, max=2100), **kwargs)


def ClientUuid(**kwargs):
    return fields.UUID(metadata={"description": "Client-made UUID; a retry with the same content answers as before"},
                       **kwargs)


# --- fruit trades ------------------------------------------------------------------------------
class TradeFields(Schema):
    plot_id = Id(required=True)
    trade_date = fields.Date(required=True)
    stage = fields.String(required=True, validate=validate.OneOf(STAGES), metadata={"description": STAGE_DOC})
    weight_kg = Quantity(places=3, max_value="1000000", required=True, metadata={"description": "Fresh fruit, kg"})
    price_per_kg = Quantity(places=2, max_value="10000", allow_zero=True, required=True,
                            metadata={"description": "CNY per kg"})
    grower_id = Id(load_default=None, allow_none=True,
                   metadata={"description": "The seller as the buyer knows them; a mismatch with the plot raises an alert"})
    village_id = Id(load_default=None, allow_none=True,
                    metadata={"description": "The village as the buyer knows it; a mismatch with the plot raises an alert"})


class TradeIn(TradeFields):
    client_uuid = ClientUuid(required=True)
    operator_id = Id(load_default=None, allow_none=True,
                     metadata={"description": "The buyer; operators may omit it (always themselves), admins must give it"})


class CorrectionIn(Schema):
    client_uuid = ClientUuid(required=True)
    reason = Text(max_length=500, required=True, multiline=True)
    replacement = fields.Nested(TradeFields, load_default=None, allow_none=True,
                                metadata={"description": "The corrected trade; omit or null to void the trade"})


class CorrectionInfo(Schema):
    id = fields.Integer()
    trade_id = fields.Integer()
    replacement_id = fields.Integer(allow_none=True)
    reason = fields.String()
    user_id = fields.Integer()
    created_at = LocalDateTime()


class TradeOut(Schema):
    id = fields.Integer()
    client_uuid = fields.String()
    plot_id = fields.Integer()
    grower_id = fields.Integer()
    village_id = fields.Integer()
    operator_id = fields.Integer()
    trade_date = fields.Date()
    stage = fields.String()
    season = fields.Integer(metadata={"description": "Harvest year"})
    weight_kg = fields.Decimal(as_string=True)
    price_per_kg = fields.Decimal(as_string=True)
    amount_cny = fields.Method("_amount", metadata={"description": "weight × price, CNY"})
    recorded_by = fields.Integer()
    created_at = LocalDateTime()
    status = fields.Method("_status", metadata={"description": "current, superseded or voided"})
    corrected_by = fields.Nested(CorrectionInfo, attribute="correction", allow_none=True)
    replaces_trade_id = fields.Method("_replaces")

    def _amount(self, trade):
        from decimal import ROUND_HALF_UP, Decimal

        return str((trade.weight_kg * trade.price_per_kg).quantize(Decimal("0.01"), ROUND_HALF_UP))

    def _status(self, trade):
        if trade.correction is None:
            return "current"
        return "superseded" if trade.correction.replacement_id else "voided"

    def _replaces(self, trade):
        return trade.replaces.trade_id if trade.replaces is not None else None


class CorrectionOut(CorrectionInfo):
    trade = fields.Nested(TradeOut, metadata={"description": "The corrected (now voided) trade"})
    replacement = fields.Nested(TradeOut, allow_none=True)


class TradeQuery(Schema):
    plot_id = QueryId()
    operator_id = QueryId()
    grower_id = QueryId()
    village_id = QueryId()
    season = Season()
    stage = fields.String(validate=validate.OneOf(STAGES))
    date_from = fields.Date()
    date_to = fields.Date()
    history = fields.Boolean(load_default=False,
                             metadata={"description": "Include superseded and voided trades (the audit view)"})


class QuotaQuery(Schema):
    season = Season(metadata={"description": "Harvest year; default: the current season"})


class QuotaOut(Schema):
    plot_id = fields.Integer()
    season = fields.Integer()
    quota_kg = fields.Decimal(as_string=True)
    basis = fields.String(metadata={"description": "verified (现场核定产量) or ceiling (area × CHAIN_YIELD_CEILING_KG_PER_MU)"})
    traded_kg = fields.Decimal(as_string=True)
    remaining_kg = fields.Decimal(as_string=True, metadata={"description": "Negative when over quota"})
    trade_count = fields.Integer()


# --- alerts ------------------------------------------------------------------------------------
class AlertOut(AlertReviewOut):
    id = fields.Integer()
    kind = fields.String()
    plot_id = fields.Integer(allow_none=True)
    trade_id = fields.Integer(allow_none=True)
    operator_id = fields.Integer(allow_none=True)
    evidence = fields.Dict()
    created_at = LocalDateTime()


class AlertQuery(Schema):
    kind = fields.String(validate=validate.OneOf(ALERT_KINDS))
    state = fields.String(validate=validate.OneOf(ALERT_STATES))
    plot_id = QueryId()
    trade_id = QueryId()
    operator_id = QueryId()


# --- warehouses --------------------------------------------------------------------------------
class WarehouseIn(Schema):
    name = Text(max_length=100, required=True)
    address = Text(max_length=300, load_default=None, allow_none=True)
    operator_id = Id(load_default=None, allow_none=True,
                     metadata={"description": "The owner; operators may omit it (always themselves), admins must give it"})


class WarehousePatch(Schema):
    name = Text(max_length=100)
    address = Text(max_length=300, allow_none=True)


class WarehouseOut(Schema):
    id = fields.Integer()
    operator_id = fields.Integer()
    name = fields.String()
    address = fields.String(allow_none=True)
    created_at = LocalDateTime()


class WarehouseQuery(Schema):
    operator_id = QueryId()


# --- peel lots ---------------------------------------------------------------------------------
class LotInputIn(Schema):
    trade_id = Id(required=True)
    kg = Quantity(places=3, max_value="1000000", required=True, metadata={"description": "Fruit from this trade, kg"})


class LotIn(Schema):
    client_uuid = ClientUuid(required=True)
    operator_id = Id(load_default=None, allow_none=True,
                     metadata={"description": "The maker; operators may omit it (always themselves), admins must give it"})
    code = Code(max_length=40, required=True, metadata={"description": "The operator's own lot number (批次号)"})
    warehouse_id = Id(required=True)
    stage = fields.String(required=True, validate=validate.OneOf(STAGES), metadata={"description": STAGE_DOC})
    production_date = fields.Date(required=True)
    output_kg = Quantity(places=3, max_value="100000", required=True, metadata={"description": "Dried peel, kg"})
    inputs = fields.List(fields.Nested(LotInputIn), required=True, validate=validate.Length(min=1, max=2000),
                         metadata={"description": "The fruit trades (or kg parts of them) that went in"})


class LotVoidIn(Schema):
    client_uuid = ClientUuid(required=True)
    reason = Text(max_length=500, required=True, multiline=True)


class LotInputOut(Schema):
    trade_id = fields.Integer()
    kg = fields.Decimal(as_string=True)


class AgeOut(Schema):
    years = fields.Integer(metadata={"description": "Full years since harvest_date"})
    days = fields.Integer()
    grade = fields.String(metadata={"description": "陈皮 from 3 full years, else 柑皮"})


class LotCorrectionInfo(Schema):
    id = fields.Integer()
    reason = fields.String()
    user_id = fields.Integer()
    created_at = LocalDateTime()


class LotSourceOut(Schema):
    source_lot_id = fields.Integer()
    kg = fields.Decimal(as_string=True)


class LotOut(Schema):
    id = fields.Integer()
    client_uuid = fields.String()
    operator_id = fields.Integer()
    code = fields.String()
    kind = fields.String(metadata={"description": "production (from fruit), split, merge or purchase (from lots)"})
    warehouse_id = fields.Integer(allow_none=True, metadata={"description": "Where it is now; null: a purchase not stored yet"})
    stage = fields.String()
    season = fields.Integer(metadata={"description": "Harvest year of its fruit (the vintage)"})
    harvest_date = fields.Date(metadata={"description": "The latest trade date of its fruit"})
    production_date = fields.Date()
    input_kg = fields.Decimal(as_string=True)
    output_kg = fields.Decimal(as_string=True)
    peel_ratio = fields.Method("_ratio", metadata={"description": "output_kg / input_kg (production lots)"})
    age = fields.Method("_age", metadata={"description": "Computed from harvest_date today; never stored"})
    kg_left = fields.Decimal(as_string=True, allow_none=True,
                             metadata={"description": "What it holds now: output_kg minus splits, merges and sales from it"})
    inputs = fields.List(fields.Nested(LotInputOut), metadata={"description": "Fruit (production lots)"})
    sources = fields.List(fields.Nested(LotSourceOut), metadata={"description": "Source lots (split, merge, purchase)"})
    recorded_by = fields.Integer()
    created_at = LocalDateTime()
    status = fields.Method("_status", metadata={"description": "current or voided"})
    voided_by = fields.Nested(LotCorrectionInfo, attribute="correction", allow_none=True)

    def _ratio(self, lot):
        from decimal import Decimal

        if lot.kind != "production":
            return None
        return str((lot.output_kg / lot.input_kg).quantize(Decimal("0.0001")))

    def _age(self, lot):
        from .rules import age

        return AgeOut().dump(age(lot.harvest_date))

    def _status(self, lot):
        return "current" if lot.correction is None else "voided"


class LotQuery(Schema):
    operator_id = QueryId()
    kind = fields.String(validate=validate.OneOf(LOT_KINDS))
    warehouse_id = QueryId()
    season = Season()
    stage = fields.String(validate=validate.OneOf(STAGES))
    history = fields.Boolean(load_default=False, metadata={"description": "Include voided lots"})



# --- storage and circulation -------------------------------------------------------------------
class MoveIn(Schema):
    client_uuid = ClientUuid(required=True)
    warehouse_id = Id(required=True)
    moved_on = fields.Date(required=True)


class MoveOut(Schema):
    id = fields.Integer()
    lot_id = fields.Integer()
    from_warehouse_id = fields.Integer(allow_none=True)
    to_warehouse_id = fields.Integer()
    moved_on = fields.Date()
    user_id = fields.Integer()
    created_at = LocalDateTime()


class SplitPartIn(Schema):
    code = Code(max_length=40, required=True)
    kg = Quantity(places=3, max_value="100000", required=True)
    warehouse_id = Id(load_default=None, allow_none=True, metadata={"description": "Default: where the lot is"})


class SplitIn(Schema):
    client_uuid = ClientUuid(required=True)
    split_on = fields.Date(required=True)
    parts = fields.List(fields.Nested(SplitPartIn), required=True, validate=validate.Length(min=1, max=500))


class MergeSourceIn(Schema):
    lot_id = Id(required=True)
    kg = Quantity(places=3, max_value="100000", required=True)


class MergeIn(Schema):
    client_uuid = ClientUuid(required=True)
    operator_id = Id(load_default=None, allow_none=True)
    code = Code(max_length=40, required=True)
    warehouse_id = Id(required=True)
    merged_on = fields.Date(required=True)
    sources = fields.List(fields.Nested(MergeSourceIn), required=True, validate=validate.Length(min=2, max=500))


class SaleIn(Schema):
    client_uuid = ClientUuid(required=True)
    sale_date = fields.Date(required=True)
    kg = Quantity(places=3, max_value="100000", required=True)
    vintage_year = fields.Integer(strict=True, required=True, validate=validate.Range(min=1900, max=2100),
                                  metadata={"description": "The harvest year the sale declares (销售陈皮年份)"})
    claimed_age_years = fields.Integer(strict=True, load_default=None, allow_none=True,
                                       validate=validate.Range(min=0, max=100),
                                       metadata={"description": "Age claimed on the sale (e.g. 5 for 五年陈), if any"})
    price_per_kg = Quantity(places=2, max_value="1000000", allow_zero=True, load_default=None, allow_none=True)
    buyer_kind = fields.String(required=True, validate=validate.OneOf(BUYER_KINDS))
    buyer_operator_id = Id(load_default=None, allow_none=True)
    destination = Text(max_length=200, load_default=None, allow_none=True,
                       metadata={"description": "Retail or export: where it went (country, city, shop)"})


class SaleOut(Schema):
    id = fields.Integer()
    client_uuid = fields.String()
    lot_id = fields.Integer()
    seller_operator_id = fields.Integer()
    sale_date = fields.Date()
    kg = fields.Decimal(as_string=True)
    vintage_year = fields.Integer()
    claimed_age_years = fields.Integer(allow_none=True)
    price_per_kg = fields.Decimal(as_string=True, allow_none=True)
    buyer_kind = fields.String()
    buyer_operator_id = fields.Integer(allow_none=True)
    destination = fields.String(allow_none=True)
    received_lot_id = fields.Integer(allow_none=True, metadata={"description": "The buyer's new lot (sales to operators)"})
    recorded_by = fields.Integer()
    created_at = LocalDateTime()
    status = fields.Method("_status", metadata={"description": "current or voided"})
    voided_by = fields.Nested(LotCorrectionInfo, attribute="correction", allow_none=True)

    def _status(self, sale):
        return "current" if sale.correction is None else "voided"


class SaleQuery(Schema):
    history = fields.Boolean(load_default=False, metadata={"description": "Include voided sales"})
    lot_id = QueryId()
    seller_operator_id = QueryId()
    buyer_operator_id = QueryId()
    buyer_kind = fields.String(validate=validate.OneOf(BUYER_KINDS))
    vintage_year = fields.Integer(validate=validate.Range(min=1900, max=2100))


# --- trace -------------------------------------------------------------------------------------
class _Share(Schema):
    fruit_kg = fields.String(metadata={"description": "Fresh fruit (kg) this lot owes it"})
    share = fields.String(metadata={"description": "Fraction of the lot's fruit, 6 places"})


class TraceTrade(_Share):
    trade_id = fields.Integer(allow_none=True, metadata={"description": "Null for another operator's trade"})
    trade_date = fields.String()
    stage = fields.String()
    season = fields.Integer()
    plot_id = fields.Integer()
    grower_id = fields.Integer(allow_none=True, metadata={"description": "Null unless the caller is staff"})
    village_id = fields.Integer()
    town_id = fields.Integer()


class TracePlot(_Share):
    plot_id = fields.Integer()
    code = fields.String()


class TraceGrower(_Share):
    grower_id = fields.Integer()


class TraceVillage(_Share):
    village_id = fields.Integer()
    name = fields.String()


class TraceTown(_Share):
    town_id = fields.Integer()
    name = fields.String()


class TraceLineageSource(Schema):
    lot_id = fields.Integer(allow_none=True)
    kg = fields.String()


class TraceLineage(Schema):
    lot_id = fields.Integer(allow_none=True, metadata={"description": "Null for another operator's lot"})
    kind = fields.String()
    code = fields.String(allow_none=True)
    operator_id = fields.Integer()
    sources = fields.List(fields.Nested(TraceLineageSource))


class TraceOut(Schema):
    lot_id = fields.Integer()
    code = fields.String()
    kind = fields.String()
    season = fields.Integer()
    harvest_date = fields.String()
    output_kg = fields.String()
    fruit_kg = fields.String()
    lineage = fields.List(fields.Nested(TraceLineage))
    trades = fields.List(fields.Nested(TraceTrade))
    plots = fields.List(fields.Nested(TracePlot))
    growers = fields.List(fields.Nested(TraceGrower), metadata={"description": "Staff only (empty for operators)"})
    villages = fields.List(fields.Nested(TraceVillage))
    towns = fields.List(fields.Nested(TraceTown))



# --- counters ----------------------------------------------------------------------------------
class TradeCounterQuery(Schema):
    group_by = fields.String(required=True, validate=validate.OneOf(
        ("town", "village", "operator", "plot", "grower", "season", "stage")))
    season = Season()
    stage = fields.String(validate=validate.OneOf(STAGES))
    operator_id = QueryId()
    village_id = QueryId()
    town_id = QueryId()


class SaleCounterQuery(Schema):
    group_by = fields.String(required=True, validate=validate.OneOf(
        ("vintage_year", "buyer_kind", "seller", "buyer", "destination")))
    vintage_year = fields.Integer(validate=validate.Range(min=1900, max=2100))
    buyer_kind = fields.String(validate=validate.OneOf(BUYER_KINDS))
    year = fields.Integer(validate=validate.Range(min=2000, max=2100), metadata={"description": "Year of the sale date"})


class CounterOut(Schema):
    key = fields.Raw(allow_none=True, metadata={"description": "The group's id or value"})
    kg = fields.Decimal(as_string=True)
    count = fields.Integer()
    value_cny = fields.String()



class ForwardTrade(Schema):
    trade_id = fields.Integer()
    operator_id = fields.Integer()
    plot_id = fields.Integer()
    trade_date = fields.String()
    stage = fields.String()
    season = fields.Integer()
    weight_kg = fields.String()


class ForwardLot(Schema):
    lot_id = fields.Integer()
    kind = fields.String()
    operator_id = fields.Integer()
    code = fields.String()
    season = fields.Integer()
    output_kg = fields.String()
    fruit_kg = fields.String(metadata={"description": "Fresh fruit (kg) in this lot that came from here"})
    voided = fields.Boolean()


class ForwardSale(Schema):
    sale_id = fields.Integer()
    lot_id = fields.Integer()
    sale_date = fields.String()
    kg = fields.String()
    fruit_kg = fields.String(metadata={"description": "Fresh fruit (kg) from here in what was sold"})
    vintage_year = fields.Integer()
    buyer_kind = fields.String()
    buyer_operator_id = fields.Integer(allow_none=True)
    destination = fields.String(allow_none=True)
    received_lot_id = fields.Integer(allow_none=True)


class ForwardOut(Schema):
    plot_id = fields.Integer(allow_none=True)
    grower_id = fields.Integer(allow_none=True)
    fruit_kg = fields.String(metadata={"description": "Fruit sold from here in current trades"})
    trades = fields.List(fields.Nested(ForwardTrade))
    lots = fields.List(fields.Nested(ForwardLot))
    sales = fields.List(fields.Nested(ForwardSale))



class InventoryQuery(Schema):
    operator_id = QueryId()
    warehouse_id = QueryId()
    season = Season()
    stage = fields.String(validate=validate.OneOf(STAGES))


class InventoryOut(Schema):
    operator_id = fields.Integer()
    season = fields.Integer(metadata={"description": "Vintage: the harvest year"})
    stage = fields.String()
    lots = fields.Integer(metadata={"description": "Current lots holding some of it"})
    kg = fields.Decimal(as_string=True)



# --- seedling sales ----------------------------------------------------------------------------
class SeedlingSaleIn(Schema):
    client_uuid = ClientUuid(required=True)
    nursery_id = Id(required=True)
    grower_id = Id(required=True)
    plot_id = Id(load_default=None, allow_none=True, metadata={"description": "The plot they are for, if known"})
    variety = Text(max_length=60, load_default="茶枝柑", metadata={"description": "Default 茶枝柑 (新会柑)"})
    count = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=10_000_000))
    sale_date = fields.Date(required=True)


class SeedlingSaleOut(Schema):
    id = fields.Integer()
    client_uuid = fields.String()
    nursery_id = fields.Integer()
    grower_id = fields.Integer()
    plot_id = fields.Integer(allow_none=True)
    variety = fields.String()
    count = fields.Integer()
    sale_date = fields.Date()
    recorded_by = fields.Integer()
    created_at = LocalDateTime()


class SeedlingQuery(Schema):
    nursery_id = QueryId()
    grower_id = QueryId()
    plot_id = QueryId()
    year = fields.Integer(validate=validate.Range(min=2000, max=2100))


class SeedlingCounterQuery(Schema):
    group_by = fields.String(required=True, validate=validate.OneOf(("nursery", "town", "year")))


class SeedlingCounterOut(Schema):
    key = fields.Integer()
    seedlings = fields.Integer()
    sales = fields.Integer()
