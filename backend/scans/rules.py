"""Pure scan rules (no database, no Redis): the verdict a consumer sees, the warning text that
fits it, and the fraud rules a scan trips.

Repeat scans have innocent causes (re-checking at home, shop staff showing customers), so the
page only warns past a limit, and alerts weigh distinct devices, places and speed, not counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..geo import haversine_m
from ..timeutil import SHANGHAI
from .settings import Thresholds

BAD_STATES = {"voided": "voided", "lost": "lost", "stolen": "stolen"}
INACTIVE_STATES = ("issued", "printed")

TITLES = {
    "genuine": "正品 · 首次查询",
    "repeat": "正品 · 已被查询过",
    "warn": "谨防假冒",
    "inactive": "标签尚未启用",
    "voided": "标签已作废",
    "lost": "标签已挂失",
    "stolen": "标签已报失窃",
    "unknown": "查无此码",
    "check_code": "请核对编码",
    "rate_limited": "查询过于频繁",
}


@dataclass
class Hit:
    """One fraud rule tripped by a scan: the alert's rule, subject and evidence."""

    rule: str
    subject: str
    evidence: dict = field(default_factory=dict)


def shanghai(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def verdict(state: str | None, count: int, warn_after: int, reported: bool, flagged: bool) -> str:
    if state is None:
        return "unknown"
    if state in BAD_STATES:
        return BAD_STATES[state]
    if state in INACTIVE_STATES:
        return "inactive"
    if reported or flagged or count > warn_after:
        return "warn"
    return "genuine" if count <= 1 else "repeat"


def warning(verdict_: str, count: int, first_at: datetime | None, reasons: list[str]) -> str | None:
    """The sentence the consumer reads under the verdict."""
    first = f",首次查询时间 {shanghai(first_at)}" if first_at else ""
    if verdict_ == "genuine":
        return "您是第一位查询此码的用户,本次查询时间已记录。"
    if verdict_ == "repeat":
        return f"此码已查询过 {count - 1} 次{first}。如非本人查询,请注意核实。"
    if verdict_ == "warn":
        why = ";".join(reasons) if reasons else f"此码已查询过 {count - 1} 次{first}"
        return f"谨防假冒!{why}。请向商家核实,或致电新会陈皮行业协会举报。"
    if verdict_ == "inactive":
        return "此标签尚未由经营者启用,不应出现在售商品上。谨防假冒。"
    if verdict_ in ("voided", "lost", "stolen"):
        return f"此标签{TITLES[verdict_][2:]},不应出现在售商品上。谨防假冒,请向协会举报。"
    if verdict_ == "unknown":
        return "查无此码:此编码从未发放。谨防假冒,请向协会举报。"
    if verdict_ == "check_code":
        return "编码有误,请核对标签上的编码后重新输入(易混字符:0 与 O、1 与 I/L 视为相同)。"
    return None


def located(epoch: float, pos: tuple | None) -> str | None:
    """A scan's place for the impossible-travel rule: 'epoch|lat|lon', with '|r' when the place
    is the client's region (SCAN_REGION_HEADER) rather than the phone's location; `pos` is
    (lat, lon, by_region) or None."""
    if pos is None:
        return None
    return f"{epoch:.3f}|{pos[0]:.5f}|{pos[1]:.5f}" + ("|r" if pos[2] else "")


def _parse_loc(text: str | None):
    """'epoch|lat|lon[|r]' → (epoch, lat, lon, by_region) or None."""
    if not text:
        return None
    try:
        ts, lat, lon, *rest = text.split("|")
        return float(ts), float(lat), float(lon), rest == ["r"]
    except ValueError:
        return None


def travel(previous: str | None, at: datetime, pos: tuple | None, t: Thresholds) -> dict | None:
    """Evidence of impossible travel between the last located scan and this one (`pos`: lat,
    lon, by_region), or None. Where either place is only a region (IP location, often the
    provincial capital), the two must be at least SCAN_REGION_TRAVEL_MIN_KM apart."""
    prev = _parse_loc(previous)
    if prev is None or pos is None:
        return None
    ts, plat, plon, prev_region = prev
    lat, lon, by_region = pos
    km = haversine_m(plon, plat, lon, lat) / 1000
    hours = max(at.timestamp() - ts, 1.0) / 3600
    min_km = max(t.travel_min_km, t.region_travel_min_km) if (by_region or prev_region) else t.travel_min_km
    if km < min_km or km / hours <= t.travel_kmh:
        return None
    evidence = {"km": round(km, 1), "hours": round(hours, 3), "kmh": round(km / hours),
                "from": [plat, plon], "to": [lat, lon]}
    if by_region or prev_region:
        evidence["placed_by"] = {"from": "region" if prev_region else "phone", "to": "region" if by_region else "phone"}
    return evidence


def hits(*, code: str, client: str, state: str | None, count: int, devices: int, reported: bool,
         client_fakes: int, travel_evidence: dict | None, t: Thresholds) -> list[Hit]:
    """The fraud rules this scan trips (the drain turns them into alerts)."""
    out: list[Hit] = []
    if state is None:
        if client_fakes >= t.fake_burst:
            out.append(Hit("fake_burst", f"client:{client}", {"codes_in_window": client_fakes,
                                                             "window_s": t.fake_window_s, "last_code": code}))
        return out
    if count >= t.alert_scans:
        out.append(Hit("too_many_scans", code, {"scans": count, "threshold": t.alert_scans}))
    if devices >= t.alert_devices:
        out.append(Hit("too_many_devices", code, {"devices": devices, "threshold": t.alert_devices}))
    if travel_evidence:
        out.append(Hit("impossible_travel", code, travel_evidence))
    if state in BAD_STATES or state in INACTIVE_STATES:
        out.append(Hit("bad_state", code, {"state": state}))
    if reported:
        out.append(Hit("reported_code", code, {"reported_by": "inspectors"}))
    return out


REASONS = {
    "too_many_scans": "此码查询次数异常",
    "too_many_devices": "此码被过多不同设备查询,疑似标签被复制",
    "impossible_travel": "此码在相距很远的地点短时间内被查询,疑似标签被复制",
    "reported_code": "此码已被稽查人员举报为假冒或被冒用",
}
