"""Launch sources and in-visit signals: independence at λ = 0, common random numbers across
parameter values, the homepage bypass, and the visit facts every decide carries."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from client_sim.device import UserWorld, build_world, run_device
from client_sim.mobility import DAY_MS
from client_sim.places import PlaceSet, build_places
from client_sim.population import EVAL
from client_sim.scenario import LAUNCH_SOURCES, Scenario
from client_sim.timeexp import drive
from refreshd.core.policy import standard_policy
from refreshd.core.rules import RuleSet, default_rules
from tests.client_sim.sim_support import Recording, small

SC = small()


@pytest.fixture(scope="module")
def places() -> PlaceSet:
    return build_places(SC.places)


def _worlds(sc: Scenario, places: PlaceSet, n: int, seed: int = 3) -> list[UserWorld]:
    t0 = sc.start_ms
    return [build_world(sc, places, seed=seed, cohort=EVAL, index=i, t0=t0, t1=t0 + DAY_MS,
                        warmup_ms=DAY_MS).world for i in range(n)]  # fmt: skip


def _table(worlds: list[UserWorld]) -> np.ndarray:
    """Visits by (intent, launch source)."""
    counts = np.zeros((2, len(LAUNCH_SOURCES)), dtype=np.int64)
    for w in worlds:
        for s in w.sessions:
            counts[int(s.latent.browse), LAUNCH_SOURCES.index(s.launch)] += 1
    return counts


def test_at_zero_informativeness_the_source_is_independent_of_intent(places: PlaceSet) -> None:
    flat = _table(_worlds(small(launch={"informativeness": 0.0}), places, 300))
    assert flat.sum() > 4000 and (flat > 0).all()
    assert chi2_contingency(flat).pvalue > 0.01  # fixed seed: this is a fixed number
    full = _table(_worlds(small(launch={"informativeness": 1.0}), places, 300))
    assert chi2_contingency(full).pvalue < 1e-12  # the same test does see a dependence
    browse_scan = full[1, LAUNCH_SOURCES.index("scan_shortcut")] / full[1].sum()
    utility_scan = full[0, LAUNCH_SOURCES.index("scan_shortcut")] / full[0].sum()
    assert utility_scan > 3 * browse_scan


def test_launch_parameters_move_no_other_draw(places: PlaceSet) -> None:
    """Sessions, intents, uniforms and payments are the same whatever the launch settings;
    a visit that bypasses the homepage in one world and not in the other only loses its views."""
    a = _worlds(small(launch={"informativeness": 0.0, "bypass": {}}), places, 30)
    b = _worlds(small(launch={"informativeness": 1.0}, in_visit={"informativeness": 1.0}),
                places, 30)  # fmt: skip
    kept = 0
    for wa, wb in zip(a, b, strict=True):
        assert [(s.start, s.end, s.latent, s.payment_ts) for s in wa.sessions] == [
            (s.start, s.end, s.latent, s.payment_ts) for s in wb.sessions
        ]
        for sa, sb in zip(wa.sessions, wb.sessions, strict=True):
            assert not sa.bypass
            if not sb.bypass:
                assert (sa.looks, sa.u, sa.scrolls) == (sb.looks, sb.u, sb.scrolls)
                kept += 1
            else:
                assert sb.looks == [] and sb.launch in ("scan_shortcut", "widget")
    assert kept > 100


def test_bypassed_visits_never_ask_decide(places: PlaceSet) -> None:
    worlds = _worlds(SC, places, 40)
    cloud = Recording(standard_policy(kind="fixed"), RuleSet(default_rules()))
    drive([run_device(SC, w, cloud, score_mode="none") for w in worlds], None)
    asked = {(r.user_id, r.ts) for r in cloud.requests}
    bypassed = 0
    for w in worlds:
        for s in w.sessions[w.first_eval :]:
            if s.bypass:
                bypassed += 1
                assert not any(u == w.user.uid and s.start <= ts <= s.end for u, ts in asked)
    assert bypassed > 10
    # ... and every visit that shows the homepage asks at its open.
    shown = sum(not s.bypass for w in worlds for s in w.sessions[w.first_eval :])
    opens = sum(r.trigger in ("open", "return") for r in cloud.requests)
    assert opens == shown


def test_every_decide_carries_the_visit_facts(places: PlaceSet) -> None:
    worlds = _worlds(SC, places, 60)
    # Exploration coins: half the opens do not refresh, so first scrolls and timers ask too.
    coin = standard_policy(kind="intent", explore_share=1.0, explore_seed="t")
    cloud = Recording(coin, RuleSet(default_rules()))
    drive([run_device(SC, w, cloud, score_mode="none") for w in worlds], None)
    by_uid = {w.user.uid: w for w in worlds}
    seen_scrolls = seen_timers = 0
    for r in cloud.requests:
        w = by_uid[r.user_id]
        s = max((s for s in w.sessions if s.start <= r.ts), key=lambda s: s.start)
        assert r.launch == s.launch and not s.bypass
        assert r.home_dwell_s == (r.ts - s.start) / 1000.0
        assert r.scrolls is not None and r.scroll_depth is not None
        assert r.scrolls == sum(lk.trigger == "scroll" and lk.ts <= r.ts for lk in s.looks)
        assert 0.0 <= r.scroll_depth <= 1.0 and (r.scroll_depth > 0) == (r.scrolls > 0)
        if r.trigger in ("open", "return"):
            assert r.home_dwell_s == 0.0 and r.scrolls == 0
        seen_scrolls += r.trigger == "scroll"
        seen_timers += r.trigger == "timer" and r.home_dwell_s > 0
    assert seen_scrolls > 10 and seen_timers > 20
    assert len({r.launch for r in cloud.requests}) == len(LAUNCH_SOURCES)
