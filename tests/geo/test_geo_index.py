"""FenceIndex answers exactly like the brute-force exact test, everywhere that matters."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo import Fence, FenceIndex, brute_force_query, parse_feature
from geo.cells import resolution_for
from geo.frame import wrap_lng
from tests.geo.geo_support import MakeCircle, MakePolygon, feature, move, square_ring

# Sites that stress the geometry: a city, both sides of the antimeridian, both polar regions.
SITES = [(52.5, 13.4), (-16.0, 179.995), (-16.0, -179.995), (85.0, 40.0), (-85.0, -179.99)]


@st.composite
def fence_specs(draw: st.DrawFn) -> list[tuple[str, float, float, float, float]]:
    """Draw 1-5 fences near one site: (kind, lat, lng, size_m, buffer_m)."""
    lat0, lng0 = draw(st.sampled_from(SITES))
    out = []
    for _ in range(draw(st.integers(1, 5))):
        lat, lng = move(lat0, lng0, draw(st.floats(0, 360)), draw(st.floats(0, 1500)))
        kind = draw(st.sampled_from(["circle", "square", "notch"]))
        out.append((kind, lat, lng, draw(st.floats(15, 700)), draw(st.floats(0, 600))))
    return out


def build(specs: list[tuple[str, float, float, float, float]]) -> list[Fence]:
    fences = []
    for i, (kind, lat, lng, size, buffer_m) in enumerate(specs):
        props = {"buffer_m": buffer_m}
        if kind == "circle":
            geometry = {"type": "Point", "coordinates": [lng, lat]}
            props["radius_m"] = size
        else:
            ring = square_ring(lat, lng, size)
            if kind == "notch":  # a concave polygon: pull one side's midpoint to the centre
                mid_lat, mid_lng = move(lat, lng, 90, size * 0.2)
                ring = [*ring[:2], [mid_lng, mid_lat], *ring[2:]]
            geometry = {"type": "Polygon", "coordinates": [ring]}
        fences.append(parse_feature(f"f{i}", feature(geometry, **props)))
    return fences


def edge_points(fence: Fence, count: int, seed: int) -> list[tuple[float, float]]:
    """Points exactly on (and a hair off) the fence edge and the buffer edge."""
    out = []
    for k in range(count):
        region = fence.metric if k % 2 else fence.region_m(fence.buffer_m)
        p = region.boundary.interpolate(((seed + k) * 0.618034) % 1.0, normalized=True)
        nudge = (0.0, 1e-4, -1e-4, 0.6, -0.6)[k % 5]
        lngs, lats = fence.frame.to_lnglat_many([p.x + nudge], [p.y])
        out.append((float(lats[0]), wrap_lng(float(lngs[0]))))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=fence_specs(), seed=st.integers(0, 10_000), ring_m=st.floats(0, 2500))
def test_index_equals_brute_force(
    specs: list[tuple[str, float, float, float, float]], seed: int, ring_m: float
) -> None:
    fences = build(specs)
    index = FenceIndex(fences)
    points = [p for f in fences for p in edge_points(f, 12, seed)]
    lat0, lng0 = specs[0][1], specs[0][2]
    points += [move(lat0, lng0, (seed * 37 + 11 * k) % 360, ring_m * k / 30) for k in range(30)]
    for lat, lng in points:
        assert index.query(lat, lng) == brute_force_query(fences, lat, lng), (lat, lng)


def test_dense_grid_equals_brute_force(make_circle: MakeCircle, make_polygon: MakePolygon) -> None:
    fences = [
        make_circle(52.5, 13.4, 150, id="a", buffer_m=200),
        make_circle(52.5025, 13.404, 60, id="b", buffer_m=0),
        make_polygon([square_ring(52.499, 13.402, 120)], id="c", buffer_m=300),
    ]
    index = FenceIndex(fences)
    counts = {"inside": 0, "buffer": 0}
    for i in range(-60, 61):
        for j in range(-60, 61):
            lat, lng = 52.5 + i * 0.0001, 13.4 + j * 0.00015
            got = index.query(lat, lng)
            assert got == brute_force_query(fences, lat, lng)
            for _, where in got:
                counts[where] += 1
    assert counts["inside"] > 500 and counts["buffer"] > 500  # the grid really hits both


def test_upsert_and_remove_are_incremental(make_circle: MakeCircle) -> None:
    a = make_circle(52.5, 13.4, 100, id="a")
    b = make_circle(52.501, 13.401, 100, id="b")
    moved_b = make_circle(52.51, 13.41, 50, id="b", buffer_m=10)
    index = FenceIndex([a, b])
    v = index.version
    index.upsert(moved_b)
    index.remove("a")
    assert index.version == v + 2
    assert not index.remove("a") and index.version == v + 2
    fresh = FenceIndex([moved_b])
    assert index.cell_count == fresh.cell_count
    assert index._cells == fresh._cells  # no stale entry left behind by a or the old b
    assert index.query(52.5, 13.4) == [] and index.get("a") is None
    assert index.query(52.51, 13.41) == [("b", "inside")]
    assert len(index) == 1 and "b" in index


def test_upsert_with_a_cover_computed_elsewhere(make_circle: MakeCircle) -> None:
    a = make_circle(52.5, 13.4, 100, id="a")
    b = make_circle(52.501, 13.401, 80, id="b")
    plain = FenceIndex([a, b])
    split = FenceIndex()
    covers = [split.cover(a), split.cover(b)]  # e.g. on a worker thread
    split.upsert(a, covers[0])
    split.upsert(b, covers[1])
    assert split._cells == plain._cells and split.version == plain.version
    # A cover of another fence is not trusted: it is computed afresh.
    wrong = FenceIndex()
    wrong.upsert(a, covers[1])
    assert wrong._cells == FenceIndex([a])._cells


def test_overlapping_fences_sorted_by_id(make_circle: MakeCircle) -> None:
    index = FenceIndex([make_circle(52.5, 13.4, r, id=f"r{r}", buffer_m=100) for r in (300, 50)])
    assert index.query(52.5, 13.4) == [("r300", "inside"), ("r50", "inside")]
    lat, lng = move(52.5, 13.4, 0, 100)
    assert index.query(lat, lng) == [("r300", "inside"), ("r50", "buffer")]


def test_large_fence_uses_a_coarser_resolution(make_circle: MakeCircle) -> None:
    big = make_circle(52.5, 13.4, 20_000, id="big", buffer_m=5000)
    small = make_circle(52.6, 13.5, 100, id="small")
    assert resolution_for(big, 10, 2000) < 10 == resolution_for(small, 10, 2000)
    index = FenceIndex([big, small], max_cells_per_fence=2000)
    assert len(index._resolutions) == 2
    for k in range(200):
        lat, lng = move(52.5, 13.4, k * 7.3, 25_000 * (k % 50) / 49)
        assert index.query(lat, lng) == brute_force_query([big, small], lat, lng)
    assert ("small", "inside") in index.query(52.6, 13.5)


def test_antimeridian_fence_found_from_both_sides(make_circle: MakeCircle) -> None:
    fence = make_circle(-16.0, 179.9995, 200, id="fiji")
    index = FenceIndex([fence])
    for lng in (179.9999, 180.0, -180.0, -179.9999, -179.999):
        assert index.query(-16.0, lng) == [("fiji", "inside")]


def test_empty_index() -> None:
    index = FenceIndex()
    assert index.query(10.0, 10.0) == []
    assert index.nearest_buffer_edge_m(10.0, 10.0, 5000) == 5000


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=fence_specs(), azimuth=st.floats(0, 360), dist_m=st.floats(0, 6000),
       max_m=st.floats(1, 8000))  # fmt: skip
def test_nearest_buffer_edge_matches_brute_force(
    specs: list[tuple[str, float, float, float, float]],
    azimuth: float,
    dist_m: float,
    max_m: float,
) -> None:
    fences = build(specs)
    index = FenceIndex(fences)
    lat, lng = move(specs[0][1], specs[0][2], azimuth, dist_m)
    expected = min([max(0.0, f.distance_m(lat, lng) - f.buffer_m) for f in fences] + [max_m])
    got = index.nearest_buffer_edge_m(lat, lng, max_m)
    assert got <= expected + 1e-9  # never beyond the nearest buffer
    assert got == pytest.approx(expected, abs=0.01)  # short by at most the fast model's error


def test_nearest_buffer_edge_near_the_pole_and_across_the_antimeridian(
    make_circle: MakeCircle,
) -> None:
    east = make_circle(-16.0, 179.999, 50, id="east", buffer_m=50)
    index = FenceIndex([east])
    lat, lng = move(-16.0, 179.999, 90, 3000)  # lands at lng < -179.9
    assert lng < 0
    assert index.nearest_buffer_edge_m(lat, lng, 10_000) == pytest.approx(2900, abs=0.01)
    polar = make_circle(88.0, 0.0, 100, id="polar", buffer_m=0)
    index = FenceIndex([polar])
    lat, lng = move(88.0, 0.0, 0, 5000)  # over towards the other side of the pole
    assert index.nearest_buffer_edge_m(lat, lng, 20_000) == pytest.approx(4900, abs=0.01)
    assert math.isclose(index.nearest_buffer_edge_m(lat, lng, 1000), 1000)
