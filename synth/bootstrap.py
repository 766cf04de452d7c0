"""A first intent model for a service that has none yet, trained on the synthetic event log."""

from __future__ import annotations

from intent.dataset import build_dataset
from intent.train import TrainResult, train
from synth.eventlog import generate

__all__ = ["bootstrap"]


def bootstrap(*, users: int = 300, days: int = 3, seed: int = 0) -> TrainResult:
    """Train a first model on the synthetic log, for a service that has none yet."""
    log = generate(users=users, days=days, seed=seed)
    return train(build_dataset(log.decisions, log.events), seed=seed)
