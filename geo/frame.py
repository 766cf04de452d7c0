"""Local metric frames: project lng/lat to metres around a centre, and back.

Every fence gets its own azimuthal equidistant (aeqd) projection on the WGS84 ellipsoid,
centred on the fence. Distances from the centre are exact geodesic distances; other distances
are off by about (reach / 6371 km)² / 6, i.e. < 1e-6 relative for a fence reaching 15 km.

Antimeridian: longitudes are *unwrapped* around the centre (a vertex at -179.9 next to a centre
at 179.95 becomes 180.1) before any planar lng/lat geometry is built, so a fence near or across
the antimeridian is one continuous shape. Geometry handed out in lng/lat (for H3) is split back
into pieces inside [-180, 180] by `split_antimeridian`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from pyproj import Transformer
from pyproj.enums import TransformDirection
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

__all__ = [
    "LocalFrame",
    "Polygonal",
    "circular_mean_lng",
    "split_antimeridian",
    "unwrap_lng",
    "wrap_lng",
]

Polygonal: TypeAlias = Polygon | MultiPolygon


def wrap_lng(lng: float) -> float:
    """Return `lng` folded into [-180, 180)."""
    return (lng + 180.0) % 360.0 - 180.0


def unwrap_lng(lng: float, ref: float) -> float:
    """Return the representation of `lng` closest to `ref` (may leave [-180, 180])."""
    # Leave near longitudes untouched so that round trips are bit-exact.
    return lng if abs(lng - ref) <= 180.0 else ref + wrap_lng(lng - ref)


def circular_mean_lng(lngs: Sequence[float] | NDArray[np.float64]) -> float:
    """Return the mean longitude, correct across the antimeridian."""
    rad = np.radians(np.asarray(lngs, dtype=np.float64))
    return math.degrees(math.atan2(float(np.sin(rad).mean()), float(np.cos(rad).mean())))


class LocalFrame:
    """An azimuthal equidistant projection centred on (lng0, lat0), in metres."""

    __slots__ = ("_inverse", "_point", "lat0", "lng0")

    def __init__(self, lng0: float, lat0: float) -> None:
        self.lng0 = wrap_lng(lng0)
        self.lat0 = max(-90.0, min(90.0, lat0))
        # A PROJ pipeline string skips the CRS database: ~0.06 ms instead of ~20 ms per fence.
        pipeline = (
            "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad "
            f"+step +proj=aeqd +lat_0={self.lat0!r} +lon_0={self.lng0!r} +ellps=WGS84"
        )
        transformer = Transformer.from_pipeline(pipeline)
        self._point = transformer.transform
        self._inverse = transformer

    def to_xy(self, lng: float, lat: float) -> tuple[float, float]:
        """Project one lng/lat point to metres."""
        x, y = self._point(lng, lat)
        return x, y

    def to_xy_many(self, lngs: ArrayLike, lats: ArrayLike) -> tuple[NDArray[np.float64], ...]:
        """Project arrays of lng/lat to arrays of metres."""
        x, y = self._point(np.asarray(lngs, dtype=np.float64), np.asarray(lats, dtype=np.float64))
        return np.asarray(x), np.asarray(y)

    def to_lnglat_many(self, xs: ArrayLike, ys: ArrayLike) -> tuple[NDArray[np.float64], ...]:
        """Unproject metres to lng/lat, longitudes unwrapped around the centre."""
        lng, lat = self._inverse.transform(
            np.asarray(xs, dtype=np.float64),
            np.asarray(ys, dtype=np.float64),
            direction=TransformDirection.INVERSE,
        )
        lng = self.lng0 + (np.asarray(lng) - self.lng0 + 180.0) % 360.0 - 180.0
        return lng, np.asarray(lat)

    def geometry_to_xy(self, geom: BaseGeometry) -> BaseGeometry:
        """Project a lng/lat geometry (unwrapped around the centre) to metres."""
        return shapely.transform(geom, self._xy_coords)

    def geometry_to_lnglat(self, geom: BaseGeometry) -> BaseGeometry:
        """Unproject a metric geometry to lng/lat, unwrapped around the centre."""
        return shapely.transform(geom, self._lnglat_coords)

    def _xy_coords(self, coords: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = self.to_xy_many(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    def _lnglat_coords(self, coords: NDArray[np.float64]) -> NDArray[np.float64]:
        lng, lat = self.to_lnglat_many(coords[:, 0], coords[:, 1])
        return np.column_stack([lng, lat])


def split_antimeridian(geom: Polygonal) -> Polygonal:
    """Return `geom` cut at ±180° with every piece shifted into [-180, 180]."""
    minx, _, maxx, _ = geom.bounds
    if minx >= -180.0 and maxx <= 180.0:
        return geom
    pieces: list[Polygon] = []
    for shift in (-360.0, 0.0, 360.0):
        window = box(-180.0 - shift, -90.0, 180.0 - shift, 90.0)
        part = shapely.intersection(geom, window)
        if part.is_empty:
            continue
        part = shapely.transform(part, lambda c, s=shift: c + np.array([s, 0.0]))
        pieces.extend(p for p in shapely.get_parts(part) if isinstance(p, Polygon) and p.area > 0.0)
    return pieces[0] if len(pieces) == 1 else MultiPolygon(pieces)
