"""Retraining from the store's logs: build point-in-time rows, train, publish if not worse."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from intent.dataset import build_dataset
from intent.train import Fitter, evaluate, fit_here, is_better, train
from refreshd.core.errors import Conflict
from refreshd.live.registry import ModelMeta, ModelRegistry, publish
from refreshd.store.protocol import LOG_DECISIONS, LOG_EVENTS, Store

log = logging.getLogger(__name__)

# Below this many rows a holdout AUC is noise; keep the current model.
MIN_TRAIN_ROWS = 500
# The newest rows used for one training run: a few days of a mid-size app, minutes of CPU.
MAX_LOG_ROWS = 300_000
_decode = msgspec.json.Decoder()


class TrainReport(msgspec.Struct):
    published: bool
    reason: str
    rows: int
    metrics: dict[str, Any]
    current_metrics: dict[str, Any] | None
    model: ModelMeta | None


async def retrain(
    store: Store,
    registry: ModelRegistry,
    *,
    now_ms: int,
    force: bool = False,
    source: str = "retrain",
    min_rows: int = MIN_TRAIN_ROWS,
    fitter: Fitter = fit_here,
) -> TrainReport:
    """Train on the newest logs; publish unless the current model is better on the same holdout.

    `fitter` grows the booster (here, or on a Dask cluster: `intent.distributed`); the rows,
    the holdout and the publish rule are the same whichever it is.
    """
    decisions = [_decode.decode(b) for b in await store.read_log(LOG_DECISIONS, MAX_LOG_ROWS)]
    events = [_decode.decode(b) for b in await store.read_log(LOG_EVENTS, MAX_LOG_ROWS)]
    dataset = await asyncio.to_thread(build_dataset, decisions, events)
    if len(dataset) < min_rows or len(set(dataset.y.tolist())) < 2:
        raise Conflict(
            f"not enough training data: {len(dataset)} rows (need {min_rows} with both labels)",
            field=None,
        )
    result = await asyncio.to_thread(train, dataset, fitter=fitter)
    _, holdout = dataset.split_by_time(0.2)
    current_metrics = None
    if registry.text is not None:
        try:
            current_metrics = await asyncio.to_thread(evaluate, registry.text, holdout)
        except Exception as exc:  # e.g. older feature declarations: the new model wins
            log.warning("current model cannot be evaluated on the new holdout: %s", exc)
    if not force and result.model_text == registry.text:
        return TrainReport(False, "identical to the current model", len(dataset),
                           result.metrics, current_metrics, None)  # fmt: skip
    if not force and not is_better(result.metrics, current_metrics):
        return TrainReport(False, "current model is as good or better on the same holdout",
                           len(dataset), result.metrics, current_metrics, None)  # fmt: skip
    meta = await publish(store, result, created_ts=now_ms, source=source)
    await registry.refresh(store)
    reason = "forced" if force and current_metrics is not None else "better or first model"
    return TrainReport(True, reason, len(dataset), result.metrics, current_metrics, meta)
