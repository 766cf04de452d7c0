"""The training loop inside the simulator: explore, log, build a dataset, train, pick thresholds.

A separate cohort of users (never evaluated) lives `time.train_days` days *before* the
evaluation period under an exploration policy: every opportunity the intent policy would
score refreshes with probability `time.explore_refresh_share`, whatever the user does (the
engine's intent policy with a uniform draw as the "score"). Randomised refresh decouples the
label from what the logged policy did, as the service's exploration traffic is meant to.

The service's logs come out in the service's row shapes (`DecisionLog` rows with `received_ts`
and `last_refresh_ts`; event rows `{user_id, batch_id, received_ts, type, ts, ...}`), and go
through the same `intent.dataset.build_dataset` and `intent.train.train` the service's
retraining uses. Thresholds are quantiles of the trained model's scores on the training rows,
chosen before any evaluation user is simulated; the headline threshold is the one at the
scenario's pre-declared `time.headline_quantile`, never the one that happens to look best.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from client_sim.cloud import Cloud
from client_sim.device import build_world, run_device
from client_sim.mobility import DAY_MS
from client_sim.places import PlaceSet
from client_sim.population import TRAIN
from client_sim.scenario import Scenario
from client_sim.timeexp import drive
from intent.dataset import build_dataset
from intent.model import IntentModel
from intent.train import train
from refreshd.core.policy import standard_policy
from refreshd.core.rules import RuleSet

__all__ = ["Trained", "train_model"]


@dataclasses.dataclass(frozen=True)
class Trained:
    model: IntentModel
    metrics: dict[str, Any]
    thresholds: tuple[float, ...]
    rows: int
    headline: float  # the threshold at time.headline_quantile
    scores: np.ndarray | None = None  # the training rows' scores (for extra thresholds)

    def quantile(self, q: float) -> float:
        """The threshold at score quantile `q` (rounded like the scenario's thresholds)."""
        assert self.scores is not None
        return round(float(np.quantile(self.scores, q)), 4)


def train_model(
    sc: Scenario,
    places: PlaceSet,
    rules: RuleSet,
    *,
    seed: int,
    users: int,
    progress: Callable[[int], None] | None = None,
) -> Trained:
    """Simulate the exploration cohort, train the intent model, choose the thresholds."""
    t1 = sc.start_ms
    t0 = t1 - sc.time.train_days * DAY_MS
    share = sc.time.explore_refresh_share
    # Exploration traffic: every intent decision of this cohort is the flow's own coin flip,
    # refreshing with probability `share` (the service's REFRESHD_EXPLORE_SHARE traffic).
    policy = standard_policy(kind="intent", min_interval_s=sc.time.min_interval_s,
                             explore_share=1.0, explore_refresh_share=share,
                             explore_seed=f"sim-{seed}")  # fmt: skip
    cloud = Cloud(policy, rules, log=True, model_version="explore")
    worlds = [
        build_world(sc, places, seed=seed, cohort=TRAIN, index=i, t0=t0, t1=t1).world
        for i in range(users)
    ]
    devices = [run_device(sc, w, cloud, score_mode="none") for w in worlds]
    drive(devices, None, on_done=(lambda _: progress(1)) if progress else None)
    dataset = build_dataset(cloud.decision_rows, cloud.event_rows)
    result = train(dataset, seed=seed)
    model = IntentModel.from_text(result.model_text, version=f"sim-{seed}")
    scores = model.predict(dataset.X)
    qs = sorted(set(sc.time.threshold_quantiles))
    thresholds = tuple(round(float(np.quantile(scores, q)), 4) for q in qs)
    metrics = {k: v for k, v in result.metrics.items() if k != "calibration"}
    headline = round(float(np.quantile(scores, sc.time.headline_quantile)), 4)
    return Trained(model, metrics, tuple(sorted(set(thresholds))), len(dataset), headline,
                   np.asarray(scores, dtype=np.float64))  # fmt: skip
