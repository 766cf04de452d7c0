"""Intent model registry: versioned artifacts in the store, an atomic `model:current` switch.

Publishing writes `model:<version>` first and then points `model:current` at it, in one script
that also records the change in the champion's history, so a worker never sees a half-written
model. Every worker polls `model:current` (each config poll, 1 s by default) and swaps its
in-memory model in one assignment: a request scores with the old model or the new one, never
fails in between. Promotion and rollback (`refreshd.live.champion`) move the same pointer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import msgspec

from intent.model import IntentModel
from intent.train import TrainResult
from refreshd.core.champion import Action, ModelChange
from refreshd.core.errors import Conflict
from refreshd.store.protocol import Store

log = logging.getLogger(__name__)


class TrainWindow(msgspec.Struct, kw_only=True):
    """Which matured labels a model learnt from (refreshd.live.training's freshness reads it)."""

    label_horizon_ts: int  # receipt (server ms) of the newest decision whose label was used
    from_ts: int  # the oldest and newest decision ts among this run's training rows
    to_ts: int
    warm_start_of: str | None = None  # the model these trees continue (LightGBM init_model)
    base_ts: int  # when the chain's last full retrain ran (its first model's created_ts)


class ModelMeta(msgspec.Struct, kw_only=True):
    """What the registry knows about a model version (GET /v1/models)."""

    version: str
    created_ts: int
    source: str  # "bootstrap", "retrain", "api"
    features_version: str
    feature_names: list[str]
    metrics: dict[str, Any]
    train_rows: int = 0
    window: TrainWindow | None = None  # None: not trained on the service's logs (bootstrap)


def model_version(result: TrainResult, created_ts: int) -> str:
    digest = hashlib.sha256(result.model_text.encode()).hexdigest()[:8]
    return f"m{created_ts}-{digest}"


# Publishing retries its switch this often when another switch lands in between.
_SWITCH_TRIES = 3


async def switch_champion(
    store: Store,
    version: str,
    *,
    action: Action,
    who: str,
    now_ms: int,
    expected: str | None,
    forced: bool = False,
) -> ModelChange:
    """Make `version` the champion if `expected` still is, recording the change; else 409."""
    change = ModelChange(
        action=action, who=who, ts=now_ms, from_version=expected, to_version=version, forced=forced
    )
    if not await store.switch_model(version, msgspec.json.encode(change), expected):
        raise Conflict("the champion changed meanwhile; look again and retry", field=None)
    log.info("champion %s -> %s (%s by %s)", expected, version, action, who)
    return change


async def publish(
    store: Store,
    result: TrainResult,
    *,
    created_ts: int,
    source: str,
    who: str | None = None,
    window: TrainWindow | None = None,
) -> ModelMeta:
    """Store a trained model and make it current (recorded as `who`, by default `source`)."""
    version = model_version(result, created_ts)
    meta = ModelMeta(
        version=version,
        created_ts=created_ts,
        source=source,
        features_version=result.features_version,
        feature_names=list(result.feature_names),
        metrics={k: v for k, v in result.metrics.items() if k != "calibration"}
        | {"calibration": result.metrics.get("calibration")},
        train_rows=int(result.metrics.get("train_rows", 0)),
        window=window,
    )
    await store.put_model(version, result.model_text, msgspec.json.encode(meta))
    for attempt in range(_SWITCH_TRIES):  # a publish replaces whichever champion there is
        current = await store.current_model_version()
        try:
            await switch_champion(
                store, version, action="publish", who=who or source, now_ms=created_ts,
                expected=current,
            )  # fmt: skip
        except Conflict:
            if attempt == _SWITCH_TRIES - 1:
                raise
        else:
            break
    log.info(
        "published intent model %s (%s, AUC %.4f)",
        version,
        source,
        result.metrics.get("auc", float("nan")),
    )
    return meta


class ModelRegistry:
    """This worker's current model; `refresh` follows `model:current` in the store."""

    def __init__(self) -> None:
        self.model: IntentModel | None = None
        self.meta: ModelMeta | None = None
        self.text: str | None = None
        self.failed_version: str | None = None  # do not retry a broken artifact every poll

    @property
    def version(self) -> str | None:
        return self.meta.version if self.meta else None

    async def refresh(self, store: Store) -> bool:
        """Load the current model if it changed; return whether it did."""
        current = await store.current_model_version()
        if current is None or current == self.version or current == self.failed_version:
            return False
        stored = await store.get_model(current)
        if stored is None:
            return False
        text, meta_blob = stored
        try:
            meta = msgspec.json.decode(meta_blob, type=ModelMeta)
            model = await asyncio.to_thread(IntentModel.from_text, text, version=current)
        except Exception as exc:  # a model this code cannot use: keep the old one, say why
            log.error("cannot load intent model %s: %s", current, exc)
            self.failed_version = current
            return False
        self.model, self.meta, self.text = model, meta, text  # the swap
        log.info(
            "intent model %s loaded (%s, %d training rows)", current, meta.source, meta.train_rows
        )
        return True
