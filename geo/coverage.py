"""The coverage circle: where a device may move without a refresh or a fast fix."""

from __future__ import annotations

import msgspec
from pyproj import Geod

from geo import constants as C
from geo.index import FenceIndex

__all__ = ["Circle", "coverage_circle", "distance_m", "left_circle"]

_GEOD = Geod(ellps="WGS84")


class Circle(msgspec.Struct, frozen=True):
    """A coverage circle; radius 0 means "no circle": the device is in or at a buffer."""

    lat: float
    lng: float
    radius_m: float


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Return the geodesic distance between two points on the WGS84 ellipsoid."""
    return float(_GEOD.inv(lng1, lat1, lng2, lat2)[2])


def coverage_circle(
    lat: float, lng: float, index: FenceIndex, r_max_m: float = C.R_MAX_M
) -> Circle:
    """Return the circle around a fix that reaches no buffer: R = min(r_max_m, nearest edge).

    Inside a buffer the nearest buffer edge is at distance 0, so the radius is 0: there is no
    coverage circle while the device is in a buffer (the tracker and the fast cadence take
    over until it leaves).
    """
    return Circle(lat, lng, index.nearest_buffer_edge_m(lat, lng, r_max_m))


def left_circle(
    circle: Circle,
    lat: float,
    lng: float,
    *,
    accuracy_m: float,
    margin_m: float = C.LEAVE_MARGIN_M,
) -> bool:
    """Return whether a fix is surely outside the circle: beyond R + accuracy + margin."""
    return distance_m(circle.lat, circle.lng, lat, lng) > (
        circle.radius_m + max(accuracy_m, 0.0) + margin_m
    )
