"""FenceIndex: which fences a point is inside or in the buffer of, via an H3 cell map.

Each fence's buffer region is covered with H3 cells and each (cell, fence) pair is classified
as INSIDE, BUFFER or EDGE in the fence's metric frame (geo.cells). The map cell -> (fast hits,
edge fences) answers a query with one `latlng_to_cell` and one dict lookup per resolution in
use (normally one); only the edge fences of that cell run `Fence.where`, which itself is
usually answered by a fitted local model (geo.local) rather than PROJ.

Resolution: `INDEX_RES` = 10 (geo.constants says why); a fence whose cover would exceed
`MAX_CELLS_PER_FENCE` is indexed coarser instead (one more lookup per query while any such
fence exists). `upsert` and `remove` touch only the fence's own cells; `version` counts
changes so callers can tell a coverage circle is stale.

`nearest_buffer_edge_m` uses an STRtree over the lng/lat covers instead of an H3 ring search:
the search radius (tens of km for the fix cadence) would mean thousands of cells per ring,
while the tree answers a window query in microseconds. The tree is immutable, so it is rebuilt
lazily on the first nearest query after a change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import shapely
from h3.api import basic_int as h3i
from numpy.typing import NDArray
from shapely import STRtree
from shapely.geometry import Polygon

from geo import constants as C
from geo.cells import BUFFER, EDGE, INSIDE, cover_cells, resolution_for
from geo.fence import Fence, Where

__all__ = ["Cover", "FenceIndex", "Hit", "brute_force_query"]

Hit = tuple[str, Where]
# An edge fence as the query needs it: its id and its bound `where` (two attribute lookups
# per fence and fix saved on the hot path).
EdgeCheck = tuple[str, Callable[[float, float], Where | None]]
# Per cell: the fences it is wholly inside / in the buffer of, and the fences needing a check.
CellValue = tuple[tuple[Hit, ...], tuple[EdgeCheck, ...]]

# First search window of nearest_buffer_edge_m: most fixes in a city have a buffer this close.
_FIRST_WINDOW_M = 500.0
_EARTH_RADIUS_M = 6_371_008.8
# Metres per degree, rounded down so degree windows err on the large side.
_M_PER_DEG = 110_000.0

_latlng_to_cell = h3i.latlng_to_cell


@dataclass(frozen=True, slots=True)
class Cover:
    """One fence's H3 cells at resolution `res` and each cell's kind (geo.cells)."""

    fence_id: str
    res: int
    cells: NDArray[np.uint64]
    kinds: NDArray[np.int8]


class FenceIndex:
    """Answer "which fences is this point inside or in the buffer of" in O(1) per fix."""

    def __init__(
        self,
        fences: Iterable[Fence] = (),
        *,
        res: int = C.INDEX_RES,
        max_cells_per_fence: int = C.MAX_CELLS_PER_FENCE,
    ) -> None:
        self.res = res
        self.max_cells_per_fence = max_cells_per_fence
        self.version = 0
        self._fences: dict[str, Fence] = {}
        self._cells_of: dict[str, tuple[int, NDArray[np.uint64]]] = {}
        self._cells: dict[int, CellValue] = {}
        self._res_count: dict[int, int] = {}
        self._resolutions: tuple[int, ...] = ()
        self._single_res: int | None = None  # the one resolution in use, else None
        self._tree: STRtree | None = None
        self._tree_ids: list[str] = []
        for fence in fences:
            self.upsert(fence)

    def __len__(self) -> int:
        return len(self._fences)

    def __contains__(self, fence_id: object) -> bool:
        return fence_id in self._fences

    def __iter__(self) -> Iterator[Fence]:
        return iter(self._fences.values())

    def get(self, fence_id: str) -> Fence | None:
        """Return the fence with this id, or None."""
        return self._fences.get(fence_id)

    @property
    def cell_count(self) -> int:
        """Return how many cells the index holds (a memory measure)."""
        return len(self._cells)

    def cover(self, fence: Fence) -> Cover:
        """Return the fence's classified H3 cover (the costly part of `upsert`).

        Pure and independent of the index's contents, so a caller may compute covers on another
        thread and hand them to `upsert` on the thread that owns the index.
        """
        res = resolution_for(fence, self.res, self.max_cells_per_fence)
        cells, kinds = cover_cells(fence, res)
        return Cover(fence.id, res, cells, kinds)

    def upsert(self, fence: Fence, cover: Cover | None = None) -> None:
        """Add or replace one fence, touching only its own cells (`cover`: from `cover`)."""
        if cover is None or cover.fence_id != fence.id:
            cover = self.cover(fence)
        if fence.id in self._fences:
            self._unindex(fence.id)
        res, cells, kinds = cover.res, cover.cells, cover.kinds
        hits: dict[int, Hit] = {INSIDE: (fence.id, "inside"), BUFFER: (fence.id, "buffer")}
        check: EdgeCheck = (fence.id, fence.where)
        # Most cells hold one fence: share one value object between them to save memory.
        alone: dict[int, CellValue] = {
            INSIDE: ((hits[INSIDE],), ()),
            BUFFER: ((hits[BUFFER],), ()),
            EDGE: ((), (check,)),
        }
        table = self._cells
        for cell, kind in zip(cells.tolist(), kinds.tolist(), strict=True):
            old = table.get(cell)
            if old is None:
                table[cell] = alone[kind]
            elif kind == EDGE:
                table[cell] = (old[0], (*old[1], check))
            else:
                table[cell] = (tuple(sorted((*old[0], hits[kind]))), old[1])
        self._fences[fence.id] = fence
        self._cells_of[fence.id] = (res, cells)
        self._res_count[res] = self._res_count.get(res, 0) + 1
        self._changed()

    def remove(self, fence_id: str) -> bool:
        """Remove one fence; return whether it was there."""
        if fence_id not in self._fences:
            return False
        self._unindex(fence_id)
        self._changed()
        return True

    def query(self, lat: float, lng: float) -> list[Hit]:
        """Return (fence_id, "inside"|"buffer") for every fence whose buffer holds the point."""
        res = self._single_res
        if res is None:
            return self._query_multi(lat, lng)
        value = self._cells.get(_latlng_to_cell(lat, lng, res))
        if value is None:
            return []
        hits, edges = value
        out = list(hits)
        if edges:
            for fence_id, where in edges:
                found = where(lat, lng)
                if found is not None:
                    out.append((fence_id, found))
            if len(out) > 1:
                out.sort()
        return out

    def _query_multi(self, lat: float, lng: float) -> list[Hit]:
        out: list[Hit] = []
        for res in self._resolutions:
            value = self._cells.get(_latlng_to_cell(lat, lng, res))
            if value is not None:
                out.extend(value[0])
                out.extend((i, w) for i, where in value[1] if (w := where(lat, lng)) is not None)
        out.sort()
        return out

    def nearest_buffer_edge_m(
        self, lat: float, lng: float, max_m: float, exclude: Collection[str] = ()
    ) -> float:
        """Return the distance to the nearest buffer region (0 inside one), at most max_m.

        Fences in `exclude` are not considered (the ones a device is already inside).

        The distance may be short by the fence's fast-model error (about a millimetre), never
        long: a coverage circle of this radius does not reach any buffer.
        """
        tree = self._tree or self._build_tree()
        # Search a small window first and widen it: once the best distance found is within the
        # window's radius, no fence outside the window can be closer.
        radius = min(max_m, _FIRST_WINDOW_M)
        seen: set[str] = set(exclude)
        best = max_m
        while True:
            for window in _windows(lat, lng, radius):
                for i in tree.query(window).tolist():
                    fence_id = self._tree_ids[i]
                    if fence_id in seen:
                        continue
                    seen.add(fence_id)
                    fence = self._fences[fence_id]
                    # Cheap bound first: the buffer is at least |centre| - reach - buffer away.
                    to_centre = _ground_m(lat, lng, fence.frame.lat0, fence.frame.lng0)
                    if to_centre - fence.reach_m - fence.buffer_m >= best:
                        continue
                    distance, error = fence.approx_distance_m(lat, lng)
                    # Lower bound: the radius built on it never reaches the buffer.
                    best = min(best, max(0.0, distance - error - fence.buffer_m))
            if best <= radius or radius >= max_m:
                return best
            radius = min(max_m, radius * 4)

    def _unindex(self, fence_id: str) -> None:
        res, cells = self._cells_of.pop(fence_id)
        del self._fences[fence_id]
        table = self._cells
        for cell in cells.tolist():
            hits, edges = table[cell]
            hits = tuple(h for h in hits if h[0] != fence_id)
            edges = tuple(e for e in edges if e[0] != fence_id)
            if hits or edges:
                table[cell] = (hits, edges)
            else:
                del table[cell]
        self._res_count[res] -= 1
        if not self._res_count[res]:
            del self._res_count[res]

    def _changed(self) -> None:
        self.version += 1
        self._tree = None
        # Finest first: small fences are the common case.
        self._resolutions = tuple(sorted(self._res_count, reverse=True))
        self._single_res = self._resolutions[0] if len(self._resolutions) == 1 else None

    def _build_tree(self) -> STRtree:
        parts: list[Polygon] = []
        ids: list[str] = []
        for fence in self._fences.values():
            for part in shapely.get_parts(fence.cover):
                parts.append(part)
                ids.append(fence.id)
        self._tree = STRtree(parts)
        self._tree_ids = ids
        return self._tree


def _ground_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Return a lower bound of the geodesic distance (haversine, shrunk by 1 %)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2
    )
    # The sphere is off the ellipsoid by < 0.6 %: 1 % less is always short of the truth.
    return 0.99 * 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h))) - 1.0


def _windows(lat: float, lng: float, max_m: float) -> list[Polygon]:
    """Return lng/lat boxes that together hold every point within max_m of (lat, lng)."""
    dlat = max_m / _M_PER_DEG + 1e-6
    south, north = lat - dlat, lat + dlat
    if south <= -90.0 or north >= 90.0:
        return [shapely.box(-180.0, max(south, -90.0), 180.0, min(north, 90.0))]
    dlng = max_m / (_M_PER_DEG * math.cos(math.radians(max(abs(south), abs(north))))) + 1e-6
    if dlng >= 180.0:
        return [shapely.box(-180.0, south, 180.0, north)]
    west, east = lng - dlng, lng + dlng
    boxes = [shapely.box(max(west, -180.0), south, min(east, 180.0), north)]
    if west < -180.0:
        boxes.append(shapely.box(west + 360.0, south, 180.0, north))
    if east > 180.0:
        boxes.append(shapely.box(-180.0, south, east - 360.0, north))
    return boxes


def brute_force_query(fences: Iterable[Fence], lat: float, lng: float) -> list[Hit]:
    """Return what `FenceIndex.query` must: the exact test run against every fence."""
    out: list[Hit] = []
    for fence in fences:
        where = fence.where(lat, lng)
        if where is not None:
            out.append((fence.id, where))
    out.sort()
    return out
