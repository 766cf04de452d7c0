"""Factories for events and decisions, and one synthetic log + model shared by the session."""

from __future__ import annotations

from typing import Any

import pytest
from intent_support import T0, MakeEvent, MakeRow

from intent.dataset import Dataset, build_dataset
from intent.events import Event
from intent.train import TrainResult, train
from synth.eventlog import SyntheticLog, generate


@pytest.fixture
def make_event() -> MakeEvent:
    """Return a factory: make_event("click", seconds_before_T0, value=...)."""

    def make(type_: str, seconds_before: float, **fields: Any) -> Event:
        return Event(type=type_, ts=T0 - int(seconds_before * 1000), **fields)  # type: ignore[arg-type]

    return make


@pytest.fixture
def make_event_row() -> MakeRow:
    """Return a factory of event log rows, received 1 s after they happened unless told."""

    def make(type_: str, ts: int, *, user_id: str = "u1", **fields: Any) -> dict[str, Any]:
        row = {"user_id": user_id, "batch_id": f"b-{type_}-{ts}", "type": type_, "ts": ts}
        row["received_ts"] = ts + 1000
        row.update(fields)
        return row

    return make


@pytest.fixture
def make_decision() -> MakeRow:
    """Return a factory of decision log rows, received 50 ms after their ts unless told."""
    count = iter(range(1_000_000))

    def make(
        ts: int, *, user_id: str = "u1", trigger: str = "open", **fields: Any
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "decision_id": f"d{next(count)}",
            "user_id": user_id,
            "ts": ts,
            "trigger": trigger,
            "refresh": False,
            "reason": "fallback",
            "degraded": True,
            "received_ts": ts + 50,
            "tz_offset_min": 0,
        }
        row.update(fields)
        return row

    return make


@pytest.fixture(scope="session")
def synthetic_log() -> SyntheticLog:
    return generate(users=200, days=3, seed=11)


@pytest.fixture(scope="session")
def synthetic_dataset(synthetic_log: SyntheticLog) -> Dataset:
    return build_dataset(synthetic_log.decisions, synthetic_log.events)


@pytest.fixture(scope="session")
def trained(synthetic_dataset: Dataset) -> TrainResult:
    return train(synthetic_dataset, seed=0)
