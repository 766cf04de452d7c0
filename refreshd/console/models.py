"""Models: every stored intent model with its holdout AUC and logloss; for one (the current by
default) its calibration plot, staleness gain curve, and, for the model this worker scores
with, feature importance. Then the lifecycle, through the functions the JSON API calls
(`refreshd.live.champion`, `refreshd.live.shadow`): promote (the not-worse check, or force),
roll back, the champion's change history, start and stop a shadow, and each shadowed
challenger's report. A refused write (the champion is better, nothing to roll back to) is the
API's 409 shown above the table, not an error page."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from refreshd.console import svg
from refreshd.console.common import Problem, age, form, now_ms, page, problem, redirect, when
from refreshd.core.errors import InvalidValue, RefreshdError
from refreshd.http.codec import path_id
from refreshd.http.keys import REGISTRY, SETTINGS, SHADOW, STORE
from refreshd.live import champion, shadow
from refreshd.live.registry import ModelMeta
from refreshd.live.training import MAX_LOG_ROWS

BASE = "/console/models"
IMPORTANCE_SHOWN = 15
HISTORY_SHOWN = 20
# Who a console write is recorded as in the history (the API's X-Operator, default "api").
OPERATOR = "console"


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


async def _shadow_reports(request: web.Request) -> list[shadow.ShadowReport]:
    """The report of every challenger shadowed now, as GET …/shadow-report builds it."""
    app = request.config_dict
    store = app[STORE]
    _, specs = await store.get_config(shadow.KIND)
    return [
        await shadow.shadow_report(
            store,
            version,
            now_ms=now_ms(request),
            log_maxlen=app[SETTINGS].shadow_log_maxlen,
            event_rows=MAX_LOG_ROWS,
        )
        for version in sorted(specs)
    ]


async def models(request: web.Request, error: Problem | None = None) -> web.Response:
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
    reports = await _shadow_reports(request)
    shadowed = {r.version for r in reports}
    now = now_ms(request)
    rows = [
        {
            "meta": m,
            "current": m.version == current,
            "shadowed": m.version in shadowed,
            "created": when(m.created_ts),
            "age": age((now - m.created_ts) / 1000),
        }
        for m in metas
    ]
    changes = await champion.history(store, HISTORY_SHOWN)
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
            "history": [(c, when(c.ts)) for c in changes],
            "reports": reports,
            "error": error,
        },
        status=error.status if error else 200,
    )


async def promote(request: web.Request) -> web.Response:
    """Promote the path's model; `force` (a checkbox) skips the not-worse check."""
    app = request.config_dict
    data = await form(request)
    try:
        version = path_id(request, "model", name="version")
        await champion.promote(
            app[STORE],
            app[REGISTRY],
            version,
            force=data.get("force") == "true",
            who=OPERATOR,
            now_ms=now_ms(request),
        )
    except RefreshdError as err:
        return await models(request, problem(err))
    raise redirect(f"{BASE}#history")


async def rollback(request: web.Request) -> web.Response:
    app = request.config_dict
    try:
        await champion.rollback(app[STORE], app[REGISTRY], who=OPERATOR, now_ms=now_ms(request))
    except RefreshdError as err:
        return await models(request, problem(err))
    raise redirect(f"{BASE}#history")


async def shadow_change(request: web.Request) -> web.Response:
    """Start or stop shadowing the path's model (`action`), then follow it on this worker."""
    app = request.config_dict
    store = app[STORE]
    data = await form(request)
    try:
        version = path_id(request, "model", name="version")
        action = data.get("action")
        if action == "start":
            await shadow.start_shadow(store, version, now_ms=now_ms(request), by=OPERATOR)
        elif action == "stop":
            await shadow.stop_shadow(store, version)
        else:
            raise InvalidValue("action must be start or stop", field="action")
        await app[SHADOW].refresh(store)  # this worker at once, the others on their poll
    except RefreshdError as err:
        return await models(request, problem(err))
    raise redirect(f"{BASE}#shadow")
