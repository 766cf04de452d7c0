"""How the headline is measured: mixing to a click PV, the fixed frontier, the sweep's
extension, exposures from lists actually seen, and the headline object."""

from __future__ import annotations

import numpy as np
import pytest

from client_sim.device import Seen
from client_sim.fast import LONGER_MIN, SHORTER_MIN, extend_arms
from client_sim.report import family_at
from client_sim.scenario import DENSE_FIXED_INTERVALS_MIN, parse_scenario
from client_sim.stats import Boot, chain_mix, frontier_mix, metric, mix_weight
from client_sim.timeexp import COUNTS, TimeResult, fixed_arm, heuristic_arm, intent_arm
from client_sim.training import Trained
from tests.client_sim.sim_support import SCENARIOS, small

HEADLINE_KEYS = {"operating_point", "reference_interval_min", "refresh_requests_change", "ci",
                 "click_pv_change", "exposure_pvctr_change",
                 "best_heuristic_refresh_requests_change", "oracle_refresh_requests_change",
                 "oracle_gap_captured"}  # fmt: skip


def _tot(arms: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Totals of arms given as (refreshes, clicks); the other columns zero."""
    out = {f"{k}.{c}": 0.0 for k in arms for c in COUNTS}
    for k, (refreshes, clicks) in arms.items():
        out[f"{k}.refreshes"], out[f"{k}.clicks"] = refreshes, clicks
    return out


def test_mixing_two_arms_hits_the_target_click_pv_with_the_weighted_refreshes() -> None:
    tot = _tot({"a": (100.0, 10.0), "b": (150.0, 20.0), "c": (400.0, 21.0)})
    mixed = family_at(tot, ["c", "b", "a"], 15.0)
    assert mixed is not None
    assert mixed["clicks"] == pytest.approx(15.0)
    assert mixed["refreshes"] == pytest.approx(125.0)  # halfway between a and b, not c
    assert family_at(tot, ["a", "b"], 25.0) is None  # outside the family: no answer
    assert mix_weight([{"clicks": 1.0}, {"clicks": 3.0}], "clicks", 1.5) == (0, 1, 0.25)


def test_a_per_user_randomised_mixture_realises_the_weighted_combination() -> None:
    """Users drawn onto arm B with probability w: the realised totals are the weighted
    combination the report computes, inside its paired bootstrap CI."""
    rng = np.random.default_rng(3)
    n, w = 4000, 0.3
    a_ref, b_ref = rng.poisson(8.0, n).astype(float), rng.poisson(5.0, n).astype(float)
    a_clk, b_clk = rng.poisson(2.0, n).astype(float), rng.poisson(1.6, n).astype(float)
    on_b = rng.random(n) < w
    realised = np.where(on_b, b_ref, a_ref).sum()
    expected = (1 - w) * a_ref.sum() + w * b_ref.sum()
    assert realised == pytest.approx(expected, rel=0.02)
    # The report's mixture, brought to the mixed click PV on every resample, gives the same
    # refreshes as the weighted combination: a relative change of 0 and a CI around it.
    pu = {"a.refreshes": a_ref, "a.clicks": a_clk, "b.refreshes": b_ref, "b.clicks": b_clk}
    boot = Boot(n, 200, 1)
    point, reps = boot.totals(pu)

    def fn(t: dict[str, float]) -> tuple[float, float] | None:
        curve = [{"refreshes": t[f"{k}.refreshes"], "clicks": t[f"{k}.clicks"]} for k in "ab"]
        target = (1 - w) * curve[0]["clicks"] + w * curve[1]["clicks"]
        got = mix_weight(curve, "clicks", target)
        if got is None:
            return None
        i, j, v = got
        want = (1 - w) * curve[0]["refreshes"] + w * curve[1]["refreshes"]
        return want, (1 - v) * curve[i]["refreshes"] + v * curve[j]["refreshes"]

    m = metric(fn(point), [fn(t) for t in reps])
    assert m["relative_change"] == pytest.approx(0.0, abs=1e-9)
    assert m["ci"] is not None and abs(m["ci"][0]) < 1e-9 and abs(m["ci"][1]) < 1e-9  # type: ignore[index]


def test_the_fixed_frontier_is_the_cheapest_mix_not_the_neighbours_chord() -> None:
    # b is above the chord of a and c: mixing a with c is cheaper at b's click PV.
    curve = [{"clicks": 1.0, "refreshes": 10.0}, {"clicks": 2.0, "refreshes": 30.0},
             {"clicks": 3.0, "refreshes": 30.0}]  # fmt: skip
    got = frontier_mix(curve, "clicks", 2.0, "refreshes")
    assert got is not None and got["refreshes"] == pytest.approx(20.0)
    assert frontier_mix(curve, "clicks", 4.0, "refreshes") is None


def _result(sc, arms, refreshes_clicks) -> TimeResult:  # type: ignore[no-untyped-def]
    res = TimeResult(arms, {})
    for a in arms:
        row = np.zeros(len(COUNTS))
        row[0], row[1] = refreshes_clicks[a.key]
        res.counts[a.key] = [row[None, :]]
    return res


def _trained() -> Trained:
    return Trained(None, {}, (), 0, 0.5, np.linspace(0.0, 1.0, 1001))  # type: ignore[arg-type]


def test_the_sweep_is_extended_until_every_arm_and_the_operating_point_are_covered() -> None:
    sc = small()
    fixed = [fixed_arm(sc, v) for v in (1.0, 5.0, 60.0)]
    intent = [intent_arm(sc, t) for t in (0.4, 0.5)]
    heur = [heuristic_arm(sc, "heuristic_open", v) for v in (0.0, 5.0)]
    counts = {"fixed_1m": (20, 5.0), "fixed_5m": (9, 4.8), "fixed_60m": (6, 4.4),
              "intent_0.4": (7, 4.7), "intent_0.5": (5, 4.3),  # below the operating point
              "heuristic_open_0m": (8, 4.9), "heuristic_open_5m": (7, 4.85)}  # fmt: skip
    res = _result(sc, fixed + intent + heur, counts)
    more = extend_arms(sc, res, _trained(), "fixed_5m")
    keys = {a.key for a in more}
    # intent_0.5 clicks less than the 60-minute rule: longer intervals are added.
    assert {f"fixed_{v:g}m" for v in LONGER_MIN[:2]} <= keys
    # no intent arm reaches the reference click PV: lower thresholds are added.
    assert {a.value for a in more if a.kind == "intent"} == {0.2, 0.15}
    # every open-gap arm clicks more than the reference: longer gaps are added.
    assert any(a.kind == "heuristic_open" and a.value == 60.0 for a in more)
    # Once everything is covered, nothing more is added.
    covered = {**counts, "intent_0.4": (9.5, 4.9), "intent_0.5": (6, 4.45),
               "heuristic_open_5m": (6, 4.7)}  # fmt: skip
    assert (
        extend_arms(sc, _result(sc, fixed + intent + heur, covered), _trained(), "fixed_5m") == []
    )
    # A policy arm clicking more than the 1-minute rule asks for a shorter interval.
    faster = {**covered, "intent_0.4": (30, 5.2)}
    more = extend_arms(sc, _result(sc, fixed + intent + heur, faster), _trained(), "fixed_5m")
    assert {f"fixed_{v:g}m" for v in SHORTER_MIN} <= {a.key for a in more}


def test_the_dense_sweep_is_the_default_and_files_only_add_to_it() -> None:
    sc = small()  # the shipped file lists [2, 5, 10, 30]
    assert len(DENSE_FIXED_INTERVALS_MIN) >= 12
    assert min(DENSE_FIXED_INTERVALS_MIN) == 1.0 and max(DENSE_FIXED_INTERVALS_MIN) == 60.0
    assert sc.time.fixed_sweep_min == tuple(sorted(DENSE_FIXED_INTERVALS_MIN))
    more = parse_scenario({"time": {"fixed_intervals_min": [7, 90]}})
    assert {7.0, 90.0} <= set(more.time.fixed_sweep_min)
    assert set(DENSE_FIXED_INTERVALS_MIN) <= set(more.time.fixed_sweep_min)
    assert (SCENARIOS / "travellers.toml").exists()


def test_a_refresh_never_seen_is_not_an_exposure() -> None:
    seen = Seen()
    assert seen.view(in_feed=False) == 0  # nothing refreshed yet
    seen.refreshed(None)
    seen.refreshed(None)  # replaced before any view: the first was never seen
    assert seen.view(in_feed=False) == 1
    assert seen.view(in_feed=False) == 0  # at most once per refresh
    seen.refreshed(["feed"])  # below the fold: only a view in the feed shows it
    assert seen.view(in_feed=False) == 0
    assert seen.view(in_feed=True) == 1
    seen.refreshed(["offers"])  # above the fold: a view down in the feed does not show it
    assert seen.view(in_feed=True) == 0
    assert seen.view(in_feed=False) == 1


def test_mixing_follows_the_family_parameter_and_is_conservative_on_noisy_crossings() -> None:
    # Thresholds high → low: click PV rises, but the last two arms tie in click PV.
    curve = [{"clicks": 4.0, "refreshes": 5.0}, {"clicks": 4.9, "refreshes": 8.0},
             {"clicks": 5.2, "refreshes": 8.4}, {"clicks": 5.2, "refreshes": 9.0}]  # fmt: skip
    assert chain_mix(curve, "clicks", 5.0, "refreshes") == (1, 2, pytest.approx(1 / 3))
    # A noisy curve crossing the target twice: the dearer crossing is taken.
    noisy = [{"clicks": 4.0, "refreshes": 5.0}, {"clicks": 5.1, "refreshes": 7.0},
             {"clicks": 4.9, "refreshes": 8.0}, {"clicks": 5.3, "refreshes": 9.0}]  # fmt: skip
    i, j, w = chain_mix(noisy, "clicks", 5.0, "refreshes")  # type: ignore[misc]
    assert (i, j) == (2, 3) and w == pytest.approx(0.25)
    assert chain_mix(curve, "clicks", 6.0, "refreshes") is None
