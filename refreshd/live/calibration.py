"""Online calibration: observed over predicted clicks on matured decisions, per model version.

A decision's label — a click in the session after it, the training label of `intent.dataset`
— is final once its horizon (10 min) has passed and the device's late uploads have arrived:
`MATURITY_S` after the decision. The job reads the newest decision and event logs and keeps the
decisions a model scored that are old enough to be final and young enough that the events read
cover their sessions. It labels them with `EventLog.label`, predicts their click probability
from the logged feature vector with the model version that scored them, and reports
clicks / Σ predicted per version. A calibrated model gives 1; 0.8 means it predicts 25 % more
clicks than users make, 1.25 that it predicts 20 % fewer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from intent.dataset import LABEL_HORIZON_S, EventLog
from intent.model import IntentModel
from refreshd.live.registry import ModelRegistry
from refreshd.store.protocol import LOG_DECISIONS, LOG_EVENTS, Store

__all__ = ["MATURITY_S", "MIN_ROWS", "Calibration", "calibrate", "matured", "measure"]

log = logging.getLogger(__name__)

# Devices upload events in 10 s batches and a few batches minutes late (after a network drop):
# 20 min past the label's horizon nearly every click of a session has arrived.
MATURITY_S = LABEL_HORIZON_S + 1200
# Below this many decisions a version's ratio is noise (±7 % at a 40 % click rate).
MIN_ROWS = 200
# The newest rows read per run: about 1.5 h of a service making 300 000 decisions a day (the
# scale training is tuned for), ~1 s of CPU per 10 000 decisions (`python -m load.bench_monitor`),
# off the event loop. Events run ~5 per decision. A busier service fills these with decisions
# younger than `MATURITY_S` and the gauge goes away (docs/operations.md).
DECISION_ROWS = 20_000
EVENT_ROWS = 100_000

Row = Mapping[str, Any]
_decode = msgspec.json.Decoder()


class Calibration(msgspec.Struct, frozen=True):
    """Observed and predicted clicks of one model version's matured decisions."""

    model_version: str
    rows: int
    clicks: int
    predicted: float

    @property
    def ratio(self) -> float:
        return self.clicks / self.predicted


def matured(decisions: Iterable[Row], *, now_ms: int, events_from_ms: int) -> dict[str, list[Row]]:
    """Return the decisions a model scored whose labels are final, by model version.

    `events_from_ms` is the receipt time of the oldest event read: an earlier decision's
    session may have events that were not read, so it is left out.
    """
    newest = now_ms - MATURITY_S * 1000
    by_version: dict[str, list[Row]] = defaultdict(list)
    for d in decisions:
        version = d.get("model_version")
        if version is None or d.get("explore") or d.get("features") is None:
            continue  # the fallback decided, a coin flip did, or the vector was not logged
        if events_from_ms <= d["ts"] <= newest:
            by_version[version].append(d)
    return by_version


def measure(
    decisions: Iterable[Row],
    events: Sequence[Row],
    *,
    now_ms: int,
    models: Mapping[str, IntentModel],
) -> list[Calibration]:
    """Return the calibration of each version in `models` with at least `MIN_ROWS` decisions."""
    if not events:
        return []
    events_from = min(int(e.get("received_ts", e["ts"])) for e in events)
    by_version = matured(decisions, now_ms=now_ms, events_from_ms=events_from)
    wanted = {v: rows for v, rows in by_version.items() if v in models and len(rows) >= MIN_ROWS}
    users = {d["user_id"] for rows in wanted.values() for d in rows}
    labels = EventLog(e for e in events if e["user_id"] in users)
    out = []
    for version, rows in sorted(wanted.items()):
        X = np.array([d["features"] for d in rows], dtype=np.float64)
        try:
            predicted = float(models[version].predict_click(X).sum())
        except ValueError as exc:  # logged vectors of another length: other feature code
            log.info("calibration: cannot score %s's decisions: %s", version, exc)
            continue
        clicks = sum(labels.label(d["user_id"], int(d["ts"])) for d in rows)
        if predicted > 0:
            out.append(Calibration(version, len(rows), clicks, predicted))
    return out


async def calibrate(store: Store, registry: ModelRegistry, *, now_ms: int) -> list[Calibration]:
    """Read the newest logs and measure each model version's calibration on them."""
    decision_blobs = await store.read_log(LOG_DECISIONS, DECISION_ROWS)
    event_blobs = await store.read_log(LOG_EVENTS, EVENT_ROWS)
    decisions = await asyncio.to_thread(_decode_all, decision_blobs)
    versions = {
        d["model_version"] for d in decisions if d.get("model_version") and not d.get("explore")
    }
    models = {v: m for v in versions if (m := await _model(store, registry, v)) is not None}
    if not models:
        return []

    def run() -> list[Calibration]:
        return measure(decisions, _decode_all(event_blobs), now_ms=now_ms, models=models)

    return await asyncio.to_thread(run)


def _decode_all(blobs: Sequence[bytes]) -> list[Row]:
    return [_decode.decode(b) for b in blobs]


async def _model(store: Store, registry: ModelRegistry, version: str) -> IntentModel | None:
    """Return the model of a version: the live one, else loaded from the store if it loads."""
    if registry.model is not None and registry.version == version:
        return registry.model
    stored = await store.get_model(version)
    if stored is None:
        return None
    try:
        return await asyncio.to_thread(IntentModel.from_text, stored[0], version=version)
    except Exception as exc:  # e.g. trained on other features: nothing to compare with
        log.info("calibration: cannot load model %s: %s", version, exc)
        return None
