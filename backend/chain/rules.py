"""Pure domain rules of the chain (no database): harvest windows, seasons, age, canonical content.

Harvest windows (DESIGN.md, GI texts; they overlap): 柑青 ~Aug 8–Oct 23, 微红 ~Oct 8–Nov 22,
大红 ~Nov 22–Jan 6. A trade dated outside its stage's window raises an alert; one dated outside
every window by more than WINDOW_SLACK_DAYS is refused: that fruit (柑胎, 小青柑) is not chenpi
material. The season is the harvest year: January belongs to the previous year's season.
"""
from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta
from decimal import Decimal

from ..timeutil import SHANGHAI

# stage → ((month, day) start, (month, day) end); an end month before the start month is next year
WINDOWS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "gan_qing": ((8, 8), (10, 23)),
    "wei_hong": ((10, 8), (11, 22)),
    "da_hong": ((11, 22), (1, 6)),
}
STAGE_NAMES = {"gan_qing": "柑青", "wei_hong": "微红", "da_hong": "大红"}
WINDOW_SLACK_DAYS = 7
EARLIEST_DATE = date(2000, 1, 1)
CHENPI_MIN_YEARS = 3  # peel aged at least this long inside the zone is 陈皮; younger is 柑皮
KG = Decimal("0.001")


def today() -> date:
    """Today in Asia/Shanghai (where the trades happen)."""
    return datetime.now(SHANGHAI).date()


def season_of(day: date) -> int:
    """The harvest year a date belongs to: January's 大红 fruit is the previous year's harvest."""
    return day.year - 1 if day.month == 1 else day.year


def stage_window(stage: str, season: int) -> tuple[date, date]:
    (sm, sd), (em, ed) = WINDOWS[stage]
    return date(season, sm, sd), date(season + (1 if em < sm else 0), em, ed)


def in_stage_window(stage: str, day: date) -> bool:
    start, end = stage_window(stage, season_of(day))
    return start <= day <= end


def in_any_window(day: date, slack_days: int = WINDOW_SLACK_DAYS) -> bool:
    slack = timedelta(days=slack_days)
    season = season_of(day)
    for stage in WINDOWS:
        start, end = stage_window(stage, season)
        if start - slack <= day <= end + slack:
            return True
    return False


def age(harvest: date, on: date | None = None) -> dict:
    """Full years and days since harvest, and what the peel may be called."""
    on = on or today()
    years = on.year - harvest.year - ((on.month, on.day) < (harvest.month, harvest.day))
    return {
        "years": max(years, 0),
        "days": max((on - harvest).days, 0),
        "grade": "陈皮" if years >= CHENPI_MIN_YEARS else "柑皮",
    }


def kg(value) -> Decimal:
    """A database number (SQLite hands back floats for sums) as Decimal kg, 3 places."""
    return Decimal(str(value or 0)).quantize(KG)


def content_hash(content: dict) -> str:
    """A stable fingerprint of a request's meaning, for client-UUID idempotency."""
    text = json.dumps(content, sort_keys=True, default=_canon, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _canon(value):
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
