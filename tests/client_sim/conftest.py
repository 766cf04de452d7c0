"""A model trained on the simulator's own exploration cohort, shared by the session."""

from __future__ import annotations

import pytest

from intent.train import TrainResult
from tests.client_sim.sim_support import sim_trained, small


@pytest.fixture(scope="session")
def sim_model() -> TrainResult:
    """Trained on small city_commuters' exploration traffic: it sees the visit facts."""
    return sim_trained(small())
