"""Pure checks for registry values: credit codes, ID numbers, phones, coordinates, polygons.

No database and no Flask here, so they are reused by the schemas, the importer and the demo.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import re

from shapely.geometry import shape
from shapely.validation import explain_validity

# re.ASCII everywhere: a bare \d also matches full-width and other scripts' digits ('４'), which
# then broke the check-character arithmetic (CREDIT_ALPHABET.index -> ValueError, a 500).

# GB 32100-2015 统一社会信用代码: 18 characters over 31 symbols (no I, O, S, V, Z).
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_CREDIT_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$", re.ASCII)

# GB 11643-1999 居民身份证号码: 17 digits and a check character (0-9 or X).
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"^\d{17}[\dX]$", re.ASCII)

_PHONE_RE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$", re.ASCII)

# Xinhui district with a margin: lon 112.70–113.40 E, lat 21.95–22.75 N.
XINHUI_BBOX = (112.70, 21.95, 113.40, 22.75)
M2_PER_MU = 10000 / 15  # 1 亩 = 666.67 m²
MAX_POLYGON_POINTS = 5000


def credit_check_char(first17: str) -> str:
    total = sum(CREDIT_ALPHABET.index(c) * w for c, w in zip(first17, CREDIT_WEIGHTS))
    return CREDIT_ALPHABET[(31 - total % 31) % 31]


def credit_code_error(code: str) -> str | None:
    """Why `code` is not a valid 统一社会信用代码, or None if it is."""
    if len(code) != 18:
        return "Must be 18 characters."
    if not _CREDIT_RE.match(code):
        return "Uses characters outside GB 32100 (digits and A–Y without I, O, S, V, Z), or positions 3–8 are not digits."
    if credit_check_char(code[:17]) != code[17]:
        return f"Check character should be {credit_check_char(code[:17])!r}, not {code[17]!r}."
    return None


def id_check_char(first17: str) -> str:
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS)) % 11]


def id_number_error(number: str) -> str | None:
    if not _ID_RE.match(number):
        return "Must be 17 digits and a check character (digit or X)."
    if id_check_char(number[:17]) != number[17]:
        return "Check character does not match."
    return None


def mask_id_number(number: str) -> str:
    return number[:4] + "*" * 10 + number[-4:]


def hash_id_number(number: str, key: str) -> str:
    return hmac.new(key.encode(), number.encode(), hashlib.sha256).hexdigest()


def phone_error(phone: str) -> str | None:
    return None if _PHONE_RE.match(phone) else "Must be an 11-digit mobile (1xxxxxxxxxx) or a landline like 0750-1234567."


def point_error(lon: float, lat: float) -> str | None:
    if not (math.isfinite(lon) and math.isfinite(lat)):
        return "Coordinates must be finite numbers."
    lon_min, lat_min, lon_max, lat_max = XINHUI_BBOX
    if not (lon_min <= lon <= lon_max and lat_min <= lat <= lat_max):
        return f"({lon}, {lat}) is outside Xinhui (lon {lon_min}–{lon_max}, lat {lat_min}–{lat_max})."
    return None


def _positions(geometry: dict):
    coords = geometry["coordinates"]
    polygons = [coords] if geometry["type"] == "Polygon" else coords
    for polygon in polygons:
        for ring in polygon:
            yield from ring


def polygon_area_m2(geometry: dict) -> float:
    """Area by a local equirectangular projection: ample for plot-sized shapes."""
    geom = shape(geometry)
    lat0 = math.radians(geom.centroid.y)
    kx, ky = 111_320 * math.cos(lat0), 110_540
    from shapely.affinity import scale

    return scale(geom, xfact=kx, yfact=ky, origin=(0, 0)).area


def polygon_error(geometry) -> str | None:
    """Why `geometry` is not a valid GeoJSON Polygon/MultiPolygon inside Xinhui, or None."""
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        return "Must be a GeoJSON geometry of type Polygon or MultiPolygon."
    coords = geometry.get("coordinates")
    if not isinstance(coords, list) or not coords:
        return "coordinates must be a non-empty array."
    try:
        depth_ok = all(
            isinstance(p, list) and len(p) in (2, 3) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
            for p in _positions(geometry)
        )
    except TypeError:
        depth_ok = False
    if not depth_ok:
        return "Every position must be [lon, lat] numbers nested as GeoJSON requires."
    positions = list(_positions(geometry))
    if len(positions) > MAX_POLYGON_POINTS:
        return f"At most {MAX_POLYGON_POINTS} positions."
    for lon, lat, *_ in positions:
        try:
            err = point_error(float(lon), float(lat))
        except OverflowError:  # a JSON integer too big for a float
            return "Coordinates must be finite numbers."
        if err:
            return err
    try:
        geom = shape(geometry)
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        return f"Not a polygon: {exc}."
    if geom.is_empty or not geom.is_valid:
        return f"Invalid polygon: {explain_validity(geom)}."
    return None


def polygon_contains(geometry: dict, lon: float, lat: float, tolerance_deg: float = 0.0005) -> bool:
    from shapely.geometry import Point

    return shape(geometry).buffer(tolerance_deg).contains(Point(lon, lat))
