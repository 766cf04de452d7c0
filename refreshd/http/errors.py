"""How each domain error is reported on the wire: one table, read by two users.

`refreshd.http.middleware` turns a raised `RefreshdError` into its status, error body and
headers; `refreshd.http.openapi` documents the same headers on every error response. A class
without an entry of its own is reported as its nearest mapped base along the MRO, so
`RuleError(InvalidValue, ValueError)` is a 422 `invalid_value`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from refreshd import constants as C
from refreshd.core.errors import (
    BadRequest,
    BodyTooLarge,
    Conflict,
    Forbidden,
    HeadersTooLarge,
    InvalidValue,
    MalformedJSON,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    RefreshdError,
    StoreUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    UriTooLong,
)

__all__ = ["ERRORS", "Header", "Wire", "error_body", "error_headers", "headers_by_status", "wire"]


@dataclasses.dataclass(frozen=True, slots=True)
class Header:
    """A header every response of an error class carries."""

    name: str
    schema: dict[str, Any]
    # The header's value for one error; None when aiohttp sets it (the 405's Allow, copied
    # from aiohttp's exception by the middleware).
    value: Callable[[RefreshdError], str] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Wire:
    """How one error class is reported: HTTP status, error code, headers."""

    status: int
    code: str
    headers: tuple[Header, ...] = ()


def _retry_after_store(err: RefreshdError) -> str:
    return str(C.RETRY_AFTER_S)


def _retry_after_rate(err: RefreshdError) -> str:
    assert isinstance(err, RateLimited)
    return str(max(1, math.ceil(err.retry_after_s)))


def _www_authenticate(err: RefreshdError) -> str:
    return 'Bearer realm="refreshd"'


_SECONDS = {"type": "integer", "minimum": 1}

ERRORS: dict[type[RefreshdError], Wire] = {
    RefreshdError: Wire(500, "internal"),
    MalformedJSON: Wire(400, "malformed_json"),
    BadRequest: Wire(400, "bad_request"),
    Unauthorized: Wire(
        401,
        "unauthorized",
        (Header("WWW-Authenticate", {"type": "string"}, _www_authenticate),),
    ),
    Forbidden: Wire(403, "forbidden"),
    NotFound: Wire(404, "not_found"),
    MethodNotAllowed: Wire(405, "method_not_allowed", (Header("Allow", {"type": "string"}),)),
    Conflict: Wire(409, "conflict"),
    BodyTooLarge: Wire(413, "body_too_large"),
    UriTooLong: Wire(414, "uri_too_long"),
    UnsupportedMediaType: Wire(415, "unsupported_media_type"),
    HeadersTooLarge: Wire(431, "headers_too_large"),
    InvalidValue: Wire(422, "invalid_value"),
    RateLimited: Wire(429, "rate_limited", (Header("Retry-After", _SECONDS, _retry_after_rate),)),
    StoreUnavailable: Wire(
        503, "store_unavailable", (Header("Retry-After", _SECONDS, _retry_after_store),)
    ),
}


def wire(err: RefreshdError | type[RefreshdError]) -> Wire:
    """Return the table entry of `err` (an error or its class): its nearest mapped base."""
    cls = err if isinstance(err, type) else type(err)
    for base in cls.__mro__:
        if base in ERRORS:
            return ERRORS[base]
    raise TypeError(f"{cls.__name__} is not a RefreshdError")  # pragma: no cover


def error_body(err: RefreshdError) -> dict[str, object]:
    """Return the error body every failure has: `{"error": {"code", "message", "field"}}`."""
    return body(wire(err).code, err.message, err.field)


def body(code: str, message: str, field: str | None = None) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "field": field}}


def error_headers(err: RefreshdError) -> dict[str, str] | None:
    """Return the headers the table gives `err` (those aiohttp sets left out), or None."""
    headers = {h.name: h.value(err) for h in wire(err).headers if h.value is not None}
    return headers or None


def headers_by_status() -> dict[int, dict[str, Any]]:
    """Return the OpenAPI `headers` of each error status: those all its classes carry."""
    by_status: dict[int, list[Wire]] = {}
    for w in ERRORS.values():
        by_status.setdefault(w.status, []).append(w)
    out: dict[int, dict[str, Any]] = {}
    for status, wires in by_status.items():
        common = set.intersection(*({h.name for h in w.headers} for w in wires))
        docs = {
            h.name: {"required": True, "schema": h.schema}
            for h in wires[0].headers
            if h.name in common
        }
        if docs:
            out[status] = docs
    return out
