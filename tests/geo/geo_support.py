"""Helpers shared by geo tests (importable, unlike conftest): geodesic moves, rings, types.

Points are placed with pyproj.Geod, independently of geo's own projections.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pyproj import Geod

from geo import Fence

GEOD = Geod(ellps="WGS84")

Feature = Callable[..., dict[str, Any]]
MakeCircle = Callable[..., Fence]
MakePolygon = Callable[..., Fence]


def feature(geometry: dict[str, Any] | None, **props: Any) -> dict[str, Any]:
    """Return a GeoJSON Feature with these properties."""
    return {"type": "Feature", "geometry": geometry, "properties": props}


def move(lat: float, lng: float, azimuth_deg: float, distance_m: float) -> tuple[float, float]:
    """Return the (lat, lng) reached going distance_m along azimuth_deg (geodesic)."""
    lng2, lat2, _ = GEOD.fwd(lng, lat, azimuth_deg, distance_m)
    return float(lat2), float(lng2)


def square_ring(lat: float, lng: float, half_m: float) -> list[list[float]]:
    """Return a closed [lng, lat] ring: a square of side 2 * half_m centred on (lat, lng)."""
    corners = [move(lat, lng, az, half_m * math.sqrt(2)) for az in (225, 135, 45, 315)]
    ring = [[c[1], c[0]] for c in corners]
    return [*ring, ring[0]]


def geodesic_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Return the geodesic distance in metres."""
    return float(GEOD.inv(lng1, lat1, lng2, lat2)[2])
