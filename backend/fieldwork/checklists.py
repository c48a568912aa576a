"""Checklist templates, defined in code and versioned per target kind.

A template version never changes once phones use it: a change is a new version beside it, so a
check-in made offline weeks ago on version 1 still validates. `CURRENT` is what phones should
download for new check-ins. Pure: no database, no Flask.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

MAX_MAGNITUDE = 1e15  # any numeric answer beyond this is an error, whatever the item's own range


@dataclass(frozen=True)
class Item:
    key: str
    label: str  # shown on the phone (Chinese)
    type: str  # bool | int | number | choice | text
    required: bool = True
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None

    def error(self, value) -> str | None:
        """Why `value` is not a valid answer, or None."""
        if self.type == "bool":
            return None if isinstance(value, bool) else "Must be true or false."
        if self.type in ("int", "number"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return "Must be a number."
            # Magnitude first: float() and math.isfinite() overflow on a huge int (10**400).
            if isinstance(value, float) and not math.isfinite(value):
                return "Must be a finite number."
            if not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
                return f"Must be a number of magnitude at most {MAX_MAGNITUDE:g}."
            if self.type == "int" and not (isinstance(value, int) or value.is_integer()):
                return "Must be a whole number."
            if self.min is not None and value < self.min or self.max is not None and value > self.max:
                return f"Must be between {self.min:g} and {self.max:g}."
            return None
        if self.type == "choice":
            return None if value in self.choices else f"Must be one of: {', '.join(self.choices)}."
        if self.type == "text":
            if not isinstance(value, str):
                return "Must be text."
            return "At most 2000 characters." if len(value) > 2000 else None
        raise AssertionError(self.type)


@dataclass(frozen=True)
class Template:
    name: str  # plot | operator | warehouse | shop (the target kind it serves)
    version: int
    title: str
    items: tuple[Item, ...] = field(default_factory=tuple)

    def errors(self, answers: dict) -> dict[str, list[str]]:
        """Field errors for `answers` (unknown keys, missing required ones, bad values)."""
        errors: dict[str, list[str]] = {}
        keys = {item.key: item for item in self.items}
        for key in answers:
            if key not in keys:
                errors[str(key)[:60]] = [f"Not an item of checklist {self.name} v{self.version}."]
        for item in self.items:
            if item.key not in answers or answers[item.key] is None:
                if item.required:
                    errors[item.key] = ["Required."]
                continue
            err = item.error(answers[item.key])
            if err:
                errors[item.key] = [err]
        return errors

    def as_dict(self) -> dict:
        return {
            "name": self.name, "version": self.version, "title": self.title,
            "items": [{"key": i.key, "label": i.label, "type": i.type, "required": i.required,
                       "choices": list(i.choices) or None, "min": i.min, "max": i.max} for i in self.items],
        }


STAGES = ("柑青皮", "微红皮", "大红皮", "not_harvesting")
CONDITION = ("good", "fair", "poor")

TEMPLATES: dict[tuple[str, int], Template] = {
    (t.name, t.version): t
    for t in (
        Template("plot", 1, "果园地块巡查", (
            Item("planted", "地块已种植茶枝柑", "bool"),
            Item("tree_count_estimate", "估计株数", "int", required=False, min=0, max=1_000_000),
            Item("variety_is_chazhi", "品种为茶枝柑", "bool", required=False),
            Item("harvest_stage", "采收期", "choice", required=False, choices=STAGES),
            Item("pests_or_disease", "发现病虫害", "bool", required=False),
            Item("outside_fruit_seen", "发现外地果", "bool", required=False),
            Item("remarks", "备注", "text", required=False),
        )),
        Template("operator", 1, "经营者场所检查", (
            Item("licence_displayed", "证明商标使用许可公示", "bool"),
            Item("label_stock_secured", "标签库存妥善保管", "bool"),
            Item("purchase_records_kept", "收购台账完整", "bool"),
            Item("storage_condition", "仓储条件", "choice", required=False, choices=CONDITION),
            Item("remarks", "备注", "text", required=False),
        )),
        Template("warehouse", 1, "仓储检查", (
            Item("storage_condition", "仓储条件", "choice", choices=CONDITION),
            Item("humidity_percent", "相对湿度(%)", "number", required=False, min=0, max=100),
            Item("lots_labelled", "批次标识清楚", "bool"),
            Item("vintage_records_kept", "年份台账完整", "bool"),
            Item("pests_found", "发现虫蛀霉变", "bool", required=False),
            Item("remarks", "备注", "text", required=False),
        )),
        Template("shop", 1, "零售门店检查", (
            Item("gi_labels_present", "商品有证明商标标签", "bool"),
            Item("vintage_claims_plausible", "年份宣称可信", "bool"),
            Item("suspect_products", "发现可疑产品", "bool"),
            Item("remarks", "备注", "text", required=False),
        )),
    )
}
CURRENT: dict[str, int] = {}
for _name, _version in TEMPLATES:
    CURRENT[_name] = max(CURRENT.get(_name, 0), _version)


def template_for(target_kind: str, version: int) -> Template | None:
    """The template a check-in of `target_kind` answers, by version; None if there is none."""
    return TEMPLATES.get((target_kind, version))
