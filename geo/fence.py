"""Fences: a place's polygon or circle, its buffer ring, and distances in metres."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, mapping
from shapely.geometry.base import BaseGeometry

from geo import constants as C
from geo.errors import GeometryError
from geo.frame import LocalFrame, Polygonal, split_antimeridian
from geo.geojson import read_feature
from geo.local import LocalModel, Outline, Where, make_where

__all__ = ["Card", "Fence", "Where", "parse_feature"]

Card: TypeAlias = str | dict[str, Any]


@dataclass(frozen=True, eq=False)
class Fence:
    """One geofence, validated, with its local metric frame.

    `geometry` is in WGS84 lng/lat (a Point for circle fences, else a (Multi)Polygon split at
    the antimeridian). `metric` is the fence in its local frame, metres. A point exactly on the
    edge (within `ON_EDGE_TOLERANCE_M`) is inside; the buffer is everything within `buffer_m`.
    Build fences with `parse_feature` only: the derived fields (cover, model, where) are
    computed there, and `dataclasses.replace` would leave them stale.
    """

    id: str
    geometry: Point | Polygon | MultiPolygon
    buffer_m: float
    dwell_s: float
    service_cards: tuple[Card, ...]
    radius_m: float | None
    frame: LocalFrame
    metric: Polygonal
    area_m2: float
    size_m: float  # equivalent-circle diameter: drives the tracker's hysteresis
    reach_m: float  # farthest point of the fence from the frame's centre
    cover: Polygonal  # lng/lat region containing the whole buffer, for indexing
    model: LocalModel = field(repr=False)  # fast approximate projection, see geo.local
    outline: Outline | None = field(repr=False)  # plain-Python distance for small polygons
    boundary_m: BaseGeometry = field(repr=False)  # metric boundary, prepared
    # where(lat, lng) -> "inside" | "buffer" | None: equal to where_at(distance_m(lat, lng)),
    # but from the fast local model unless the point is within its error of an edge.
    where: Callable[[float, float], Where | None] = field(repr=False)

    def distance_m(self, lat: float, lng: float) -> float:
        """Return the signed distance to the edge: negative inside, 0 on it, positive outside."""
        x, y = self.frame.to_xy(lng, lat)
        return self.distance_xy_m(x, y)

    def distance_xy_m(self, x: float, y: float) -> float:
        """Return the signed distance to the edge for a point already in the local frame."""
        return _signed_distance(self.metric, self.boundary_m, self.radius_m, x, y)

    def in_fence(self, lat: float, lng: float) -> bool:
        """Return whether the point is inside the fence or on its edge."""
        return self.distance_m(lat, lng) <= C.ON_EDGE_TOLERANCE_M

    def in_buffer(self, lat: float, lng: float) -> bool:
        """Return whether the point is within `buffer_m` of the fence (inside included)."""
        return self.distance_m(lat, lng) <= self.buffer_m + C.ON_EDGE_TOLERANCE_M

    def approx_distance_m(self, lat: float, lng: float) -> tuple[float, float]:
        """Return (signed distance, error bound) from the fast local model, else exact and 0."""
        xy = self.model.to_xy(lat, lng)
        if xy is None:
            return self.distance_m(lat, lng), 0.0
        if self.radius_m is not None:
            approx = math.hypot(*xy) - self.radius_m
        elif self.outline is not None:
            approx = self.outline.signed_distance(*xy)
        else:
            approx = self.distance_xy_m(*xy)
        return approx, self.model.error_m

    def where_at(self, distance_m: float) -> Where | None:
        """Classify a signed distance as inside, in the buffer ring, or neither (None)."""
        if distance_m <= C.ON_EDGE_TOLERANCE_M:
            return "inside"
        if distance_m <= self.buffer_m + C.ON_EDGE_TOLERANCE_M:
            return "buffer"
        return None

    def region_m(
        self, offset_m: float, *, outer: bool = False, quad_segs: int = C.CIRCLE_QUAD_SEGS
    ) -> Polygonal:
        """Return the metric region {distance ≤ offset_m}, within it (or around it if outer).

        Arcs get `quad_segs` segments per quarter circle: fewer draw a map coarse enough not
        to show the difference, at a fraction of the cost."""
        return _region(self.metric, self.radius_m, offset_m, outer=outer, quad_segs=quad_segs)

    def to_feature(self) -> dict[str, Any]:
        """Return the fence as a normalised GeoJSON Feature."""
        props: dict[str, Any] = {
            "buffer_m": self.buffer_m,
            "dwell_s": self.dwell_s,
            "service_cards": list(self.service_cards),
        }
        if self.radius_m is not None:
            props["radius_m"] = self.radius_m
        return {
            "type": "Feature",
            "id": self.id,
            "geometry": _lists(mapping(self.geometry)),
            "properties": props,
        }


def parse_feature(fence_id: str, feature: object) -> Fence:
    """Validate a GeoJSON Feature and build its Fence; raise GeometryError naming the field."""
    spec = read_feature(feature)
    area_m2 = math.pi * spec.radius_m**2 if spec.radius_m is not None else spec.metric.area
    cover_m = _region(spec.metric, spec.radius_m, spec.buffer_m + 2 * C.EDGE_MARGIN_M, outer=True)
    _reject_poles(spec.frame, cover_m)
    cover = _polygonal(spec.frame.geometry_to_lnglat(shapely.segmentize(cover_m, C.SEGMENTIZE_M)))
    shapely.prepare(spec.metric)
    boundary_m = spec.metric.boundary
    shapely.prepare(boundary_m)
    small = spec.radius_m is None and shapely.get_num_coordinates(spec.metric) <= C.OUTLINE_MAX
    outline = Outline(spec.metric) if small else None
    model = LocalModel(spec.frame, cover.bounds, pad_m=C.MODEL_PAD_M)

    def distance_xy(x: float, y: float) -> float:
        return _signed_distance(spec.metric, boundary_m, spec.radius_m, x, y)

    def exact(lat: float, lng: float) -> float:
        return distance_xy(*spec.frame.to_xy(lng, lat))

    return Fence(
        id=fence_id,
        geometry=spec.lnglat,
        buffer_m=spec.buffer_m,
        dwell_s=spec.dwell_s,
        service_cards=spec.service_cards,
        radius_m=spec.radius_m,
        frame=spec.frame,
        metric=spec.metric,
        area_m2=area_m2,
        size_m=2.0 * math.sqrt(area_m2 / math.pi),
        reach_m=_reach(spec.metric, spec.radius_m),
        cover=split_antimeridian(cover),
        model=model,
        outline=outline,
        boundary_m=boundary_m,
        where=make_where(
            model,
            radius_m=spec.radius_m,
            outline=outline,
            buffer_m=spec.buffer_m,
            tolerance_m=C.ON_EDGE_TOLERANCE_M,
            distance_xy=distance_xy,
            exact=exact,
            bounds_m=None if spec.radius_m is not None else spec.metric.bounds,
        ),
    )


def _signed_distance(
    metric: Polygonal, boundary: BaseGeometry, radius_m: float | None, x: float, y: float
) -> float:
    if radius_m is not None:
        return math.hypot(x, y) - radius_m
    to_edge = float(boundary.distance(Point(x, y)))
    return -to_edge if shapely.intersects_xy(metric, x, y) else to_edge


def _reach(metric: Polygonal, radius_m: float | None) -> float:
    if radius_m is not None:
        return radius_m
    xy = shapely.get_coordinates(metric)
    return float(np.hypot(xy[:, 0], xy[:, 1]).max())


def _lists(value: Any) -> Any:
    """Return `value` with tuples turned into lists, as JSON would decode it."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value


def _region(
    metric: Polygonal,
    radius_m: float | None,
    offset_m: float,
    *,
    outer: bool,
    quad_segs: int = C.CIRCLE_QUAD_SEGS,
) -> Polygonal:
    # Buffers put arc vertices on the arc, so chords fall inside: stretching the offset by
    # 1/cos(half a step) pushes every chord outside instead.
    stretch = 1.0 / math.cos(math.pi / (4 * quad_segs)) if outer else 1.0
    if radius_m is not None:
        radius = radius_m + offset_m
        if radius <= 0.0:
            return Polygon()
        return Point(0.0, 0.0).buffer(radius * stretch, quad_segs=quad_segs)
    if abs(offset_m) < 1e-6:  # GEOS returns an empty polygon for some sub-micron buffers
        return metric
    grown = metric.buffer(offset_m * stretch if offset_m > 0 else offset_m, quad_segs=quad_segs)
    return _polygonal(grown)


def _reject_poles(frame: LocalFrame, cover_m: BaseGeometry) -> None:
    for lat, name in ((90.0, "north"), (-90.0, "south")):
        x, y = frame.to_xy(0.0, lat)
        if math.isfinite(x) and math.isfinite(y) and cover_m.intersects(Point(x, y)):
            raise GeometryError(
                f"the fence with its buffer reaches the {name} pole; polar caps are not supported",
                "geometry",
            )


def _polygonal(geom: BaseGeometry) -> Polygonal:
    if isinstance(geom, Polygon | MultiPolygon):
        return geom if geom.is_valid else _polygonal(shapely.make_valid(geom))
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon)]
    return MultiPolygon(parts)
