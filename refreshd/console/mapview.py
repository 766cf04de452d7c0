"""The fences map, drawn on the server: every fence and its buffer ring as SVG paths.

Without tiles the map is a local metric projection (equirectangular about the fences' centre,
metres true along the centre parallel: at fence scale the error is well under a pixel), with a
graticule and a scale bar, so it needs nothing from the network. With
`REFRESHD_CONSOLE_TILES` (an OSM-style `…/{z}/{x}/{y}.png` template) it is Web Mercator at
the zoom that fits the fences, with those tiles underneath.

Outlines come from the fence itself (`Fence.region_m` in its own aeqd frame, back to lng/lat),
so the ring drawn is the buffer the service tests fixes against, to within a quarter of a
pixel at the map's scale: arcs get only the segments that scale can show and the vertices are
simplified to that tolerance before they are unprojected. With every one of the service's
arc vertices a 1 000-fence map had ~200 000 of them, most closer together than a pixel, and
buffering, unprojecting and writing them was most of a first render. Outlines are cached per
parsed fence and tolerance (the fence book replaces a fence when it changes); `layout` draws
every fence once per map, and `MapLayout.render` only marks the selected one, so another
selection does not draw again.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import weakref
from collections.abc import Iterable, Sequence

import numpy as np
import shapely
from markupsafe import Markup, escape

from geo import constants as C
from geo.fence import Fence
from geo.frame import circular_mean_lng

__all__ = ["MapLayout", "MapView", "draw", "layout"]

EARTH_RADIUS_M = 6_371_008.8
WEB_MERCATOR_M_PER_PX_Z0 = 156_543.033_92  # at the equator, 256-px tiles
TILE_PX = 256
MARKER_MIN_PX = 4.0  # a fence smaller than this on screen also gets a dot
# Outlines may be this far (in pixels at the map's scale) from the exact regions: invisible.
SIMPLIFY_PX = 0.25
Rings = list[np.ndarray]  # each (n, 2) lng/lat

_outlines: weakref.WeakKeyDictionary[Fence, dict[float, tuple[Rings, Rings]]] = (
    weakref.WeakKeyDictionary()
)


def _quad_segs(fence: Fence, tolerance_m: float) -> int:
    """Segments per quarter circle that keep the fence's largest arc (radius r) within
    `tolerance_m`: the outer ring's vertices stand r·(1/cos(π/4q) − 1) outside it, its chords
    and the inner ring's within r·(1 − cos(π/4q)), which is less."""
    r = fence.buffer_m + (fence.radius_m or 0.0)
    if tolerance_m <= 0 or r <= 0:
        return C.CIRCLE_QUAD_SEGS
    q = math.ceil(math.pi / (4 * math.acos(r / (r + tolerance_m))))
    return max(1, min(C.CIRCLE_QUAD_SEGS, q))


def outlines(fences: Sequence[Fence], tolerance_m: float = 0.0) -> list[tuple[Rings, Rings]]:
    """Per fence (fence rings, buffer rings) in lng/lat within `tolerance_m` of its regions (0:
    every vertex of the service's): half of it for fewer arc segments, half for simplifying;
    computed once per parsed fence and tolerance, the missing ones together."""
    missing = [f for f in fences if tolerance_m not in _outlines.get(f, {})]
    if missing:
        regions = np.array(
            [
                g
                for f in missing
                for q in [_quad_segs(f, tolerance_m / 2)]
                for g in (
                    f.region_m(0.0, quad_segs=q),
                    f.region_m(f.buffer_m, outer=True, quad_segs=q),
                )
            ],
            dtype=object,
        )
        if tolerance_m > 0:
            # Without preserve_topology: ten times faster, and only the coordinates are drawn;
            # a ring it collapses (a fence smaller than the tolerance) is drawn unsimplified.
            simple = shapely.simplify(regions, tolerance_m / 2, preserve_topology=False)
            same = (
                shapely.get_num_interior_rings(simple) == shapely.get_num_interior_rings(regions)
            ) & (shapely.get_num_geometries(simple) == shapely.get_num_geometries(regions))
            regions = np.where(~shapely.is_empty(simple) & same, simple, regions)
        parts, part_of = shapely.get_parts(regions, return_index=True)  # MultiPolygons apart
        rings, ring_part = shapely.get_rings(parts, return_index=True)
        owner = part_of[ring_part]
        xy, ring_of = shapely.get_coordinates(rings, return_index=True)
        ring_starts = np.searchsorted(ring_of, np.arange(len(rings) + 1))
        geom_rings = np.searchsorted(owner, np.arange(len(regions) + 1))
        for i, fence in enumerate(missing):
            lo, hi = ring_starts[geom_rings[2 * i]], ring_starts[geom_rings[2 * i + 2]]
            lng, lat = fence.frame.to_lnglat_many(xy[lo:hi, 0], xy[lo:hi, 1])  # one PROJ call
            ll = np.column_stack([lng, lat])
            cut = ring_starts[geom_rings[2 * i] : geom_rings[2 * i + 2] + 1] - lo
            pieces = [ll[a:b] for a, b in itertools.pairwise(cut)]
            n_inner = geom_rings[2 * i + 1] - geom_rings[2 * i]
            _outlines.setdefault(fence, {})[tolerance_m] = (pieces[:n_inner], pieces[n_inner:])
    return [_outlines[f][tolerance_m] for f in fences]


@dataclasses.dataclass(frozen=True, slots=True)
class MapView:
    """A projection of lng/lat onto a `width` × `height` pixel map."""

    width: int
    height: int
    lng0: float
    lat0: float
    px_per_m: float  # local mode: pixels per metre; tile mode: implied at lat0
    zoom: int | None = None  # Web Mercator zoom when drawn over tiles

    @classmethod
    def fit(
        cls,
        lngs: Sequence[float],
        lats: Sequence[float],
        *,
        width: int,
        height: int,
        tiles: bool = False,
        margin: float = 0.08,
    ) -> MapView:
        """The view centred on the points, scaled so all of them fit."""
        if not len(lngs):
            lngs, lats = [0.0], [0.0]
        lng0 = circular_mean_lng(lngs)
        lat0 = (min(lats) + max(lats)) / 2
        coslat = max(math.cos(math.radians(lat0)), 0.01)
        dx = [((x - lng0 + 180) % 360 - 180) for x in lngs]
        span_x = (max(dx) - min(dx)) * math.pi / 180 * EARTH_RADIUS_M * coslat
        span_y = (max(lats) - min(lats)) * math.pi / 180 * EARTH_RADIUS_M
        lng0 += (max(dx) + min(dx)) / 2
        span_x, span_y = max(span_x, 200.0), max(span_y, 200.0)  # at least 200 m across
        usable = 1 - 2 * margin
        px_per_m = min(width * usable / span_x, height * usable / span_y)
        if not tiles:
            return cls(width, height, lng0, lat0, px_per_m)
        m_per_px_z0 = WEB_MERCATOR_M_PER_PX_Z0 * coslat
        zoom = int(max(0, min(19, math.floor(math.log2(m_per_px_z0 * px_per_m)))))
        return cls(width, height, lng0, lat0, 2**zoom / m_per_px_z0, zoom)

    def _world(self, lng: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.zoom is not None
        size = TILE_PX * 2**self.zoom
        lat = np.clip(lat, -85.05, 85.05)
        x = (lng + 180.0) / 360.0 * size
        y = (1 - np.log(np.tan(np.radians(lat)) + 1 / np.cos(np.radians(lat))) / math.pi) / 2
        return x, y * size

    def xy(self, lng: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates of lng/lat arrays (longitudes unwrapped around the centre)."""
        lng = self.lng0 + (np.asarray(lng) - self.lng0 + 180.0) % 360.0 - 180.0
        lat = np.asarray(lat)
        if self.zoom is not None:
            x, y = self._world(lng, lat)
            cx, cy = self._world(np.array([self.lng0]), np.array([self.lat0]))
            return x - cx[0] + self.width / 2, y - cy[0] + self.height / 2
        coslat = math.cos(math.radians(self.lat0))
        k = math.pi / 180 * EARTH_RADIUS_M * self.px_per_m
        return (
            self.width / 2 + (lng - self.lng0) * k * coslat,
            self.height / 2 - (lat - self.lat0) * k,
        )

    def lnglat(self, x: float, y: float) -> tuple[float, float]:
        """The lng/lat at a pixel (local mode; tile mode approximates by the local scale)."""
        k = math.pi / 180 * EARTH_RADIUS_M * self.px_per_m
        coslat = math.cos(math.radians(self.lat0))
        return (
            self.lng0 + (x - self.width / 2) / (k * coslat),
            self.lat0 - (y - self.height / 2) / k,
        )


def _paths(view: MapView, shapes: Sequence[Rings]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per shape (a list of lng/lat rings) its SVG path data and its first ring in pixels;
    every vertex of every shape is projected in one call."""
    rings = [r for rs in shapes for r in rs]
    if not rings:
        return [("", np.empty(0), np.empty(0)) for _ in shapes]
    ll = np.concatenate(rings)
    x, y = view.xy(ll[:, 0], ll[:, 1])
    pts = [f"{a:.1f},{b:.1f}" for a, b in zip(x.tolist(), y.tolist(), strict=True)]
    out = []
    at = 0
    for rs in shapes:
        start, parts = at, []
        for r in rs:
            parts.append("M" + " ".join(pts[at : at + len(r)]) + "Z")
            at += len(r)
        first = slice(start, start + len(rs[0])) if rs else slice(0, 0)
        out.append(("".join(parts), x[first], y[first]))
    return out


def _nice(x: float, steps: Iterable[float] = (1, 2, 5)) -> float:
    mag = 10 ** math.floor(math.log10(x))
    return max(m * mag for m in (*steps, 10) if m * mag <= x) if x > 0 else 1.0


def _graticule(view: MapView) -> list[str]:
    lng_a, lat_b = view.lnglat(0, view.height)
    lng_b, lat_a = view.lnglat(view.width, 0)
    step = _nice((lat_a - lat_b) / 4)
    out = ['<g class="graticule">']
    lat = math.ceil(lat_b / step) * step
    while lat <= lat_a:
        _, y = view.xy(np.array([view.lng0]), np.array([lat]))
        out.append(f'<line x1="0" x2="{view.width}" y1="{y[0]:.1f}" y2="{y[0]:.1f}"/>')
        out.append(f'<text x="4" y="{y[0] - 3:.1f}">{lat:.{_decimals(step)}f}°</text>')
        lat += step
    step = _nice((lng_b - lng_a) / 6)  # meridians: labels about 150 px apart
    lng = math.ceil(lng_a / step) * step
    while lng <= lng_b:
        x, _ = view.xy(np.array([lng]), np.array([view.lat0]))
        out.append(f'<line x1="{x[0]:.1f}" x2="{x[0]:.1f}" y1="0" y2="{view.height}"/>')
        out.append(
            f'<text x="{x[0] + 3:.1f}" y="{view.height - 4}">{lng:.{_decimals(step)}f}°</text>'
        )
        lng += step
    out.append("</g>")
    return out


def _decimals(step: float) -> int:
    return max(0, -math.floor(math.log10(step)))


def _scale_bar(view: MapView) -> list[str]:
    metres = _nice(view.width / 5 / view.px_per_m)
    px = metres * view.px_per_m
    label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
    x0, y0 = view.width - px - 16, view.height - 24
    return [
        f'<g class="scale" aria-label="scale bar: {label}">',
        f'<rect x="{x0 - 6:.1f}" y="{y0 - 16}" width="{px + 12:.1f}" height="26" class="bg"/>',
        f'<path d="M{x0:.1f},{y0 - 4}v6h{px:.1f}v-6"/>',
        f'<text x="{x0 + px / 2:.1f}" y="{y0 - 5}" text-anchor="middle">{label}</text>',
        "</g>",
    ]


def _tiles(view: MapView, template: str) -> list[str]:
    assert view.zoom is not None
    z = view.zoom
    cx, cy = view._world(np.array([view.lng0]), np.array([view.lat0]))
    x0, y0 = cx[0] - view.width / 2, cy[0] - view.height / 2
    n = 2**z
    out = ['<g class="tiles">']
    for ty in range(max(0, int(y0 // TILE_PX)), min(n, int((y0 + view.height) // TILE_PX) + 1)):
        for tx in range(int(x0 // TILE_PX), int((x0 + view.width) // TILE_PX) + 1):
            href = template.replace("{z}", str(z)).replace("{x}", str(tx % n))
            href = href.replace("{y}", str(ty))
            out.append(
                f'<image href="{escape(href)}" x="{tx * TILE_PX - x0:.1f}" '
                f'y="{ty * TILE_PX - y0:.1f}" width="{TILE_PX}" height="{TILE_PX}"/>'
            )
    out.append("</g>")
    return out


def _tolerance_m(view: MapView) -> float:
    """SIMPLIFY_PX in metres, rounded down to a power of two so close scales share outlines."""
    return float(2.0 ** math.floor(math.log2(SIMPLIFY_PX / view.px_per_m)))


@dataclasses.dataclass(frozen=True, slots=True)
class MapLayout:
    """A drawn map: every fence's markup, waiting for which one is selected."""

    head: str
    fences: tuple[tuple[str, str, str], ...]  # (id, opening <a …>'s attributes, body)
    tail: str

    def render(self, selected: str | None = None) -> Markup:
        """The map's SVG with `selected` (a fence id) marked."""
        out = [self.head]
        for fid, attrs, body in self.fences:
            cls = "fence selected" if fid == selected else "fence"
            out.append(f'<a class="{cls}" {attrs}>{body}</a>')
        out.append(self.tail)
        return Markup("".join(out))


def layout(
    fences: Sequence[Fence],
    *,
    link: str = "?id=",
    width: int = 900,
    height: int = 560,
    tiles: str | None = None,
) -> MapLayout:
    """Draw the map of `fences`, each one a link to its detail (`link` + id)."""
    # The fence's index cover (its buffer and a metre or two, in lng/lat) fits the view.
    bounds = [f.cover.bounds for f in fences]
    lngs = [v for b in bounds for v in (b[0], b[2])]
    lats = [v for b in bounds for v in (b[1], b[3])]
    view = MapView.fit(lngs, lats, width=width, height=height, tiles=tiles is not None)
    tol = _tolerance_m(view)
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" class="map" role="group" '
        'aria-label="fences map">',
        f'<rect width="{width}" height="{height}" class="sea"/>',
    ]
    if tiles is not None:
        head += _tiles(view, tiles)
    head += _graticule(view)
    shapes = outlines(fences, tol)
    inners = _paths(view, [inner for inner, _ in shapes])
    outers = _paths(view, [outer for _, outer in shapes])
    drawn = []
    for fence, (inside, _, _), (buffer, x, y) in zip(fences, inners, outers, strict=True):
        attrs = f'href="{escape(link + fence.id)}" data-fence="{escape(fence.id)}"'
        body = (
            f"<title>{escape(fence.id)}</title>"
            f'<path class="buffer" d="{buffer}" fill-rule="evenodd"/>'
            f'<path class="inside" d="{inside}" fill-rule="evenodd"/>'
        )
        if len(x) and max(np.ptp(x), np.ptp(y)) < MARKER_MIN_PX:
            body += f'<circle class="marker" cx="{x.mean():.1f}" cy="{y.mean():.1f}" r="3"/>'
        drawn.append((fence.id, attrs, body))
    tail = "".join([*_scale_bar(view), "</svg>"])
    return MapLayout("".join(head), tuple(drawn), tail)


def draw(
    fences: Sequence[Fence],
    *,
    selected: str | None = None,
    link: str = "?id=",
    width: int = 900,
    height: int = 560,
    tiles: str | None = None,
) -> Markup:
    """The map of `fences` with `selected` marked (`layout` then `render`)."""
    return layout(fences, link=link, width=width, height=height, tiles=tiles).render(selected)
