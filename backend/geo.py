"""Distances on the ground, written once: great-circle between points, and point-to-polygon.

Pure functions (no database, no Flask). Plot-sized shapes are measured in a local
equirectangular projection centred on the point, which is accurate to well under a metre over
the few kilometres that matter here.
"""
from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres between two (lon, lat) points in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def distance_to_geometry_m(geometry: dict, lon: float, lat: float) -> float:
    """Metres from (lon, lat) to a GeoJSON Polygon/MultiPolygon; 0 inside it."""
    from shapely.affinity import affine_transform
    from shapely.geometry import Point, shape

    kx = math.radians(1) * EARTH_RADIUS_M * math.cos(math.radians(lat))
    ky = math.radians(1) * EARTH_RADIUS_M
    # x' = kx·(x − lon), y' = ky·(y − lat): metres east and north of the point.
    local = affine_transform(shape(geometry), [kx, 0, 0, ky, -kx * lon, -ky * lat])
    return float(local.distance(Point(0, 0)))
