"""Replay: a logged window re-runs to the same decisions; bad windows are 4xx, never 500.

The sequence is the differential test's (tests/e2e/test_differential.py): 60 users with
fences they walk in and out of, event rules that queue refresh directives, a running
experiment and exploration traffic — here through the real service (HTTP, Valkey, LightGBM)
with a second model published a third of the way in and a new policy document half way.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import msgspec
import pytest
import redis
from aiohttp.test_utils import TestClient

from intent.train import TrainResult
from refreshd import constants as C
from refreshd.http.keys import POLICY, REGISTRY, SERVICE, STORE
from refreshd.live.registry import publish
from refreshd.store.protocol import LOG_DECISIONS, shard_key, shard_tag
from synth.bootstrap import bootstrap
from tests.e2e.test_differential import EXPERIMENT, FENCES, RULES, _requests, _second_policy
from tests.support import FakeClock, MakeClient

TOKEN = "replay-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DECISIONS = 5000


async def _configured(make_client: MakeClient, model: TrainResult, clock: FakeClock) -> TestClient:
    client = await make_client(clock=clock, explore_share=0.3, user_rate_per_s=0,
                               score_timeout_ms=10_000.0, admin_token=TOKEN)  # fmt: skip
    for fid, feature in FENCES.items():
        assert (await client.put(f"/v1/geofences/{fid}", json=feature, headers=AUTH)).status == 200
    for rid, rule in RULES.items():
        assert (await client.put(f"/v1/triggers/{rid}", json=rule, headers=AUTH)).status == 200
    assert (await client.put("/v1/experiments/thr", json=EXPERIMENT, headers=AUTH)).status == 200
    await publish(client.app[STORE], model, created_ts=clock.ms, source="test")
    await client.app[REGISTRY].refresh(client.app[STORE])
    service = client.app[SERVICE]
    for book in (service.rulebook, service.experiments, service.fences):
        await book.refresh(client.app[STORE])
    return client


async def test_a_window_with_every_kind_of_change_replays_exactly(
    make_client: MakeClient, trained_model: TrainResult
) -> None:
    clock = FakeClock()
    client = await _configured(make_client, trained_model, clock)
    second = bootstrap(users=60, days=1, seed=8)
    requests = _requests(clock.ms + 1_000, n=DECISIONS * 2, weights=(2, 7, 1))
    rng = random.Random(3)
    known: dict[str, list[str]] = {}  # directive ids a device has seen and not acked yet

    async def send(kind: str, body: dict[str, Any]) -> None:
        uid = body["user_id"]
        ack = [d for d in known.get(uid, []) if rng.random() < 0.7]
        if ack:
            body["ack"] = ack
        resp = await client.post(f"/v1/{kind}", json=body)
        assert resp.status == 200, await resp.text()
        pending = [d["id"] for d in (await resp.json())["directives"]]
        known[uid] = [d for d in dict.fromkeys(known.get(uid, []) + pending) if d not in ack]

    # Requests go out a few at a time, from different users (each user's stay in order), so
    # the service decides concurrently as it does in production, and the test runs faster.
    decided = 0
    ts: list[int] = []
    batch: list[tuple[str, dict[str, Any]]] = []
    for now, kind, body in requests:
        users = {b["user_id"] for _, b in batch}
        full = len(batch) == 8 or body["user_id"] in users
        milestone = kind == "decide" and decided in (DECISIONS // 3, DECISIONS // 2)
        if batch and (full or milestone):
            await asyncio.gather(*(send(k, b) for k, b in batch))
            batch = []
        if decided == DECISIONS:
            break
        clock.ms = now
        if milestone and decided == DECISIONS // 3:  # a retrain publishes a new model
            await publish(client.app[STORE], second, created_ts=now, source="test")
            await client.app[REGISTRY].refresh(client.app[STORE])
        if milestone and decided == DECISIONS // 2:  # an operator changes the ladder
            resp = await client.put("/v1/policy", json=_second_policy(now), headers=AUTH)
            assert resp.status == 200
            await client.app[POLICY].refresh(client.app[STORE])
        if body.pop("retry", False):
            continue
        batch.append((kind, body))
        if kind == "decide":
            decided += 1
            ts.append(body["ts"])
    if batch:
        await asyncio.gather(*(send(k, b) for k, b in batch))
    assert decided == DECISIONS

    rows = [msgspec.json.decode(b) for b in await client.app[STORE].read_log(LOG_DECISIONS, 10**5)]
    # The window holds what it claims: exploration, both arms, rule and fence refreshes, the
    # second ladder's nodes, two models and two policy versions.
    assert len(rows) == DECISIONS
    assert {"event", "geo", "intent", "no_intent", "frequency_cap", "quiet_hours"} <= {
        r["reason"] for r in rows
    }
    assert any(r.get("explore") for r in rows)
    assert {r.get("variant") for r in rows} >= {"control", "t20", None}
    assert (
        len({r["model_version"] for r in rows if r.get("model_version") not in (None, "explore")})
        == 2
    )
    assert {r.get("config_versions", {}).get("policy", 0) for r in rows} == {0, 1}

    window = {"since": min(ts), "until": max(ts) + 1}
    assert (await client.post("/v1/replay", json=window)).status == 401
    resp = await client.post("/v1/replay", json=window, headers=AUTH)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["decisions"] == DECISIONS
    assert report["not_reproduced"] == []
    assert report["reproduced"] == DECISIONS and report["reproduced_share"] == 1.0
    assert report["policy_versions"] == [0, 1] and len(report["model_versions"]) == 2
    assert report["flipped_share"] is None  # no candidate: nothing counterfactual

    # A candidate threshold: what flips, the refresh change and a click estimate with a CI.
    resp = await client.post("/v1/replay", json=window | {"threshold": 0.05}, headers=AUTH)
    assert resp.status == 200, await resp.text()
    cf = await resp.json()
    assert cf["reproduced_share"] == 1.0
    assert 0 < cf["flipped_share"] < 1 and cf["refresh_rate_change"] > 0
    assert cf["exploration"]["decisions"] > 0
    est = cf["estimated_click_change"]  # the clock is a day on: most click windows closed
    assert cf["exploration"]["mature"] > 100 and est["method"] == "ips"
    assert est["per_decision_ci"][0] <= est["per_decision"] <= est["per_decision_ci"][1]


async def test_bad_windows_are_4xx(make_client: MakeClient, raw: redis.Redis) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock, admin_token=TOKEN)
    t = clock.ms - 60_000

    async def replay(body: Any) -> tuple[int, dict[str, Any]]:
        resp = await client.post("/v1/replay", json=body, headers=AUTH)
        return resp.status, await resp.json()

    for body, field in (
        ({"since": t, "until": t}, "until"),
        ({"since": t + 1, "until": t}, "until"),
        ({"since": t}, "until"),
        ({"since": -1, "until": t}, "since"),
        ({"since": t, "until": t + 1, "threshold": 1.5}, "threshold"),
        ({"since": t, "until": t + 1, "model": ""}, "model"),
        ({"since": t, "until": t + 1, "extra": 1}, None),
    ):
        status, doc = await replay(body)
        assert status == 422, (body, doc)
        if field is not None:
            assert doc["error"]["field"] == field, (body, doc)
    status, doc = await replay({"since": t, "until": t + 1, "model": "m-nope"})
    assert status == 404 and doc["error"]["field"] == "model"
    resp = await client.post(
        "/v1/replay", data=b"{", headers=AUTH | {"Content-Type": "application/json"}
    )
    assert resp.status == 400
    # An empty window is fine; one with more decisions than a replay re-runs says so.
    status, doc = await replay({"since": t, "until": t + 1})
    assert status == 200 and doc["decisions"] == 0 and doc["reproduced_share"] is None
    row = {"user_id": "u1", "trigger": "open", "refresh": False, "reason": "no_intent",
           "degraded": False}  # fmt: skip
    with raw.pipeline(transaction=False) as pipe:
        for i in range(C.REPLAY_MAX_DECISIONS + 1):
            blob = msgspec.json.encode(row | {"ts": t + i})
            pipe.xadd(shard_key(LOG_DECISIONS, shard_tag("u1")), {"d": blob})
        pipe.execute()
    status, doc = await replay({"since": t, "until": t + 10**6})
    assert status == 422 and doc["error"]["field"] == "until"
    assert f"{C.REPLAY_MAX_DECISIONS + 1} decisions" in doc["error"]["message"]
    status, doc = await replay({"since": t, "until": t + 100})
    assert status == 200 and doc["decisions"] == 100


@pytest.mark.parametrize(("headers", "status"), [({}, 401), ({"Authorization": "Bearer no"}, 403)])
async def test_replay_needs_the_admin_token(
    make_client: MakeClient, headers: dict[str, str], status: int
) -> None:
    client = await make_client(admin_token=TOKEN)
    resp = await client.post("/v1/replay", json={"since": 0, "until": 1}, headers=headers)
    assert resp.status == status
