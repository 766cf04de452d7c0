"""The fences map, drawn on the server: every fence and its buffer ring as SVG paths.

Without tiles the map is a local metric projection (equirectangular about the fences' centre,
metres true along the centre parallel: at fence scale the error is well under a pixel), with a
graticule and a scale bar, so it needs nothing from the network. With
`REFRESHD_CONSOLE_TILES` (an OSM-style `…/{z}/{x}/{y}.png` template) it is Web Mercator at
the zoom that fits the fences, with those tiles underneath.

Outlines come from the fence itself (`Fence.region_m` in its own aeqd frame, back to lng/lat),
so the ring drawn is the buffer the service tests fixes against; they are cached per parsed
fence, which the fence book replaces when the fence changes.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Iterable, Sequence

import numpy as np
import shapely
from markupsafe import Markup, escape

from geo.fence import Fence
from geo.frame import circular_mean_lng

__all__ = ["MapView", "draw"]

EARTH_RADIUS_M = 6_371_008.8
WEB_MERCATOR_M_PER_PX_Z0 = 156_543.033_92  # at the equator, 256-px tiles
TILE_PX = 256
MARKER_MIN_PX = 4.0  # a fence smaller than this on screen also gets a dot
Rings = list[np.ndarray]  # each (n, 2) lng/lat

_outlines: weakref.WeakKeyDictionary[Fence, tuple[Rings, Rings]] = weakref.WeakKeyDictionary()


def _rings(geom: shapely.Geometry) -> Rings:
    out: Rings = []
    for poly in getattr(geom, "geoms", [geom]):
        if poly.is_empty:
            continue
        out.append(np.asarray(poly.exterior.coords))
        out.extend(np.asarray(r.coords) for r in poly.interiors)
    return out


def outlines(fence: Fence) -> tuple[Rings, Rings]:
    """(fence rings, buffer rings) in lng/lat, computed once per parsed fence."""
    cached = _outlines.get(fence)
    if cached is None:
        to_lnglat = fence.frame.geometry_to_lnglat
        inner = _rings(to_lnglat(fence.region_m(0.0)))
        outer = _rings(to_lnglat(fence.region_m(fence.buffer_m, outer=True)))
        cached = _outlines[fence] = (inner, outer)
    return cached


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


def _path(view: MapView, rings: Rings) -> str:
    parts = []
    for ring in rings:
        x, y = view.xy(ring[:, 0], ring[:, 1])
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x.tolist(), y.tolist(), strict=True))
        parts.append(f"M{pts}Z")
    return "".join(parts)


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


def draw(
    fences: Sequence[Fence],
    *,
    selected: str | None = None,
    link: str = "?id=",
    width: int = 900,
    height: int = 560,
    tiles: str | None = None,
) -> Markup:
    """The map of `fences`: each one a link to its detail (`link` + id)."""
    drawn = [(f, *outlines(f)) for f in fences]
    lngs = [
        float(v) for _, _, outer in drawn for r in outer for v in (r[:, 0].min(), r[:, 0].max())
    ]
    lats = [
        float(v) for _, _, outer in drawn for r in outer for v in (r[:, 1].min(), r[:, 1].max())
    ]
    view = MapView.fit(lngs, lats, width=width, height=height, tiles=tiles is not None)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" class="map" role="group" '
        'aria-label="fences map">',
        f'<rect width="{width}" height="{height}" class="sea"/>',
    ]
    if tiles is not None:
        out += _tiles(view, tiles)
    out += _graticule(view)
    for fence, inner, outer in drawn:
        cls = "fence selected" if fence.id == selected else "fence"
        out.append(
            f'<a href="{escape(link + fence.id)}" class="{cls}" data-fence="{escape(fence.id)}">'
            f"<title>{escape(fence.id)}</title>"
            f'<path class="buffer" d="{_path(view, outer)}" fill-rule="evenodd"/>'
            f'<path class="inside" d="{_path(view, inner)}" fill-rule="evenodd"/>'
        )
        ring = outer[0]
        x, y = view.xy(ring[:, 0], ring[:, 1])
        if max(np.ptp(x), np.ptp(y)) < MARKER_MIN_PX:
            out.append(f'<circle class="marker" cx="{x.mean():.1f}" cy="{y.mean():.1f}" r="3"/>')
        out.append("</a>")
    out += _scale_bar(view)
    out.append("</svg>")
    return Markup("".join(out))
