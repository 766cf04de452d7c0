"""Versioned configuration writes over HTTP: If-Match / body version, ETag, 409 on a lost race."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from refreshd.http.keys import STORE
from tests.support import MakeClient

RULE = {"pattern": [{"type": "search"}], "action": {"type": "refresh"}}
FENCE = {
    "type": "Feature",
    "geometry": {"type": "Point", "coordinates": [2.35, 48.85]},
    "properties": {"radius_m": 150},
}
EXP = {
    "seed": "s1",
    "status": "draft",
    "variants": [{"key": "a"}, {"key": "b"}],
    "weights": [0.5, 0.5],
}
KINDS = [("/v1/triggers/t1", RULE), ("/v1/geofences/f1", FENCE), ("/v1/experiments/e1", EXP)]
WHAT = {"/v1/triggers/t1": "trigger 't1'", "/v1/geofences/f1": "geofence 'f1'",
        "/v1/experiments/e1": "experiment 'e1'"}  # fmt: skip


def etag(resp: Any) -> int:
    return int(resp.headers["ETag"].strip('"'))


async def put(client: TestClient, path: str, body: Any, if_match: str | None = None) -> Any:
    headers = {} if if_match is None else {"If-Match": if_match}
    return await client.put(path, json=body, headers=headers)


@pytest.mark.parametrize(("path", "body"), KINDS)
async def test_if_match_on_put(make_client: MakeClient, path: str, body: dict) -> None:
    client = await make_client()
    created = await put(client, path, body, '"0"')  # create only
    assert created.status == 200, await created.text()
    v1 = etag(created)
    assert (await created.json())["version"] == v1
    got = await client.get(path)
    assert etag(got) == v1 and (await got.json())["version"] == v1
    again = await put(client, path, body, '"0"')
    assert again.status == 409
    assert (await again.json())["error"] == {
        "code": "conflict",
        "message": f"{WHAT[path]} is at version {v1}, not 0",
        "field": None,
    }
    updated = await put(client, path, body, f'"{v1}"')
    assert updated.status == 200 and etag(updated) > v1
    assert (await put(client, path, body, f'"{v1}"')).status == 409  # v1 is gone now
    assert (await put(client, path, body)).status == 200  # no If-Match: unconditional


@pytest.mark.parametrize(("path", "body"), KINDS)
async def test_version_in_the_body(make_client: MakeClient, path: str, body: dict) -> None:
    client = await make_client()
    v1 = etag(await put(client, path, {**body, "version": 0}))
    stale = await put(client, path, {**body, "version": 0})
    assert stale.status == 409 and (await stale.json())["error"]["field"] == "version"
    assert (await put(client, path, {**body, "version": v1})).status == 200
    assert (await put(client, path, {**body, "version": None})).status == 200  # unconditional
    bad = await put(client, path, {**body, "version": -1})
    assert bad.status == 422 and (await bad.json())["error"]["field"] == "version"
    # If-Match and the body must agree when both are given.
    current = etag(await client.get(path))
    clash = await put(client, path, {**body, "version": current}, str(current + 1))
    assert clash.status == 422 and (await clash.json())["error"]["field"] == "version"


@pytest.mark.parametrize(("path", "body"), KINDS[:2])
async def test_if_match_on_delete(make_client: MakeClient, path: str, body: dict) -> None:
    client = await make_client()
    v1 = etag(await put(client, path, body))
    v2 = etag(await put(client, path, body))
    stale = await client.delete(path, headers={"If-Match": f'"{v1}"'})
    assert stale.status == 409 and (await stale.json())["error"]["code"] == "conflict"
    assert (await client.get(path)).status == 200  # still there
    assert (await client.delete(path, headers={"If-Match": f'"{v2}"'})).status == 204
    assert (await client.delete(path, headers={"If-Match": f'"{v2}"'})).status == 404


async def test_list_items_carry_their_own_version(make_client: MakeClient) -> None:
    client = await make_client()
    a = etag(await put(client, "/v1/triggers/a", RULE))
    b = etag(await put(client, "/v1/triggers/b", RULE))
    listed = await (await client.get("/v1/triggers")).json()
    versions = {t["id"]: t["version"] for t in listed["triggers"]}
    assert versions["a"] == a and versions["b"] == b and listed["version"] == b


@pytest.mark.parametrize(("path", "body"), KINDS)
async def test_concurrent_puts_with_one_if_match_let_one_win(
    make_client: MakeClient, path: str, body: dict
) -> None:
    """Two workers on the same Valkey, several writers holding the same version."""
    workers = [await make_client(), await make_client()]
    base = etag(await put(workers[0], path, body))
    resps = await asyncio.gather(*(put(workers[i % 2], path, body, f'"{base}"') for i in range(6)))
    statuses = sorted(r.status for r in resps)
    assert statuses == [200, 409, 409, 409, 409, 409], statuses
    won = next(r for r in resps if r.status == 200)
    assert etag(await workers[1].get(path)) == etag(won)


async def test_a_write_slipping_in_cannot_unfreeze_a_started_experiment(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The experiment PUT reads, checks the frozen fields, writes: another write landing
    between the read and the write (here: starting the experiment) used to be overwritten."""
    client = await make_client()
    assert (await put(client, "/v1/experiments/e1", EXP)).status == 200
    store = client.app[STORE]
    read = store.get_config_item
    raced = False

    async def racing_read(kind: str, item_id: str) -> Any:
        nonlocal raced
        got = await read(kind, item_id)
        if not raced:  # another admin starts the experiment right after this read
            raced = True
            await store.put_config(kind, item_id, msgspec.json.encode({**EXP, "status": "running"}))
        return got

    monkeypatch.setattr(store, "get_config_item", racing_read)
    resp = await put(client, "/v1/experiments/e1", {**EXP, "weights": [0.9, 0.1]})
    assert resp.status == 409, await resp.text()
    assert (await resp.json())["error"]["field"] == "weights"
    monkeypatch.undo()
    stored = await (await client.get("/v1/experiments/e1")).json()
    assert stored["experiment"]["status"] == "running"
    assert stored["experiment"]["weights"] == [0.5, 0.5]


async def test_an_experiment_write_with_if_match_after_a_race_is_409(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    v1 = etag(await put(client, "/v1/experiments/e1", EXP))
    assert (await put(client, "/v1/experiments/e1", {**EXP, "seed": "s2"})).status == 200
    resp = await put(client, "/v1/experiments/e1", {**EXP, "seed": "s3"}, str(v1))
    assert resp.status == 409 and (await resp.json())["error"]["field"] is None
