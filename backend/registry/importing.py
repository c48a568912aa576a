"""Bulk import of growers, plots and operators from CSV or XLSX (the association's spreadsheets).

Three steps, kept apart:
1. read: bytes -> header and rows of text (CSV in UTF-8 with or without BOM, UTF-16 or GB18030;
   XLSX through openpyxl in read-only mode), with size and row caps;
2. check: every row goes through the API's own input schema (GrowerIn, PlotIn, OperatorIn) and
   the service's rule functions; references are by natural key (village code or town + village
   names, household code, town name or code), resolved with one query per kind; natural keys are
   checked for duplicates inside the file and against the database;
3. write: one bulk INSERT per file, only if no row is bad (all or nothing).

Line numbers are the spreadsheet's row numbers: the header is line 1. A problem with the file
as a whole (unreadable, too big, not CSV/XLSX) is an AppError; `import_file` (the CLI's entry)
turns it into a single RowError on line 0 instead, so the CLI can print it like the others.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Iterable, Iterator

from marshmallow import Schema, ValidationError
from marshmallow import fields as ma_fields
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import AppError
from . import schemas, service
from .models import Grower, Operator, Plot, Town, Village

KINDS = ("growers", "plots", "operators")
MAX_ROWS = 200_000  # data rows per file; the association's largest list is ~20,000
MAX_BYTES = 64 * 1024 * 1024  # for files from the CLI; the API's request cap is lower
MAX_XLSX_UNCOMPRESSED = 512 * 1024 * 1024  # zip-bomb guard: the workbook's parts, unpacked
MAX_CELL_CHARS = 1_000_000  # a GeoJSON boundary of 5,000 points fits easily
LOOKUP_CHUNK = 5_000  # keys per IN (...) query, well under SQLite's and PostgreSQL's limits
INSERT_CHUNK = 5_000

csv.field_size_limit(max(csv.field_size_limit(), MAX_CELL_CHARS))


@dataclass
class RowError:
    line: int  # spreadsheet row number; the header is line 1, 0 means the file as a whole
    column: str  # the column's header as written in the file (or the field name)
    reason: str


@dataclass
class ImportReport:
    rows: int
    inserted: int
    errors: list[RowError] = field(default_factory=list)
    kind: str = ""
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


# --- columns -------------------------------------------------------------------------------------
def _norm(header: str) -> str:
    """Header matching ignores width (（）vs ()), case, spaces and a required-mark asterisk."""
    text = unicodedata.normalize("NFKC", str(header)).strip().strip("*").strip()
    return re.sub(r"\s+", "", text).lower()


_VILLAGE_REF = {
    "village_code": ("村编码", "村代码", "村编号", "村(社区)编码"),
    "town": ("镇", "镇街", "镇(街)", "镇/街", "镇街名称", "所属镇街", "所属镇", "镇(街道)", "town_name"),
    "town_code": ("镇街编码", "镇编码", "镇街代码", "镇代码"),
    "village": ("村", "村名", "村(社区)", "村/社区", "村委会", "村居", "所属村", "village_name"),
}

COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "growers": {
        "household_code": ("户号", "户编号", "户编码", "农户编号", "种植户编号", "户码"),
        "name": ("户主", "户主姓名", "姓名", "种植户", "种植户姓名"),
        "phone": ("电话", "手机", "手机号", "手机号码", "联系电话"),
        "id_number": ("身份证号", "身份证号码", "身份证", "户主身份证号"),
        **_VILLAGE_REF,
    },
    "plots": {
        "code": ("地块编号", "地块编码", "地块代码", "plot_code"),
        "household_code": ("户号", "户编号", "户编码", "农户编号", "种植户编号", "户码"),
        **_VILLAGE_REF,
        "area_mu": ("面积(亩)", "面积", "亩数", "种植面积(亩)", "种植面积", "地块面积(亩)"),
        "tree_count": ("株数", "种植株数", "果树株数", "树数", "树株数"),
        "planting_year": ("种植年份", "定植年份", "种植年度", "定植年度"),
        "verified_yield_kg": ("核定产量(kg)", "核定产量(公斤)", "现场核定产量(kg)", "现场核定产量(公斤)",
                              "现场核定产量", "核定产量"),
        "lon": ("经度", "longitude", "lng"),
        "lat": ("纬度", "latitude"),
        "boundary": ("边界", "地块边界", "边界(geojson)", "geojson"),
    },
    "operators": {
        "name": ("名称", "经营者名称", "企业名称", "单位名称", "经营者", "主体名称"),
        "credit_code": ("统一社会信用代码", "信用代码", "社会信用代码", "统一信用代码"),
        "kind": ("类型", "经营者类型", "主体类型", "经营类型"),
        "town": _VILLAGE_REF["town"],
        "town_code": _VILLAGE_REF["town_code"],
        "address": ("地址", "经营地址", "住所", "详细地址"),
        "contact_phone": ("联系电话", "电话", "手机", "手机号", "联系方式"),
        "lon": ("经度", "longitude", "lng"),
        "lat": ("纬度", "latitude"),
        "licence_status": ("用标状态", "许可状态", "证明商标状态", "商标许可状态", "授权状态"),
        "licence_no": ("许可编号", "用标许可编号", "许可证号", "商标许可编号", "授权编号"),
        "licence_valid_from": ("许可起始日期", "有效期起", "许可开始日期", "授权日期", "有效期自"),
        "licence_valid_until": ("有效期至", "许可截止日期", "有效期止", "许可到期日期", "到期日期"),
    },
}

# Each entry: one of these columns must be present in the header.
REQUIRED_COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "growers": (("household_code",), ("name",), ("village_code", "village")),
    "plots": (("code",), ("household_code",), ("area_mu",), ("tree_count",), ("lon",), ("lat",)),
    "operators": (("name",), ("credit_code",), ("kind",), ("town", "town_code")),
}

# Chinese (and spelled-out) values a clerk writes, mapped to the API's codes.
VALUE_ALIASES: dict[str, dict[str, str]] = {
    "kind": {"企业": "enterprise", "公司": "enterprise", "有限公司": "enterprise",
             "合作社": "cooperative", "专业合作社": "cooperative", "农民专业合作社": "cooperative",
             "个体户": "shop", "个体工商户": "shop", "店铺": "shop", "商铺": "shop", "商行": "shop", "门店": "shop",
             "加工": "processor", "加工厂": "processor", "加工企业": "processor", "加工户": "processor"},
    "licence_status": {"无": "none", "未申请": "none", "未授权": "none", "有效": "active", "正常": "active",
                       "已授权": "active", "暂停": "suspended", "撤销": "revoked", "吊销": "revoked",
                       "过期": "expired", "已过期": "expired"},
}

# Columns that name another record; they become the API's *_id fields, not schema input.
_PLACE_COLUMNS = ("village_code", "village", "town", "town_code")
_REF_COLUMNS = {"growers": _PLACE_COLUMNS, "plots": (*_PLACE_COLUMNS, "household_code"), "operators": _PLACE_COLUMNS}


def _alias_index(kind: str) -> dict[str, str]:
    index = {}
    for canonical, aliases in COLUMNS[kind].items():
        for alias in (canonical, *aliases):
            index[_norm(alias)] = canonical
    return index


_ALIASES = {kind: _alias_index(kind) for kind in KINDS}
_SCHEMAS: dict[str, Schema] = {"growers": schemas.GrowerIn(), "plots": schemas.PlotIn(), "operators": schemas.OperatorIn()}
_MODELS = {"growers": Grower, "plots": Plot, "operators": Operator}


# --- reading -------------------------------------------------------------------------------------
def _sniff(data: bytes, filename: str | None) -> str:
    """'xlsx' or 'csv', from the content (the name only helps the message)."""
    if data.startswith(b"PK\x03\x04"):
        return "xlsx"
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise AppError("registry.import_unsupported",
                          "This is an old Excel 97-2003 (.xls) workbook; save it as .xlsx or CSV.")
    return "csv"


def _decode(data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ("utf-16",)
    else:
        encodings = ("utf-8-sig", "gb18030")  # Chinese Excel writes GBK, which GB18030 contains
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" not in text:
            return text
        break
    raise AppError("registry.import_unsupported",
                      "The file is neither a CSV text file (UTF-8 or GBK) nor an XLSX workbook.")


def _csv_rows(data: bytes) -> Iterator[tuple[int, list]]:
    text = _decode(data)
    first_line = text.split("\n", 1)[0]
    delimiter = max((",", "\t", ";"), key=first_line.count) if first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    line = 0
    try:
        for line, row in enumerate(reader, start=1):
            yield line, row
    except csv.Error as exc:
        raise AppError("registry.import_format", f"CSV error after line {line}: {exc}.",
                       errors=[_as_dict(RowError(line + 1, "", f"CSV error: {exc}."))]) from None


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list]]:
    import openpyxl

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise AppError("registry.import_format", "The XLSX workbook is damaged (not a readable ZIP archive).") from None
    if "xl/workbook.xml" not in names:
        raise AppError("registry.import_unsupported", "The file is a ZIP archive but not an XLSX workbook.")
    if unpacked > MAX_XLSX_UNCOMPRESSED:
        raise AppError("registry.import_too_large", "The XLSX workbook unpacks to more than "
                       f"{MAX_XLSX_UNCOMPRESSED // 2**20} MB; split it or save it as CSV.")
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl fails in many ways on damaged files
        raise AppError("registry.import_format", f"The XLSX workbook cannot be read ({type(exc).__name__}).") from None
    try:
        if not workbook.worksheets:
            return
        sheet = workbook.worksheets[0]
        try:
            for line, row in enumerate(sheet.iter_rows(values_only=True), start=1):
                yield line, list(row)
        except AppError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise AppError("registry.import_format", f"The XLSX sheet cannot be read ({type(exc).__name__}).") from None
    finally:
        workbook.close()


def _cell_text(value) -> str | None:
    """A cell as trimmed text (None if empty). Excel numbers lose a spurious '.0'."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    return text or None


def _read(data: bytes, filename: str | None) -> tuple[int, list, list[tuple[int, list]]]:
    """(header line, header cells, [(line, cells)]) with blank rows dropped."""
    if not data.strip():
        raise AppError("registry.import_format", "The file is empty.")
    rows = _xlsx_rows(data) if _sniff(data, filename) == "xlsx" else _csv_rows(data)
    header_line, header, body = 0, None, []
    for line, cells in rows:
        cells = [_cell_text(c) for c in cells]
        if not any(c is not None for c in cells):
            continue
        if header is None:
            header_line, header = line, cells
            continue
        if len(body) >= MAX_ROWS:
            raise AppError("registry.import_too_large", f"The file has more than {MAX_ROWS:,} rows; split it.")
        body.append((line, cells))
    if header is None:
        raise AppError("registry.import_format", "The file is empty.")
    return header_line, header, body


# --- checking ------------------------------------------------------------------------------------
class _Header:
    """Which cell holds which column, and how the user wrote each header."""

    def __init__(self, kind: str, line: int, cells: list, errors: list[RowError]):
        self.index: dict[str, int] = {}
        self.label: dict[str, str] = {}
        self.unnamed: list[int] = []
        self.fatal = False
        aliases = _ALIASES[kind]
        for i, cell in enumerate(cells):
            if cell is None:
                self.unnamed.append(i)
                continue
            canonical = aliases.get(_norm(cell))
            if canonical is None:
                known = ", ".join(COLUMNS[kind])
                errors.append(RowError(line, cell, f"Unknown column. Known columns: {known} (or their Chinese names)."))
            elif canonical in self.index:
                self.fatal = True
                errors.append(RowError(line, cell, f"Same column as {self.label[canonical]!r}; keep one."))
            else:
                self.index[canonical] = i
                self.label[canonical] = cell
        for group in REQUIRED_COLUMNS[kind]:
            if not any(c in self.index for c in group):
                self.fatal = True
                names = " or ".join(f"{c} ({COLUMNS[kind][c][0]})" for c in group)
                errors.append(RowError(line, group[0], f"Required column missing: {names}."))

    def column(self, canonical: str) -> str:
        return self.label.get(canonical, canonical)

    def values(self, cells: list) -> dict[str, str | None]:
        return {c: (cells[i] if i < len(cells) else None) for c, i in self.index.items()}


class _Lookups:
    """The referenced rows, fetched with one query per kind of reference."""

    def __init__(self, session: Session, kind: str, rows: list[dict]):
        self.villages_by_code: dict[str, tuple[int, int]] = {}
        self.villages_by_name: dict[tuple[int, str], int] = {}
        self.village_names: dict[str, list[int]] = {}
        self.village_row: dict[int, tuple[str, int]] = {}
        self.towns: dict[str, int] = {}
        self.growers: dict[str, tuple[int, int]] = {}
        for town_id, name, code in session.execute(select(Town.id, Town.name, Town.code)):
            self.towns[code] = town_id
            self.towns[name] = town_id
            for suffix in ("街道", "镇"):  # 会城 for 会城街道, 大泽 for 大泽镇
                if name.endswith(suffix) and len(name) > len(suffix) + 1:
                    self.towns.setdefault(name.removesuffix(suffix), town_id)
        if kind in ("growers", "plots"):
            for village_id, town_id, name, code in session.execute(
                select(Village.id, Village.town_id, Village.name, Village.code)
            ):
                self.villages_by_code[code] = (village_id, town_id)
                self.villages_by_name[(town_id, name)] = village_id
                self.village_names.setdefault(name, []).append(village_id)
                self.village_row[village_id] = (name, town_id)
        if kind == "plots":
            codes = {r["household_code"].upper() for r in rows if r.get("household_code")}
            for chunk in _chunks(sorted(codes)):
                stmt = select(Grower.household_code, Grower.id, Grower.village_id).where(Grower.household_code.in_(chunk))
                for code, grower_id, village_id in session.execute(stmt):
                    self.growers[code] = (grower_id, village_id)

    def town(self, raw: dict) -> tuple[int | None, str | None, str | None]:
        """(town id, column, error) from the town name or code columns."""
        for col in ("town_code", "town"):
            value = raw.get(col)
            if value:
                town_id = self.towns.get(value) or self.towns.get(value.upper())
                if town_id is None:
                    return None, col, f"No town named or coded {value!r}."
                return town_id, col, None
        return None, "town", "A town is required (town name or town_code)."

    def village(self, raw: dict, required: bool) -> tuple[int | None, str | None, str | None]:
        """(village id, column, error) from village_code, or from the town and village names."""
        code, name = raw.get("village_code"), raw.get("village")
        if code:
            found = self.villages_by_code.get(code.upper())
            if found is None:
                return None, "village_code", f"No village with code {code!r}."
            if name and self.village_row[found[0]][0] != name:
                return None, "village", f"Village code {code!r} is {self.village_row[found[0]][0]!r}, not {name!r}."
            return found[0], "village_code", None
        if name:
            if raw.get("town") or raw.get("town_code"):
                town_id, col, err = self.town(raw)
                if err:
                    return None, col, err
                village_id = self.villages_by_name.get((town_id, name))
                if village_id is None:
                    return None, "village", f"No village {name!r} in {raw.get('town') or raw.get('town_code')}."
                return village_id, "village", None
            matches = self.village_names.get(name, [])
            if len(matches) == 1:
                return matches[0], "village", None
            if not matches:
                return None, "village", f"No village named {name!r}."
            return None, "village", f"Several villages are named {name!r}; add the town column or village_code."
        if required:
            return None, "village_code", "A village is required (village_code, or town and village names)."
        return None, None, None


def _chunks(items: list, size: int = LOOKUP_CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


_INT_RE = re.compile(r"^[+-]?\d{1,18}(\.0*)?$")  # longer: the schema says why
_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_DATE_RE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")


def _coerce(schema: Schema, name: str, text: str):
    """Text from a cell, shaped like JSON would bring it, so the schema judges it as the API does.
    What cannot be shaped is passed on as it is and the schema says why it is wrong."""
    f = schema.fields.get(name)
    if isinstance(f, ma_fields.Integer):
        return int(text.split(".")[0]) if _INT_RE.match(text) else text
    if isinstance(f, ma_fields.Decimal):
        return text.replace(",", "") if _THOUSANDS_RE.match(text) else text
    if isinstance(f, ma_fields.Date):
        m = _DATE_RE.match(text)
        if m:
            return f"{int(m[1]):04d}-{int(m[2]):02d}-{int(m[3]):02d}"
        return text.split("T")[0] if re.match(r"^\d{4}-\d{2}-\d{2}T00:00:00$", text) else text
    if isinstance(f, ma_fields.Dict):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValidationError(f"Not valid JSON (GeoJSON expected): {exc}.") from None
        except RecursionError:
            raise ValidationError("Not valid JSON (GeoJSON expected): nested too deeply.") from None
    return text


def _messages(messages) -> str:
    if isinstance(messages, dict):
        return " ".join(f"{k}: {_messages(v)}" for k, v in messages.items())
    if isinstance(messages, (list, tuple)):
        return " ".join(_messages(m) for m in messages)
    return str(messages)


class _Checker:
    def __init__(self, kind: str, header: _Header, errors: list[RowError]):
        self.kind, self.header, self.errors = kind, header, errors
        self.schema = _SCHEMAS[kind]
        self.bad_lines: set[int] = set()

    def error(self, line: int, column: str, reason: str) -> None:
        self.errors.append(RowError(line, self.header.column(column), reason))
        self.bad_lines.add(line)

    @staticmethod
    def field_column(field_name: str, ref_columns: dict[str, str]) -> str:
        """The column a schema field came from (a reference field: the column naming the record)."""
        return ref_columns.get(field_name, field_name)

    def check(self, lookups: _Lookups, line: int, raw: dict) -> dict | None:
        """The row's values for the INSERT, or None after recording its errors."""
        data: dict = {}
        ref_columns: dict[str, str] = {}
        bad_fields: set[str] = set()

        def reference(field_name: str, result) -> None:
            ref_id, column, err = result
            if column:
                ref_columns[field_name] = column
            if err:
                self.error(line, column, err)
                bad_fields.add(field_name)
            elif ref_id is not None:
                data[field_name] = ref_id

        if self.kind == "growers":
            reference("village_id", lookups.village(raw, required=True))
        elif self.kind == "plots":
            code = raw.get("household_code")
            grower = lookups.growers.get(code.upper()) if code else None
            ref_columns["grower_id"] = "household_code"
            if code and grower is None:
                self.error(line, "household_code", f"No grower household with code {code!r}.")
                bad_fields.add("grower_id")
            elif grower is not None:
                data["grower_id"] = grower[0]
            reference("village_id", lookups.village(raw, required=False))
            if "village_id" not in data and "village_id" not in bad_fields:
                if grower is not None:
                    data["village_id"] = grower[1]  # a plot lies in its household's village unless told
                else:
                    bad_fields.add("village_id")  # nothing to add: the household's error says it
        else:
            reference("town_id", lookups.town(raw))

        for column, text in raw.items():
            if text is None or column in _REF_COLUMNS[self.kind]:
                continue
            aliases = VALUE_ALIASES.get(column)
            if aliases:
                text = aliases.get(text, text.lower() if text.isascii() else text)
            try:
                data[column] = _coerce(self.schema, column, text)
            except ValidationError as exc:
                self.error(line, column, _messages(exc.messages))
                bad_fields.add(column)
        try:
            values = self.schema.load({k: v for k, v in data.items() if k not in bad_fields})
        except ValidationError as exc:
            for field_name, messages in exc.messages.items():
                if field_name in bad_fields:
                    continue
                column = self.field_column(field_name, ref_columns)
                reason = _messages(messages)
                if field_name == "id_number" and re.match(r"^\d\.\d+E\+\d+$", data.get("id_number", "") or ""):
                    reason += " (Excel stored it as a number; format the column as text.)"
                self.error(line, column, reason)
            return None
        if bad_fields:
            return None
        try:
            if self.kind == "plots":
                service.check_plot_rules(values)
            elif self.kind == "operators":
                service.check_operator_rules(values)
        except AppError as exc:
            for field_name, messages in (exc.errors or {"": [exc.message]}).items():
                self.error(line, self.field_column(field_name, ref_columns), _messages(messages))
            return None
        if self.kind == "growers":
            values = service.grower_values(values)
        return values


# Natural keys: (value key in the INSERT row, column to report, model column, what it is)
_KEYS = {
    "growers": (("household_code", "household_code", Grower.household_code, "household code"),
                ("id_number_hash", "id_number", Grower.id_number_hash, "ID number")),
    "plots": (("code", "code", Plot.code, "plot code"),),
    "operators": (("credit_code", "credit_code", Operator.credit_code, "credit code"),),
}


def _check_duplicates(session: Session, kind: str, checker: _Checker, good: list[tuple[int, dict]]) -> None:
    for key, column, model_column, what in _KEYS[kind]:
        first_line: dict[str, int] = {}
        for line, values in good:
            value = values.get(key)
            if value is None:
                continue
            if value in first_line:
                shown = "" if key == "id_number_hash" else f" {value!r}"
                checker.error(line, column, f"Duplicate {what}{shown}: already on line {first_line[value]}.")
            else:
                first_line[value] = line
        existing: set[str] = set()
        for chunk in _chunks(sorted(first_line)):
            existing.update(session.scalars(select(model_column).where(model_column.in_(chunk))))
        for value in existing:
            shown = "" if key == "id_number_hash" else f" {value!r}"
            checker.error(first_line[value], column, f"The {what}{shown} is already registered.")


def _progress(iterable: Iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, unit="row", leave=False, **kwargs)


def import_bytes(session: Session, kind: str, data: bytes, filename: str | None = None,
                 dry_run: bool = False, progress: bool = False) -> ImportReport:
    """Check every row and, unless `dry_run` or a row is bad, insert them all.
    Raises AppError for a file that cannot be read at all (format, size, type)."""
    if kind not in KINDS:
        raise AppError("request.invalid", errors={"kind": [f"Must be one of {', '.join(KINDS)}."]})
    if len(data) > MAX_BYTES:
        raise AppError("registry.import_too_large", f"The file is larger than {MAX_BYTES // 2**20} MB; split it.")
    errors: list[RowError] = []
    header_line, header_cells, body = _read(data, filename)
    header = _Header(kind, header_line, header_cells, errors)
    report = ImportReport(rows=len(body), inserted=0, errors=errors, kind=kind, dry_run=dry_run)
    if header.fatal:
        return _finish(report)
    for i in header.unnamed:
        line = next((line for line, cells in body if i < len(cells) and cells[i] is not None), None)
        if line is not None:
            errors.append(RowError(line, f"column {i + 1}", "This column has no header; name it or delete it."))

    raws = [(line, header.values(cells)) for line, cells in body]
    lookups = _Lookups(session, kind, [raw for _, raw in raws])
    checker = _Checker(kind, header, errors)
    good: list[tuple[int, dict]] = []
    for line, raw in _progress(raws, progress, desc=f"checking {kind}"):
        values = checker.check(lookups, line, raw)
        if values is not None:
            good.append((line, values))
    _check_duplicates(session, kind, checker, good)
    if errors or dry_run:
        return _finish(report)

    model = _MODELS[kind]
    rows = [values for _, values in good]
    try:
        for chunk in _progress(list(_chunks(rows, INSERT_CHUNK)), progress, desc=f"inserting {kind}", unit="batch"):
            session.execute(insert(model).execution_options(render_nulls=True), chunk)
        session.flush()
    except IntegrityError:
        # Checked above; only a concurrent writer gets here. The caller rolls back.
        raise AppError("registry.duplicate", "Some of these records were registered by someone else while the "
                       "file was being checked; nothing was imported. Run the import again.") from None
    report.inserted = len(rows)
    return report


def _finish(report: ImportReport) -> ImportReport:
    report.errors.sort(key=lambda e: (e.line, e.column))
    return report


def import_stream(session: Session, kind: str, fileobj, filename: str | None = None,
                  dry_run: bool = False, progress: bool = False) -> ImportReport:
    """Import from an open binary file (an upload). Raises AppError for an unreadable file."""
    data = fileobj.read(MAX_BYTES + 1)
    return import_bytes(session, kind, data, filename, dry_run=dry_run, progress=progress)


def import_file(session: Session, kind: str, path: str | os.PathLike, dry_run: bool = False,
                progress: bool = False) -> ImportReport:
    """Import a CSV or XLSX file (the CLI's entry). Never raises for bad input: a problem with
    the whole file comes back as one RowError on line 0."""
    try:
        if os.path.getsize(path) > MAX_BYTES:
            raise AppError("registry.import_too_large", f"The file is larger than {MAX_BYTES // 2**20} MB; split it.")
        with open(path, "rb") as fh:
            return import_stream(session, kind, fh, os.path.basename(str(path)), dry_run=dry_run, progress=progress)
    except AppError as exc:
        if exc.reason == "request.invalid":
            raise
        errors = [RowError(**e) for e in exc.errors] if isinstance(exc.errors, list) else []
        return ImportReport(rows=0, inserted=0, errors=errors or [RowError(0, "(file)", exc.message)],
                            kind=kind, dry_run=dry_run)


def _as_dict(error: RowError) -> dict:
    return {"line": error.line, "column": error.column, "reason": error.reason}


def errors_as_dicts(errors: list[RowError]) -> list[dict]:
    return [_as_dict(e) for e in errors]
