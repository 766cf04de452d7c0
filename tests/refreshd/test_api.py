"""The HTTP API against a real Valkey: decide, events, directives, health, metrics."""

from __future__ import annotations

import asyncio

import redis
from aiohttp.test_utils import TestClient

from refreshd.store.protocol import batch_key, user_key
from tests.support import FakeClock, MakeClient, now_ms, raw_log


async def decide(client: TestClient, user: str = "u1", trigger: str = "open", **kw: object) -> dict:
    body = {"user_id": user, "ts": kw.pop("ts", None) or now_ms(), "trigger": trigger, **kw}
    resp = await client.post("/v1/decide", json=body)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def post_events(
    client: TestClient, batch: str, n: int = 3, user: str = "u1", **kw: object
) -> tuple[int, dict]:
    t = now_ms()
    events = [{"type": "click", "ts": t - i, "item_id": f"i{i}", "slot": "feed"} for i in range(n)]
    resp = await client.post(
        "/v1/events", json={"user_id": user, "batch_id": batch, "events": events, **kw}
    )
    return resp.status, await resp.json()


def stream_len(raw: redis.Redis, name: str) -> int:
    return len(raw_log(raw, name))


async def test_decide_response_has_the_design_shape(
    make_client: MakeClient, raw: redis.Redis
) -> None:
    client = await make_client()
    body = await decide(client, slots=["feed"])
    expected = {"decision_id", "refresh", "reason", "score", "threshold", "experiment",
                "model_version", "next_check_s", "directives", "degraded"}  # fmt: skip
    assert expected <= body.keys()
    assert body["refresh"] is True and body["reason"] == "fallback"
    assert body["slots"] == ["feed"]
    assert raw_log(raw, "log:decisions")[-1]["decision_id"] == body["decision_id"]


async def test_cooldown_then_fallback_interval_with_a_clock(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock, min_interval_s=30, fallback_interval_s=300)
    first = await decide(client, ts=clock.ms)
    clock.advance(10)
    second = await decide(client, ts=clock.ms)
    clock.advance(100)
    third = await decide(client, ts=clock.ms)
    clock.advance(200)
    fourth = await decide(client, trigger="return", ts=clock.ms)
    assert [first["reason"], second["reason"], third["reason"], fourth["reason"]] == [
        "fallback", "cooldown", "fallback", "fallback"]  # fmt: skip
    assert [first["refresh"], second["refresh"], third["refresh"], fourth["refresh"]] == [
        True, False, False, True]  # fmt: skip


async def test_pull_always_refreshes(make_client: MakeClient) -> None:
    client = await make_client()
    await decide(client)
    body = await decide(client, trigger="pull")
    assert body["refresh"] is True and body["reason"] == "pull"


async def test_events_are_logged_and_kept_in_user_state(
    make_client: MakeClient, raw: redis.Redis
) -> None:
    client = await make_client()
    status, body = await post_events(client, "b1", n=5)
    assert status == 200 and body == {"accepted": 5, "duplicate": False, "directives": []}
    assert stream_len(raw, "log:events") == 5
    assert raw.exists(batch_key("u1", "b1")) and raw.ttl(batch_key("u1", "b1")) > 0
    assert int(raw.hget(user_key("u1"), "v")) == 1


async def test_replayed_batch_is_accepted_once(make_client: MakeClient, raw: redis.Redis) -> None:
    client = await make_client()
    assert (await post_events(client, "b1"))[1]["duplicate"] is False
    status, body = await post_events(client, "b1")
    assert status == 200 and body["duplicate"] is True and body["accepted"] == 0
    assert stream_len(raw, "log:events") == 3


async def test_racing_replays_write_once(make_client: MakeClient, raw: redis.Redis) -> None:
    client = await make_client()
    results = await asyncio.gather(*(post_events(client, "race", n=4) for _ in range(12)))
    assert all(status == 200 for status, _ in results)
    assert sum(1 for _, body in results if not body["duplicate"]) == 1
    assert stream_len(raw, "log:events") == 4


async def test_concurrent_writes_for_one_user_lose_nothing(
    make_client: MakeClient, raw: redis.Redis
) -> None:
    client = await make_client()
    batches = [post_events(client, f"b{i}", n=2) for i in range(15)]
    decisions = [decide(client, trigger="scroll") for _ in range(15)]
    await asyncio.gather(*batches, *decisions)
    # Every accepted write bumped the version exactly once: 15 batches + 15 decisions.
    assert int(raw.hget(user_key("u1"), "v")) == 30
    assert stream_len(raw, "log:events") == 30 and stream_len(raw, "log:decisions") == 15


async def test_directive_rides_on_next_contact_until_acknowledged(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.post(
        "/v1/directives", json={"user_id": "u1", "type": "refresh", "slots": ["services"]}
    )
    assert resp.status == 201
    did = (await resp.json())["directive"]["id"]
    # Delivered on decide (and it makes the decision an event refresh of its slots) ...
    first = await decide(client)
    assert [d["id"] for d in first["directives"]] == [did]
    assert first["reason"] == "event" and first["slots"] == ["services"]
    # ... repeated while not acknowledged (a lost response loses nothing) ...
    _, ev = await post_events(client, "b1")
    assert [d["id"] for d in ev["directives"]] == [did]
    again = await decide(client)
    assert [d["id"] for d in again["directives"]] == [did]
    # ... and gone once acknowledged.
    acked = await decide(client, ack=[did])
    assert acked["directives"] == [] and acked["reason"] != "event"
    assert (await decide(client))["directives"] == []


async def test_expired_directive_is_not_delivered(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock)
    resp = await client.post(
        "/v1/directives", json={"user_id": "u1", "type": "fix_now", "ttl_s": 5}
    )
    assert resp.status == 201
    assert len((await decide(client, ts=clock.ms))["directives"]) == 1
    clock.advance(6)
    assert (await decide(client, ts=clock.ms))["directives"] == []
    text = await (await client.get("/metrics")).text()
    assert 'refreshd_directives_total{stage="expired"} 1.0' in text
    assert 'refreshd_directives_total{stage="delivered"} 1.0' in text


async def test_health_ready_metrics(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["store"] is True
    await decide(client)
    await client.post("/v1/decide", data=b"{", headers={"Content-Type": "application/json"})
    text = await (await client.get("/metrics")).text()
    assert 'refreshd_requests_total{method="POST",route="/v1/decide",status="200"} 1.0' in text
    assert 'refreshd_requests_total{method="POST",route="/v1/decide",status="400"} 1.0' in text
    assert (
        'refreshd_decisions_total{degraded="true",node="fallback",reason="fallback",refresh="true"}'
        " 1.0" in text
    )
    assert "refreshd_request_seconds_bucket" in text


async def test_unknown_route_and_method_use_the_error_body(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.get("/v1/nothing")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await client.get("/v1/decide")
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_two_workers_on_one_store_lose_no_update(
    make_client: MakeClient, raw: redis.Redis
) -> None:
    # Two apps on one Valkey stand in for two worker processes: only compare-and-set
    # (not the in-process lock) keeps their interleaved writes to one user apart.
    a, b = await make_client(), await make_client()
    writes = []
    for i in range(20):
        c = a if i % 2 else b
        writes += [post_events(c, f"w{i}", n=1), decide(c, trigger="scroll")]
    await asyncio.gather(*writes)
    assert int(raw.hget(user_key("u1"), "v")) == 40
    assert stream_len(raw, "log:events") == 20 and stream_len(raw, "log:decisions") == 20
