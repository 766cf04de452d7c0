"""Counterfactual honesty: the replay's estimate of a threshold change against the simulator's.

The same seeded users live a day twice in fast mode, under threshold T0 and under T1, both
with exploration traffic. The replay of T0's decision log with the candidate T1 estimates the
click change from the exploration decisions alone; the simulator measures it by running T1.
The measured change must lie within the estimate's 95 % CI. T0, T1, the users, the share and
the seeds are fixed here, before any run (T0, T1: the 70 % and 20 % quantiles of this model's
scores on a pilot run of other users).
"""

from __future__ import annotations

import msgspec

from client_sim.cloud import Cloud
from client_sim.device import ArmStats, build_world, run_device
from client_sim.mobility import HOUR_MS
from client_sim.places import build_places
from client_sim.population import EVAL
from client_sim.timeexp import drive
from intent.dataset import EventLog
from intent.model import IntentModel
from intent.train import TrainResult
from refreshd.core import flow
from refreshd.core.policy import PolicyDoc, standard_policy
from refreshd.core.replay import Candidate, replay_window
from refreshd.core.rules import RuleSet, default_rules
from tests.client_sim.sim_support import small

T0, T1 = 0.3495, 0.1925
USERS, HOURS, SEED = 400, 24, 5
EXPLORE_SHARE = 0.3
VERSION = "sim"


def _live(threshold: float, model: IntentModel) -> tuple[PolicyDoc, Cloud, list[ArmStats]]:
    """Run the seeded users for a day under `threshold`, the service's logs kept."""
    sc = small()
    places = build_places(sc.places)
    rules = RuleSet(default_rules())
    policy = standard_policy(kind="intent", threshold=threshold, explore_share=EXPLORE_SHARE,
                             min_interval_s=sc.time.min_interval_s, explore_seed="replay")  # fmt: skip
    cfg = flow.Config(rules=rules, policy=policy, model_version=VERSION)
    cloud = Cloud(policy, rules, model_version=VERSION, config=cfg)
    t0 = sc.start_ms
    worlds = [
        build_world(sc, places, seed=SEED, cohort=EVAL, index=i, t0=t0,
                    t1=t0 + HOURS * HOUR_MS).world
        for i in range(USERS)
    ]  # fmt: skip
    stats = drive([run_device(sc, w, cloud, score_mode="model") for w in worlds], model.predict)
    return policy, cloud, stats


def test_the_measured_click_change_lies_in_the_replays_ci(sim_model: TrainResult) -> None:
    model = IntentModel.from_text(sim_model.model_text, version=VERSION)
    policy, logged, base = _live(T0, model)
    _, _, cand = _live(T1, model)
    measured = sum(s.clicks for s in cand) / sum(s.clicks for s in base) - 1.0

    rows = [msgspec.convert(r, flow.DecisionLog) for r in logged.decision_rows]
    since = min(r.ts for r in rows)
    until = max(r.ts for r in rows) + 1
    report = replay_window(
        rows,
        {0: policy}.get,
        lambda version, x: model.predict_one(x),
        since=since,
        until=until,
        candidate=Candidate(threshold=T1),
        events=EventLog(logged.event_rows),
        now_ms=until + 86_400_000,
    )
    assert report.reproduced_share == 1.0
    assert report.exploration is not None and report.exploration.mature > 400
    est = report.estimated_click_change
    assert est is not None and est.relative is not None and est.relative_ci is not None
    lo, hi = est.relative_ci
    print(f"estimate {est.relative:+.4f} CI [{lo:+.4f}, {hi:+.4f}], measured {measured:+.4f}")
    assert lo <= measured <= hi
    # The candidate refreshes more: the replay says so, and so does the simulator.
    measured_refresh = sum(s.refreshes for s in cand) / sum(s.refreshes for s in base) - 1.0
    assert report.refresh_rate_change is not None and report.refresh_rate_change > 0
    assert measured_refresh > 0
