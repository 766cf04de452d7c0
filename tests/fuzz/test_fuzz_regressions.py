"""Bugs the OpenAPI fuzzer found, pinned as plain examples (fast, no schemathesis)."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from refreshd.http.openapi import spec
from refreshd.http.routes import ROUTES
from tests.support import MakeClient, now_ms

DEAD_STORE = {"redis_url": "redis://127.0.0.1:1/0", "store_timeout_s": 0.2}


def documented(path: str, method: str, status: int) -> tuple[Draft202012Validator, dict[str, Any]]:
    """The body validator and the headers the document promises for one response."""
    doc = spec(ROUTES)
    response = doc["paths"][path][method]["responses"][str(status)]
    schema = {**response["content"]["application/json"]["schema"], "components": doc["components"]}
    return Draft202012Validator(schema), response.get("headers", {})


async def test_405_lists_the_allowed_methods(make_client: MakeClient) -> None:
    """RFC 9110: a 405 carries `Allow`; the error middleware used to drop aiohttp's header."""
    client = await make_client()
    resp = await client.put("/v1/decide", json={})
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    documented = spec(ROUTES)["paths"]["/v1/decide"]["post"]["responses"]["405"]["headers"]
    assert documented["Allow"]["required"] is True


@pytest.mark.parametrize("user_id", ["u1\n", "u1\r\n", "\nu1", "u\n1"])
async def test_ids_with_a_newline_are_rejected_in_bodies(
    make_client: MakeClient, user_id: str
) -> None:
    """Python's `$` also matches before a final newline: `u1\\n` passed the id pattern
    (JSON Schema's `$` does not), reaching Redis keys and log lines."""
    client = await make_client()
    body = {"user_id": user_id, "ts": now_ms(), "trigger": "open"}
    resp = await client.post("/v1/decide", json=body)
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "user_id"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/triggers/t1%0A",
        "/v1/experiments/e1%0A",
        "/v1/geofences/f1%0A",
        "/v1/experiments/e1/assignment?user_id=u1%0A",
        "/v1/recommendations?user_id=u1%0A",
        "/v1/recommendations?user_id=u1&slots=feed%0A",
    ],
)
async def test_ids_with_a_newline_are_rejected_in_paths_and_queries(
    make_client: MakeClient, path: str
) -> None:
    client = await make_client()
    resp = await client.get(path)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["code"] == "invalid_value"


async def test_store_down_503_matches_the_document(make_client: MakeClient) -> None:
    client = await make_client(**DEAD_STORE)
    batch = {"user_id": "u1", "batch_id": "b1", "events": [{"type": "click", "ts": now_ms()}]}
    resp = await client.post("/v1/events", json=batch)
    assert resp.status == 503
    validator, headers = documented("/v1/events", "post", 503)
    validator.validate(await resp.json())
    assert headers["Retry-After"]["required"] is True
    assert int(resp.headers["Retry-After"]) >= 1


async def test_readyz_503_matches_the_document(make_client: MakeClient) -> None:
    client = await make_client(**DEAD_STORE)
    resp = await client.get("/readyz")
    assert resp.status == 503
    validator, _ = documented("/readyz", "get", 503)
    validator.validate(await resp.json())
