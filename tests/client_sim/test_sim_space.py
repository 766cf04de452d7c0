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
