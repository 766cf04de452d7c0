"""HTTP shell of shadow (challenger) models: start, stop, report."""

from __future__ import annotations

from aiohttp import web

from refreshd.core.shadow import ShadowReport
from refreshd.http.codec import json_response, operator
from refreshd.http.keys import CLOCK, SETTINGS, SHADOW, STORE
from refreshd.http.models import model_version
from refreshd.http.routing import Route
from refreshd.live import shadow
from refreshd.live.training import MAX_LOG_ROWS


async def start_shadow(request: web.Request) -> web.Response:
    version, who = model_version(request), operator(request)
    store = request.app[STORE]
    spec = await shadow.start_shadow(store, version, now_ms=request.app[CLOCK](), by=who)
    await request.app[SHADOW].refresh(store)  # this worker at once, the others on their poll
    return json_response(spec)


async def stop_shadow(request: web.Request) -> web.Response:
    store = request.app[STORE]
    await shadow.stop_shadow(store, model_version(request))
    await request.app[SHADOW].refresh(store)
    return web.Response(status=204)


async def shadow_report(request: web.Request) -> web.Response:
    report = await shadow.shadow_report(
        request.app[STORE],
        model_version(request),
        now_ms=request.app[CLOCK](),
        log_maxlen=request.app[SETTINGS].shadow_log_maxlen,
        event_rows=MAX_LOG_ROWS,
    )
    return json_response(report)


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/models/{version}/shadow",
        start_shadow,
        "Score every model-decided decision with this challenger too, without acting on it",
        None,
        shadow.ShadowSpec,
        errors=(404, 409, 422, 503),
        admin=True,
    ),
    Route(
        "DELETE",
        "/v1/models/{version}/shadow",
        stop_shadow,
        "Stop shadowing a challenger (its report stays readable)",
        None,
        None,
        status=204,
        errors=(404, 422, 503),
        admin=True,
    ),
    Route(
        "GET",
        "/v1/models/{version}/shadow-report",
        shadow_report,
        "Challenger against champion on the shadowed decisions; AUCs on matured labels",
        None,
        ShadowReport,
        errors=(404, 422, 503),
        admin=True,
    ),
)
