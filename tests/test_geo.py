"""Geofence: point+radius and village polygons, with the fix's error counting."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import BadInput
from edge.geo import (
    INSIDE,
    OUTSIDE,
    UNKNOWN,
    PointPlace,
    PolygonPlace,
    boundary_distance_m,
    geofence,
    geofence_dict,
    haversine_m,
    parse_place,
)

M_PER_DEG_LAT = math.radians(1.0) * 6_371_008.8  # ~111195 m

# A village-sized square south of the equator (near Sleman, Yogyakarta): ~1.1 km a side.
S0, S1, W0, W1 = -7.720, -7.710, 110.360, 110.370
SQUARE = parse_place(
    {"type": "polygon", "points": [[S0, W0], [S0, W1], [S1, W1], [S1, W0]]}, "test"
)
# A concave "U": two arms to the north joined at the south; the notch between them is outside.
U_SHAPE = parse_place(
    {
        "type": "polygon",
        "points": [
            [-7.720, 110.360],
            [-7.720, 110.390],
            [-7.700, 110.390],
            [-7.700, 110.380],
            [-7.715, 110.380],
            [-7.715, 110.370],
            [-7.700, 110.370],
            [-7.700, 110.360],
        ],
    },
    "test",
)


def north(lat: float, metres: float) -> float:
    return lat + metres / M_PER_DEG_LAT


def test_haversine_known_distances() -> None:
    assert haversine_m(0, 0, 1, 0) == pytest.approx(M_PER_DEG_LAT, rel=1e-9)
    assert haversine_m(-6.2, 106.8, -6.2, 106.8) == 0.0
    # Jakarta (Monas) to Surabaya (Tugu Pahlawan): about 663 km as the crow flies
    d = haversine_m(-6.1754, 106.8272, -7.2458, 112.7378)
    assert 655_000 < d < 670_000
    assert d == pytest.approx(haversine_m(-7.2458, 112.7378, -6.1754, 106.8272))


def test_point_radius_inside_outside_and_error_circle() -> None:
    place = parse_place({"type": "point", "lat": -7.8, "lon": 110.4, "radius_m": 300}, "t")
    assert isinstance(place, PointPlace)
    assert geofence(place, -7.8, 110.4, 5.0) == INSIDE
    assert geofence(place, north(-7.8, 250), 110.4, 10.0) == INSIDE
    assert geofence(place, north(-7.8, 250), 110.4, 60.0) == UNKNOWN  # circle crosses 300 m
    assert geofence(place, north(-7.8, 350), 110.4, 10.0) == OUTSIDE
    assert geofence(place, north(-7.8, 350), 110.4, 60.0) == UNKNOWN
    assert geofence(place, north(-7.8, 5000), 110.4, 100.0) == OUTSIDE


def test_no_error_estimate_or_no_place_is_unknown() -> None:
    assert geofence(SQUARE, -7.715, 110.365, None) == UNKNOWN
    assert geofence(None, -7.715, 110.365, 3.0) == UNKNOWN
    assert geofence(SQUARE, -7.715, 110.365, float("nan")) == UNKNOWN


def test_polygon_inside_outside_southern_hemisphere() -> None:
    assert geofence(SQUARE, -7.715, 110.365, 5.0) == INSIDE
    assert geofence(SQUARE, -7.725, 110.365, 5.0) == OUTSIDE  # south of it (more negative)
    assert geofence(SQUARE, -7.715, 110.375, 5.0) == OUTSIDE  # east of it
    # Sign matters: the same numbers north of the equator are nowhere near it
    assert geofence(SQUARE, 7.715, 110.365, 5.0) == OUTSIDE


def test_polygon_error_circle_crossing_the_edge_is_unknown() -> None:
    lat = north(S0, 50)  # 50 m inside the southern edge
    assert boundary_distance_m(SQUARE, lat, 110.365)[1] == pytest.approx(50, abs=0.05)
    assert geofence(SQUARE, lat, 110.365, 40.0) == INSIDE
    assert geofence(SQUARE, lat, 110.365, 60.0) == UNKNOWN
    lat = north(S0, -50)  # 50 m outside it
    assert geofence(SQUARE, lat, 110.365, 40.0) == OUTSIDE
    assert geofence(SQUARE, lat, 110.365, 60.0) == UNKNOWN


def test_polygon_edges_and_vertices() -> None:
    # exactly on an edge or a corner: inside with no error, unknown with any error
    for lat, lon in [(S0, 110.365), (-7.715, W0), (S0, W0), (S1, W1), (S0, W1)]:
        assert geofence(SQUARE, lat, lon, 0.0) == INSIDE, (lat, lon)
        assert geofence(SQUARE, lat, lon, 1.0) == UNKNOWN, (lat, lon)
    # the ray from a point level with a vertex passes through it: counted once
    assert geofence(SQUARE, S1, W0 - 0.01, 1.0) == OUTSIDE
    assert geofence(SQUARE, S0, W0 - 0.01, 1.0) == OUTSIDE
    # a diamond: the ray from the centre passes exactly through the right vertex
    diamond = parse_place(
        {
            "type": "polygon",
            "points": [[-7.72, 110.36], [-7.71, 110.37], [-7.70, 110.36], [-7.71, 110.35]],
        }
    )
    assert geofence(diamond, -7.71, 110.36, 5.0) == INSIDE
    assert geofence(diamond, -7.71, 110.34, 5.0) == OUTSIDE
    assert geofence(diamond, -7.71, 110.38, 5.0) == OUTSIDE


def test_concave_village() -> None:
    assert isinstance(U_SHAPE, PolygonPlace)
    assert geofence(U_SHAPE, -7.705, 110.365, 10.0) == INSIDE  # west arm
    assert geofence(U_SHAPE, -7.705, 110.385, 10.0) == INSIDE  # east arm
    assert geofence(U_SHAPE, -7.718, 110.375, 10.0) == INSIDE  # the base
    assert geofence(U_SHAPE, -7.705, 110.375, 10.0) == OUTSIDE  # in the notch
    # in the notch, 30 m from the west arm: an error of 50 m may be in the village
    lat, lon = -7.705, 110.370 + 30 / (M_PER_DEG_LAT * math.cos(math.radians(7.705)))
    assert boundary_distance_m(U_SHAPE, lat, lon)[1] == pytest.approx(30, abs=0.1)
    assert geofence(U_SHAPE, lat, lon, 20.0) == OUTSIDE
    assert geofence(U_SHAPE, lat, lon, 50.0) == UNKNOWN


def test_closed_ring_same_as_open() -> None:
    pts = [[S0, W0], [S0, W1], [S1, W1], [S1, W0]]
    closed = parse_place({"type": "polygon", "points": [*pts, pts[0]]})
    assert closed == SQUARE


@pytest.mark.parametrize(
    ("place", "says"),
    [
        ("village", "expected an object"),
        ({"type": "circle"}, "place.type"),
        ({"type": "point", "lat": -7.8, "lon": 110.4}, "place.radius_m: missing"),
        ({"type": "point", "lat": -97.8, "lon": 110.4, "radius_m": 1}, "place.lat"),
        ({"type": "point", "lat": -7.8, "lon": 110.4, "radius_m": 0}, "place.radius_m"),
        ({"type": "point", "lat": True, "lon": 110.4, "radius_m": 5}, "place.lat"),
        ({"type": "point", "lat": -7.8, "lon": "110", "radius_m": 5}, "place.lon"),
        ({"type": "point", "lat": -7.8, "lon": 110.4, "radius_m": 5, "r": 1}, "place.r"),
        ({"type": "polygon", "points": [[-7.7, 110.3], [-7.8, 110.3]]}, "at least 3"),
        ({"type": "polygon", "points": "[[1,2]]"}, "place.points"),
        ({"type": "polygon", "points": [[-7.7, 110.3], [-7.8], [-7.9, 110.2]]}, "points[1]"),
        (
            {"type": "polygon", "points": [[-7.7, 110.3], [-7.8, 190], [-7.9, 110.2]]},
            "points[1][1]",
        ),
        ({"type": "polygon", "points": [[0, 0], [0, 0.001], [0, 0.002]]}, "no area"),
    ],
)
def test_malformed_places_say_what_and_where(place: object, says: str) -> None:
    with pytest.raises(BadInput, match=None) as err:
        parse_place(place, "place")
    assert says in str(err.value)


def test_geofence_dict_reads_roster_places() -> None:
    place = {"type": "point", "lat": -7.8, "lon": 110.4, "radius_m": 300}
    assert geofence_dict(place, -7.8, 110.4, 3.0) == INSIDE
    assert geofence_dict(None, -7.8, 110.4, 3.0) == UNKNOWN


@settings(max_examples=300, deadline=None)
@given(
    lat=st.floats(-7.73, -7.70),
    lon=st.floats(110.35, 110.38),
    eph=st.floats(0.0, 200.0),
)
def test_rectangle_agrees_with_bounds(lat: float, lon: float, eph: float) -> None:
    """An axis-aligned rectangle: the answer follows from the bounds and the edge distance."""
    got = geofence(SQUARE, lat, lon, eph)
    c = math.cos(math.radians(lat))
    dy = min(abs(lat - S0), abs(lat - S1)) * M_PER_DEG_LAT
    dx = min(abs(lon - W0), abs(lon - W1)) * M_PER_DEG_LAT * c
    in_box = S0 <= lat <= S1 and W0 <= lon <= W1
    edge = min(dx, dy) if in_box else None
    if in_box:
        assert edge is not None
        if edge > eph + 0.01:
            assert got == INSIDE
        elif edge < eph - 0.01:
            assert got == UNKNOWN
    elif got == INSIDE:
        pytest.fail(f"{lat},{lon} is outside the box but reported inside")
    if not in_box and got == OUTSIDE:
        # outside and no closer to the box than the error
        _, dist = boundary_distance_m(SQUARE, lat, lon)
        assert dist > eph
