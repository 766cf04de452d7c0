"""Common random numbers, the latent state, and the world's building blocks."""

from __future__ import annotations

import numpy as np
import pytest

from client_sim.cloud import Cloud
from client_sim.device import build_world, run_device
from client_sim.mobility import DAY_MS
from client_sim.places import build_places
from client_sim.population import EVAL
from client_sim.stats import poisson_ppf
from client_sim.timeexp import drive
from intent.model import IntentModel
from intent.train import TrainResult
from refreshd.core.policy import standard_policy
from refreshd.core.rules import RuleSet, default_rules
from tests.client_sim.sim_support import Recording, small

SC = small()


@pytest.fixture(scope="module")
def places():  # type: ignore[no-untyped-def]
    return build_places(SC.places)


def _worlds(places, n: int, seed: int = 3):  # type: ignore[no-untyped-def]
    t0 = SC.start_ms
    return [build_world(SC, places, seed=seed, cohort=EVAL, index=i, t0=t0, t1=t0 + DAY_MS,
                        warmup_ms=DAY_MS).world for i in range(n)]  # fmt: skip


def test_user_streams_do_not_depend_on_population_size(places) -> None:  # type: ignore[no-untyped-def]
    few, many = _worlds(places, 3), _worlds(places, 12)
    for a, b in zip(few, many[:3], strict=True):
        assert [s.start for s in a.sessions] == [s.start for s in b.sessions]
        assert [s.latent for s in a.sessions] == [s.latent for s in b.sessions]
        assert [x.u for x in a.sessions] == [y.u for y in b.sessions]


def test_two_policies_see_identical_sessions_and_views(places) -> None:  # type: ignore[no-untyped-def]
    worlds = _worlds(places, 25)
    before = [[(s.start, s.end, s.latent.browse, len(s.looks)) for s in w.sessions] for w in worlds]
    rules = RuleSet(default_rules())
    fixed = drive([run_device(SC, w, Cloud(standard_policy(kind="fixed"), rules), score_mode="none")
                   for w in worlds], None)  # fmt: skip
    coin = standard_policy(kind="intent", explore_share=1.0, explore_seed="t")
    explore = drive([run_device(SC, w, Cloud(coin, rules), score_mode="none") for w in worlds],
                    None)  # fmt: skip
    after = [[(s.start, s.end, s.latent.browse, len(s.looks)) for s in w.sessions] for w in worlds]
    assert before == after
    # Views belong to the user, not the policy: every arm sees each one.
    assert [s.views for s in fixed] == [s.views for s in explore]
    assert [s.refreshes for s in fixed] != [s.refreshes for s in explore]


@pytest.mark.parametrize("which", ["synthetic", "simulator"])
def test_policy_never_reads_latent_intent(  # type: ignore[no-untyped-def]
    places, trained_model: TrainResult, sim_model: TrainResult, which: str
) -> None:
    """Scrambling the latent intent during every service call changes nothing the policy sees:
    the requests (launch source, time on the homepage, scrolls, depth included) and the
    decisions are the same. The simulator-trained model splits on those visit facts, so a
    device that derived them from the latent state at decide time would fail here."""
    result = trained_model if which == "synthetic" else sim_model
    model = IntentModel.from_text(result.model_text)
    rules = RuleSet(default_rules())

    def run(scramble: bool):  # type: ignore[no-untyped-def]
        worlds = _worlds(places, 30)
        cloud = Recording(standard_policy(kind="intent", threshold=0.3), rules,
                          model_version="m")  # fmt: skip
        devices = [
            run_device(SC, w, cloud, score_mode="model", record=True,
                       scramble=np.random.default_rng(i) if scramble else None)
            for i, w in enumerate(worlds)
        ]  # fmt: skip
        return [s.decisions for s in drive(devices, model.predict)], cloud.requests

    (plain, asked), (scrambled, asked_scrambled) = run(False), run(True)
    assert sum(len(d) for d in plain) > 100
    assert any(r for d in plain for (_, _, r, reason, _) in d if reason == "intent")
    assert asked == asked_scrambled
    assert len({r.launch for r in asked}) > 3 and any(r.scrolls for r in asked)
    assert plain == scrambled


@pytest.mark.parametrize("mean", [0.0, 0.05, 0.7, 3.0, 12.0])
def test_poisson_ppf_is_monotone_and_matches_the_mean(mean: float) -> None:
    u = np.random.default_rng(0).random(20_000)
    draws = np.array([poisson_ppf(float(x), mean) for x in u])
    assert abs(draws.mean() - mean) < 0.05 + 0.03 * mean
    grid = np.linspace(0, 0.999, 50)
    vals = [poisson_ppf(float(g), mean) for g in grid]
    assert vals == sorted(vals)


@pytest.mark.parametrize("mode", ["bound_visit", "bound_prior"])
def test_bound_arms_score_from_the_ground_truth(places, mode: str) -> None:  # type: ignore[no-untyped-def]
    """The diagnostic arms read what the policy never may: the visit's intent and true age."""
    worlds = _worlds(places, 20)
    cloud = Cloud(standard_policy(kind="intent", threshold=0.3), RuleSet(default_rules()),
                  model_version=mode)  # fmt: skip
    stats = drive([run_device(SC, w, cloud, score_mode=mode, record=True) for w in worlds], None)
    scored = 0
    for w, st in zip(worlds, stats, strict=True):
        starts = [s.start for s in w.sessions]
        for ts, _, _, reason, score in st.decisions:
            if reason not in ("intent", "no_intent"):
                continue
            sess = w.sessions[max(i for i, t in enumerate(starts) if t <= ts)]
            intent = float(sess.latent.browse) if mode == "bound_visit" else sess.latent.prior
            assert 0.0 <= score <= intent + 1e-12  # intent × a staleness in [0, 1]
            if mode == "bound_visit" and not sess.latent.browse:
                assert score == 0.0  # a utility visit is never worth a refresh
            scored += 1
    assert scored > 50
