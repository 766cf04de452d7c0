"""The route table's element: how a route is served and how OpenAPI describes it."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY_ERRORS = (400, 413, 415, 422)
# What `If-Match` may say on a versioned write: the item version it expects, quoted or bare.
IF_MATCH_PATTERN = r'^(?:[0-9]{1,15}|"[0-9]{1,15}")$'


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
    # Needs the bearer token when REFRESHD_ADMIN_TOKEN is set: configuration writes and reads
    # (rules, fences, experiments, the policy, the model list), directives, training, metrics.
    admin: bool = False
    # A configuration item's route: the success response carries the item's version in `ETag`,
    # and a write (PUT, DELETE) takes the version it expects in `If-Match`.
    versioned: bool = False
    # Status codes whose body is the route's own response type instead of the error body
    # (/readyz answers 503 with its readiness body so a probe sees which dependency is down).
    own_body_on: tuple[int, ...] = ()
