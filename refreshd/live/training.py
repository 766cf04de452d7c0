"""Retraining from the store's logs: build point-in-time rows, train, publish if not worse."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from intent.dataset import Dataset, build_dataset
from intent.train import evaluate, is_better, train
from refreshd.core.errors import Conflict
from refreshd.live.registry import ModelMeta, ModelRegistry, publish
from refreshd.store.protocol import LOG_DECISIONS, LOG_EVENTS, Store

log = logging.getLogger(__name__)

# Below this many rows a holdout AUC is noise; keep the current model.
MIN_TRAIN_ROWS = 500
# The newest rows used for one training run: a few days of a mid-size app, minutes of CPU.
MAX_LOG_ROWS = 300_000
# The newest share of rows every model is judged on (train's early-stopping holdout too).
HOLDOUT_FRACTION = 0.2
_decode = msgspec.json.Decoder()


class TrainReport(msgspec.Struct):
    published: bool
    reason: str
    rows: int
    metrics: dict[str, Any]
    current_metrics: dict[str, Any] | None
    model: ModelMeta | None


async def read_logs(store: Store, count: int) -> tuple[list[Any], list[Any]]:
    """Return the newest `count` rows of the decision log and of the event log, decoded."""
    decisions = [_decode.decode(b) for b in await store.read_log(LOG_DECISIONS, count)]
    events = [_decode.decode(b) for b in await store.read_log(LOG_EVENTS, count)]
    return decisions, events


async def logged_dataset(store: Store, *, min_rows: int = MIN_TRAIN_ROWS) -> Dataset:
    """Build point-in-time rows from the newest logs; 409 if too few to train or judge on."""
    decisions, events = await read_logs(store, MAX_LOG_ROWS)
    dataset = await asyncio.to_thread(build_dataset, decisions, events)
    if len(dataset) < min_rows or len(set(dataset.y.tolist())) < 2:
        raise Conflict(
            f"not enough training data: {len(dataset)} rows (need {min_rows} with both labels)",
            field=None,
        )
    return dataset


def holdout_of(dataset: Dataset) -> Dataset:
    """Return the rows every model is judged on: the newest `HOLDOUT_FRACTION`."""
    return dataset.split_by_time(HOLDOUT_FRACTION)[1]


async def evaluate_or_none(model_text: str | None, holdout: Dataset) -> dict[str, Any] | None:
    """Return a model's metrics on the holdout; None when there is no model or it cannot be
    evaluated (e.g. trained on older feature declarations: then the other model wins)."""
    if model_text is None:
        return None
    try:
        return await asyncio.to_thread(evaluate, model_text, holdout)
    except Exception as exc:
        log.warning("model cannot be evaluated on the holdout: %s", exc)
        return None


async def retrain(
    store: Store,
    registry: ModelRegistry,
    *,
    now_ms: int,
    force: bool = False,
    source: str = "retrain",
    who: str | None = None,
    min_rows: int = MIN_TRAIN_ROWS,
) -> TrainReport:
    """Train on the newest logs; publish unless the current model is better on the same holdout."""
    dataset = await logged_dataset(store, min_rows=min_rows)
    result = await asyncio.to_thread(train, dataset, valid_fraction=HOLDOUT_FRACTION)
    current_metrics = await evaluate_or_none(registry.text, holdout_of(dataset))
    if not force and result.model_text == registry.text:
        return TrainReport(False, "identical to the current model", len(dataset),
                           result.metrics, current_metrics, None)  # fmt: skip
    if not force and not is_better(result.metrics, current_metrics):
        return TrainReport(False, "current model is as good or better on the same holdout",
                           len(dataset), result.metrics, current_metrics, None)  # fmt: skip
    meta = await publish(store, result, created_ts=now_ms, source=source, who=who)
    await registry.refresh(store)
    reason = "forced" if force and current_metrics is not None else "better or first model"
    return TrainReport(True, reason, len(dataset), result.metrics, current_metrics, meta)
