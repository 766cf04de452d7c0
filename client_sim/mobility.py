"""Where each user is: a piecewise-linear trajectory per user, and its fence stays.

Modelling choices:

- A day is a sequence of stays joined by straight moves at a constant speed: walking below
  `mobility.walk_max_m`, driving above it, flying between a home airport and a destination's.
  Straight lines are not streets, but fences only care about when the user crosses a circle,
  and a real route crosses it within seconds of the straight line at these scales.
- Commuters (weekdays): leave home around 08:00, work, walk to the nearest place at lunch
  half the time, leave around 18:00, visit a place on the way home a third of the time.
  Weekends, and the `errands` pattern: one to three outings from home to places within
  `mobility.outing_km`, 30–120 min each. `home`: one short walk to the nearest place, maybe.
  `travel`: on a travel day, drive to the home airport, wait 80–130 min, fly to a destination,
  wait 30–60 min, drive to a hotel, maybe visit a place there; otherwise errands at home.
- A visit ends at a random point well inside the place's fence (within 60 % of its radius),
  so a visit is a fence stay and a walk past is not.
- Ground truth: `stays` solves, per straight segment, when the trajectory is inside each
  fence's circle (a quadratic in time), then merges consecutive pieces. Entry times are exact
  up to the millisecond; they are what detection delays are measured against.

Every user's draws come from `rng.stream(seed, cohort, index, "mobility")`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from bisect import bisect_right

import numpy as np

from client_sim.places import M_PER_DEG, PlaceSet, dist_m, offset
from client_sim.population import User, stream
from client_sim.scenario import Scenario

__all__ = ["DAY_MS", "HOUR_MS", "Plan", "Stay", "make_plan", "stays"]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# Moves within a place (to a seat at the airport, a shop in the mall) are not modelled.
INNER_SHARE = 0.6


@dataclasses.dataclass(frozen=True, slots=True)
class Stay:
    """One ground-truth stay inside a fence."""

    place: int
    t_in: int
    t_out: int


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
    """A trajectory: positions at breakpoint times, linear in between."""

    t: np.ndarray  # int64 ms, strictly increasing
    lat: np.ndarray
    lng: np.ndarray

    def at(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (lat, lng) at the given times."""
        tf = np.asarray(ts, dtype=np.float64)
        return np.interp(tf, self.t, self.lat), np.interp(tf, self.t, self.lng)

    @functools.cached_property
    def _lists(self) -> tuple[list[int], list[float], list[float], list[float]]:
        t = self.t.tolist()
        d = dist_m(self.lat[:-1], self.lng[:-1], self.lat[1:], self.lng[1:])
        dt = np.diff(self.t) / 1000.0
        speed = [*np.where(dt > 0, d / np.maximum(dt, 1e-9), 0.0).tolist(), 0.0]
        return t, self.lat.tolist(), self.lng.tolist(), speed

    def point(self, ts: int) -> tuple[float, float, float]:
        """Return (lat, lng, speed m/s) at one time, without numpy's per-call overhead."""
        t, lat, lng, speed = self._lists
        i = bisect_right(t, ts) - 1
        if i < 0:
            return lat[0], lng[0], 0.0
        if i >= len(t) - 1:
            return lat[-1], lng[-1], 0.0
        w = (ts - t[i]) / (t[i + 1] - t[i])
        return lat[i] + w * (lat[i + 1] - lat[i]), lng[i] + w * (lng[i + 1] - lng[i]), speed[i]

    def speed_at(self, ts: np.ndarray) -> np.ndarray:
        """Return the true speed (m/s) at the given times."""
        seg = np.clip(np.searchsorted(self.t, ts, side="right") - 1, 0, len(self.t) - 2)
        d = dist_m(self.lat[seg], self.lng[seg], self.lat[seg + 1], self.lng[seg + 1])
        dt = (self.t[seg + 1] - self.t[seg]) / 1000.0
        return np.where(dt > 0, d / np.maximum(dt, 1e-9), 0.0)


class _Builder:
    def __init__(self, t0: int, pos: tuple[float, float], sc: Scenario) -> None:
        self.t = [t0]
        self.pts = [pos]
        self.m = sc.mobility

    @property
    def now(self) -> int:
        return self.t[-1]

    @property
    def pos(self) -> tuple[float, float]:
        return self.pts[-1]

    def stay_until(self, t: int) -> None:
        if t > self.t[-1]:
            self.t.append(int(t))
            self.pts.append(self.pos)

    def move(self, dest: tuple[float, float], *, fly: bool = False) -> None:
        d = _d(self.pos, dest)
        speed = (
            self.m.flight_mps if fly else self.m.walk_mps if d <= self.m.walk_max_m else
            self.m.drive_mps
        )  # fmt: skip
        dur = max(1000, int(d / speed * 1000))
        self.t.append(self.now + dur)
        self.pts.append(dest)

    def plan(self) -> Plan:
        return Plan(
            np.array(self.t, dtype=np.int64),
            np.array([p[0] for p in self.pts]),
            np.array([p[1] for p in self.pts]),
        )


def _d(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Return the equirectangular distance between two points (scalar, no numpy overhead)."""
    coslat = math.cos(math.radians((a[0] + b[0]) / 2))
    return math.hypot((b[1] - a[1]) * coslat * M_PER_DEG, (b[0] - a[0]) * M_PER_DEG)


def _inside(rng: np.random.Generator, places: PlaceSet, i: int) -> tuple[float, float]:
    p = places.places[i]
    r = p.radius_m * INNER_SHARE * math.sqrt(float(rng.random()))
    a = 2 * math.pi * float(rng.random())
    return offset(p.lat, p.lng, r * math.cos(a), r * math.sin(a))


def _nearest(places: PlaceSet, pos: tuple[float, float], cand: list[int], k: int) -> list[int]:
    if not cand:
        return []
    d = dist_m(pos[0], pos[1], places.lat[cand], places.lng[cand])
    return [cand[j] for j in np.argsort(d, kind="stable")[:k]]


def _h(day0: int, hours: float) -> int:
    return day0 + int(hours * HOUR_MS)


def _errands(b: _Builder, rng: np.random.Generator, places: PlaceSet, towns: list[int],
             base: tuple[float, float], day0: int, km: float) -> None:  # fmt: skip
    if not towns:
        return
    d_all = dist_m(base[0], base[1], places.lat[towns], places.lng[towns])
    near_idx = np.flatnonzero(d_all <= km * 1e3)
    if len(near_idx) == 0:
        near_idx = np.argsort(d_all, kind="stable")[:3]
    cum = np.cumsum(1.0 / (d_all[near_idx] + 1000.0))
    n = min(3, 1 + int(rng.poisson(0.8)))
    for start_h, u in zip(np.sort(rng.uniform(9.0, 20.0, n)), rng.random(n), strict=True):
        start = _h(day0, float(start_h))
        if start <= b.now:
            continue
        pick = min(int(np.searchsorted(cum, u * cum[-1], side="right")), len(cum) - 1)
        target = towns[int(near_idx[pick])]
        b.stay_until(start)
        b.move(_inside(rng, places, target))
        b.stay_until(b.now + int(rng.uniform(30, 120) * 60_000))
        b.move(base)


def _commute(b: _Builder, rng: np.random.Generator, places: PlaceSet, towns: list[int],
             user: User, day0: int) -> None:  # fmt: skip
    assert user.work is not None
    b.stay_until(_h(day0, float(rng.normal(8.0, 0.6))))
    b.move(user.work)
    if rng.random() < 0.5:
        lunch = _nearest(places, user.work, towns, 1)
        if lunch and _d(user.work, (places.lat[lunch[0]], places.lng[lunch[0]])) < 2000:
            b.stay_until(_h(day0, 12.0 + float(rng.uniform(0, 0.5))))
            b.move(_inside(rng, places, lunch[0]))
            b.stay_until(b.now + int(rng.uniform(35, 60) * 60_000))
            b.move(user.work)
    b.stay_until(_h(day0, float(rng.normal(18.2, 0.7))))
    if rng.random() < 0.3:
        evening = _nearest(places, user.home, towns, 5)
        if evening:
            b.move(_inside(rng, places, evening[int(rng.integers(len(evening)))]))
            b.stay_until(b.now + int(rng.uniform(40, 100) * 60_000))
    b.move(user.home)


def _travel(b: _Builder, rng: np.random.Generator, places: PlaceSet, user: User,
            day0: int) -> tuple[float, float]:  # fmt: skip
    """Fly to a destination; return the hotel (the new base)."""
    home_airports = _nearest(places, user.home, places.in_region(0, "airport"), 1)
    regions = list(range(1, len(places.region_centres)))
    if not home_airports or not regions:
        return user.home
    region = regions[int(rng.integers(len(regions)))]
    c_lat, c_lng = places.region_centres[region]
    dest_airports = _nearest(places, (c_lat, c_lng), places.of_kind("airport"), 2)
    b.stay_until(_h(day0, float(np.clip(rng.normal(9.5, 2.0), 5.0, 17.0))))
    b.move(_inside(rng, places, home_airports[0]))
    b.stay_until(b.now + int(rng.uniform(80, 130) * 60_000))
    b.move(_inside(rng, places, dest_airports[int(rng.integers(len(dest_airports)))]), fly=True)
    b.stay_until(b.now + int(rng.uniform(30, 60) * 60_000))
    a = 2 * math.pi * float(rng.random())
    hotel = offset(c_lat, c_lng, 2000 * math.cos(a), 2000 * math.sin(a))
    b.move(hotel)
    towns = places.in_region(region, "town")
    if towns and rng.random() < 0.6:
        b.stay_until(b.now + int(rng.uniform(1, 3) * HOUR_MS))
        b.move(_inside(rng, places, towns[int(rng.integers(len(towns)))]))
        b.stay_until(b.now + int(rng.uniform(40, 90) * 60_000))
        b.move(hotel)
    return hotel


def make_plan(sc: Scenario, places: PlaceSet, user: User, t0: int, t1: int, *, seed: int) -> Plan:
    """Return the user's trajectory over [t0, t1] (days in the user's local time)."""
    rng = stream(seed, user.cohort, user.index, "mobility")
    pattern = sc.archetype(user.archetype).mobility
    towns = places.in_region(0, "town")
    b = _Builder(t0, user.home, sc)
    tz_ms = user.tz_offset_min * 60_000
    day0 = (t0 + tz_ms) // DAY_MS * DAY_MS - tz_ms
    base = user.home
    first = True
    while day0 < t1:
        weekday = ((day0 + tz_ms) // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday
        if pattern == "commute" and weekday < 5:
            _commute(b, rng, places, towns, user, day0)
        elif pattern == "travel" and first and rng.random() < sc.mobility.travel_day_share:
            base = _travel(b, rng, places, user, day0)
        elif pattern == "home":
            near = _nearest(places, base, towns, 1)
            if near and rng.random() < 0.4:
                b.stay_until(_h(day0, float(rng.uniform(10, 18))))
                b.move(_inside(rng, places, near[0]))
                b.stay_until(b.now + 30 * 60_000)
                b.move(base)
        else:
            _errands(b, rng, places, towns, base, day0, sc.mobility.outing_km)
        first = False
        day0 += DAY_MS
    b.stay_until(max(t1, b.now + 1))
    return b.plan()


def stays(plan: Plan, places: PlaceSet) -> list[Stay]:
    """Return every stay of the trajectory inside a fence, in time order."""
    lat, lng, t = plan.lat, plan.lng, plan.t.astype(np.float64)
    pad = float(places.radius.max()) / M_PER_DEG * 2
    box = (
        (places.lat >= lat.min() - pad) & (places.lat <= lat.max() + pad)
        & (places.lng >= lng.min() - 3 * pad) & (places.lng <= lng.max() + 3 * pad)
    )  # fmt: skip
    cand = np.flatnonzero(box)
    if len(cand) == 0 or len(t) < 2:
        return []
    clat, clng, r = places.lat[cand], places.lng[cand], places.radius[cand]
    cos = np.cos(np.radians(clat))[None, :]
    x0 = (lng[:-1, None] - clng[None, :]) * cos * M_PER_DEG
    y0 = (lat[:-1, None] - clat[None, :]) * M_PER_DEG
    x1 = (lng[1:, None] - clng[None, :]) * cos * M_PER_DEG
    y1 = (lat[1:, None] - clat[None, :]) * M_PER_DEG
    dx, dy = x1 - x0, y1 - y0
    a = dx * dx + dy * dy
    b = 2 * (x0 * dx + y0 * dy)
    c = x0 * x0 + y0 * y0 - (r * r)[None, :]
    disc = b * b - 4 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        sq = np.sqrt(np.maximum(disc, 0.0))
        s1 = np.where(a > 0, (-b - sq) / (2 * a), np.where(c <= 0, 0.0, 2.0))
        s2 = np.where(a > 0, (-b + sq) / (2 * a), np.where(c <= 0, 1.0, -1.0))
    lo, hi = np.maximum(s1, 0.0), np.minimum(s2, 1.0)
    hit = (lo <= hi) & ((a == 0) | (disc > 0))
    span = (t[1:] - t[:-1])[:, None]
    t_lo = t[:-1, None] + lo * span
    t_hi = t[:-1, None] + hi * span
    out: list[Stay] = []
    for j in range(len(cand)):
        segs = np.flatnonzero(hit[:, j])
        cur: list[float] | None = None
        for s in segs:
            a_in, a_out = float(t_lo[s, j]), float(t_hi[s, j])
            if cur is not None and a_in <= cur[1] + 1.0:
                cur[1] = max(cur[1], a_out)
                continue
            if cur is not None:
                out.append(Stay(int(cand[j]), int(cur[0]), int(cur[1])))
            cur = [a_in, a_out]
        if cur is not None:
            out.append(Stay(int(cand[j]), int(cur[0]), int(cur[1])))
    out.sort(key=lambda s: (s.t_in, s.place))
    return out
