"""Seedling sales (种苗销售): recorded by admins, read by staff, totals per nursery, town and year."""
from __future__ import annotations

import uuid
from datetime import date, timedelta

from backend.chain import rules

URL = "/api/v1/chain/seedling-sales"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def body(nursery, grower, **kw) -> dict:
    return {"client_uuid": str(uuid.uuid4()), "nursery_id": nursery.id, "grower_id": grower.id,
            "count": 300, "sale_date": "2025-03-01", **kw}


def test_an_admin_records_a_seedling_sale_and_a_resend_answers_the_same(client, make):
    admin = bearer(make.token("admin"))
    nursery, plot = make.nursery(), make.plot()
    b = body(nursery, plot.grower, plot_id=plot.id)
    r = client.post(URL, json=b, headers=admin)
    assert r.status_code == 201, r.json
    assert (r.json["variety"], r.json["count"], r.json["plot_id"]) == ("茶枝柑", 300, plot.id)
    assert client.post(URL, json=b, headers=admin).json == r.json
    assert client.post(URL, json={**b, "count": 301}, headers=admin).status_code == 409
    assert client.get(f"{URL}/{r.json['id']}", headers=bearer(make.token("inspector"))).status_code == 200
    assert client.post(URL, json=body(nursery, plot.grower), headers=bearer(make.token("operator"))).status_code == 403


def test_bad_seedling_sales_name_the_field(client, make):
    admin = bearer(make.token("admin"))
    nursery, grower, stranger_plot = make.nursery(), make.grower(), make.plot()
    future = (rules.today() + timedelta(days=1)).isoformat()
    for change, field in [({"count": 0}, "count"), ({"count": -5}, "count"), ({"count": 10**12}, "count"),
                          ({"count": "300"}, "count"), ({"sale_date": future}, "sale_date"),
                          ({"nursery_id": 2_000_000_000}, "nursery_id"), ({"grower_id": 2_000_000_000}, "grower_id"),
                          ({"plot_id": stranger_plot.id}, "plot_id"), ({"variety": "茶枝\x07柑"}, "variety")]:
        r = client.post(URL, json=body(nursery, grower, **change), headers=admin)
        errors = r.json.get("errors", {})
        assert r.status_code == 422 and (field in errors or field in errors.get("json", {})), (change, r.json)


def test_seedling_totals_per_nursery_town_and_year(client, make):
    staff = bearer(make.token("inspector"))
    n1, n2 = make.nursery(), make.nursery()
    g1, g2 = make.grower(), make.grower()
    make.seedling_sale(n1, g1, count=100, sale_date=date(2024, 3, 1))
    make.seedling_sale(n1, g2, count=50, sale_date=date(2025, 3, 1))
    make.seedling_sale(n2, g2, count=7, sale_date=date(2025, 4, 1))
    per_nursery = {r["key"]: r for r in client.get("/api/v1/chain/counters/seedlings", query_string={"group_by": "nursery"},
                                                   headers=staff).json}
    assert (per_nursery[n1.id]["seedlings"], per_nursery[n1.id]["sales"]) == (150, 2)
    per_year = {r["key"]: r["seedlings"] for r in client.get("/api/v1/chain/counters/seedlings",
                                                             query_string={"group_by": "year"}, headers=staff).json}
    assert per_year[2024] >= 100 and per_year[2025] >= 57
    per_town = {r["key"]: r["seedlings"] for r in client.get("/api/v1/chain/counters/seedlings",
                                                             query_string={"group_by": "town"}, headers=staff).json}
    assert per_town[g2.village.town_id] == 57
    listed = client.get(URL, query_string={"nursery_id": n1.id, "year": 2025}, headers=staff).json
    assert [r["count"] for r in listed] == [50]
