"""The coverage circle never reaches a buffer, and leaving it needs R + accuracy + margin."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo import Circle, Fence, FenceIndex, coverage_circle, distance_m, left_circle
from tests.geo.geo_support import MakeCircle, geodesic_m, move

LAT, LNG = 52.5, 13.4


@pytest.fixture(scope="module")
def circles(make_circle: MakeCircle) -> list[tuple[Fence, float, float]]:
    """Three circle fences as (fence, lat, lng), so distances can be checked by Geod alone."""
    specs = [(0, 900, 120, 150), (100, 2500, 300, 0), (230, 1600, 60, 400)]
    out = []
    for i, (azimuth, dist, radius, buffer_m) in enumerate(specs):
        lat, lng = move(LAT, LNG, azimuth, dist)
        out.append((make_circle(lat, lng, radius, id=f"c{i}", buffer_m=buffer_m), lat, lng))
    return out


@settings(max_examples=200, deadline=None)
@given(azimuth=st.floats(0, 360), dist_m=st.floats(0, 5000), r_max_m=st.floats(1, 3000))
def test_radius_never_reaches_a_buffer_nor_exceeds_r_max(
    circles: list[tuple[Fence, float, float]], azimuth: float, dist_m: float, r_max_m: float
) -> None:
    index = FenceIndex([c[0] for c in circles])
    lat, lng = move(LAT, LNG, azimuth, dist_m)
    circle = coverage_circle(lat, lng, index, r_max_m)
    to_edges = [
        geodesic_m(lat, lng, clat, clng) - f.radius_m - f.buffer_m  # type: ignore[operator]
        for f, clat, clng in circles
    ]
    nearest = max(0.0, min(to_edges))
    assert (circle.lat, circle.lng) == (lat, lng)
    assert 0.0 <= circle.radius_m <= r_max_m
    assert circle.radius_m <= nearest + 1e-3
    assert circle.radius_m == pytest.approx(min(r_max_m, nearest), abs=0.01)  # and not smaller


def test_radius_is_zero_inside_a_buffer(circles: list[tuple[Fence, float, float]]) -> None:
    fence, lat, lng = circles[0]
    index = FenceIndex([fence])
    assert coverage_circle(lat, lng, index).radius_m == 0.0
    blat, blng = move(lat, lng, 45, 120 + 100)  # in the buffer ring
    assert coverage_circle(blat, blng, index).radius_m == 0.0


@pytest.mark.parametrize(
    ("moved_m", "accuracy_m", "left"),
    [
        (100.0, 0.0, False),  # inside
        (109.0, 0.0, False),  # beyond R but within the 10 m margin
        (111.0, 0.0, True),
        (111.0, 5.0, False),  # the accuracy circle may still reach inside
        (116.0, 5.0, True),
        (500.0, 500.0, False),  # a very coarse fix proves nothing
    ],
)
def test_left_circle_needs_radius_plus_accuracy_plus_margin(
    moved_m: float, accuracy_m: float, left: bool
) -> None:
    circle = Circle(LAT, LNG, 100.0)
    lat, lng = move(LAT, LNG, 123.0, moved_m)
    assert distance_m(LAT, LNG, lat, lng) == pytest.approx(moved_m, abs=1e-6)
    assert left_circle(circle, lat, lng, accuracy_m=accuracy_m) is left
