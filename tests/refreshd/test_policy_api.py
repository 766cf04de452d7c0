"""The policy document over HTTP: GET/PUT /v1/policy, validation naming the node, versions."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from refreshd.core.policy import DEFAULT_POLICY, policy_to_json, standard_policy
from refreshd.http.keys import POLICY, STORE
from refreshd.live.policybook import PolicyBook
from tests.support import MakeClient


def as_json(obj: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(obj))


DEFAULT = as_json({**policy_to_json(DEFAULT_POLICY), "version": 0})
NODES = DEFAULT["nodes"]


def doc(threshold: float = 0.4) -> dict[str, Any]:
    out: dict[str, Any] = as_json(policy_to_json(standard_policy(threshold=threshold)))
    return out


async def put(client: TestClient, body: Any, **headers: str) -> Any:
    return await client.put("/v1/policy", json=body, headers=headers)


async def test_get_serves_the_default_until_one_is_written(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.get("/v1/policy")
    assert resp.status == 200
    assert await resp.json() == DEFAULT
    assert resp.headers["ETag"] == '"0"'
    assert client.app[POLICY].doc == DEFAULT_POLICY and client.app[POLICY].version == 0


async def test_put_then_get_round_trips_and_the_version_moves(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await put(client, doc(0.4))
    assert resp.status == 200, await resp.text()
    first = await resp.json()
    assert first == {**doc(0.4), "version": first["version"]} and first["version"] > 0
    assert resp.headers["ETag"] == f'"{first["version"]}"'
    got = await client.get("/v1/policy")
    assert await got.json() == first and got.headers["ETag"] == resp.headers["ETag"]
    second = await (await put(client, doc(0.5))).json()
    assert second["version"] > first["version"]
    assert (await (await client.get("/v1/policy")).json())["nodes"][4]["threshold"] == 0.5


async def test_put_fills_in_defaults_and_may_add_nodes(make_client: MakeClient) -> None:
    client = await make_client()
    nodes = [{"type": "pull"}, {"type": "quiet_hours", "start_hour": 23, "end_hour": 7},
             {"type": "fallback"}]  # fmt: skip
    body = await (await put(client, {"nodes": nodes})).json()
    assert body["mode"] == "normal"
    assert body["nodes"][1] == {"type": "quiet_hours", "start_hour": 23, "end_hour": 7}
    assert body["nodes"][2] == {"type": "fallback", "interval_s": 300}


@pytest.mark.parametrize(
    ("nodes", "field"),
    [
        ([*NODES[:3], {"type": "cooldown", "min_interval_s": -1}, *NODES[4:]],
         "nodes[3].min_interval_s"),
        ([*NODES[:2], {"type": "dance"}, *NODES[3:]], "nodes[2].type"),  # unknown type
        ([*NODES[:2], {"type": "geo", "radius": 5}, *NODES[3:]], "nodes[2].radius"),
        ([*NODES[:2], {"type": "pull"}, *NODES[2:]], "nodes[2].type"),  # twice
        (NODES[:-1], "nodes[4]"),  # the ladder does not end with the fallback node
        ([], "nodes[0]"),
    ],
)  # fmt: skip
async def test_bad_documents_are_422_naming_the_node(
    make_client: MakeClient, nodes: list[Any], field: str
) -> None:
    client = await make_client()
    resp = await put(client, {"mode": "normal", "nodes": nodes})
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_value" and error["field"] == field, error
    assert await (await client.get("/v1/policy")).json() == DEFAULT  # nothing was written


@pytest.mark.parametrize(
    ("body", "field"),
    [({**DEFAULT, "mode": "off"}, "mode"), ([], None), ({**DEFAULT, "colour": 1}, "colour")],
)
async def test_other_bad_bodies_are_422(make_client: MakeClient, body: Any, field: str) -> None:
    client = await make_client()
    resp = await put(client, body)
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == field


async def test_malformed_json_is_400(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.put(
        "/v1/policy", data=b'{"nodes": [', headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "malformed_json"


async def test_if_match_guards_the_write(make_client: MakeClient) -> None:
    client = await make_client()
    created = await put(client, doc(0.4), **{"If-Match": '"0"'})  # create only: none yet
    assert created.status == 200
    version = (await created.json())["version"]
    stale = await put(client, doc(0.6), **{"If-Match": '"0"'})
    assert stale.status == 409
    assert await stale.json() == {
        "error": {
            "code": "conflict",
            "message": f"policy 'default' is at version {version}, not 0",
            "field": None,
        }
    }
    assert (await (await client.get("/v1/policy")).json())["nodes"][4]["threshold"] == 0.4
    ok = await put(client, doc(0.6), **{"If-Match": str(version)})  # unquoted works too
    assert ok.status == 200 and (await ok.json())["version"] > version


async def test_a_body_version_guards_the_write_too(make_client: MakeClient) -> None:
    """What GET returned can be PUT back, version and all: a lost update is a 409."""
    client = await make_client()
    seen = await (await client.get("/v1/policy")).json()
    assert (await put(client, {**seen, "mode": "fallback"})).status == 200
    resp = await put(client, {**seen, "mode": "normal"})  # still says version 0
    assert resp.status == 409
    assert (await resp.json())["error"]["field"] == "version"


@pytest.mark.parametrize("value", ['W/"1"', "*", "one", '"-1"'])
async def test_an_unreadable_if_match_is_422(make_client: MakeClient, value: str) -> None:
    client = await make_client()
    resp = await put(client, doc(), **{"If-Match": value})
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "If-Match"


async def test_put_needs_the_admin_token(make_client: MakeClient) -> None:
    client = await make_client(admin_token="s3cret")
    resp = await put(client, doc())
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"
    assert (await put(client, doc(), Authorization="Bearer wrong")).status == 403
    assert (await put(client, doc(), Authorization="Bearer s3cret")).status == 200
    # Reading the policy is a configuration read: it needs the token too (issue 18).
    assert (await client.get("/v1/policy")).status == 401
    assert (
        await client.get("/v1/policy", headers={"Authorization": "Bearer s3cret"})
    ).status == 200


async def test_the_policy_book_reloads_after_a_put(make_client: MakeClient) -> None:
    client, other = await make_client(), await make_client()  # two workers, one store
    body = await (await put(client, doc(0.45))).json()
    book = client.app[POLICY]
    assert book.doc == standard_policy(threshold=0.45) and book.version == body["version"]
    # Another worker's book follows on its next config poll.
    assert other.app[POLICY].doc == DEFAULT_POLICY
    assert await other.app[POLICY].refresh(other.app[STORE])
    assert other.app[POLICY].doc == book.doc and other.app[POLICY].version == book.version
    assert not await other.app[POLICY].refresh(other.app[STORE])  # unchanged: no reload


async def test_a_stored_document_that_no_longer_parses_leaves_the_default(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    store = client.app[STORE]
    await store.put_config("policy", "default", b'{"nodes": [{"type": "teleport"}]}')
    book = PolicyBook()
    assert await book.refresh(store)
    assert book.doc == DEFAULT_POLICY and book.version > 0
