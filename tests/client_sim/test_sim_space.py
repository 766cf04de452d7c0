"""The space comparison's ground truth and its baseline entry rule."""

from __future__ import annotations

import numpy as np

from client_sim.mobility import Plan, stays
from client_sim.places import build_places, offset
from client_sim.scenario import parse_scenario
from geo import FenceTrack, parse_feature, step_at


def test_stays_find_the_crossing_times() -> None:
    sc = parse_scenario({"places": {"max_towns": 5}})
    places = build_places(sc.places)
    p = places.places[0]
    start = offset(p.lat, p.lng, -5000.0, 0.0)
    end = offset(p.lat, p.lng, 5000.0, 0.0)
    # 10 km at 10 m/s straight through the centre: inside from 500 - r/10 s to 500 + r/10 s.
    plan = Plan(np.array([0, 1_000_000]), np.array([start[0], end[0]]),
                np.array([start[1], end[1]]))  # fmt: skip
    found = [s for s in stays(plan, places) if s.place == 0]
    assert len(found) == 1
    half = p.radius_m / 10 * 1000
    assert abs(found[0].t_in - (500_000 - half)) < 2_000
    assert abs(found[0].t_out - (500_000 + half)) < 2_000


def test_baseline_entry_rule_matches_the_tracker() -> None:
    """Two consecutive fixes with the accuracy circle inside: the tracker's n_enter rule."""
    fence = parse_feature("f", {"type": "Feature", "geometry": {"type": "Point",
                          "coordinates": [114.0, 22.5]}, "properties": {"radius_m": 300}})  # fmt: skip
    rng = np.random.default_rng(0)
    for _ in range(30):
        dists = rng.uniform(-400, 400, 12)
        acc = rng.uniform(5, 60, 12)
        q = dists + acc <= 1e-3
        both = np.flatnonzero(q[1:] & q[:-1])
        expected = None if len(both) == 0 else int(both[0]) + 1
        track, got = FenceTrack(), None
        for k, (d, a) in enumerate(zip(dists, acc, strict=True)):
            track, out = step_at(track, fence, float(d), float(a), 1000 * (k + 1))
            if got is None and any(t.type == "enter" for t in out):
                got = k
        assert got == expected


def test_a_stay_starting_at_the_horizon_is_followed_past_it() -> None:
    """A stay that starts seconds before the simulation ends is detected, not counted missed.

    The device keeps taking the fixes it was asked for through the stay (as the baseline's
    polls do); fixes after the horizon detect but are not counted.
    """
    from client_sim.device import build_world
    from client_sim.mobility import HOUR_MS
    from client_sim.population import EVAL
    from client_sim.space import run_space_user
    from tests.client_sim.sim_support import small

    sc = small()
    places = build_places(sc.places)
    t0 = sc.start_ms
    for i in range(60):
        b = build_world(sc, places, seed=2, cohort=EVAL, index=i, t0=t0, t1=t0 + 24 * HOUR_MS)
        long = [s for s in stays(b.plan, places)
                if t0 + HOUR_MS <= s.t_in and s.t_out - s.t_in >= 30 * 60_000]  # fmt: skip
        if long:
            break
    else:
        raise AssertionError("no user with a long stay")
    stay = long[0]
    t1 = stay.t_in + 5_000  # the horizon ends 5 s into the stay
    got = run_space_user(sc, places, b.world, b.plan, None, seed=2, t0=t0, t1=t1)
    assert got.entries >= 1 and got.missed == 0
    # Counted fixes stop at the horizon: never more than one per minimum interval before it.
    assert got.fixes <= (t1 - t0) / 1000 / 5 + 1
