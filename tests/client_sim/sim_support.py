"""Small scenarios for fast tests of the simulator."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from client_sim.cloud import Cloud, CloudUser
from client_sim.scenario import Scenario, parse_scenario
from intent.train import TrainResult
from refreshd.core import flow
from refreshd.core.messages import DecideRequest

SCENARIOS = Path(__file__).resolve().parents[2] / "client_sim" / "scenarios"


def small(name: str = "city_commuters", **changes: dict[str, Any]) -> Scenario:
    """Return a shipped scenario shrunk for tests (fewer training users, screens, resamples)."""
    data = tomllib.loads((SCENARIOS / f"{name}.toml").read_text())
    data["time"].update(train_users=120, train_days=2)
    data["space"].update(users=4)
    data["dedupe"].update(users=8, screens_per_user=3)
    data["report"].update(bootstrap=60)
    for section, values in changes.items():
        data.setdefault(section, {}).update(values)
    return parse_scenario(data)


def tiny_scenario_file(directory: Path) -> Path:
    """Write travellers shrunk for a whole CLI run in seconds (the 250-user space and dedupe
    samples down to 3 and 6); return its path."""
    scenario = directory / "tiny.toml"
    text = (SCENARIOS / "travellers.toml").read_text()
    text = text.replace("train_users = 1000", "train_users = 100").replace(
        "users = 250", "users = 3").replace("users = 250", "users = 6").replace(
        "bootstrap = 400", "bootstrap = 60")  # fmt: skip
    scenario.write_text(text)
    return scenario


def sim_trained(sc: Scenario, *, users: int = 120, seed: int = 5) -> TrainResult:
    """Train an intent model on the simulator's own exploration cohort (its decision rows carry
    the visit facts, so the model can split on the launch and in-visit features)."""
    from client_sim.device import build_world, run_device
    from client_sim.mobility import DAY_MS
    from client_sim.places import build_places
    from client_sim.population import TRAIN
    from client_sim.timeexp import drive
    from intent.dataset import build_dataset
    from intent.train import train
    from refreshd.core.policy import standard_policy
    from refreshd.core.rules import RuleSet, default_rules

    places = build_places(sc.places)
    policy = standard_policy(kind="intent", explore_share=1.0, explore_refresh_share=0.5,
                             explore_seed="t")  # fmt: skip
    cloud = Cloud(policy, RuleSet(default_rules()), log=True, model_version="explore")
    t1 = sc.start_ms
    t0 = t1 - 2 * DAY_MS
    worlds = [build_world(sc, places, seed=seed, cohort=TRAIN, index=i, t0=t0, t1=t1).world
              for i in range(users)]  # fmt: skip
    drive([run_device(sc, w, cloud, score_mode="none") for w in worlds], None)
    return train(build_dataset(cloud.decision_rows, cloud.event_rows), seed=seed)


def split_features(model_text: str) -> set[str]:
    """Return the features a LightGBM model text splits on (its feature_importances block)."""
    block = model_text.split("feature_importances:", 1)[1].split("\n\n", 1)[0]
    return {line.split("=", 1)[0] for line in block.strip().splitlines() if "=" in line}


class Recording(Cloud):
    """A fast-mode cloud that keeps every decide request it was asked."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.requests: list[DecideRequest] = []

    def prepare(self, cu: CloudUser, req: DecideRequest, now_ms: int) -> flow.DecidePlan:
        self.requests.append(req)
        return super().prepare(cu, req, now_ms)
