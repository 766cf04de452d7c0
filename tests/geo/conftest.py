"""Factory fixtures for geo tests: fences from GeoJSON.

Session-scoped because they are stateless functions (hypothesis tests use them too).
"""

from __future__ import annotations

from typing import Any

import pytest

from geo import Fence, parse_feature
from tests.geo.geo_support import MakeCircle, MakePolygon, feature


@pytest.fixture(scope="session")
def make_circle() -> MakeCircle:
    """Return make_circle(lat, lng, radius_m, id=..., **properties) -> Fence."""

    def make(lat: float, lng: float, radius_m: float, id: str = "c", **props: Any) -> Fence:
        geometry = {"type": "Point", "coordinates": [lng, lat]}
        return parse_feature(id, feature(geometry, radius_m=radius_m, **props))

    return make


@pytest.fixture(scope="session")
def make_polygon() -> MakePolygon:
    """Return make_polygon(rings, id=..., **properties) -> Fence for one Polygon."""

    def make(rings: list[list[list[float]]], id: str = "p", **props: Any) -> Fence:
        return parse_feature(id, feature({"type": "Polygon", "coordinates": rings}, **props))

    return make
