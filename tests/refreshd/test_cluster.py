"""The service on a local 3-master Valkey Cluster: the same flows, every multi-key call on one slot."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient
from redis.cluster import key_slot

from refreshd.core.exposure import stats_key
from refreshd.store.protocol import (
    LOG_DECISIONS,
    LOG_EVENTS,
    batch_key,
    config_key,
    config_version_key,
    directives_key,
    shard_key,
    shard_tag,
    user_key,
)
from tests.support import FakeClock, MakeClient, now_ms

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("uid", ["u1", "alice", "user-42", "ü-unicode", "x" * 128])
def test_every_key_of_one_request_shares_a_slot(uid: str) -> None:
    tag = shard_tag(uid)
    keys = [
        user_key(uid),
        directives_key(uid),
        batch_key(uid, "b1"),
        shard_key(LOG_DECISIONS, tag),
        shard_key(LOG_EVENTS, tag),
        shard_key(stats_key("e", "v"), tag),
    ]
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert key_slot(config_key("rules").encode()) == key_slot(config_version_key("rules").encode())


async def cluster_client(
    make_client: MakeClient, cluster_nodes: tuple[str, ...], **kw: object
) -> TestClient:
    return await make_client(redis_url=None, redis_cluster=cluster_nodes, **kw)


async def test_decide_events_directives_and_rules(
    make_client: MakeClient, cluster_nodes: tuple[str, ...]
) -> None:
    clock = FakeClock()
    client = await cluster_client(make_client, cluster_nodes, clock=clock)
    assert (await client.get("/readyz")).status == 200
    for i in range(20):  # users spread over shards and masters
        resp = await client.post(
            "/v1/decide", json={"user_id": f"c{i}", "ts": clock.ms, "trigger": "open"}
        )
        assert resp.status == 200
    batch = {
        "user_id": "c1",
        "batch_id": "b1",
        "events": [{"type": "pull_refresh", "ts": clock.ms}],
    }
    results = await asyncio.gather(*(client.post("/v1/events", json=batch) for _ in range(8)))
    bodies = [await r.json() for r in results]
    assert sum(not b["duplicate"] for b in bodies) == 1
    [directive] = next(b for b in bodies if not b["duplicate"])["directives"]
    clock.advance(1)
    got = await (
        await client.post("/v1/decide", json={"user_id": "c1", "ts": clock.ms, "trigger": "scroll"})
    ).json()
    assert got["reason"] == "event" and [d["id"] for d in got["directives"]] == [directive["id"]]
    acked = await (
        await client.post(
            "/v1/decide",
            json={
                "user_id": "c1",
                "ts": clock.ms + 1,
                "trigger": "scroll",
                "ack": [directive["id"]],
            },
        )
    ).json()
    assert acked["directives"] == []


async def test_experiment_statistics_and_fences(
    make_client: MakeClient, cluster_nodes: tuple[str, ...]
) -> None:
    client = await cluster_client(make_client, cluster_nodes)
    exp = {
        "seed": "s",
        "weights": [0.5, 0.5],
        "status": "running",
        "variants": [
            {"key": "a", "params": {"policy": "fixed"}},
            {"key": "b", "params": {"policy": "fixed"}},
        ],
    }
    assert (await client.put("/v1/experiments/e1", json=exp)).status == 200
    for i in range(30):
        assert (
            await client.post(
                "/v1/decide", json={"user_id": f"x{i}", "ts": now_ms(), "trigger": "open"}
            )
        ).status == 200
    report = await (await client.get("/v1/experiments/e1/report")).json()
    assert sum(v["users"] for v in report["variants"]) == 30
    fence = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [121.47, 31.23]},
        "properties": {"radius_m": 100},
    }
    assert (await client.put("/v1/geofences/mall", json=fence)).status == 200
    fix = {"user_id": "walker", "ts": now_ms(), "lat": 31.23, "lng": 121.47, "accuracy_m": 5}
    assert (await client.post("/v1/location", json=fix)).status == 200
