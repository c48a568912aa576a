"""Where a scan came from when the phone sent no location: the region a trusted header set by
the reverse proxy or CDN names (SCAN_REGION_HEADER), placed at a representative point from
`regions.csv` (Chinese provinces, prefectures and counties by adcode; its header says where the
data comes from and under which licence).

Pure (no database, no Flask). A header value may be a 6-digit adcode (or 9/12 digits, or a 2-/4-
digit province/prefecture prefix; an unknown county code falls back to its prefecture, then its
province), or Chinese names with or without their suffix (江门, 江门市, 广东省江门市新会区,
"广东|江门"): the most specific part that names one place wins; a name shared by several places
(朝阳区) counts only with a part that says which. Anything else is no region.

The header comes with every scan, before anything says the client is a good one: a value longer
than a proxy ever sends (MAX_INPUT raw characters, MAX_TEXT once decoded) is no region without
being looked at, and every lookup is a few dict hits (places by adcode, by name, and by name
within a province or prefecture), never a walk over the table.
"""
from __future__ import annotations

import csv
import functools
import ipaddress
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

log = logging.getLogger(__name__)
DATA = Path(__file__).with_name("regions.csv")
MAX_INPUT = 256  # raw header characters: 28 %-encoded Chinese characters
MAX_TEXT = 64  # decoded characters (广东省江门市新会区 is 9)
SUFFIXES = ("特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "自治州", "自治县", "地区",
            "省", "市", "区", "县", "盟", "旗")
_SPLIT = re.compile(r"[\s,;|/·\-_>]+")


@dataclass(frozen=True)
class Region:
    code: str  # 6-digit adcode
    name: str
    lat: float
    lon: float

    @property
    def level(self) -> int:
        """0 province, 1 prefecture, 2 county."""
        return 0 if self.code[2:] == "0000" else 1 if self.code[4:] == "00" else 2


class _Table:
    def __init__(self, path: Path):
        self.by_code: dict[str, Region] = {}
        names: dict[str, list[Region]] = {}
        # (province or prefecture code prefix, name) -> the places of that name inside it
        self.within: dict[tuple[str, str], list[Region]] = {}
        with path.open(encoding="utf-8", newline="") as f:
            rows = csv.DictReader(line for line in f if not line.startswith("#"))
            for row in rows:
                region = Region(row["adcode"], row["name"], float(row["lat"]), float(row["lon"]))
                self.by_code[region.code] = region
                for key in {region.name, _strip(region.name)}:
                    if len(key) >= 2:
                        names.setdefault(key, []).append(region)
                    for prefix in {region.code[:2], region.code[:4]}:
                        self.within.setdefault((prefix, key), []).append(region)
        self.by_name: dict[str, Region | None] = {}
        for key, found in names.items():
            top = min(r.level for r in found)
            best = [r for r in found if r.level == top]
            # 北京 is the municipality before any county of that name; two prefectures named
            # alike (or two counties, none above them) say nothing.
            self.by_name[key] = best[0] if len(best) == 1 else None


def _strip(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            return name[: -len(suffix)]
    return name


_table: _Table | None = None
_lock = threading.Lock()


def table() -> _Table:
    global _table
    if _table is None:
        with _lock:
            if _table is None:
                _table = _Table(DATA)
    return _table


def header_text(raw: str) -> str | None:
    """A header value as text: proxies send UTF-8 (WSGI hands it over as Latin-1) or %-encoded.
    None when it is too long to name a place (never decoded, never looked up)."""
    if len(raw) > MAX_INPUT:
        return None
    try:
        raw = raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    text = unquote(raw, errors="replace").strip()
    return text if len(text) <= MAX_TEXT else None


def by_code(code: str) -> Region | None:
    t = table()
    digits = code[:6]
    for candidate in (digits, digits[:4] + "00", digits[:2] + "0000"):
        if len(candidate) == 6 and candidate in t.by_code:
            return t.by_code[candidate]
    return None


def lookup(raw: str | None) -> Region | None:
    """The region a header value names, or None."""
    if not raw:
        return None
    text = header_text(raw)
    if not text:
        return None
    if text.isascii() and text.isdigit():
        if len(text) in (2, 4):
            text = text.ljust(6, "0")
        return by_code(text) if len(text) in (6, 9, 12) else None
    t = table()
    parts = [p for p in _SPLIT.split(text) if p]
    found: Region | None = None
    for part in parts:
        region = _name(t, part)
        if region is not None and (found is None or region.level >= found.level):
            found = region
        elif region is None and found is not None:
            # 朝阳区 after 北京: the county of that name inside the region found so far
            inside = _inside(t, part, found)
            if inside is not None:
                found = inside
    return found


def _name(t: _Table, part: str) -> Region | None:
    """One part: a name, or names run together (广东省江门市新会区)."""
    if part in t.by_name:  # a full name; None if several places have it (朝阳区)
        return t.by_name[part]
    if t.by_name.get(_strip(part)) is not None:
        return t.by_name[_strip(part)]
    found = None
    for piece in re.findall(r".+?(?:特别行政区|自治区|自治州|自治县|地区|省|市|区|县|盟|旗)", part):
        region = t.by_name.get(piece) or (_inside(t, piece, found) if found else None)
        if region is not None:
            found = region
    return found


def _inside(t: _Table, name: str, within: Region) -> Region | None:
    prefix = within.code[:2] if within.level == 0 else within.code[:4]
    matches = [r for r in t.within.get((prefix, name), ()) if r.code != within.code]
    return matches[0] if len(matches) == 1 else None


@functools.lru_cache(maxsize=8)
def _networks(setting: str) -> tuple:
    out = []
    for item in (x.strip() for x in setting.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            log.warning("SCAN_PROXY_NETWORKS: %r is not an address or network; ignored", item)
    return tuple(out)


def from_trusted_proxy(peer: str | None, networks: str) -> bool:
    """Whether the request's peer address is one of the trusted proxies (`networks`: the
    SCAN_PROXY_NETWORKS setting, comma-separated addresses or CIDR networks): only they may
    name the client's region. An unparsable peer or entry trusts nothing."""
    try:
        addr = ipaddress.ip_address(peer or "")
    except ValueError:
        return False
    if getattr(addr, "ipv4_mapped", None) is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in _networks(networks))
