"""Cover one fence's buffer with H3 cells and classify each cell as inside, buffer or edge.

A cell is INSIDE when every point of it is at least EDGE_MARGIN_M inside the fence, BUFFER
when every point is at least EDGE_MARGIN_M from both the fence edge and the buffer's outer edge
(on the ring side), and EDGE otherwise: queries in an EDGE cell run the exact test. The margin
absorbs the difference between H3's great-circle cell edges and straight edges in the fence's
local frame (millimetres at resolution 10), so the fast answers never disagree with the exact
test.

Circles (the common case) are covered by growing a grid disk around the centre cell until its
outermost ring touches nothing (the cells touching a disk are connected, so nothing further out
can touch either), and classified exactly from cell vertices with numpy. Polygons use H3's
"overlap" polyfill of `Fence.cover` and Shapely predicates against buffered regions.
"""

from __future__ import annotations

import math

import h3
import numpy as np
import shapely
from h3.api import basic_int as h3i
from numpy.typing import NDArray

from geo import constants as C
from geo.fence import Fence

__all__ = ["BUFFER", "EDGE", "INSIDE", "cover_cells", "resolution_for"]

INSIDE, BUFFER, EDGE = 0, 1, 2

Cells = NDArray[np.uint64]
Kinds = NDArray[np.int8]


def resolution_for(fence: Fence, res: int, max_cells: int) -> int:
    """Return the finest resolution ≤ res at which the fence's cover stays under max_cells."""
    reach = fence.buffer_m + 2 * C.EDGE_MARGIN_M
    if fence.radius_m is not None:
        area, length = (
            math.pi * (fence.radius_m + reach) ** 2,
            2 * math.pi * (fence.radius_m + reach),
        )
    else:
        region = fence.region_m(reach, outer=True)
        area, length = region.area, region.length
    while res > 0:
        cell_area = h3.average_hexagon_area(res, "m^2")
        edge = h3.average_hexagon_edge_length(res, "m")
        if (area + length * 2 * edge) / cell_area <= max_cells:
            break
        res -= 1
    return res


def cover_cells(fence: Fence, res: int) -> tuple[Cells, Kinds]:
    """Return the cells touching the fence's buffer region and each cell's kind."""
    if fence.radius_m is not None:
        return _cover_circle(fence, fence.radius_m, res)
    return _cover_polygon(fence, res)


def _cover_circle(fence: Fence, radius_m: float, res: int) -> tuple[Cells, Kinds]:
    margin = C.EDGE_MARGIN_M
    reach = radius_m + fence.buffer_m + margin
    centre = h3i.latlng_to_cell(fence.frame.lat0, fence.frame.lng0, res)
    # Neighbouring centres are ~sqrt(3) edges apart: this disk usually covers the circle; if
    # its outermost ring still touches, grow ring by ring until one touches nothing.
    k = math.ceil(reach / (1.5 * h3.average_hexagon_edge_length(res, "m"))) + 1
    cells = h3i.grid_disk(centre, k)
    near, far = _circle_distances(fence, cells)
    ring = set(cells) - set(h3i.grid_disk(centre, k - 1)) if k else set(cells)
    ring_touches = any(c in ring for c in np.asarray(cells)[near <= reach].tolist())
    while ring_touches:
        k += 1
        new = list(set(h3i.grid_disk(centre, k)) - set(cells))
        new_near, new_far = _circle_distances(fence, new)
        cells = cells + new
        near, far = np.concatenate([near, new_near]), np.concatenate([far, new_far])
        ring_touches = bool((new_near <= reach).any())
    touches = near <= reach
    kinds = np.full(len(cells), EDGE, dtype=np.int8)
    kinds[(near > radius_m + margin) & (far <= radius_m + fence.buffer_m - margin)] = BUFFER
    kinds[far <= radius_m - margin] = INSIDE
    return np.array(cells, dtype=np.uint64)[touches], kinds[touches]


def _circle_distances(
    fence: Fence, cells: list[int]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return each cell's nearest and farthest distance from the circle's centre, in metres."""
    x, y, starts = _cell_vertices(fence, cells)
    far = np.maximum.reduceat(np.hypot(x, y), starts)
    nxt = np.arange(1, len(x) + 1)
    ends = np.append(starts[1:], len(x))
    nxt[ends - 1] = starts  # close each ring
    ax, ay, bx, by = x, y, x[nxt], y[nxt]
    dx, dy = bx - ax, by - ay
    t = np.clip(-(ax * dx + ay * dy) / np.maximum(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
    near = np.minimum.reduceat(np.hypot(ax + t * dx, ay + t * dy), starts)
    # A cell containing the centre is at distance 0 (same sign of every edge's cross product).
    cross = ax * by - ay * bx
    holds_centre = (np.minimum.reduceat(cross, starts) >= 0) | (
        np.maximum.reduceat(cross, starts) <= 0
    )
    near[holds_centre] = 0.0
    return near, far


def _cover_polygon(fence: Fence, res: int) -> tuple[Cells, Kinds]:
    found: set[int] = set()
    for part in shapely.get_parts(fence.cover):
        shape = h3.LatLngPoly(
            [(lat, lng) for lng, lat in part.exterior.coords[:-1]],
            *[[(lat, lng) for lng, lat in hole.coords[:-1]] for hole in part.interiors],
        )
        found.update(h3i.h3shape_to_cells_experimental(shape, res, contain="overlap"))
    cells = np.array(sorted(found), dtype=np.uint64)
    if not len(cells):
        return cells, np.zeros(0, dtype=np.int8)
    x, y, starts = _cell_vertices(fence, cells.tolist())
    ring_ids = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(x))))
    polygons = shapely.polygons(shapely.linearrings(np.column_stack([x, y]), indices=ring_ids))
    shapely.prepare(polygons)
    margin = C.EDGE_MARGIN_M
    touches = shapely.intersects(polygons, fence.region_m(fence.buffer_m + margin, outer=True))
    inside = shapely.within(polygons, fence.region_m(-margin))
    ring = shapely.within(polygons, fence.region_m(fence.buffer_m - margin)) & ~shapely.intersects(
        polygons, fence.region_m(margin, outer=True)
    )
    kinds = np.full(len(cells), EDGE, dtype=np.int8)
    kinds[ring] = BUFFER
    kinds[inside] = INSIDE
    return cells[touches], kinds[touches]


def _cell_vertices(
    fence: Fence, cells: list[int]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.intp]]:
    """Return all cell vertices in the fence's frame and where each cell's vertices start."""
    boundaries = [h3i.cell_to_boundary(c) for c in cells]
    counts = np.fromiter((len(b) for b in boundaries), dtype=np.intp, count=len(boundaries))
    latlng = np.array([p for b in boundaries for p in b], dtype=np.float64)
    # Neighbours share vertices: project each distinct vertex once (projection dominates).
    keys = np.ascontiguousarray(latlng.round(10)).view(np.complex128).ravel()
    unique, back = np.unique(keys, return_inverse=True)
    ux, uy = fence.frame.to_xy_many(unique.imag, unique.real)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
    return ux[back], uy[back], starts
