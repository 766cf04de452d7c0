"""The service's one middleware (`edge`): request ids and size bounds, one error mapping for
the whole service, experiment guardrails and per-route metrics; and the admin-token guard."""

from __future__ import annotations

import hmac
import itertools
import logging
import re
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from refreshd import constants as C
from refreshd.core.errors import (
    BodyTooLarge,
    Forbidden,
    HeadersTooLarge,
    MethodNotAllowed,
    NotFound,
    RefreshdError,
    Unauthorized,
    UnsupportedMediaType,
    UriTooLong,
)
from refreshd.http import guardrails
from refreshd.http.codec import json_response
from refreshd.http.errors import body, error_body, error_headers, wire
from refreshd.http.keys import METRICS

log = logging.getLogger(__name__)

REQUEST_ID = "X-Request-Id"
REQUEST_ID_KEY = web.RequestKey("request_id", str)
# A client's request id is echoed if it looks like an id (what ids may be elsewhere, up to 128
# characters); anything else is replaced, so a log line never carries what a client injected.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:@\-]{1,128}")

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


def request_id_of(request: web.Request) -> str:
    """The request's id (set by the `edge` middleware; "-" outside it)."""
    return request.get(REQUEST_ID_KEY, "-")


# A new request id: this process's random prefix and a counter. Unique across workers and
# restarts (64 random bits per process), and a tenth of the cost of a uuid4 per request.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"  # 32 hex digits, as a uuid4 had


def check_bounds(request: web.Request) -> None:
    """Refuse an oversized query string (414) or header (431) with the error body.

    aiohttp's parser limits (`HTTP_MAX_LINE_SIZE`, `HTTP_MAX_FIELD_SIZE`) stay the backstop
    above these, with its own plain 400.
    """
    if len(request.query_string) > C.MAX_QUERY_BYTES:
        raise UriTooLong(f"the query string is longer than {C.MAX_QUERY_BYTES} bytes")
    for name, value in request.raw_headers:
        if len(name) + len(value) > C.MAX_HEADER_BYTES:
            raise HeadersTooLarge(
                f"header {name[:64].decode(errors='replace')!r} is larger than "
                f"{C.MAX_HEADER_BYTES} bytes"
            )


def failure_response(request: web.Request, exc: Exception) -> web.StreamResponse:
    """Turn a failure into the one error body; never leak a stack trace.

    A `web.HTTPException` below 400 (a redirect) is not a failure: it is raised again.
    """
    if isinstance(exc, RefreshdError):
        if wire(exc).status == 500:  # not a 503: an outage is logged once, not per request
            log.error(
                "%s %s: %s (request %s)",
                request.method,
                request.path,
                exc.message,
                request_id_of(request),
            )
        return error_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        cls = _HTTP_ERRORS.get(exc.status)
        if cls is None:  # a status no domain error has: named after aiohttp's reason
            code = exc.reason.lower().replace(" ", "_")
            response = json_response(body(code, exc.reason), status=exc.status)
        else:
            response = error_response(cls(f"{exc.reason}: {request.method} {request.path}"))
        if "Allow" in exc.headers:  # RFC 9110: a 405 lists the methods the resource has
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    log.error(
        "unhandled error on %s %s (request %s)",
        request.method,
        request.path,
        request_id_of(request),
        exc_info=exc,
    )
    return error_response(RefreshdError("internal error"))


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Everything every request gets, in one middleware rather than one each (five layers of
    aiohttp middleware were ~10 % of a worker's CPU under wrk):

    - an id: the client's `X-Request-Id` if valid, else a new one; it is in the response's
      `X-Request-Id` and in the log line of any error;
    - size bounds on the query string and headers (`check_bounds`);
    - one error mapping for the whole service (`failure_response`);
    - the guardrails of running experiments, which see the status the device got
      (`refreshd.http.guardrails`);
    - the request's count and latency per route template (bounded label cardinality).
    """
    start = time.perf_counter()
    given = request.headers.get(REQUEST_ID)
    rid = given if given is not None and _REQUEST_ID_RE.fullmatch(given) else new_request_id()
    request[REQUEST_ID_KEY] = rid
    try:
        check_bounds(request)
        response = await handler(request)
    except Exception as exc:
        response = failure_response(request, exc)
    if request.method == "POST" and request.path in guardrails.DEVICE_ROUTES:
        await guardrails.observe(request, response, start)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    count, latency = request.app[METRICS].request_children(route, request.method, response.status)
    count.inc()
    latency.observe(time.perf_counter() - start)
    response.headers[REQUEST_ID] = rid
    return response
