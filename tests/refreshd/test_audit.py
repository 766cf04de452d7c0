"""The decision audit: every decision can be looked up by id and by user, as it was made."""

from __future__ import annotations

import random
from typing import Any

import msgspec
from aiohttp.test_utils import TestClient

from intent.features import FEATURE_NAMES, FEATURES_VERSION
from intent.train import TrainResult
from refreshd.http.keys import REGISTRY, SERVICE, STORE
from refreshd.live.registry import publish
from tests.support import FakeClock, MakeClient

TOKEN = "audit-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RULE = {
    "pattern": [{"type": "search"}, {"type": "click", "times": 1}],
    "within_s": 600,
    "action": {"type": "refresh", "slots": ["feed"]},
}
EXPERIMENT = {
    "seed": "audit",
    "coverage": 0.6,
    "status": "running",
    "variants": [
        {"key": "control", "params": {"policy": "fixed"}},
        {"key": "t25", "params": {"policy": "intent", "threshold": 0.25}},
    ],
}
FENCE = {
    "type": "Feature",
    "geometry": {"type": "Point", "coordinates": [121.4737, 31.2304]},
    "properties": {"radius_m": 300, "buffer_m": 200, "on_enter": "refresh"},
}


async def _service(make_client: MakeClient, model: TrainResult, clock: FakeClock) -> TestClient:
    client = await make_client(clock=clock, explore_share=0.2, user_rate_per_s=0, admin_token=TOKEN)
    assert (await client.put("/v1/triggers/search-click", json=RULE, headers=AUTH)).status == 200
    assert (await client.put("/v1/experiments/thr", json=EXPERIMENT, headers=AUTH)).status == 200
    assert (await client.put("/v1/geofences/mall", json=FENCE, headers=AUTH)).status == 200
    await publish(client.app[STORE], model, created_ts=clock.ms, source="test")
    await client.app[REGISTRY].refresh(client.app[STORE])
    service = client.app[SERVICE]
    for book in (service.rulebook, service.experiments, service.fences):
        await book.refresh(client.app[STORE])
    return client


async def test_every_decision_reads_back_as_it_was_answered(
    make_client: MakeClient, trained_model: TrainResult
) -> None:
    clock = FakeClock()
    client = await _service(make_client, trained_model, clock)
    rng = random.Random(5)
    answers: list[tuple[dict[str, Any], dict[str, Any]]] = []
    pending: dict[str, list[str]] = {}  # directive ids each device will acknowledge
    for i in range(200):
        clock.advance(rng.uniform(1, 40))
        uid = f"u{rng.randrange(12)}"
        if rng.random() < 0.3:
            events = [{"type": t, "ts": clock.ms - 10} for t in ("search", "click")]
            body = {"user_id": uid, "batch_id": f"b{i}", "events": events}
            assert (await client.post("/v1/events", json=body)).status == 200
        req: dict[str, Any] = {
            "user_id": uid,
            "ts": clock.ms,
            "trigger": rng.choice(["open", "return", "timer", "scroll", "pull"]),
            "tz_offset_min": 480,
            "slots": ["feed"],
        }
        if rng.random() < 0.3:
            req |= {"lat": 31.2304 + rng.gauss(0, 0.002), "lng": 121.4737}
        if pending.get(uid):
            req["ack"] = pending.pop(uid)
        resp = await client.post("/v1/decide", json=req)
        assert resp.status == 200
        answer = await resp.json()
        pending[uid] = [d["id"] for d in answer["directives"]]
        answers.append((req, answer))

    versions = msgspec.to_builtins(client.app[SERVICE].config().versions)
    assert versions["rules"] >= 1 and versions["experiments"] == versions["fences"] == 1
    reasons, sources = set(), set()
    for req, answer in answers:
        resp = await client.get(f"/v1/decisions/{answer['decision_id']}", headers=AUTH)
        assert resp.status == 200, await resp.text()
        rec = await resp.json()
        for key in ("decision_id", "refresh", "reason", "score", "threshold", "model_version"):
            assert rec[key] == answer[key], key
        assert rec["experiment"] == answer["experiment"]
        assert rec["degraded_reasons"] == answer["degraded_reasons"]
        assert rec["directives"] == [d["id"] for d in answer["directives"]]
        assert {k: v for k, v in rec["request"].items() if v is not None} == req
        assert rec["user_id"] == req["user_id"] and rec["ts"] == req["ts"]
        assert rec["config_versions"] == versions
        if rec["features"] is not None:
            assert rec["feature_version"] == FEATURES_VERSION
            assert list(rec["features"]) == list(FEATURE_NAMES)
        if rec["explore"]:
            assert rec["propensity"] == 0.5 and rec["model_version"] == "explore"
        reasons.add(rec["reason"])
        sources.add(rec["threshold_source"])
    # The sample covers the ladder: an experiment arm's threshold and the settings' default.
    assert {"pull", "fallback", "event", "cooldown"} <= reasons and reasons & {
        "intent",
        "no_intent",
    }
    assert {"experiment", "default"} <= sources


async def test_a_users_newest_decisions_come_newest_first(
    make_client: MakeClient, trained_model: TrainResult
) -> None:
    clock = FakeClock()
    client = await _service(make_client, trained_model, clock)
    ids = []
    for _ in range(5):
        clock.advance(60)
        body = {"user_id": "ana", "ts": clock.ms, "trigger": "open"}
        ids.append((await (await client.post("/v1/decide", json=body)).json())["decision_id"])
    resp = await client.get("/v1/users/ana/decisions?limit=3", headers=AUTH)
    assert resp.status == 200
    got = await resp.json()
    assert got["user_id"] == "ana"
    assert [d["decision_id"] for d in got["decisions"]] == ids[::-1][:3]
    resp = await client.get("/v1/users/nobody/decisions", headers=AUTH)
    assert (await resp.json())["decisions"] == []


async def test_feature_ages_say_how_old_each_features_events_are(
    make_client: MakeClient, trained_model: TrainResult
) -> None:
    clock = FakeClock()
    client = await _service(make_client, trained_model, clock)
    events = [{"type": "click", "ts": clock.ms - 90_000}, {"type": "click", "ts": clock.ms}]
    body = {"user_id": "cy", "batch_id": "b1", "events": events}
    assert (await client.post("/v1/events", json=body)).status == 200
    clock.advance(30)
    body = {"user_id": "cy", "ts": clock.ms, "trigger": "open"}
    answer = await (await client.post("/v1/decide", json=body)).json()
    rec = await (await client.get(f"/v1/decisions/{answer['decision_id']}", headers=AUTH)).json()
    ages = rec["feature_age_s"]
    assert list(ages) == list(FEATURE_NAMES)
    assert ages["click_count_5m"] == 30.0 and ages["click_count_24h"] == 30.0
    assert ages["open_count_24h"] is None  # no open event in the window
    assert ages["hour"] is None  # a clock feature reads no events
    assert rec["features"]["click_count_5m"] == 2.0


async def test_policy_threshold_is_named_as_the_policys(
    make_client: MakeClient, trained_model: TrainResult
) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock, user_rate_per_s=0, admin_token=TOKEN)
    await publish(client.app[STORE], trained_model, created_ts=clock.ms, source="test")
    await client.app[REGISTRY].refresh(client.app[STORE])
    doc = {"nodes": [{"type": "pull"}, {"type": "intent", "threshold": 0.01}, {"type": "fallback"}]}
    assert (await client.put("/v1/policy", json=doc, headers=AUTH)).status == 200
    await client.app[SERVICE].policies.refresh(client.app[STORE])  # type: ignore[union-attr]
    body = {"user_id": "bo", "ts": clock.ms, "trigger": "open"}
    answer = await (await client.post("/v1/decide", json=body)).json()
    rec = await (await client.get(f"/v1/decisions/{answer['decision_id']}", headers=AUTH)).json()
    assert rec["reason"] == "intent" and rec["threshold"] == 0.01
    assert rec["threshold_source"] == "policy" and rec["config_versions"]["policy"] == 1


async def test_bad_lookups_are_4xx(make_client: MakeClient) -> None:
    client = await make_client(admin_token=TOKEN)
    for did in ("00-1-0", "nope", "99-1-0", "07-" + "9" * 40 + "-0"):
        resp = await client.get(f"/v1/decisions/{did}", headers=AUTH)
        assert resp.status == 404
        assert (await resp.json())["error"]["field"] == "decision_id"
    for q in ("limit=0", "limit=101", "limit=x", "limit=-1"):
        resp = await client.get(f"/v1/users/ana/decisions?{q}", headers=AUTH)
        assert resp.status == 422 and (await resp.json())["error"]["field"] == "limit"
    resp = await client.get("/v1/users/a%20b/decisions", headers=AUTH)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "user_id"
    assert (await client.get("/v1/decisions/00-1-0")).status == 401
    assert (await client.get("/v1/users/ana/decisions")).status == 401
