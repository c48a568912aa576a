"""Label templates: every shipped template is valid; bad templates give clear errors (pure)."""
from __future__ import annotations

import pytest

from backend.errors import AppError
from backend.labels import templates as tpl
from backend.labels.templates import TemplateError

SHIPPED = tpl.available()

BASE = """
name = "test roll"
kind = "roll"
[printer]
dpi = 203
[label]
width = 50
height = 30
safe_margin = 1
"""

ELEMENTS = {
    "qr": '[[elements]]\ntype = "qr"\nx = 0.5\ny = 5\nsize = 24\n',
    "header": '[[elements]]\ntype = "text"\nfield = "header"\nx = 1.5\ny = 1\nwidth = 47\nheight = 3.8\nsize = 8\nmin_size = 6\n',
    "operator_name": '[[elements]]\ntype = "text"\nfield = "operator_name"\nx = 25\ny = 5.5\nwidth = 23.5\nheight = 5\nsize = 6\nlines = 2\n',
    "credit_code": '[[elements]]\ntype = "text"\nfield = "credit_code"\nx = 25\ny = 11\nwidth = 23.5\nheight = 2.5\nsize = 5\n',
    "code": '[[elements]]\ntype = "text"\nfield = "code"\nx = 25\ny = 14\nwidth = 23.5\nheight = 4\nsize = 9\n',
    "serial": '[[elements]]\ntype = "text"\nfield = "serial"\nx = 25\ny = 18.5\nwidth = 23.5\nheight = 2.5\nsize = 6\n',
}


def make(base: str = BASE, drop: tuple[str, ...] = (), extra: str = "") -> str:
    """A valid 50 × 30 mm roll template, less the elements in `drop`, plus `extra`."""
    parts = [base] + [text for name, text in ELEMENTS.items() if name not in drop]
    return "\n".join(parts) + "\n" + extra


def errors_of(text: str) -> dict[str, list[str]]:
    with pytest.raises(TemplateError) as err:
        tpl.parse(text, "t")
    assert err.value.reason == "labels.template_invalid" and err.value.status == 422
    assert "Label template t is invalid" in err.value.message
    return err.value.errors


def flat(errors: dict[str, list[str]]) -> str:
    return " | ".join(f"{k}: {m}" for k, v in errors.items() for m in v)


def test_the_shipped_set_has_the_four_required_layouts():
    assert {"a4-3x8-70x37", "a4-4x10-48x25", "roll-50x30", "roll-40x40"} <= set(SHIPPED)


@pytest.mark.parametrize("slug", SHIPPED)
def test_every_shipped_template_is_valid(slug):
    t = tpl.load(slug)
    assert t.qr.quiet_zone >= 4
    assert t.qr.module_dots(t.dpi, t.qr.max_version) >= tpl.MIN_DOTS_PER_MODULE
    fields = {e.field for e in t.texts(tpl.FIELDS)}
    assert set(tpl.REQUIRED_FIELDS) <= fields
    if t.kind == "roll":
        assert (t.page_w, t.page_h) == (t.label_w, t.label_h) and t.per_page == 1


def test_the_a4_sheets_have_their_grids():
    a = tpl.load("a4-3x8-70x37")
    assert (a.cols, a.rows, a.label_w, a.label_h, a.page_w, a.page_h) == (3, 8, 70, 37, 210, 297)
    b = tpl.load("a4-4x10-48x25")
    assert (b.cols, b.rows, b.per_page) == (4, 10, 40) and b.crop_marks
    # slots tile the page without overlapping
    xs = sorted({x for x, _ in b.slots()})
    assert all(x2 - x1 >= b.label_w - 1e-9 for x1, x2 in zip(xs, xs[1:]))


def test_a_minimal_template_parses_and_lengths_take_units():
    t = tpl.parse(make(), "t")
    assert t.kind == "roll" and t.label_w == 50
    t2 = tpl.parse(make().replace("width = 50", 'width = "5cm"').replace("height = 30", 'height = "30mm"'), "t")
    assert (t2.label_w, t2.label_h) == (50, 30)
    # a bare number is in the file's units
    errs = errors_of('units = "cm"\n' + make().replace("width = 50", 'width = "50mm"'))
    assert "50×300 mm label" in flat(errs)


def test_an_element_outside_the_label_is_refused():
    text = make().replace("field = \"code\"\nx = 25", "field = \"code\"\nx = 30")
    errs = errors_of(text)
    assert "text 'code' lies outside the label's printable area" in flat(errs)
    assert any(k.startswith("elements[") for k in errs)


def test_a_qr_quiet_zone_outside_the_label_is_refused():
    errs = errors_of(make().replace("x = 0.5\ny = 5\nsize = 24", "x = 0.5\ny = 8\nsize = 24"))
    assert "with its quiet zone) lies outside" in flat(errs)


def test_a_qr_too_small_for_the_printer_dpi_is_refused_with_the_size_needed():
    errs = errors_of(make().replace("size = 24\n", "size = 12\n", 1))
    msg = flat(errs)
    assert "module would be 2 dots at 203 dpi" in msg and "make size at least" in msg
    # the same box is fine on a 600 dpi printer when the module is still ≥ 0.25 mm
    ok = make().replace("size = 24\n", "size = 12\n", 1).replace("dpi = 203", "dpi = 600")
    assert tpl.parse(ok, "t").qr.module_dots(600, 3) >= 3


def test_a_quiet_zone_under_four_modules_is_refused():
    errs = errors_of(make().replace("size = 24\n", "size = 24\nquiet_zone = 2\n", 1))
    assert "quiet zone of at least 4 modules, not 2" in flat(errs)


def test_unknown_field_key_type_and_top_level_key_are_refused():
    errs = errors_of(make(extra='[[elements]]\ntype = "text"\nfield = "price"\nx = 1\ny = 26\nwidth = 10\nheight = 2\nsize = 5\n'))
    assert "unknown field 'price'" in flat(errs)
    errs = errors_of(make().replace("min_size = 6\n", "min_size = 6\ncolour = \"red\"\n"))
    assert "colour" in flat(errs) and "unknown key" in flat(errs)
    errs = errors_of(make(extra='[[elements]]\ntype = "barcode"\nx = 1\ny = 1\n'))
    assert "unknown element type 'barcode'" in flat(errs)
    errs = errors_of("paper = 1\n" + make())
    assert "paper" in errs


@pytest.mark.parametrize("value, expect", [
    ('"50px"', "unknown unit 'px'"),
    ('"fifty"', "is not a length"),
    ("true", "is not a length"),
    ("-5", "must be greater than 0"),
])
def test_bad_units_and_lengths_are_refused(value, expect):
    errs = errors_of(make().replace("width = 50", f"width = {value}"))
    assert expect in flat(errs)


def test_bad_file_units_and_font_sizes_are_refused():
    assert "unknown unit 'furlong'" in flat(errors_of('units = "furlong"\n' + make()))
    assert "not a font size" in flat(errors_of(make().replace("size = 9\n", 'size = "9px"\n')))
    assert "not legible" in flat(errors_of(make().replace("size = 9\n", "size = 3\n")))


def test_overlapping_elements_are_refused():
    errs = errors_of(make().replace('field = "serial"\nx = 25\ny = 18.5', 'field = "serial"\nx = 25\ny = 15'))
    assert "text 'serial' overlaps text 'code'" in flat(errs)


def test_text_that_cannot_fit_its_box_is_refused():
    errs = errors_of(make().replace("height = 4\nsize = 9", "height = 2\nsize = 9"))
    assert "cannot hold a line of 9 pt" in flat(errs)
    errs = errors_of(make().replace("width = 47\nheight = 3.8", "width = 12\nheight = 3.8"))
    assert "'header'" in flat(errs) and "does not fit" in flat(errs)


def test_missing_required_fields_and_wrong_qr_count_are_refused():
    errs = errors_of(make(drop=("credit_code",)))
    assert "'credit_code' is required on a GI certification-mark label" in flat(errs)
    errs = errors_of(make(drop=("qr",)))
    assert "exactly one qr element, not 0" in flat(errs)


def test_invalid_toml_and_missing_sections_are_refused():
    assert "not valid TOML" in flat(errors_of("name = \n"))
    errs = errors_of('name = "x"\nkind = "roll"\n')
    assert {"printer", "label", "elements"} <= set(errs)
    assert "is not one of sheet, roll" in flat(errors_of(make().replace('kind = "roll"', 'kind = "fan"')))


def test_sheet_rules_grid_fit_crop_marks_page_size():
    sheet = make().replace('kind = "roll"', 'kind = "sheet"') + ""
    sheet = sheet.replace("[printer]", '[page]\nsize = "A4"\n[grid]\nrows = 9\ncols = 4\n[printer]')
    assert tpl.parse(sheet, "t").per_page == 36
    errs = errors_of(sheet.replace("cols = 4", "cols = 5"))
    assert "5 columns of 50 mm" in flat(errs) and "210 mm wide" in flat(errs)
    errs = errors_of(sheet.replace("rows = 9", "rows = 9\ncrop_marks = true\nmargin_top = 1"))
    assert "crop marks" in flat(errs) and "smallest margin is" in flat(errs)
    errs = errors_of(sheet.replace('size = "A4"', 'size = "B9"'))
    assert "'B9' is not a known page size" in flat(errs)
    errs = errors_of(make().replace("[printer]", "[grid]\nrows = 2\ncols = 2\n[printer]"))
    assert "a roll template prints one label per page" in flat(errs)


def test_an_image_must_exist_and_be_an_image(tmp_path):
    (tmp_path / "logo.txt").write_text("not an image")
    img = '[[elements]]\ntype = "image"\npath = "{p}"\nx = 1\ny = 26\nwidth = 6\nheight = 2.5\n'
    f = tmp_path / "t.toml"
    f.write_text(make(extra=img.format(p="missing.png")), encoding="utf-8")
    with pytest.raises(TemplateError) as err:
        tpl.load(f)
    assert "no image file 'missing.png'" in flat(err.value.errors)
    f.write_text(make(extra=img.format(p="logo.txt")), encoding="utf-8")
    with pytest.raises(TemplateError) as err:
        tpl.load(f)
    assert "not a readable image" in flat(err.value.errors)


def test_unknown_template_names_the_known_ones():
    with pytest.raises(AppError) as err:
        tpl.load("no-such-template")
    assert err.value.reason == "labels.template_not_found" and err.value.status == 404
    assert "roll-50x30" in err.value.message


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_bytes(make().encode("gb18030") + "name2 = '陈皮'".encode("gb18030"))
    with pytest.raises(TemplateError) as err:
        tpl.load(f)
    assert "not UTF-8" in flat(err.value.errors)


def test_the_message_lists_several_problems_at_once():
    text = make().replace("width = 50", 'width = "50px"').replace("size = 24\n", "size = 24\nquiet_zone = 1\n", 1)
    errs = errors_of(text)
    assert len(errs) >= 2
