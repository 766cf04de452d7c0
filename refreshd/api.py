"""HTTP handlers: decode, call the service, encode. Routes are declared once, here."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from aiohttp import web

from refreshd import constants as C
from refreshd import schemas as S
from refreshd.http import json_response, read_json
from refreshd.keys import METRICS, SERVICE, STORE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def decide(request: web.Request) -> web.Response:
    req = await read_json(request, S.DecideRequest)
    return json_response(await request.app[SERVICE].decide(req))


async def events(request: web.Request) -> web.Response:
    req = await read_json(request, S.EventsRequest)
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
    body = S.Readiness("ready" if store_ok else "unavailable", store=store_ok, model=False)
    if not store_ok:
        return json_response(body, status=503, headers={"Retry-After": str(C.RETRY_AFTER_S)})
    return json_response(body)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(
        body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


async def openapi(request: web.Request) -> web.Response:
    from refreshd.openapi import spec

    return json_response(spec())


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """One route: how it is served and how the OpenAPI document describes it."""

    method: str
    path: str
    handler: Handler
    summary: str
    request: type | None = None
    response: type | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    query: tuple[tuple[str, str, bool], ...] = ()  # (name, description, required)
    content_type: str = "application/json"


BODY_ERRORS = (400, 413, 415, 422)
ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/decide", decide, "Decide whether the homepage refreshes now",
          S.DecideRequest, S.DecideResponse, errors=(*BODY_ERRORS, 409, 429)),
    Route("POST", "/v1/events", events, "Accept a batch of client events (idempotent by batch_id)",
          S.EventsRequest, S.EventsResponse, errors=(*BODY_ERRORS, 409, 429, 503)),
    Route("POST", "/v1/directives", add_directive,
          "Queue a directive for a user's next contact (replaces unreliable pushes)",
          S.DirectiveRequest, S.DirectiveCreated, status=201, errors=(*BODY_ERRORS, 401, 503)),
    Route("GET", "/healthz", healthz, "Liveness", None, S.Health),
    Route("GET", "/readyz", readyz, "Readiness: the store answers", None, S.Readiness,
          errors=(503,)),
    Route("GET", "/metrics", metrics, "Prometheus metrics", content_type="text/plain"),
    Route("GET", "/openapi.json", openapi, "This OpenAPI 3.1 document"),
)  # fmt: skip


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
