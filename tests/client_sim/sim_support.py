"""Small scenarios for fast tests of the simulator."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from client_sim.scenario import Scenario, parse_scenario

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
