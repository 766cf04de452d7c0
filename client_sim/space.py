"""The space comparison: buffer + coverage circle + adaptive cadence vs fixed 30 s polling.

Policy: the device takes a fix when the service's `next_fix_s` says so, and when the app
opens (it wants nearby content); each fix goes through `geo.locate` exactly as
`POST /v1/location` does, carrying the user's geo state from fix to fix. Its transitions give
the detected fence entries; the fence cards on screen are those of the fences the tracker has
the user inside.

Baseline: a fix every `space.fixed_poll_s` all day, with the same entry rule as the geo
tracker (`n_enter` = 2 consecutive fixes whose whole accuracy circle is inside the fence), and
no geofence layer: a place's services can only show through the ordinary recommender, when
the homepage was last refreshed (by the product's fixed-interval rule, as recorded by the time
comparison's reference arm) while the user was inside the place, and then only if the
recommender ranks them onto the screen, which `places.card_in_recs` of visits do (the
services slot ranks every service near the user; a place's own service, the airport's
check-in or the mall's coupons, is one of many). That share is an assumption, not a
finding: the card-click comparison scales with it, and the report says so. The baseline's
fixes are computed in vectorised form, only around fence stays, since far from every fence a
poll can detect nothing; its fix count is exact (one per interval).

Modelling choices:

- GPS: reported accuracy is log-normal around `gps_accuracy_m` when moving and
  `indoor_accuracy_m` when still (indoors); the error is Gaussian with the reported accuracy as
  its 68 % radius, and `outlier_share` of fixes are four times worse than they claim. The
  reported speed is the true one plus noise.
- Ground truth: entries are the trajectory's stays inside a fence (`client_sim.mobility`)
  that start inside the horizon and last at least `space.min_stay_s` (the geo dwell time:
  shorter is walking past, not visiting). An entry is missed when no `enter` for its fence
  comes between its start and 60 s after it ends; the delay is `enter` time minus crossing time.
  Both arms are followed through that window (up to 2 h past the horizon) even when a stay
  starts just before the horizon ends; fixes after the horizon detect but are not counted.
- Card clicks: a visit made while truly inside a place needs that place's services with
  probability `card_need_<kind>`; each view of the homepage with the place's cards on screen
  is then clicked with probability `card_click` (common random numbers for both arms).
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right

import numpy as np

from client_sim.device import ArmStats, UserWorld
from client_sim.mobility import Plan, Stay, stays
from client_sim.places import M_PER_DEG, PlaceSet
from client_sim.population import EVAL, stream
from client_sim.scenario import Scenario
from geo import Fix, GeoState, locate
from geo import constants as GC

__all__ = ["SpaceUser", "run_space_user"]

GRACE_MS = 60_000
# A stay that starts before the horizon ends is followed at most this far past it.
TAIL_MAX_MS = 2 * 3_600_000


@dataclasses.dataclass(slots=True)
class SpaceUser:
    """One user's space results for both arms."""

    hours: float
    fixes: int
    base_fixes: float
    entries: int
    missed: int
    base_missed: int
    delays_s: list[float]
    base_delays_s: list[float]
    card_clicks: int
    base_card_clicks: int
    geo_refreshes: int


def _gps(
    rng: np.random.Generator, n: int, speed: np.ndarray, sc: Scenario
) -> tuple[np.ndarray, np.ndarray]:
    m = sc.mobility
    median = np.where(speed > 0.5, m.gps_accuracy_m, m.indoor_accuracy_m)
    acc = median * np.exp(rng.normal(0.0, 0.35, n))
    sigma = acc / 1.51
    sigma = np.where(rng.random(n) < m.outlier_share, sigma * 4, sigma)
    return acc, rng.normal(0.0, 1.0, (n, 2)) * sigma[:, None]


def _baseline_entry(
    sc: Scenario, places: PlaceSet, plan: Plan, stay: Stay, rng: np.random.Generator,
    phase_ms: int, poll_ms: int,
) -> int | None:  # fmt: skip
    lo = stay.t_in - 120_000
    first = lo + (phase_ms - lo) % poll_ms
    ts = np.arange(first, stay.t_out + GRACE_MS, poll_ms, dtype=np.int64)
    if len(ts) < 2:
        return None
    lat, lng = plan.at(ts)
    acc, err = _gps(rng, len(ts), plan.speed_at(ts), sc)
    p = places.places[stay.place]
    cos = math.cos(math.radians(p.lat))
    x = (lng - p.lng) * cos * M_PER_DEG + err[:, 0]
    y = (lat - p.lat) * M_PER_DEG + err[:, 1]
    d = np.hypot(x, y) - p.radius_m
    q = d + acc <= GC.ON_EDGE_TOLERANCE_M
    both = np.flatnonzero(q[1:] & q[:-1])
    if len(both) == 0:
        return None
    t = int(ts[both[0] + 1])
    return t if t >= stay.t_in - GRACE_MS else None


def run_space_user(
    sc: Scenario,
    places: PlaceSet,
    world: UserWorld,
    plan: Plan,
    ref: ArmStats | None,
    *,
    seed: int,
    t0: int,
    t1: int,
) -> SpaceUser:
    """Simulate one user's location fixes under both arms."""
    idx = world.user.index
    rng = stream(seed, EVAL, idx, "gps-policy")
    sessions = world.sessions[world.first_eval :]
    opens = [s.start for s in sessions]
    # Policy: adaptive fixes through geo.locate.
    state: GeoState | None = None
    fix_ts: list[int] = []
    inside_sets: list[frozenset[str]] = []
    enters: dict[str, list[int]] = {}
    geo_refreshes = 0
    # Ground truth first: a stay that starts just before the horizon ends is still followed
    # to its end (plus the grace), as the baseline's fixes are; fixes after t1 detect, but are
    # not counted or shown.
    all_stays = stays(plan, places)
    counted = [
        s for s in all_stays
        if t0 <= s.t_in < t1 and s.t_out - s.t_in >= sc.space.min_stay_s * 1000
    ]  # fmt: skip
    t_end = max([t1] + [min(s.t_out + GRACE_MS, t1 + TAIL_MAX_MS) for s in counted])
    t, oi = t0, 0
    m = sc.mobility
    blk, blk_u, bi = np.zeros((0, 3)), np.zeros((0, 2)), 0
    while t < t_end:
        if bi >= len(blk):
            blk, blk_u, bi = rng.standard_normal((256, 3)), rng.random((256, 2)), 0
        z, uu = blk[bi], blk_u[bi]
        bi += 1
        lat0, lng0, speed = plan.point(t)
        acc = (m.gps_accuracy_m if speed > 0.5 else m.indoor_accuracy_m) * math.exp(
            0.35 * float(z[0])
        )
        sigma = acc / 1.51 * (4.0 if uu[0] < m.outlier_share else 1.0)
        f_lat = lat0 + float(z[1]) * sigma / M_PER_DEG
        f_lng = lng0 + float(z[2]) * sigma / (M_PER_DEG * math.cos(math.radians(f_lat)))
        reported = max(0.0, speed + 0.6 * (float(uu[1]) - 0.5))
        res = locate(state, places.index,
                     Fix(lat=f_lat, lng=f_lng, accuracy_m=acc, ts_ms=t,
                         speed_mps=reported))  # fmt: skip
        if not res.ignored:
            state = res.new_geo_state
            geo_refreshes += res.refresh and t < t1
            for tr in res.transitions:
                if tr.type == "enter":
                    enters.setdefault(tr.fence_id, []).append(t)
        if t < t1:
            fix_ts.append(t)
            inside_sets.append(
                frozenset(
                    f for f, tr in (state.fences.items() if state else ()) if tr.state == "inside"
                )
            )
        nxt = t + max(1, res.next_fix_s) * 1000
        while oi < len(opens) and opens[oi] <= t:
            oi += 1
        if oi < len(opens) and opens[oi] < nxt:
            nxt = opens[oi]
        t = nxt
    # The baseline.
    base_rng = stream(seed, EVAL, idx, "gps-fixed")
    poll_ms = int(sc.space.fixed_poll_s * 1000)
    phase = int(base_rng.integers(poll_ms))
    delays, base_delays = [], []
    missed = base_missed = 0
    for s in counted:
        fid = places.places[s.place].id
        hits = [e for e in enters.get(fid, []) if s.t_in - GRACE_MS <= e <= s.t_out + GRACE_MS]
        if hits:
            delays.append(max(0.0, (hits[0] - s.t_in) / 1000))
        else:
            missed += 1
        b = _baseline_entry(sc, places, plan, s, base_rng, phase, poll_ms)
        if b is None:
            base_missed += 1
        else:
            base_delays.append(max(0.0, (b - s.t_in) / 1000))
    clicks, base_clicks = _card_clicks(sc, places, world, all_stays, fix_ts, inside_sets, ref,
                                       seed=seed)  # fmt: skip
    hours = (t1 - t0) / 3_600_000
    return SpaceUser(
        hours=hours,
        fixes=len(fix_ts),
        base_fixes=hours * 3600 / sc.space.fixed_poll_s,
        entries=len(counted),
        missed=missed,
        base_missed=base_missed,
        delays_s=delays,
        base_delays_s=base_delays,
        card_clicks=clicks,
        base_card_clicks=base_clicks,
        geo_refreshes=geo_refreshes,
    )


def _card_clicks(
    sc: Scenario, places: PlaceSet, world: UserWorld, all_stays: list[Stay],
    fix_ts: list[int], inside_sets: list[frozenset[str]], ref: ArmStats | None, *, seed: int,
) -> tuple[int, int]:  # fmt: skip
    rng = stream(seed, EVAL, world.user.index, "cards")
    refresh_ts = [t for t, _ in ref.refresh_log] if ref is not None else []

    def stay_at(ts: int) -> Stay | None:
        for s in all_stays:
            if s.t_in <= ts <= s.t_out:
                return s
        return None

    need_p = {"town": sc.places.card_need_town, "airport": sc.places.card_need_airport}
    clicks = base = 0
    for sess in world.sessions[world.first_eval :]:
        u_need, u_recs = (float(x) for x in rng.random(2))
        u_views = rng.random(len(sess.looks))
        for k, view in enumerate(sess.looks):
            s = stay_at(view.ts)
            if s is None:
                continue
            place = places.places[s.place]
            if u_need >= need_p[place.kind] or u_views[k] >= sc.places.card_click:
                continue
            i = bisect_right(fix_ts, view.ts) - 1
            if i >= 0 and place.id in inside_sets[i]:
                clicks += 1
            j = bisect_right(refresh_ts, view.ts) - 1
            if j >= 0 and s.t_in <= refresh_ts[j] <= s.t_out and u_recs < sc.places.card_in_recs:
                base += 1
    return clicks, base
