"""HTTP handlers: decode, call the service, encode. Routes are declared once, here."""

from __future__ import annotations

from aiohttp import web

from refreshd import constants as C
from refreshd.core import messages as S
from refreshd.http.codec import json_response, read_json
from refreshd.http.guardrails import DECISION_ARM, DEVICE_USER
from refreshd.http.keys import METRICS, REGISTRY, SERVICE, SETTINGS, STORE
from refreshd.http.middleware import require_token
from refreshd.http.openapi import spec
from refreshd.http.routing import BODY_ERRORS, Route


async def decide(request: web.Request) -> web.Response:
    req = await read_json(request, S.DecideRequest)
    request[DEVICE_USER] = req.user_id
    answer = await request.app[SERVICE].decide(req)
    if answer.experiment is not None:
        request[DECISION_ARM] = (answer.experiment.id, answer.experiment.variant)
    return json_response(answer)


async def events(request: web.Request) -> web.Response:
    req = await read_json(request, S.EventsRequest)
    request[DEVICE_USER] = req.user_id
    return json_response(await request.app[SERVICE].events(req))


async def add_directive(request: web.Request) -> web.Response:
    req = await read_json(request, S.DirectiveRequest)
    directive = await request.app[SERVICE].add_directive(req)
    return json_response(S.DirectiveCreated(directive), status=201)


async def healthz(request: web.Request) -> web.Response:
    return json_response(S.Health("ok"))


async def readyz(request: web.Request) -> web.Response:
    store_ok = await request.app[STORE].ping()
    request.app[METRICS].store_up.set(1 if store_ok else 0)
    model_ok = request.app[REGISTRY].model is not None
    # With a bootstrap configured a worker is ready once it scores with a model; without one
    # there is nothing to wait for and the fallback rule decides until a model is published.
    ready = store_ok and (model_ok or not request.app[SETTINGS].bootstrap_model)
    body = S.Readiness("ready" if ready else "unavailable", store=store_ok, model=model_ok)
    if not ready:
        return json_response(body, status=503, headers={"Retry-After": str(C.RETRY_AFTER_S)})
    return json_response(body)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(
        body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


async def openapi(request: web.Request) -> web.Response:
    return json_response(spec(ROUTES))


CORE_ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/decide",
        decide,
        "Decide whether the homepage refreshes now",
        S.DecideRequest,
        S.DecideResponse,
        errors=(*BODY_ERRORS, 409, 429),
    ),
    Route(
        "POST",
        "/v1/events",
        events,
        "Accept a batch of client events (idempotent by batch_id)",
        S.EventsRequest,
        S.EventsResponse,
        errors=(*BODY_ERRORS, 409, 429, 503),
    ),
    Route(
        "POST",
        "/v1/directives",
        add_directive,
        "Queue a directive for a user's next contact (replaces unreliable pushes)",
        S.DirectiveRequest,
        S.DirectiveCreated,
        status=201,
        errors=(*BODY_ERRORS, 503),
        admin=True,
    ),
    Route("GET", "/healthz", healthz, "Liveness", None, S.Health),
    Route(
        "GET",
        "/readyz",
        readyz,
        "Readiness: the store answers",
        None,
        S.Readiness,
        errors=(503,),
        own_body_on=(503,),
    ),
    # Metrics name rules and experiments (label values) and show traffic: with a token set, a
    # scraper sends it (Prometheus: `authorization: {credentials: <token>}`).
    Route("GET", "/metrics", metrics, "Prometheus metrics", content_type="text/plain", admin=True),
    Route("GET", "/openapi.json", openapi, "This OpenAPI 3.1 document"),
)


def all_routes() -> tuple[Route, ...]:
    """Return every route of the service, in documentation order."""
    from refreshd.http import decisions as decisions_api
    from refreshd.http import dedupe as dedupe_api
    from refreshd.http import experiments as experiments_api
    from refreshd.http import features as features_api
    from refreshd.http import geofences as geofences_api
    from refreshd.http import holdouts as holdouts_api
    from refreshd.http import models as models_api
    from refreshd.http import policy as policy_api
    from refreshd.http import replay as replay_api
    from refreshd.http import shadow as shadow_api
    from refreshd.http import triggers as triggers_api

    return (
        CORE_ROUTES
        + geofences_api.ROUTES
        + triggers_api.ROUTES
        + experiments_api.ROUTES
        + holdouts_api.ROUTES
        + policy_api.ROUTES
        + models_api.ROUTES
        + decisions_api.ROUTES
        + features_api.ROUTES
        + shadow_api.ROUTES
        + replay_api.ROUTES
        + dedupe_api.ROUTES
    )


ROUTES = all_routes()


def add_routes(app: web.Application, admin_token: str | None = None) -> None:
    for route in ROUTES:
        handler = route.handler
        if route.admin and admin_token:
            handler = require_token(handler, admin_token)
        app.router.add_route(route.method, route.path, handler)
