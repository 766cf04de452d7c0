"""Fence parsing, validation errors, and signed distances checked against independent geodesy."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from shapely.geometry import Point, Polygon

from geo import Fence, GeometryError, parse_feature
from geo import constants as C
from geo.local import make_where
from tests.geo.geo_support import GEOD, MakeCircle, MakePolygon, move, square_ring

SQUARE = [[13.40, 52.50], [13.41, 52.50], [13.41, 52.51], [13.40, 52.51], [13.40, 52.50]]


def poly(*rings: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def feat(geometry: dict[str, Any] | None, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": props}


def circle_geom(lng: float = 13.4, lat: float = 52.5) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lng, lat]}


def many_vertices(n: int) -> list[list[float]]:
    ring = [
        [13.4 + 0.01 * math.cos(2 * math.pi * k / n), 52.5 + 0.01 * math.sin(2 * math.pi * k / n)]
        for k in range(n)
    ]
    return [*ring, ring[0]]


BOWTIE = [[13.40, 52.50], [13.41, 52.51], [13.41, 52.50], [13.40, 52.51], [13.40, 52.50]]
HOLE = [[13.402, 52.502], [13.404, 52.502], [13.404, 52.504], [13.402, 52.502]]
FAR_HOLE = [[13.5, 52.6], [13.51, 52.6], [13.51, 52.61], [13.5, 52.6]]

BAD: list[tuple[str, object, str, str]] = [
    ("not a dict", [1, 2], "type", "type 'Feature'"),
    ("collection", {"type": "FeatureCollection", "features": []}, "type", "type 'Feature'"),
    ("no geometry", feat(None), "geometry", "geometry must be"),
    ("line", feat({"type": "LineString", "coordinates": SQUARE}), "geometry.type",
     "unsupported geometry type 'LineString'"),
    ("self-intersecting", feat(poly(BOWTIE)), "geometry.coordinates[0]",
     "polygon self-intersects at (lng 13.405"),
    ("unclosed", feat(poly([*SQUARE[:-1], [13.40, 52.505]])), "geometry.coordinates[0]",
     "ring 0 is not closed"),
    ("three points", feat(poly([[13.4, 52.5], [13.41, 52.5], [13.4, 52.5]])),
     "geometry.coordinates[0]", "ring 0 has 3 positions; a ring needs at least 4"),
    ("lat > 90", feat(poly([[13.4, 52.5], [13.41, 91.0], *SQUARE[2:]])),
     "geometry.coordinates[0][1]", "latitude 91 is outside [-90, 90]"),
    ("lng < -180", feat(poly([[-180.5, 52.5], *SQUARE[1:4], [-180.5, 52.5]])),
     "geometry.coordinates[0][0]", "longitude -180.5 is outside [-180, 180]"),
    ("nan", feat(poly([SQUARE[0], [math.nan, 52.5], *SQUARE[2:]])),
     "geometry.coordinates[0][1]", "must be finite, got nan"),
    ("inf", feat(circle_geom(math.inf), radius_m=10), "geometry.coordinates",
     "must be finite, got inf"),
    ("string coordinate", feat(circle_geom(), radius_m=10) | {"geometry": {
        "type": "Point", "coordinates": ["13.4", 52.5]}}, "geometry.coordinates", "numbers"),
    ("too many vertices", feat(poly(many_vertices(C.MAX_VERTICES + 1))),
     "geometry.coordinates", "too many vertices: 10002 > 10000"),
    ("zero area", feat(poly([[13.40, 52.5], [13.41, 52.5], [13.42, 52.5], [13.40, 52.5]])),
     "geometry.coordinates[0]", "ring 0 has zero area"),
    ("zero area hole", feat(poly(SQUARE, [[13.402, 52.502], [13.404, 52.502],
                                          [13.403, 52.502], [13.402, 52.502]])),
     "geometry.coordinates[1]", "ring 1 has zero area"),
    ("unclosed hole", feat(poly(SQUARE, [*HOLE[:-1], [13.403, 52.503]])),
     "geometry.coordinates[1]", "ring 1 is not closed"),
    ("hole outside", feat(poly(SQUARE, FAR_HOLE)), "geometry.coordinates",
     "invalid polygon (hole lies outside shell)"),
    ("multi: bad second", feat({"type": "MultiPolygon", "coordinates": [[SQUARE], [BOWTIE]]}),
     "geometry.coordinates[1][0]", "polygon self-intersects"),
    ("multi: overlap", feat({"type": "MultiPolygon", "coordinates": [[SQUARE], [SQUARE]]}),
     "geometry.coordinates", "overlap"),
    ("multi: empty", feat({"type": "MultiPolygon", "coordinates": []}),
     "geometry.coordinates", "non-empty"),
    ("radius zero", feat(circle_geom(), radius_m=0), "properties.radius_m", "must be > 0"),
    ("radius negative", feat(circle_geom(), radius_m=-5), "properties.radius_m", "must be > 0"),
    ("radius > 100 km", feat(circle_geom(), radius_m=100_001), "properties.radius_m",
     "must be ≤ 100000"),
    ("radius missing", feat(circle_geom()), "properties.radius_m", "required"),
    ("radius bool", feat(circle_geom(), radius_m=True), "properties.radius_m", "a number"),
    ("buffer negative", feat(poly(SQUARE), buffer_m=-1), "properties.buffer_m", "must be ≥ 0"),
    ("buffer > 50 km", feat(poly(SQUARE), buffer_m=50_001), "properties.buffer_m",
     "must be ≤ 50000"),
    ("buffer nan", feat(poly(SQUARE), buffer_m=math.nan), "properties.buffer_m", "finite"),
    ("dwell negative", feat(poly(SQUARE), dwell_s=-1), "properties.dwell_s", "must be ≥ 0"),
    ("cards not a list", feat(poly(SQUARE), service_cards="c1"), "properties.service_cards",
     "must be a list"),
    ("card not str/object", feat(poly(SQUARE), service_cards=["c1", 7]),
     "properties.service_cards[1]", "string or an object"),
    ("properties not object", {"type": "Feature", "geometry": poly(SQUARE), "properties": [1]},
     "properties", "must be an object"),
    ("contains the pole", feat(circle_geom(0.0, 89.9), radius_m=20_000), "geometry",
     "north pole"),
    ("too far across", feat(poly([[10.0, 50.0], [14.0, 50.0], [14.0, 53.0], [10.0, 53.0],
                                  [10.0, 50.0]])), "geometry.coordinates", "km from its centre"),
]  # fmt: skip


@pytest.mark.parametrize(("feature_", "field", "message"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])  # fmt: skip
def test_bad_geometry_names_field_and_problem(feature_: object, field: str, message: str) -> None:
    with pytest.raises(GeometryError) as caught:
        parse_feature("f", feature_)
    assert caught.value.field == field
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_defaults_and_feature_round_trip() -> None:
    fence = parse_feature("f", feat(poly(SQUARE)))
    assert (fence.buffer_m, fence.dwell_s, fence.service_cards) == (200.0, 120.0, ())
    cards = ["c1", {"id": "c2", "rank": 1}]
    circle = parse_feature("c", feat(circle_geom(), radius_m=80, buffer_m=0, service_cards=cards))
    again = parse_feature("c", circle.to_feature())
    assert again.radius_m == 80 and again.buffer_m == 0 and list(again.service_cards) == cards
    assert again.distance_m(52.5005, 13.4) == pytest.approx(circle.distance_m(52.5005, 13.4))
    assert parse_feature("f", fence.to_feature()).area_m2 == pytest.approx(fence.area_m2)
    assert json.loads(json.dumps(fence.to_feature())) == fence.to_feature()  # lists, not tuples


def test_circle_distance_is_geodesic(make_circle: MakeCircle) -> None:
    fence = make_circle(52.5, 13.4, 150.0)
    assert fence.distance_m(52.5, 13.4) == pytest.approx(-150.0, abs=1e-6)
    assert fence.size_m == pytest.approx(300.0)
    for azimuth in (0, 77, 180, 300):
        lat, lng = move(52.5, 13.4, azimuth, 400.0)
        assert fence.distance_m(lat, lng) == pytest.approx(250.0, abs=1e-3)


def test_square_area_and_distances(make_polygon: MakePolygon) -> None:
    fence = make_polygon([square_ring(52.5, 13.4, 100.0)], buffer_m=50)
    assert fence.area_m2 == pytest.approx(40_000, rel=1e-3)
    assert fence.distance_m(52.5, 13.4) == pytest.approx(-100.0, abs=0.05)
    lat, lng = move(52.5, 13.4, 90, 130.0)
    assert fence.distance_m(lat, lng) == pytest.approx(30.0, abs=0.05)
    assert fence.where(lat, lng) == "buffer" and fence.in_buffer(lat, lng)
    assert not fence.in_fence(lat, lng)
    lat, lng = move(52.5, 13.4, 90, 151.0)
    assert fence.where(lat, lng) is None


def test_hole_is_outside(make_polygon: MakePolygon) -> None:
    hole = square_ring(52.5, 13.4, 20.0)[::-1]
    fence = make_polygon([square_ring(52.5, 13.4, 100.0), hole])
    assert fence.distance_m(52.5, 13.4) == pytest.approx(20.0, abs=0.05)
    assert fence.where(52.5, 13.4) == "buffer"


def test_vertex_and_edge_points_are_inside(make_polygon: MakePolygon) -> None:
    ring = square_ring(52.5, 13.4, 100.0)
    fence = make_polygon([ring], buffer_m=0)
    for lng, lat in ring:
        assert fence.distance_m(lat, lng) == pytest.approx(0.0, abs=1e-6)
        assert fence.where(lat, lng) == "inside"
        assert fence.in_fence(lat, lng) and fence.in_buffer(lat, lng)


ACROSS = [[179.99, -16.01], [-179.99, -16.01], [-179.99, -15.99], [179.99, -15.99],
          [179.99, -16.01]]  # fmt: skip
SPLIT = [
    [[[179.99, -16.01], [180.0, -16.01], [180.0, -15.99], [179.99, -15.99], [179.99, -16.01]]],
    [[[-180.0, -16.01], [-179.99, -16.01], [-179.99, -15.99], [-180.0, -15.99],
      [-180.0, -16.01]]],
]  # fmt: skip


def test_antimeridian_crossing_and_split_forms_agree() -> None:
    crossing = parse_feature("x", feat(poly(ACROSS)))
    split = parse_feature("s", feat({"type": "MultiPolygon", "coordinates": SPLIT}))
    # ~2.1 km x 2.2 km, not a band around the globe
    assert crossing.area_m2 == pytest.approx(split.area_m2, rel=1e-6)
    assert 4.0e6 < crossing.area_m2 < 5.0e6
    for lat, lng in [(-16.0, 180.0), (-16.0, -180.0), (-16.0, 179.995), (-16.0, -179.98),
                     (-16.02, 179.99), (-16.0, 179.5)]:  # fmt: skip
        assert crossing.distance_m(lat, lng) == pytest.approx(split.distance_m(lat, lng), abs=1e-3)
    assert crossing.where(-16.0, 180.0) == "inside" and crossing.where(-16.0, -179.995) == "inside"
    for part in shapely.get_parts(crossing.cover):
        minx, _, maxx, _ = part.bounds
        assert -180.0 <= minx <= maxx <= 180.0


def test_polar_fences_work(make_circle: MakeCircle, make_polygon: MakePolygon) -> None:
    for lat in (85.0, -85.0):
        circle = make_circle(lat, 40.0, 500.0)
        square = make_polygon([square_ring(lat, 40.0, 500.0)])
        for azimuth in (0, 90, 180, 270):
            plat, plng = move(lat, 40.0, azimuth, 700.0)
            assert circle.distance_m(plat, plng) == pytest.approx(200.0, abs=1e-3)
            assert square.distance_m(plat, plng) == pytest.approx(200.0, abs=0.1)


def independent_distance(
    centre: tuple[float, float], ring: list[list[float]] | None, radius_m: float,
    lat: float, lng: float,
) -> float:  # fmt: skip
    """Signed distance by Geod (circle) or a transverse Mercator centred on the point."""
    if ring is None:
        return float(GEOD.inv(centre[1], centre[0], lng, lat)[2]) - radius_m
    tm = Transformer.from_crs(
        4326, f"+proj=tmerc +lat_0={lat} +lon_0={lng} +ellps=WGS84 +units=m", always_xy=True
    )
    xs, ys = tm.transform([p[0] for p in ring], [p[1] for p in ring])
    local = Polygon(np.column_stack([xs, ys]))
    d = float(local.boundary.distance(Point(0, 0)))
    return -d if local.contains(Point(0, 0)) else d


SITES = [(52.5, 13.4), (-16.0, 179.999), (85.0, 40.0), (-85.0, -179.99), (0.0, 0.0)]


@settings(max_examples=60, deadline=None)
@given(
    site=st.sampled_from(SITES),
    kind=st.sampled_from(["circle", "square"]),
    size_m=st.floats(20, 2000),
    buffer_m=st.floats(0, 2000),
    azimuth=st.floats(0, 360),
    offset_m=st.floats(-150, 150) | st.floats(-2, 2),
    target=st.sampled_from(["edge", "buffer", "anywhere"]),
)
def test_buffer_membership_matches_independent_geodesy(
    make_circle: MakeCircle, make_polygon: MakePolygon,
    site: tuple[float, float], kind: str, size_m: float, buffer_m: float, azimuth: float,
    offset_m: float, target: str,
) -> None:  # fmt: skip
    lat0, lng0 = site
    ring = None if kind == "circle" else square_ring(lat0, lng0, size_m)
    if ring is None:
        fence = make_circle(lat0, lng0, size_m, buffer_m=buffer_m)
    else:
        fence = make_polygon([ring], buffer_m=buffer_m)
    reach = {"edge": size_m, "buffer": size_m + buffer_m, "anywhere": 2 * (size_m + buffer_m)}
    lat, lng = move(lat0, lng0, azimuth, max(0.0, reach[target] + offset_m))
    truth = independent_distance(site, ring, size_m, lat, lng)
    ours = fence.distance_m(lat, lng)
    assert ours == pytest.approx(truth, abs=0.5)
    if abs(truth - buffer_m) > 0.5:
        assert fence.in_buffer(lat, lng) == (truth <= buffer_m)
    if abs(truth) > 0.5:
        assert fence.in_fence(lat, lng) == (truth <= 0)


@settings(max_examples=150, deadline=None)
@given(
    which=st.integers(0, 5),
    along=st.floats(0, 1),
    edge=st.sampled_from(["fence", "buffer"]),
    nudge_m=st.floats(-0.01, 0.01) | st.floats(-5, 5) | st.just(0.0),
    angle=st.floats(0, 2 * math.pi),
)
def test_fast_where_equals_exact(
    fences: list[Fence], which: int, along: float, edge: str, nudge_m: float, angle: float
) -> None:
    fence = fences[which]
    region = fence.metric if edge == "fence" else fence.region_m(fence.buffer_m)
    p = region.boundary.interpolate(along, normalized=True)
    x, y = p.x + nudge_m * math.cos(angle), p.y + nudge_m * math.sin(angle)
    lngs, lats = fence.frame.to_lnglat_many([x], [y])
    lat, lng = float(lats[0]), (float(lngs[0]) + 180.0) % 360.0 - 180.0
    assert fence.where(lat, lng) == fence.where_at(fence.distance_m(lat, lng))


@settings(max_examples=200, deadline=None)
@given(
    which=st.integers(0, 5),
    along=st.floats(0, 1),
    edge=st.sampled_from(["fence", "buffer"]),
    nudge_m=st.floats(-0.05, 0.05) | st.floats(-3, 3) | st.floats(-300, 300),
    angle=st.floats(0, 2 * math.pi),
)
def test_linear_screen_answers_like_the_cubic(
    fences: list[Fence], which: int, along: float, edge: str, nudge_m: float, angle: float
) -> None:
    """The linear screen in `where` only ever returns what the cubic model path would."""
    fence = fences[which]
    cubic_only = make_where(
        fence.model,
        radius_m=fence.radius_m,
        outline=fence.outline,
        buffer_m=fence.buffer_m,
        tolerance_m=C.ON_EDGE_TOLERANCE_M,
        distance_xy=fence.distance_xy_m,
        exact=fence.distance_m,
        screen=False,
    )
    region = fence.metric if edge == "fence" else fence.region_m(fence.buffer_m)
    p = region.boundary.interpolate(along, normalized=True)
    x, y = p.x + nudge_m * math.cos(angle), p.y + nudge_m * math.sin(angle)
    lngs, lats = fence.frame.to_lnglat_many([x], [y])
    lat, lng = float(lats[0]), (float(lngs[0]) + 180.0) % 360.0 - 180.0
    assert fence.where(lat, lng) == cubic_only(lat, lng)


@pytest.fixture(scope="module")
def fences() -> list[Fence]:
    """Fences exercising every fast path: circle, small and large polygon, far, polar, huge."""
    big = many_vertices(200)
    return [
        parse_feature("circle", feat(circle_geom(), radius_m=120.0, buffer_m=80.0)),
        parse_feature("square", feat(poly(SQUARE), buffer_m=150.0)),
        parse_feature("many", feat(poly(big), buffer_m=300.0)),
        parse_feature("fiji", feat(poly(ACROSS), buffer_m=500.0)),
        parse_feature("polar", feat(circle_geom(40.0, 85.0), radius_m=900.0, buffer_m=300.0)),
        parse_feature("huge", feat(circle_geom(), radius_m=100_000.0, buffer_m=50_000.0)),
    ]
