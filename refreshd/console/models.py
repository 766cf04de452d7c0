"""Models: every stored intent model with its holdout AUC and logloss; for one (the current by
default) its calibration plot, staleness gain curve, and, for the model this worker scores
with, feature importance. Promote and roll back join this page when the API has them."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from refreshd.console import svg
from refreshd.console.common import age, now_ms, page, when
from refreshd.http.keys import REGISTRY, STORE
from refreshd.live.registry import ModelMeta

IMPORTANCE_SHOWN = 15


def _calibration(meta: ModelMeta) -> Any:
    table = meta.metrics.get("calibration") or []
    pts = [
        (b["mean_predicted"], b["observed_rate"])
        for b in table
        if b.get("count") and b.get("mean_predicted") is not None
    ]
    if not pts:
        return None
    return svg.lines(
        f"Calibration of {meta.version} on its holdout: observed click rate by predicted",
        [("model", pts)],
        x_label="mean predicted P(click)",
        y_label="observed rate",
        diagonal=True,
        x_range=(0.0, max(p for pt in pts for p in pt)),
        y_range=(0.0, max(p for pt in pts for p in pt)),
    )


def _staleness(meta: ModelMeta) -> Any:
    points = meta.metrics.get("staleness")
    if not points:
        return None
    return svg.lines(
        f"Staleness gain of {meta.version}: what a refresh gains by list age",
        [("gain", [(a / 60, g) for a, g in points])],
        x_label="list age (min)",
        y_label="gain",
        y_range=(0.0, 1.0),
    )


async def models(request: web.Request) -> web.Response:
    app = request.config_dict
    store = app[STORE]
    metas = [msgspec.json.decode(b, type=ModelMeta) for b in await store.list_models()]
    metas.sort(key=lambda m: m.created_ts, reverse=True)
    current = await store.current_model_version()
    chosen_id = request.query.get("version") or current
    chosen = next((m for m in metas if m.version == chosen_id), None)
    registry = app[REGISTRY]
    importance = None
    if chosen is not None and registry.model is not None and registry.version == chosen.version:
        top = sorted(registry.model.importance().items(), key=lambda kv: -kv[1])
        importance = svg.hbars(
            f"Feature importance of {chosen.version} (share of split gain)",
            top[:IMPORTANCE_SHOWN],
        )
    now = now_ms(request)
    rows = [
        {
            "meta": m,
            "current": m.version == current,
            "created": when(m.created_ts),
            "age": age((now - m.created_ts) / 1000),
        }
        for m in metas
    ]
    return page(
        request,
        "models.html",
        {
            "rows": rows,
            "current": current,
            "chosen": chosen,
            "calibration": _calibration(chosen) if chosen else None,
            "staleness": _staleness(chosen) if chosen else None,
            "importance": importance,
        },
    )
