"""OpenAPI 3.1 generated from the msgspec structs and the route table."""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec

from refreshd.core import messages as S
from refreshd.http.errors import headers_by_status
from refreshd.http.routing import IF_MATCH_PATTERN, Route

REF = "#/components/schemas/{name}"
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    400: "Malformed JSON",
    401: "Missing bearer token (admin and configuration routes, when REFRESHD_ADMIN_TOKEN is set)",
    403: "Wrong bearer token",
    404: "Unknown id",
    405: "Method not allowed",
    409: "Conflict",
    413: "Body too large",
    414: "Query string too long",
    415: "Wrong content type",
    422: "A value is out of range or of the wrong type",
    429: "Rate limited",
    431: "A request header is too large",
    503: "Store unavailable; retry after Retry-After seconds",
}

# Versioned configuration routes (Route.versioned).
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "Write only if the item is at this version (its ETag; 0: it does not exist), "
    "else 409; without it the write is unconditional",
    "schema": {"type": "string", "pattern": IF_MATCH_PATTERN},
}
ETAG = {
    "required": True,
    "description": "The item's version, quoted",
    "schema": {"type": "string"},
}


@functools.cache
def spec(routes: tuple[Route, ...]) -> dict[str, Any]:
    """Return the OpenAPI document for a route table and every error.

    The table comes in as an argument (as Starlette's `get_schema(routes)`), so the routes and
    their schema never import each other.
    """
    error_headers = headers_by_status()  # the error table's, as the middleware sends them
    types: list[Any] = [S.ErrorBody]
    for r in routes:
        types += [t for t in (r.request, r.response) if t is not None]
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    ref_of = dict(zip(types, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": r.method.lower()
            + "_"
            + r.path.strip("/").replace("/", "_").replace(".", "_"),
            "responses": {},
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", r.path)
        ]
        if r.query:
            params += [
                {
                    "name": n,
                    "in": "query",
                    "required": req,
                    "description": d,
                    "schema": {"type": "string"},
                }
                for n, d, req in r.query
            ]
        if r.versioned and r.method in ("PUT", "DELETE"):
            params.append(IF_MATCH)
        if params:
            op["parameters"] = params
        if r.request is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref_of[r.request]}},
            }
        if r.status == 204:
            op["responses"]["204"] = {"description": "No Content"}
        elif r.response is not None:
            ok_content = {r.content_type: {"schema": ref_of[r.response]}}
        elif r.content_type != "application/json":  # text: LightGBM's model, an SVG
            ok_content = {r.content_type: {"schema": {"type": "string"}}}
        else:
            ok_content = {"application/json": {"schema": {"type": "object"}}}
        if r.status != 204:
            op["responses"][str(r.status)] = {
                "description": STATUS_TEXT[r.status],
                "content": ok_content,
            }
            if r.versioned:
                op["responses"][str(r.status)]["headers"] = {"ETag": ETAG}
        errors = {*r.errors, 405, 414, 431}
        if r.admin:
            errors |= {401, 403}
            op["security"] = [{"adminToken": []}, {}]
        for code in sorted(errors):
            resp: dict[str, Any] = {
                "description": STATUS_TEXT[code],
                "content": {"application/json": {"schema": ref_of[S.ErrorBody]}},
            }
            if code in r.own_body_on and r.response is not None:
                resp["content"] = {"application/json": {"schema": ref_of[r.response]}}
            if code in error_headers:
                resp["headers"] = error_headers[code]
            op["responses"][str(code)] = resp
        paths.setdefault(r.path, {})[r.method.lower()] = op
    _add_links(routes, paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "refreshd",
            "version": "0.1.0",
            "description": "When a mobile homepage should refresh, and without duplicates.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
    }


def _add_links(routes: tuple[Route, ...], paths: dict[str, dict[str, Any]]) -> None:
    """OpenAPI links for stateful testing: a configuration item's PUT leads to its GET and
    DELETE with the same id (and the ETag the PUT returned as `If-Match`); a decision to its
    audit record."""
    for r in routes:
        if not (r.versioned and r.method == "PUT" and "{id}" in r.path):
            continue
        item = paths[r.path]
        links: dict[str, Any] = {}
        for method in ("get", "delete"):
            if method in item:
                link: dict[str, Any] = {
                    "operationId": item[method]["operationId"],
                    "parameters": {"path.id": "$request.path.id"},
                }
                if method == "delete":
                    link["parameters"]["header.If-Match"] = "$response.header.ETag"
                links[f"{method.capitalize()}Item"] = link
        item["put"]["responses"][str(r.status)]["links"] = links
    # A decision leads to its audit record.
    decide, audit = paths.get("/v1/decide"), paths.get("/v1/decisions/{decision_id}")
    if decide is not None and audit is not None:
        decide["post"]["responses"]["200"]["links"] = {
            "GetDecision": {
                "operationId": audit["get"]["operationId"],
                "parameters": {"path.decision_id": "$response.body#/decision_id"},
            }
        }
