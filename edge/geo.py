"""Geofence: is a fix inside the KPM's expected place? Pure functions, no I/O.

A place is a point with a radius or a polygon (a village boundary), as the roster
gives it. The fix's horizontal error (eph, metres) counts: when the error circle
reaches across the boundary the answer is `unknown`, never `inside`. A fix with no
error estimate is `unknown` too: we cannot say how far off it may be.

Polygons are evaluated on a local flat projection centred on the fix (equirectangular
with cos(latitude) scaling), accurate to well under 0.1% for village-sized shapes;
the point-in-polygon test and the distance to the boundary use the same projection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge.errors import BadInput

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)
ON_BOUNDARY_M = 0.001  # closer than a millimetre counts as on the boundary
INSIDE, OUTSIDE, UNKNOWN = "inside", "outside", "unknown"


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class PointPlace:
    lat: float
    lon: float
    radius_m: float


@dataclass(frozen=True)
class PolygonPlace:
    points: tuple[tuple[float, float], ...]  # (lat, lon), not closed (first != last)


Place = PointPlace | PolygonPlace


def _number(value: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"{where}: expected a number, got {value!r}")
    f = float(value)
    if not math.isfinite(f) or not lo <= f <= hi:
        raise BadInput(f"{where}: expected a number from {lo:g} to {hi:g}, got {value!r}")
    return f


def _keys(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise BadInput(f"{where}.{extra[0]}: unknown key; expected {', '.join(sorted(allowed))}")


def parse_place(obj: Any, where: str = "place") -> Place:
    """A roster place dict as a Place; BadInput says what is wrong and where."""
    if not isinstance(obj, dict):
        raise BadInput(f"{where}: expected an object with a type, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "point":
        _keys(obj, {"type", "lat", "lon", "radius_m"}, where)
        for key in ("lat", "lon", "radius_m"):
            if key not in obj:
                raise BadInput(f"{where}.{key}: missing")
        lat = _number(obj["lat"], f"{where}.lat", -90.0, 90.0)
        lon = _number(obj["lon"], f"{where}.lon", -180.0, 180.0)
        radius = _number(obj["radius_m"], f"{where}.radius_m", 0.0, 1_000_000.0)
        if radius <= 0:
            raise BadInput(f"{where}.radius_m: expected more than 0 metres")
        return PointPlace(lat, lon, radius)
    if kind == "polygon":
        _keys(obj, {"type", "points"}, where)
        raw = obj.get("points")
        if not isinstance(raw, list):
            raise BadInput(f"{where}.points: expected a list of [lat, lon] pairs")
        pts: list[tuple[float, float]] = []
        for i, p in enumerate(raw):
            if not isinstance(p, list | tuple) or len(p) != 2:
                raise BadInput(f"{where}.points[{i}]: expected [lat, lon], got {p!r}")
            pts.append(
                (
                    _number(p[0], f"{where}.points[{i}][0] (lat)", -90.0, 90.0),
                    _number(p[1], f"{where}.points[{i}][1] (lon)", -180.0, 180.0),
                )
            )
        if len(pts) > 1 and pts[0] == pts[-1]:
            pts.pop()  # a closed ring is fine; we keep it open
        if len(pts) < 3:
            raise BadInput(f"{where}.points: expected at least 3 distinct corners")
        if abs(_ring_area(_project(pts, pts[0][0], pts[0][1]))) < 1.0:
            raise BadInput(f"{where}.points: the polygon has no area (corners on one line)")
        return PolygonPlace(tuple(pts))
    raise BadInput(f"{where}.type: expected 'point' or 'polygon', got {kind!r}")


def _project(
    pts: Sequence[tuple[float, float]], lat0: float, lon0: float
) -> list[tuple[float, float]]:
    """(lat, lon) to metres (x east, y north) on a plane touching the Earth at (lat0, lon0)."""
    k = math.radians(1.0) * EARTH_RADIUS_M
    c = math.cos(math.radians(lat0))
    out = []
    for lat, lon in pts:
        dlon = (lon - lon0 + 180.0) % 360.0 - 180.0  # across the antimeridian too
        out.append((dlon * k * c, (lat - lat0) * k))
    return out


def _ring_area(ring: Sequence[tuple[float, float]]) -> float:
    n = len(ring)
    return 0.5 * sum(
        ring[i][0] * ring[(i + 1) % n][1] - ring[(i + 1) % n][0] * ring[i][1] for i in range(n)
    )


def _segment_distance(ax: float, ay: float, bx: float, by: float) -> float:
    """Distance from the origin to segment a-b (metres)."""
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, -(ax * dx + ay * dy) / length2))
    return math.hypot(ax + t * dx, ay + t * dy)


def _contains_origin(ring: Sequence[tuple[float, float]]) -> bool:
    """Even-odd ray casting from the origin along +x; half-open rule counts vertices once."""
    inside = False
    n = len(ring)
    for i in range(n):
        (ax, ay), (bx, by) = ring[i], ring[(i + 1) % n]
        if (ay > 0) != (by > 0):
            x = ax + (0 - ay) * (bx - ax) / (by - ay)
            if x > 0:
                inside = not inside
    return inside


def boundary_distance_m(place: Place, lat: float, lon: float) -> tuple[bool, float]:
    """(is the point inside the place, its distance to the place's boundary in metres)."""
    if isinstance(place, PointPlace):
        d = haversine_m(lat, lon, place.lat, place.lon)
        return d <= place.radius_m, abs(place.radius_m - d)
    ring = _project(place.points, lat, lon)
    n = len(ring)
    dist = min(_segment_distance(*ring[i], *ring[(i + 1) % n]) for i in range(n))
    return _contains_origin(ring), dist


def geofence(place: Place | None, lat: float, lon: float, eph_m: float | None) -> str:
    """inside | outside | unknown for a fix at (lat, lon) with horizontal error eph_m.

    No place (the roster gives none) or no error estimate: unknown. On the boundary
    itself with a zero error: inside (the boundary belongs to the place).
    """
    if place is None or eph_m is None or not math.isfinite(eph_m) or eph_m < 0:
        return UNKNOWN
    inside, dist = boundary_distance_m(place, lat, lon)
    if dist < ON_BOUNDARY_M and eph_m == 0:
        return INSIDE
    if dist <= eph_m:
        return UNKNOWN  # the error circle reaches the other side
    return INSIDE if inside else OUTSIDE


def geofence_dict(place: dict[str, Any] | None, lat: float, lon: float, eph_m: float | None) -> str:
    """geofence() for a roster place dict (already validated at roster import)."""
    return geofence(None if place is None else parse_place(place), lat, lon, eph_m)
