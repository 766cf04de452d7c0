"""Promote a stored model to champion, roll back to the previous one, read the history.

The champion pointer is `model:current`, as for publishing: every worker follows it on its
config poll, so a promotion or rollback is live everywhere within one poll. Each switch is a
compare-and-set on the pointer together with its history entry (`Store.switch_model`), so a
promotion judged against one champion never replaces another that arrived meanwhile.

Promotion applies the not-worse check publishing applies: the candidate and the champion are
evaluated on the same holdout, built from the logs as retraining builds it; `force` skips it.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from intent.features import FEATURES_VERSION
from intent.model import read_features_version
from intent.train import is_better
from refreshd.core.champion import ModelChange, previous_champion
from refreshd.core.errors import Conflict, NotFound
from refreshd.live import shadow
from refreshd.live.registry import ModelRegistry, switch_champion
from refreshd.live.training import evaluate_or_none, holdout_of, logged_dataset
from refreshd.store.protocol import MODEL_HISTORY_MAX, Store

__all__ = ["PromoteReport", "history", "promote", "rollback"]

_change = msgspec.json.Decoder(ModelChange)


class PromoteReport(msgspec.Struct, kw_only=True):
    """POST /v1/models/{version}/promote: the change, and the check it passed (null if forced)."""

    change: ModelChange
    rows: int | None  # holdout rows both models were evaluated on
    metrics: dict[str, Any] | None  # the promoted model's, on that holdout
    current_metrics: dict[str, Any] | None  # the replaced champion's


async def promote(
    store: Store,
    registry: ModelRegistry,
    version: str,
    *,
    force: bool,
    who: str,
    now_ms: int,
) -> PromoteReport:
    """Make a stored model the champion if it is no worse on the same holdout (or `force`)."""
    stored = await store.get_model(version)
    if stored is None:
        raise NotFound(f"no stored model {version}", field="version")
    found = read_features_version(stored[0])
    if found != FEATURES_VERSION:  # not even `force`: no worker could load it
        raise Conflict(
            f"model {version} was trained on features {found!r}; this service computes "
            f"{FEATURES_VERSION!r}",
            field="version",
        )
    current = await store.current_model_version()
    if version == current:
        raise Conflict(f"model {version} is the champion already", field="version")
    rows = metrics = current_metrics = None
    if not force:
        rows, metrics, current_metrics = await _check(store, stored[0], current)
    change = await switch_champion(
        store, version, action="promote", who=who, now_ms=now_ms, expected=current, forced=force
    )
    # The champion is not its own challenger any more.
    await store.delete_config(shadow.KIND, version)
    await registry.refresh(store)
    return PromoteReport(change=change, rows=rows, metrics=metrics, current_metrics=current_metrics)


async def _check(
    store: Store, text: str, current: str | None
) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
    """Evaluate candidate and champion on one holdout; 409 unless the candidate is no worse."""
    try:
        holdout = holdout_of(await logged_dataset(store))
    except Conflict as exc:
        raise Conflict(
            f"cannot compare the models: {exc.message}; ?force=true promotes anyway", field=None
        ) from None
    metrics = await evaluate_or_none(text, holdout)
    if metrics is None or math.isnan(float(metrics["auc"])):
        raise Conflict(
            f"cannot compare the models: the {len(holdout)}-row holdout has one class only "
            "or the model cannot score it; ?force=true promotes anyway",
            field=None,
        )
    champion = None if current is None else await store.get_model(current)
    current_metrics = await evaluate_or_none(champion[0] if champion else None, holdout)
    if not is_better(metrics, current_metrics):
        assert current_metrics is not None
        raise Conflict(
            f"the champion is better on the same {len(holdout)}-row holdout (AUC "
            f"{current_metrics['auc']:.4f} against {metrics['auc']:.4f}); "
            "?force=true promotes anyway",
            field=None,
        )
    return len(holdout), _plain(metrics), current_metrics and _plain(current_metrics)


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    # NaN is not JSON: an undefined metric (one-class holdout) is reported as null.
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}


async def rollback(store: Store, registry: ModelRegistry, *, who: str, now_ms: int) -> ModelChange:
    """Return to the champion before the current one (see `previous_champion`); 409 if none."""
    target = previous_champion(await history(store, MODEL_HISTORY_MAX))
    current = await store.current_model_version()
    if target is None or target == current:
        raise Conflict("no previous champion to roll back to", field=None)
    if await store.get_model(target) is None:
        raise Conflict(f"the previous champion {target} is no longer stored", field=None)
    change = await switch_champion(
        store, target, action="rollback", who=who, now_ms=now_ms, expected=current
    )
    await registry.refresh(store)
    return change


async def history(store: Store, limit: int) -> list[ModelChange]:
    """Return the newest `limit` champion changes, newest first."""
    return [_change.decode(b) for b in await store.model_history(limit)]
