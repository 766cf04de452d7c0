"""The core's errors carry no HTTP; one table in refreshd.http.errors says how each is sent."""

from __future__ import annotations

import inspect

import pytest

from refreshd.core import errors as E
from refreshd.core.experiments import ExperimentError
from refreshd.core.rules import RuleError
from refreshd.http.errors import ERRORS, error_body, error_headers, headers_by_status, wire
from refreshd.http.openapi import spec
from refreshd.http.routes import ROUTES

CORE_ERRORS = [
    cls
    for _, cls in inspect.getmembers(E, inspect.isclass)
    if issubclass(cls, E.RefreshdError) and cls.__module__ == E.__name__
]

WIRE = {
    E.MalformedJSON: (400, "malformed_json"),
    E.BadRequest: (400, "bad_request"),
    E.Unauthorized: (401, "unauthorized"),
    E.Forbidden: (403, "forbidden"),
    E.NotFound: (404, "not_found"),
    E.MethodNotAllowed: (405, "method_not_allowed"),
    E.Conflict: (409, "conflict"),
    E.BodyTooLarge: (413, "body_too_large"),
    E.UriTooLong: (414, "uri_too_long"),
    E.UnsupportedMediaType: (415, "unsupported_media_type"),
    E.InvalidValue: (422, "invalid_value"),
    E.RateLimited: (429, "rate_limited"),
    E.HeadersTooLarge: (431, "headers_too_large"),
    E.StoreUnavailable: (503, "store_unavailable"),
    E.RefreshdError: (500, "internal"),
}


@pytest.mark.parametrize("cls", CORE_ERRORS, ids=lambda c: c.__name__)
def test_core_errors_know_nothing_of_http(cls: type[E.RefreshdError]) -> None:
    for attr in ("status", "code", "body", "headers"):
        assert not hasattr(cls, attr), f"{cls.__name__}.{attr}"
    assert cls in ERRORS, f"{cls.__name__} has no entry in refreshd.http.errors.ERRORS"
    assert (wire(cls).status, wire(cls).code) == WIRE[cls]


def test_subclasses_map_through_their_base() -> None:
    rule = RuleError("bad op", field="where[0].op")
    assert wire(rule) is ERRORS[E.InvalidValue] is wire(ExperimentError("x", field=None))
    assert error_body(rule) == {
        "error": {"code": "invalid_value", "message": "bad op", "field": "where[0].op"}
    }


def test_headers_come_from_the_table() -> None:
    assert error_headers(E.RateLimited("slow down", retry_after_s=0.2)) == {"Retry-After": "1"}
    assert error_headers(E.RateLimited("slow down", retry_after_s=2.5)) == {"Retry-After": "3"}
    assert error_headers(E.StoreUnavailable()) == {"Retry-After": "5"}
    assert error_headers(E.Unauthorized("who?")) == {"WWW-Authenticate": 'Bearer realm="refreshd"'}
    assert error_headers(E.MethodNotAllowed("no")) is None  # aiohttp sets Allow
    assert error_headers(E.InvalidValue("no", field="x")) is None


def test_openapi_documents_the_tables_headers() -> None:
    documented = headers_by_status()
    assert set(documented) == {401, 405, 429, 503}
    for path, ops in spec(ROUTES)["paths"].items():
        for method, op in ops.items():
            for status, resp in op["responses"].items():
                if int(status) >= 400:
                    assert resp.get("headers") == documented.get(int(status)), (
                        method,
                        path,
                        status,
                    )
