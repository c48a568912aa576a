"""The EPCIS 2.0 export of a lot's history, checked against the structure the GS1 EPCIS 2.0 JSON
schema requires (checked explicitly here: required members, allowed member names, CBV values,
time and offset formats, quantity elements, URIs)."""
from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from urllib.parse import urlparse

from backend.chain.service.epcis import EPCIS_CONTEXT

API = "/api/v1/chain"
DOCUMENT_MEMBERS = {"@context", "id", "type", "schemaVersion", "creationDate", "instanceIdentifier", "sender",
                    "receiver", "epcisHeader", "epcisBody"}
COMMON = {"@context", "type", "eventTime", "recordTime", "eventTimeZoneOffset", "eventID", "errorDeclaration"}
WHAT_WHERE_WHY = {"bizStep", "disposition", "readPoint", "bizLocation", "bizTransactionList", "sourceList",
                  "destinationList", "sensorElementList", "persistentDisposition", "certificationInfo"}
EVENT_MEMBERS = {
    "ObjectEvent": COMMON | WHAT_WHERE_WHY | {"epcList", "quantityList", "action", "ilmd"},
    "TransformationEvent": COMMON | WHAT_WHERE_WHY | {"inputEPCList", "inputQuantityList", "outputEPCList",
                                                      "outputQuantityList", "transformationID", "ilmd"},
}
CBV_BIZ_STEPS = {"accepting", "arriving", "assembling", "collecting", "commissioning", "consigning", "creating_class_instance",
                 "cycle_counting", "decommissioning", "departing", "destroying", "disassembling", "dispensing", "encoding",
                 "entering_exiting", "holding", "inspecting", "installing", "killing", "loading", "other", "packing",
                 "picking", "receiving", "removing", "repackaging", "repairing", "replacing", "reserving",
                 "retail_selling", "shipping", "staging_outbound", "stock_taking", "stocking", "storing", "transporting",
                 "unloading", "unpacking", "void_shipping", "sensor_reporting", "sampling"}
CBV_DISPOSITIONS = {"active", "container_closed", "damaged", "destroyed", "dispensed", "disposed", "encoded", "expired",
                    "in_progress", "in_transit", "inactive", "no_pedigree_match", "non_sellable_other", "partially_dispensed",
                    "recalled", "reserved", "retail_sold", "returned", "sellable_accessible", "sellable_not_accessible",
                    "stolen", "unknown", "available", "completeness_verified", "completeness_inferred", "conformant",
                    "container_open", "mismatch_instance", "mismatch_class", "mismatch_quantity", "needs_replacement",
                    "non_conformant", "unavailable"}
SOURCE_DEST_TYPES = {"owning_party", "possessing_party", "location"}
OFFSET = re.compile(r"^([+]|[-])((0[0-9]|1[0-3]):([0-5][0-9])|14:00)$")
UOM = re.compile(r"^[A-Z0-9]{2,3}$")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def is_uri(value) -> bool:
    return isinstance(value, str) and bool(urlparse(value).scheme) and " " not in value


def is_time(value) -> bool:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    except (TypeError, ValueError):
        return False


def problems_of(doc: dict) -> list[str]:
    """Everything in `doc` the EPCIS 2.0 JSON schema would refuse (for the members we emit)."""
    out = []
    prefixes = {k for ctx in doc.get("@context", []) if isinstance(ctx, dict) for k in ctx}

    def extension_ok(name: str) -> bool:
        return ":" in name and name.split(":", 1)[0] in prefixes

    for name in ("@context", "type", "schemaVersion", "creationDate", "epcisBody"):
        if name not in doc:
            out.append(f"document lacks {name}")
    out += [f"document member {k}" for k in doc if k not in DOCUMENT_MEMBERS and not extension_ok(k)]
    if doc.get("type") != "EPCISDocument" or doc.get("schemaVersion") != "2.0" or not is_time(doc.get("creationDate")):
        out.append("document type, schemaVersion or creationDate")
    if EPCIS_CONTEXT not in doc.get("@context", []):
        out.append("the EPCIS 2.0 context is missing")
    events = doc.get("epcisBody", {}).get("eventList")
    if not isinstance(events, list):
        return out + ["epcisBody.eventList is not a list"]

    def quantities(n, name, items):
        if not isinstance(items, list) or not items:
            out.append(f"event {n}: {name} empty")
            return
        for q in items:
            if set(q) - {"epcClass", "quantity", "uom"} or not is_uri(q.get("epcClass")) \
                    or not isinstance(q.get("quantity"), (int, float)) or ("uom" in q and not UOM.match(q["uom"])):
                out.append(f"event {n}: bad quantity element {q}")

    for n, e in enumerate(events):
        kind = e.get("type")
        if kind not in EVENT_MEMBERS:
            out.append(f"event {n}: type {kind!r}")
            continue
        out += [f"event {n}: member {k}" for k in e if k not in EVENT_MEMBERS[kind] and not extension_ok(k)]
        if not is_time(e.get("eventTime")) or not OFFSET.match(e.get("eventTimeZoneOffset", "")):
            out.append(f"event {n}: eventTime/eventTimeZoneOffset")
        if "eventID" in e and not is_uri(e["eventID"]):
            out.append(f"event {n}: eventID")
        if "bizStep" in e and e["bizStep"] not in CBV_BIZ_STEPS and not is_uri(e["bizStep"]):
            out.append(f"event {n}: bizStep {e['bizStep']}")
        if "disposition" in e and e["disposition"] not in CBV_DISPOSITIONS:
            out.append(f"event {n}: disposition {e['disposition']}")
        for where in ("readPoint", "bizLocation"):
            if where in e and (set(e[where]) != {"id"} or not is_uri(e[where]["id"])):
                out.append(f"event {n}: {where}")
        for name, key in (("sourceList", "source"), ("destinationList", "destination")):
            for item in e.get(name, []):
                if set(item) != {"type", key} or item["type"] not in SOURCE_DEST_TYPES or not is_uri(item[key]):
                    out.append(f"event {n}: {name} item {item}")
        if "ilmd" in e and (not isinstance(e["ilmd"], dict) or not all(is_uri(k) for k in e["ilmd"])):
            out.append(f"event {n}: ilmd member names must be URIs")
        if kind == "ObjectEvent":
            if e.get("action") not in ("OBSERVE", "ADD", "DELETE"):
                out.append(f"event {n}: action")
            if "ilmd" in e and e.get("action") != "ADD":
                out.append(f"event {n}: ilmd only on ADD")
            if "epcList" not in e:
                quantities(n, "quantityList", e.get("quantityList"))
        else:
            quantities(n, "inputQuantityList", e.get("inputQuantityList"))
            quantities(n, "outputQuantityList", e.get("outputQuantityList"))
    return out


def test_a_lots_history_exports_as_valid_epcis_2(client, make):
    operator, buyer = make.operator(), make.operator()
    h, bh = bearer(make.token("operator", operator)), bearer(make.token("operator", buyer))
    t1 = make.trade(operator, trade_date=date(2025, 10, 20))
    t2 = make.trade(operator, trade_date=date(2025, 11, 2), weight_kg=Decimal("600"))
    w1, w2 = make.warehouse(operator), make.warehouse(operator)
    lot = make.lot(operator, [t1, t2], warehouse_id=w1.id, output_kg=Decimal("80"))
    client.post(f"{API}/lots/{lot.id}/moves", json={"client_uuid": str(uuid.uuid4()), "warehouse_id": w2.id,
                                                     "moved_on": "2025-12-05"}, headers=h)
    [part] = client.post(f"{API}/lots/{lot.id}/split", json={"client_uuid": str(uuid.uuid4()), "split_on": "2025-12-10",
                         "parts": [{"code": "S", "kg": "30"}]}, headers=h).json
    sale = client.post(f"{API}/lots/{part['id']}/sales", json={"client_uuid": str(uuid.uuid4()), "sale_date": "2025-12-20",
                       "kg": "10", "vintage_year": 2025, "buyer_kind": "operator", "buyer_operator_id": buyer.id},
                       headers=h).json
    client.post(f"{API}/lots/{lot.id}/sales", json={"client_uuid": str(uuid.uuid4()), "sale_date": "2025-12-21", "kg": "5",
                "vintage_year": 2025, "buyer_kind": "export", "destination": "Singapore"}, headers=h)

    r = client.get(f"{API}/lots/{lot.id}/epcis", headers=h)
    assert r.status_code == 200 and r.mimetype == "application/ld+json"
    doc = r.json
    assert problems_of(doc) == []
    events = doc["epcisBody"]["eventList"]
    steps = [(e["type"], e.get("bizStep")) for e in events]
    assert steps.count(("ObjectEvent", "commissioning")) == 2  # the two fruit trades
    assert ("TransformationEvent", "commissioning") in steps and ("ObjectEvent", "storing") in steps
    assert ("ObjectEvent", "shipping") in steps
    fruit_to_peel = next(e for e in events if e["type"] == "TransformationEvent" and e["bizStep"] == "commissioning")
    assert sum(q["quantity"] for q in fruit_to_peel["inputQuantityList"]) == 1600
    assert fruit_to_peel["outputQuantityList"][0]["quantity"] == 80
    assert [e["eventTime"] for e in events] == sorted(e["eventTime"] for e in events)

    # the buyer's lot: its lineage goes back to the fruit, the seller's records stay opaque
    bought = client.get(f"{API}/lots/{sale['received_lot_id']}/epcis", headers=bh).json
    assert problems_of(bought) == []
    kinds = [(e["type"], e.get("bizStep")) for e in bought["epcisBody"]["eventList"]]
    assert ("ObjectEvent", "receiving") in kinds and ("TransformationEvent", "repackaging") in kinds
    text = str(bought)
    assert f"/id/lot/{lot.id}'" not in text and f"/id/trade/{t1.id}'" not in text and "/id/lot/x" in text
    assert f"/id/lot/{sale['received_lot_id']}'" in text
    assert client.get(f"{API}/lots/{lot.id}/epcis", headers=bh).status_code == 404


def test_the_checker_itself_catches_what_the_schema_refuses():
    bad = {"@context": [EPCIS_CONTEXT], "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2025-01-01",
           "epcisBody": {"eventList": [
               {"type": "ObjectEvent", "eventTime": "2025-01-01T12:00:00+08:00", "eventTimeZoneOffset": "+8:00",
                "action": "OBSERVE", "quantityList": [{"epcClass": "not a uri", "quantity": "1"}], "ilmd": {},
                "stage": "x"}]}}
    found = " | ".join(problems_of(bad))
    for expected in ("creationDate", "eventTimeZoneOffset", "bad quantity element", "ilmd only on ADD", "member stage"):
        assert expected in found, found


def _quantities(doc: dict) -> list[float]:
    out = []
    for e in doc["epcisBody"]["eventList"]:
        for name in ("quantityList", "inputQuantityList", "outputQuantityList"):
            out += [q["quantity"] for q in e.get(name, [])]
    return out


def test_a_buyer_sees_only_the_path_to_its_lot_and_its_share_of_the_seller_s_records(client, make):
    seller, buyer, other = make.operator(), make.operator(), make.operator()
    h, bh = bearer(make.token("operator", seller)), bearer(make.token("operator", buyer))
    trade = make.trade(seller, weight_kg=Decimal("2000"))
    lot = make.lot(seller, [trade], output_kg=Decimal("100"))

    def sell(lot_id, kg, **kw):
        body = {"client_uuid": str(uuid.uuid4()), "sale_date": "2025-12-20", "kg": kg, "vintage_year": 2025, **kw}
        r = client.post(f"{API}/lots/{lot_id}/sales", json=body, headers=h)
        assert r.status_code == 201, r.json
        return r.json

    to_buyer = sell(lot.id, "10", buyer_kind="operator", buyer_operator_id=buyer.id)
    sell(lot.id, "7", buyer_kind="operator", buyer_operator_id=other.id, price_per_kg="999")
    sell(lot.id, "5", buyer_kind="export", destination="香港 某行")

    doc = client.get(f"{API}/lots/{to_buyer['received_lot_id']}/epcis", headers=bh).json
    assert problems_of(doc) == []
    events = doc["epcisBody"]["eventList"]
    shipping = [e for e in events if e.get("bizStep") in ("shipping", "retail_selling")]
    assert len(shipping) == 1 and shipping[0]["quantityList"][0]["quantity"] == 10
    text = str(doc)
    assert f"/id/operator/{other.id}'" not in text and "香港" not in text and "999" not in text
    quantities = _quantities(doc)
    assert 2000 not in quantities and 100 not in quantities and 7 not in quantities and 5 not in quantities
    trade_event = next(e for e in events if e["type"] == "ObjectEvent" and e["bizStep"] == "commissioning")
    assert trade_event["quantityList"][0]["quantity"] == 200  # 10 kg of 100 kg peel made from 2,000 kg fruit
    made = next(e for e in events if e["type"] == "TransformationEvent")
    assert made["inputQuantityList"][0]["quantity"] == 200 and made["outputQuantityList"][0]["quantity"] == 10

    # the seller's own export still shows the whole lot and all its sales
    own = client.get(f"{API}/lots/{lot.id}/epcis", headers=h).json
    assert len([e for e in own["epcisBody"]["eventList"] if e.get("bizStep") in ("shipping", "retail_selling")]) == 3
    assert 2000 in _quantities(own) and 100 in _quantities(own)


def test_a_split_lot_s_history_leaves_out_its_parent_s_other_sales(client, make):
    seller, buyer = make.operator(), make.operator()
    h, bh = bearer(make.token("operator", seller)), bearer(make.token("operator", buyer))
    lot = make.lot(seller, [make.trade(seller, weight_kg=Decimal("2000"))], output_kg=Decimal("100"))
    client.post(f"{API}/lots/{lot.id}/sales", json={"client_uuid": str(uuid.uuid4()), "sale_date": "2025-12-20", "kg": "5",
                "vintage_year": 2025, "buyer_kind": "export", "destination": "Singapore"}, headers=h)
    [part] = client.post(f"{API}/lots/{lot.id}/split", json={"client_uuid": str(uuid.uuid4()), "split_on": "2025-12-10",
                         "parts": [{"code": "S", "kg": "30"}]}, headers=h).json
    doc = client.get(f"{API}/lots/{part['id']}/epcis", headers=h).json
    assert problems_of(doc) == []
    assert not [e for e in doc["epcisBody"]["eventList"] if e.get("bizStep") in ("shipping", "retail_selling")]
    assert "Singapore" not in str(doc)
    sale = client.post(f"{API}/lots/{part['id']}/sales", json={"client_uuid": str(uuid.uuid4()), "sale_date": "2025-12-21",
                       "kg": "12", "vintage_year": 2025, "buyer_kind": "operator", "buyer_operator_id": buyer.id},
                       headers=h).json
    bought = client.get(f"{API}/lots/{sale['received_lot_id']}/epcis", headers=bh).json
    assert problems_of(bought) == [] and "Singapore" not in str(bought)
    quantities = _quantities(bought)
    assert 100 not in quantities and 30 not in quantities and 2000 not in quantities and 5 not in quantities
    assert 12 in quantities and 240 in quantities  # 12 kg of peel: 12 of the 30 split, 240 kg of the fruit
