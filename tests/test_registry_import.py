"""Bulk import of growers, plots and operators from CSV and XLSX: the happy paths, every kind of
bad row reported with its line and column, all-or-nothing writes, and the admin-only API route."""
from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import date
from decimal import Decimal

import openpyxl
import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from backend.registry import importing
from backend.registry.models import Grower, Operator, Plot
from tests.factories import credit_code, id_number

URL = "/api/v1/registry/imports"


# --- helpers -------------------------------------------------------------------------------------
def csv_bytes(rows: list[list], encoding: str = "utf-8") -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode(encoding)


def xlsx_bytes(rows: list[list]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def run(session, kind: str, data: bytes, dry_run: bool = False) -> importing.ImportReport:
    return importing.import_bytes(session, kind, data, dry_run=dry_run)


def problems(report) -> dict[tuple[int, str], str]:
    return {(e.line, e.column): e.reason for e in report.errors}


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def place(make):
    """A town with two villages, and one registered grower household in the first."""
    town = make.town(name="会城街道", code="440705001")
    village = make.village(town=town, name="茶坑村", code="440705001201")
    other = make.village(town=town, name="梅江村", code="440705001202")
    grower = make.grower(village=village, household_code="HH-EXIST")
    return {"town": town, "village": village, "other": other, "grower": grower}


# --- happy paths ---------------------------------------------------------------------------------
def test_growers_from_utf8_csv_with_api_field_names(session, place):
    data = csv_bytes([
        ["household_code", "name", "phone", "id_number", "village_code"],
        ["hh-1", "陈大文", "13800138001", id_number(901), "440705001201"],
        ["HH-2", "李美玲", "", "", "440705001202"],
    ])
    report = run(session, "growers", data)
    assert (report.rows, report.inserted, report.errors) == (2, 2, [])
    first = session.scalar(select(Grower).where(Grower.household_code == "HH-1"))  # codes are upper-cased
    assert first.village_id == place["village"].id
    assert first.id_number_masked == id_number(901)[:4] + "*" * 10 + id_number(901)[-4:]
    assert first.id_number_hash and id_number(901) not in first.id_number_hash
    second = session.scalar(select(Grower).where(Grower.household_code == "HH-2"))
    assert second.phone is None and second.id_number_hash is None  # empty cells are null


def test_growers_from_gbk_csv_with_chinese_headers_and_village_names(session, place):
    data = csv_bytes([
        ["户号", "户主", "电话", "身份证号", "镇街", "村"],
        ["HH-10", "黄志强", "13902220000", id_number(902), "会城街道", "梅江村"],
        ["HH-11", "梁秀英", "0750-6612345", "", "会城", "茶坑村"],
    ], encoding="gbk")
    report = run(session, "growers", data)
    assert report.errors == [] and report.inserted == 2
    names = dict(session.execute(select(Grower.name, Grower.village_id).where(Grower.household_code.like("HH-1_"))).all())
    assert names == {"黄志强": place["other"].id, "梁秀英": place["village"].id}


def test_growers_from_xlsx_with_numeric_cells(session, place):
    data = xlsx_bytes([
        ["*户号", "户主姓名", "手机号", "村编码"],
        [20001, "陈国华", 13800138002, 440705001201],  # Excel keeps these as numbers
    ])
    report = run(session, "growers", data)
    assert report.errors == [] and report.inserted == 1
    grower = session.scalar(select(Grower).where(Grower.household_code == "20001"))
    assert grower.phone == "13800138002" and grower.village_id == place["village"].id


def test_plots_from_csv_with_bom_and_full_width_headers(session, place):
    data = "\ufeff" + "地块编号,户号,面积（亩）,株数,种植年份,核定产量(kg),经度,纬度\r\n" \
        "DK-1,HH-EXIST,5.5,400,2012,\"12,000.5\",113.03,22.52\r\n" \
        "DK-2,hh-exist,0.8,60,,,113.031,22.521\r\n"
    report = run(session, "plots", data.encode("utf-8"))
    assert report.errors == [] and report.inserted == 2
    plot = session.scalar(select(Plot).where(Plot.code == "DK-1"))
    assert plot.area_mu == Decimal("5.50") and plot.verified_yield_kg == Decimal("12000.500")
    assert plot.grower_id == place["grower"].id
    assert plot.village_id == place["village"].id  # no village column: the household's village


def test_plots_from_xlsx_with_village_code_and_boundary(session, place):
    lon, lat, d = 113.03, 22.52, 0.0005  # ~100 m x 110 m, about 16 亩
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]
    boundary = json.dumps({"type": "Polygon", "coordinates": [ring]})
    data = xlsx_bytes([
        ["code", "household_code", "village_code", "area_mu", "tree_count", "lon", "lat", "boundary"],
        ["DK-9", "HH-EXIST", "440705001202", 16.5, 1000.0, lon, lat, boundary],
    ])
    report = run(session, "plots", data)
    assert report.errors == [] and report.inserted == 1
    plot = session.scalar(select(Plot).where(Plot.code == "DK-9"))
    assert plot.village_id == place["other"].id and plot.tree_count == 1000
    assert plot.boundary["type"] == "Polygon"


def test_operators_from_csv_with_chinese_values_and_dates(session, place):
    data = csv_bytes([
        ["经营者名称", "统一社会信用代码", "类型", "镇街", "地址", "联系电话", "用标状态", "许可编号", "许可起始日期", "有效期至"],
        ["江门市新会区裕丰陈皮有限公司", credit_code(9001), "企业", "会城街道", "圭峰路1号", "13800000001",
         "有效", "XHCP-2024-00001", "2024/3/1", "2027年2月28日"],
        ["新会区会城宝林陈皮商行", credit_code(9002).lower(), "个体户", "440705001", "", "", "无", "", "", ""],
    ])
    report = run(session, "operators", data)
    assert report.errors == [] and report.inserted == 2
    first = session.scalar(select(Operator).where(Operator.credit_code == credit_code(9001)))
    assert (first.kind, first.licence_status, first.licence_valid_until) == ("enterprise", "active", date(2027, 2, 28))
    second = session.scalar(select(Operator).where(Operator.credit_code == credit_code(9002)))
    assert (second.kind, second.town_id, second.address) == ("shop", place["town"].id, None)


def test_operators_from_xlsx_with_date_cells(session, place):
    data = xlsx_bytes([
        ["name", "credit_code", "kind", "town", "licence_status", "licence_no", "licence_valid_from", "licence_valid_until"],
        ["新会区三江鸿源陈皮加工厂", credit_code(9003), "processor", "会城街道", "active", "XHCP-2025-1",
         date(2025, 1, 1), date(2027, 12, 31)],
    ])
    report = run(session, "operators", data)
    assert report.errors == [] and report.inserted == 1
    assert session.scalar(select(Operator.licence_valid_from).where(Operator.credit_code == credit_code(9003))) == date(2025, 1, 1)


def test_blank_rows_are_skipped_and_line_numbers_stay_those_of_the_sheet(session, place):
    data = csv_bytes([["户号", "户主", "村编码"], ["HH-20", "甲", "440705001201"], [], ["", "", ""], ["HH-21", "", "440705001201"]])
    report = run(session, "growers", data, dry_run=True)
    assert report.rows == 2
    assert problems(report) == {(5, "户主"): "Missing data for required field."}


# --- every bad row, reported ---------------------------------------------------------------------
def test_dry_run_reports_every_bad_plot_with_line_column_and_reason(session, place, make):
    make.plot(grower=place["grower"], code="DK-TAKEN")
    data = csv_bytes([
        ["地块编号", "户号", "村编码", "面积(亩)", "株数", "经度", "纬度", "备注"],
        ["DK-OK", "HH-EXIST", "", "2", "100", "113.03", "22.52", ""],  # 2
        ["DK-3", "HH-EXIST", "", "two", "100", "113.03", "22.52", ""],  # 3 wrong type
        ["DK-4", "HH-EXIST", "", "2", "1e3", "113.03", "22.52", ""],  # 4 wrong type
        ["DK-5", "HH-EXIST", "", "2", "161", "113.03", "22.52", ""],  # 5 > 80 trees per 亩
        ["DK-6", "HH-EXIST", "", "2", "100", "112.30", "22.52", ""],  # 6 outside Xinhui
        ["DK-7", "HH-NOPE", "", "2", "100", "113.03", "22.52", ""],  # 7 unknown grower
        ["DK-8", "HH-EXIST", "440705009999", "2", "100", "113.03", "22.52", ""],  # 8 unknown village
        ["dk-ok", "HH-EXIST", "", "3", "100", "113.03", "22.52", ""],  # 9 duplicate in file
        ["DK-TAKEN", "HH-EXIST", "", "3", "100", "113.03", "22.52", ""],  # 10 already registered
        ["DK-11", "HH-EXIST", "", "-1", "0", "113.03", "22.52", ""],  # 11 out of range
    ])
    before = count(session, Plot)
    report = run(session, "plots", data, dry_run=True)
    found = problems(report)
    assert set(found) == {(1, "备注"), (3, "面积(亩)"), (4, "株数"), (5, "株数"), (6, "经度"), (7, "户号"),
                          (8, "村编码"), (9, "地块编号"), (10, "地块编号"), (11, "面积(亩)")}
    assert "Unknown column" in found[(1, "备注")]
    assert found[(3, "面积(亩)")] == "Not a valid number."
    assert found[(4, "株数")] == "Not a valid integer."
    assert "exceeds 80 trees per 亩" in found[(5, "株数")]
    assert "outside Xinhui" in found[(6, "经度")]
    assert "HH-NOPE" in found[(7, "户号")]
    assert "440705009999" in found[(8, "村编码")]
    assert "line 2" in found[(9, "地块编号")]
    assert "already registered" in found[(10, "地块编号")]
    assert (report.rows, report.inserted) == (10, 0)
    assert [e.line for e in report.errors] == sorted(e.line for e in report.errors)
    assert count(session, Plot) == before


def test_dry_run_reports_bad_operators(session, place, make):
    taken = make.operator(town=place["town"])
    good = credit_code(9100)
    bad_check = good[:17] + ("0" if good[17] != "0" else "1")
    data = csv_bytes([
        ["名称", "统一社会信用代码", "类型", "镇街", "用标状态", "许可编号", "有效期至", "经度", "纬度"],
        ["甲公司", bad_check, "企业", "会城街道", "", "", "", "", ""],  # 2 check character
        ["乙公司", credit_code(9101), "工厂", "会城街道", "", "", "", "", ""],  # 3 unknown kind
        ["丙公司", credit_code(9102), "企业", "火星镇", "", "", "", "", ""],  # 4 unknown town
        ["丁公司", credit_code(9103), "企业", "会城街道", "有效", "", "", "", ""],  # 5 active without number
        ["戊公司", credit_code(9104), "企业", "会城街道", "", "", "2025-13-01", "", ""],  # 6 bad date
        ["己公司", taken.credit_code, "企业", "会城街道", "", "", "", "", ""],  # 7 already registered
        ["庚公司", credit_code(9105), "企业", "会城街道", "", "", "", "113.03", ""],  # 8 half a point
    ])
    found = problems(run(session, "operators", data, dry_run=True))
    assert set(found) == {(2, "统一社会信用代码"), (3, "类型"), (4, "镇街"), (5, "许可编号"), (6, "有效期至"),
                          (7, "统一社会信用代码"), (8, "纬度")}
    assert "Check character" in found[(2, "统一社会信用代码")]
    assert "enterprise" in found[(3, "类型")]
    assert "火星镇" in found[(4, "镇街")]


def test_dry_run_reports_bad_growers(session, place):
    good_id = id_number(951)
    bad_id = good_id[:17] + ("0" if good_id[17] != "0" else "1")
    data = csv_bytes([
        ["户号", "户主", "电话", "身份证号", "村编码", "镇街", "村"],
        ["HH-EXIST", "甲", "", "", "440705001201", "", ""],  # 2 already registered
        ["HH-31", "乙", "12345", "", "440705001201", "", ""],  # 3 bad phone
        ["HH-32", "丙", "", bad_id, "440705001201", "", ""],  # 4 bad ID check character
        ["HH-33", "丁", "", id_number(950), "440705001201", "", ""],  # 5
        ["HH-34", "戊", "", id_number(950), "440705001201", "", ""],  # 6 same ID number as line 5
        ["HH-35", "己", "", "", "", "会城街道", "无名村"],  # 7 unknown village name
        ["HH-36", "庚", "", "", "440705001201", "", "梅江村"],  # 8 code and name disagree
        ["HH-37", "辛", "", "", "", "", ""],  # 9 no village at all
    ])
    found = problems(run(session, "growers", data, dry_run=True))
    assert set(found) == {(2, "户号"), (3, "电话"), (4, "身份证号"), (6, "身份证号"), (7, "村"), (8, "村"), (9, "村编码")}
    assert "Check character" in found[(4, "身份证号")]
    assert "line 5" in found[(6, "身份证号")] and id_number(950) not in found[(6, "身份证号")]


def test_missing_required_columns_are_reported_once_not_per_row(session, place):
    data = csv_bytes([["户号", "电话"]] + [[f"HH-{i}", ""] for i in range(50)])
    report = run(session, "growers", data, dry_run=True)
    assert set(problems(report)) == {(1, "name"), (1, "village_code")}
    assert "户主" in problems(report)[(1, "name")]


def test_duplicate_columns_and_headerless_data_are_reported(session, place):
    data = csv_bytes([["户号", "household_code", "户主", "村编码"], ["HH-40", "HH-40", "甲", "440705001201"]])
    assert set(problems(run(session, "growers", data, dry_run=True))) == {(1, "household_code")}
    data = csv_bytes([["户号", "户主", "村编码", ""], ["HH-41", "甲", "440705001201", "stray"]])
    assert problems(run(session, "growers", data, dry_run=True)) == {
        (2, "column 4"): "This column has no header; name it or delete it."}


@pytest.mark.parametrize("data, reason", [
    (b"", "registry.import_format"),
    (b"  \r\n\r\n", "registry.import_format"),
    (bytes(range(256)) * 40, "registry.import_unsupported"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "registry.import_unsupported"),
    (b"PK\x03\x04 truncated zip", "registry.import_format"),
])
def test_unreadable_files_are_refused_with_a_clear_error(session, data, reason):
    from backend.errors import AppError

    with pytest.raises(AppError) as info:
        run(session, "growers", data)
    assert info.value.reason == reason


def test_a_zip_that_is_not_a_workbook_is_unsupported(session):
    from backend.errors import AppError

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("word/document.xml", "<w/>")
    with pytest.raises(AppError) as info:
        run(session, "growers", out.getvalue())
    assert info.value.status == 415


def test_import_file_reports_file_level_problems_as_line_zero(session, tmp_path):
    junk = tmp_path / "junk.csv"
    junk.write_bytes(bytes(range(256)) * 10)
    report = importing.import_file(session, "growers", junk, dry_run=True)
    assert report.rows == 0 and len(report.errors) == 1
    assert report.errors[0].line == 0 and "neither" in report.errors[0].reason
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert "empty" in importing.import_file(session, "growers", empty).errors[0].reason


def test_row_cap_refuses_oversized_files(session, place, monkeypatch):
    monkeypatch.setattr(importing, "MAX_ROWS", 3)
    data = csv_bytes([["户号", "户主", "村编码"]] + [[f"HH-{i}", "甲", "440705001201"] for i in range(4)])
    from backend.errors import AppError

    with pytest.raises(AppError) as info:
        run(session, "growers", data)
    assert info.value.status == 413 and "3" in info.value.message


# --- all or nothing, and efficient ---------------------------------------------------------------
def test_a_real_import_with_one_bad_row_writes_nothing(session, place, tmp_path):
    rows = [["户号", "户主", "村编码"]] + [[f"HH-5{i:02d}", "陈", "440705001201"] for i in range(30)]
    rows[17][2] = "440705000000"
    path = tmp_path / "growers.csv"
    path.write_bytes(csv_bytes(rows))
    before = count(session, Grower)
    report = importing.import_file(session, "growers", path)
    assert report.inserted == 0 and [(e.line, e.column) for e in report.errors] == [(18, "村编码")]
    assert count(session, Grower) == before


def test_reimporting_the_same_file_reports_duplicates_against_the_database(session, place):
    data = csv_bytes([["户号", "户主", "身份证号", "村编码"], ["HH-60", "陈", id_number(960), "440705001201"]])
    assert run(session, "growers", data).inserted == 1
    found = problems(run(session, "growers", data))
    assert set(found) == {(2, "户号"), (2, "身份证号")}


def test_references_are_resolved_with_a_fixed_number_of_queries(session, place, make):
    """No N+1: checking 5 or 200 plots runs the same number of SQL statements."""
    codes = [g.household_code for g in [place["grower"]] + [make.grower(village=place["village"]) for _ in range(4)]]
    statements: list[str] = []

    def listener(conn, cursor, statement, *args):
        statements.append(statement)

    def queries_for(n: int) -> int:
        statements.clear()
        rows = [["地块编号", "户号", "村编码", "面积(亩)", "株数", "经度", "纬度"]]
        rows += [[f"Q{n}-{i}", codes[i % 5], "440705001201", "2", "100", "113.03", "22.52"]
                 for i in range(n)]
        report = run(session, "plots", csv_bytes(rows), dry_run=True)
        assert report.errors == []
        return len(statements)

    engine = session.get_bind()
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        assert queries_for(5) == queries_for(200)
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


# --- the API route -------------------------------------------------------------------------------
def _post(client, headers, kind: str, data: bytes, filename: str, dry_run: bool | None = None):
    query = "" if dry_run is None else f"?dry_run={'true' if dry_run else 'false'}"
    return client.post(f"{URL}/{kind}{query}", headers=headers,
                       data={"file": (io.BytesIO(data), filename)}, content_type="multipart/form-data")


def test_api_imports_a_csv_and_reports(client, make, place, session):
    headers = make.auth(make.token("admin"))
    data = csv_bytes([["户号", "户主", "村编码"], ["HH-70", "陈", "440705001201"], ["HH-71", "李", "440705001202"]])
    r = _post(client, headers, "growers", data, "growers.csv", dry_run=True)
    assert r.status_code == 200, r.json
    assert r.json == {"kind": "growers", "rows": 2, "inserted": 0, "dry_run": True, "errors": []}
    assert session.scalar(select(func.count()).where(Grower.household_code == "HH-70")) == 0
    r = _post(client, headers, "growers", data, "growers.csv")
    assert r.status_code == 200 and r.json["inserted"] == 2
    assert client.get("/api/v1/registry/growers?q=HH-70", headers=headers).json[0]["name"] == "陈"


def test_api_imports_an_xlsx(client, make, place):
    headers = make.auth(make.token("admin"))
    data = xlsx_bytes([["名称", "统一社会信用代码", "类型", "镇街"], ["新会区某陈皮店", credit_code(9200), "shop", "会城街道"]])
    r = _post(client, headers, "operators", data, "operators.xlsx")
    assert r.status_code == 200, r.json
    assert r.json["inserted"] == 1


def test_api_answers_422_with_every_bad_row_and_writes_nothing(client, make, place, session):
    headers = make.auth(make.token("admin"))
    data = csv_bytes([["户号", "户主", "村编码", "颜色"], ["HH-80", "陈", "440705001201", ""], ["HH-81", "", "9", ""]])
    r = _post(client, headers, "growers", data, "growers.csv")
    assert r.status_code == 422
    body = r.json
    assert body["reason"] == "registry.import_invalid" and body["code"] == 422 and body["status"]
    assert "nothing was imported" in body["message"]
    assert {(e["line"], e["column"]) for e in body["errors"]} == {(1, "颜色"), (3, "户主"), (3, "村编码")}
    assert session.scalar(select(func.count()).where(Grower.household_code == "HH-80")) == 0


def test_api_refuses_a_file_that_is_neither_csv_nor_xlsx(client, make):
    headers = make.auth(make.token("admin"))
    r = _post(client, headers, "plots", b"%PDF-1.4\x00\x01\x02\xff" * 50, "plots.pdf")
    assert r.status_code == 415 and r.json["reason"] == "registry.import_unsupported"


def test_api_without_a_file_or_with_an_unknown_kind(client, make):
    headers = make.auth(make.token("admin"))
    r = client.post(f"{URL}/growers", headers=headers, data={}, content_type="multipart/form-data")
    assert r.status_code == 422 and "file" in json.dumps(r.json)
    r = _post(client, headers, "nurseries", b"a,b\n", "x.csv")
    assert r.status_code == 404


@pytest.mark.parametrize("role", ["operator", "inspector", "agent"])
def test_api_import_is_for_admins_only(client, make, place, role):
    r = _post(client, make.auth(make.token(role)), "growers", csv_bytes([["户号", "户主", "村编码"]]), "g.csv")
    assert r.status_code == 403 and r.json["reason"] == "auth.forbidden"


def test_api_import_needs_a_token(client):
    r = _post(client, {}, "growers", b"a\n", "g.csv")
    assert r.status_code == 401


def test_hostile_cells_are_row_errors_not_crashes(session, place):
    data = csv_bytes([
        ["地块编号", "户号", "面积(亩)", "株数", "经度", "纬度", "边界"],
        ["DK-90", "HH-EXIST", "2", "9" * 5000, "113.03", "22.52", ""],
        ["DK-91", "HH-EXIST", "1e999999", "10", "nan", "inf", "[" * 100_000],
        ["DK-92", "HH-EXIST", "2", "10", "113.03", "22.52", '{"type": "Polygon", "coordinates": [[[1, 2]]]}'],
        ["x" * 5000, "HH-EXIST", "2", "10", "113.03", "22.52", ""],
    ])
    found = problems(run(session, "plots", data, dry_run=True))
    assert {line for line, _ in found} == {2, 3, 4, 5}
    assert (3, "边界") in found and "nested too deeply" in found[(3, "边界")]


@pytest.mark.parametrize("seed", range(6))
def test_api_never_answers_500_to_random_files(client, make, place, seed):
    import random

    rng = random.Random(seed)
    headers = make.auth(make.token("admin"))
    header = ",".join(rng.sample(["户号", "户主", "村编码", "地块编号", "面积(亩)", "株数", "经度", "纬度", "x"], 5))
    choices = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))),
        (header + "\n" + "\n".join(",".join(rng.choice(["", "1", "-1", "1e9", "茶坑村", '"', "HH-EXIST", "\ufffd"])
                                            for _ in range(rng.randrange(1, 9))) for _ in range(20))).encode(),
        b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(500)),
        xlsx_bytes([header.split(","), [rng.random(), None, date(2020, 1, 1), True, "x" * 300]]),
    ]
    for kind in ("growers", "plots", "operators"):
        for data in choices:
            r = _post(client, headers, kind, data, "f.csv", dry_run=rng.random() < 0.5)
            assert r.status_code in (200, 413, 415, 422), (r.status_code, r.json)
            assert r.json["reason"] if r.status_code != 200 else True
