"""Middlewares: one error mapping for the whole service, and per-route metrics."""

from __future__ import annotations

import hmac
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from refreshd.core.errors import (
    BodyTooLarge,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    RefreshdError,
    Unauthorized,
    UnsupportedMediaType,
)
from refreshd.http.codec import json_response
from refreshd.http.errors import body, error_body, error_headers, wire
from refreshd.http.keys import METRICS

log = logging.getLogger(__name__)

_HTTP_ERRORS: dict[int, type[RefreshdError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: BodyTooLarge,
    415: UnsupportedMediaType,
}


def error_response(err: RefreshdError) -> web.Response:
    """The response for a domain error: status, body and headers from refreshd.http.errors."""
    return json_response(error_body(err), status=wire(err).status, headers=error_headers(err))


def require_token(handler: Handler, token: str) -> Handler:
    """Wrap an admin handler: 401 without a bearer token, 403 with a wrong one."""
    expected = token.encode()

    async def guarded(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise Unauthorized("this route needs 'Authorization: Bearer <admin token>'")
        if not hmac.compare_digest(given.strip().encode(), expected):
            raise Forbidden("wrong admin token")
        return await handler(request)

    return guarded


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the one error body; never leak a stack trace."""
    try:
        return await handler(request)
    except RefreshdError as known:
        return error_response(known)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        cls = _HTTP_ERRORS.get(exc.status)
        if cls is None:  # a status no domain error has: named after aiohttp's reason
            code = exc.reason.lower().replace(" ", "_")
            response = json_response(body(code, exc.reason), status=exc.status)
        else:
            response = error_response(cls(f"{exc.reason}: {request.method} {request.path}"))
        if "Allow" in exc.headers:  # RFC 9110: a 405 lists the methods the resource has
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(RefreshdError("internal error"))


@web.middleware
async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count requests and time them per route template (bounded label cardinality)."""
    start = time.perf_counter()
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    m = request.app[METRICS]
    m.requests.labels(route, request.method, str(response.status)).inc()
    m.latency.labels(route, request.method).observe(time.perf_counter() - start)
    return response
