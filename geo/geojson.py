"""Read and validate a fence's GeoJSON Feature into metric geometry, naming any bad field."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon

from geo import constants as C
from geo.errors import GeometryError
from geo.frame import LocalFrame, Polygonal, circular_mean_lng, split_antimeridian, unwrap_lng

__all__ = ["FenceSpec", "read_feature"]

# ~0.01 m² at the equator: a ring this small in degrees² was drawn with no area at all.
_MIN_AREA_DEG2 = 1e-12

Ring = list[tuple[float, float]]  # (lng, lat) positions, longitudes as given


@dataclass(frozen=True)
class FenceSpec:
    """A validated fence definition, projected to its local frame."""

    buffer_m: float
    dwell_s: float
    service_cards: tuple[str | dict[str, Any], ...]
    radius_m: float | None  # set for Point fences
    frame: LocalFrame
    metric: Polygonal  # metres in `frame`; a 128-gon for circles (distances use radius_m)
    lnglat: Point | Polygonal  # WGS84, split at the antimeridian


def read_feature(feature: object) -> FenceSpec:
    """Validate a GeoJSON Feature (Polygon, MultiPolygon, or Point with radius_m)."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise GeometryError("expected a GeoJSON object with type 'Feature'", "type")
    props = feature.get("properties")
    props = {} if props is None else props
    if not isinstance(props, dict):
        raise GeometryError("properties must be an object", "properties")
    buffer_m = _number(props, "buffer_m", C.DEFAULT_BUFFER_M, hi=C.MAX_BUFFER_M)
    dwell_s = _number(props, "dwell_s", C.DEFAULT_DWELL_S, hi=C.MAX_DWELL_S)
    cards = _cards(props.get("service_cards", []))
    geom = feature.get("geometry")
    if not isinstance(geom, dict):
        raise GeometryError("geometry must be a GeoJSON geometry object", "geometry")
    kind = geom.get("type")
    coords = geom.get("coordinates")
    if kind == "Point":
        lng, lat = _position(coords, "geometry.coordinates")
        radius_m = _number(props, "radius_m", None, hi=C.MAX_RADIUS_M, positive=True)
        frame = LocalFrame(lng, lat)
        circle = Point(0.0, 0.0).buffer(radius_m, quad_segs=C.CIRCLE_QUAD_SEGS)
        return FenceSpec(buffer_m, dwell_s, cards, radius_m, frame, circle, Point(frame.lng0, lat))
    if kind == "Polygon":
        polygons = [_rings(coords, "geometry.coordinates")]
        fields = ["geometry.coordinates"]
    elif kind == "MultiPolygon":
        if not isinstance(coords, list | tuple) or not coords:
            raise GeometryError(
                "a MultiPolygon needs a non-empty list of polygons", "geometry.coordinates"
            )
        polygons = [_rings(p, f"geometry.coordinates[{i}]") for i, p in enumerate(coords)]
        fields = [f"geometry.coordinates[{i}]" for i in range(len(polygons))]
    else:
        raise GeometryError(
            f"unsupported geometry type {kind!r}; expected Polygon, MultiPolygon or Point",
            "geometry.type",
        )
    vertices = sum(len(ring) for rings in polygons for ring in rings)
    if vertices > C.MAX_VERTICES:
        raise GeometryError(
            f"too many vertices: {vertices} > {C.MAX_VERTICES}", "geometry.coordinates"
        )
    frame, metric, lnglat = _project(polygons, fields)
    return FenceSpec(buffer_m, dwell_s, cards, None, frame, metric, lnglat)


def _number(
    props: dict[str, Any], key: str, default: float | None, *, hi: float, positive: bool = False
) -> float:
    field = f"properties.{key}"
    value = props.get(key, default)
    if value is None:
        raise GeometryError(f"{key} is required for a Point fence", field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GeometryError(f"{key} must be a number", field)
    value = float(value)
    if not math.isfinite(value):
        raise GeometryError(f"{key} must be finite, got {value}", field)
    if value < 0 or (positive and value == 0):
        raise GeometryError(f"{key} must be {'> 0' if positive else '≥ 0'}, got {value:g}", field)
    if value > hi:
        raise GeometryError(f"{key} must be ≤ {hi:g}, got {value:g}", field)
    return value


def _cards(value: object) -> tuple[str | dict[str, Any], ...]:
    if not isinstance(value, list):
        raise GeometryError("service_cards must be a list", "properties.service_cards")
    for i, card in enumerate(value):
        if not isinstance(card, str | dict):
            raise GeometryError(
                "a service card is a string or an object", f"properties.service_cards[{i}]"
            )
    return tuple(value)


def _position(value: object, field: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) not in (2, 3):
        raise GeometryError("a position is [lng, lat] or [lng, lat, alt]", field)
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise GeometryError("position values must be numbers", field)
        if not math.isfinite(v):
            raise GeometryError(f"position values must be finite, got {v}", field)
    lng, lat = float(value[0]), float(value[1])
    if not -180.0 <= lng <= 180.0:
        raise GeometryError(f"longitude {lng:g} is outside [-180, 180]", field)
    if not -90.0 <= lat <= 90.0:
        raise GeometryError(f"latitude {lat:g} is outside [-90, 90]", field)
    return lng, lat


def _rings(value: object, field: str) -> list[Ring]:
    if not isinstance(value, list | tuple) or not value:
        raise GeometryError("a polygon is a non-empty list of linear rings", field)
    rings: list[Ring] = []
    for k, raw in enumerate(value):
        ring_field = f"{field}[{k}]"
        if not isinstance(raw, list | tuple):
            raise GeometryError(f"ring {k} must be a list of positions", ring_field)
        if len(raw) < 4:
            raise GeometryError(
                f"ring {k} has {len(raw)} positions; a ring needs at least 4", ring_field
            )
        ring = [_position(p, f"{ring_field}[{j}]") for j, p in enumerate(raw)]
        if ring[0] != ring[-1]:
            raise GeometryError(
                f"ring {k} is not closed: first position {list(ring[0])} "
                f"differs from last {list(ring[-1])}",
                ring_field,
            )
        rings.append(ring)
    return rings


def _project(polygons: list[list[Ring]], fields: list[str]) -> tuple[LocalFrame, Polygonal, Any]:
    """Unwrap around the centre, build a local frame, check shape and validity in metres."""
    lngs = np.array([p[0] for rings in polygons for ring in rings for p in ring])
    ref = circular_mean_lng(lngs)
    unwrapped = [
        Polygon(shell[0], shell[1:])
        for shell in (
            [[(unwrap_lng(x, ref), y) for x, y in r] for r in rings] for rings in polygons
        )
    ]
    centre = MultiPolygon(unwrapped).envelope.centroid
    frame = LocalFrame(centre.x, centre.y)
    metric_parts: list[Polygon] = []
    for lnglat, field in zip(unwrapped, fields, strict=True):
        metric = frame.geometry_to_xy(lnglat)
        assert isinstance(metric, Polygon)
        _check_polygon(frame, lnglat, metric, field)
        metric_parts.append(metric)
    if len(metric_parts) == 1:
        metric_union: Polygonal = metric_parts[0]
    else:
        merged = shapely.union_all(metric_parts)
        total = sum(p.area for p in metric_parts)
        # Parts may share an edge (e.g. the two halves of a fence cut at the antimeridian).
        if total - merged.area > 1e-6 * total + C.MIN_AREA_M2:
            raise GeometryError("the polygons of the MultiPolygon overlap", "geometry.coordinates")
        metric_union = merged if isinstance(merged, Polygon | MultiPolygon) else MultiPolygon()
    xy = shapely.get_coordinates(metric_union)
    reach_m = float(np.hypot(xy[:, 0], xy[:, 1]).max())
    if reach_m > C.MAX_REACH_M:
        raise GeometryError(
            f"the fence reaches {reach_m / 1000:.0f} km from its centre; "
            f"at most {C.MAX_REACH_M / 1000:.0f} km is supported",
            "geometry.coordinates",
        )
    lnglat_union = shapely.union_all(unwrapped)
    return frame, metric_union, split_antimeridian(lnglat_union)


def _check_polygon(frame: LocalFrame, lnglat: Polygon, metric: Polygon, field: str) -> None:
    metric_rings = [metric.exterior, *metric.interiors]
    lnglat_rings = [lnglat.exterior, *lnglat.interiors]
    for k, (ring, ring_deg) in enumerate(zip(metric_rings, lnglat_rings, strict=True)):
        area = shapely.make_valid(Polygon(ring)).area
        # Collinear in lng/lat is degenerate as drawn, even if a parallel bulges in metres.
        if area < C.MIN_AREA_M2 or shapely.make_valid(Polygon(ring_deg)).area < _MIN_AREA_DEG2:
            raise GeometryError(
                f"ring {k} has zero area ({area:.3g} m² < {C.MIN_AREA_M2:g} m²)", f"{field}[{k}]"
            )
    for k, ring in enumerate(metric_rings):
        if not ring.is_simple:
            where = _reason_point(frame, shapely.is_valid_reason(Polygon(ring)))
            raise GeometryError(
                f"polygon self-intersects at {where}: ring {k} crosses itself", f"{field}[{k}]"
            )
    reason = shapely.is_valid_reason(metric)
    if reason != "Valid Geometry":
        where = _reason_point(frame, reason)
        kind = reason.split("[", 1)[0]
        if "Self-intersection" in kind:
            raise GeometryError(f"polygon self-intersects at {where}: its rings cross", field)
        raise GeometryError(f"invalid polygon ({kind.lower()}) at {where}", field)


def _reason_point(frame: LocalFrame, reason: str) -> str:
    """Turn GEOS's "Reason[x y]" into a readable lng/lat location."""
    try:
        x_s, y_s = reason.split("[", 1)[1].rstrip("]").split()[:2]
        lng, lat = frame.to_lnglat_many([float(x_s)], [float(y_s)])
    except (IndexError, ValueError):
        return "an unknown point"
    return f"(lng {float(lng[0]):.6f}, lat {float(lat[0]):.6f})"
