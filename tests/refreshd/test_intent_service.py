"""The intent model inside the service: parity online/offline and edge/cloud, registry, training."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import msgspec
import numpy as np
import pytest
import redis
from aiohttp.test_utils import TestClient

from intent.dataset import build_dataset
from intent.events import Event
from intent.features import FEATURES_VERSION, MISSING, Context, compute
from intent.model import IntentModel, with_tags
from intent.staleness import Staleness
from intent.train import TrainResult
from refreshd.core.flow import DecisionLog
from refreshd.http.keys import REGISTRY, STORE
from refreshd.live.registry import publish
from refreshd.live.service import Service
from refreshd.metrics import Metrics
from refreshd.settings import Settings
from refreshd.store.memory import MemoryStore
from refreshd.store.protocol import LOG_DECISIONS, LOG_EVENTS
from synth.eventlog import generate
from tests.support import FakeClock, MakeClient, now_ms, raw_log, raw_xadd, replay, replay_items


@pytest.mark.slow
async def test_online_features_equal_offline_dataset_value_for_value() -> None:
    items, n_decisions = replay_items(users=400, days=3, seed=11)
    assert n_decisions >= 10_000
    clock = FakeClock(items[0][0])
    store = MemoryStore()
    settings = Settings(user_rate_per_s=0, bootstrap_model=False)
    service = Service(store, settings, Metrics(), clock)
    await replay(service, clock, items)
    decisions = [msgspec.json.decode(b) for b in await store.read_log(LOG_DECISIONS, 10**6)]
    events = [msgspec.json.decode(b) for b in await store.read_log(LOG_EVENTS, 10**6)]
    assert len(decisions) == n_decisions
    dataset = build_dataset(decisions, events)
    online = {d["decision_id"]: d["features"] for d in decisions if d.get("features") is not None}
    assert len(dataset) >= 10_000 and len(online) >= len(dataset)
    mismatched = [
        i for i, did in enumerate(dataset.decision_ids) if list(dataset.X[i]) != online[did]
    ]
    assert mismatched == [], f"{len(mismatched)} of {len(dataset)} rows differ"
    # The device-reported visit features took part: present and absent (MISSING) both occur.
    for name in ("launch_scan_shortcut", "home_dwell_s", "scrolls_in_visit", "scroll_depth"):
        column = dataset.X[:, dataset.feature_names.index(name)]
        assert (column == MISSING).any() and (column != MISSING).any(), name


async def publish_model(client: TestClient, result: TrainResult) -> str:
    meta = await publish(client.app[STORE], result, created_ts=now_ms(), source="test")
    await client.app[REGISTRY].refresh(client.app[STORE])
    return meta.version


async def test_edge_scoring_with_the_artifact_matches_decide(
    make_client: MakeClient, trained_model: TrainResult
) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock)
    version = await publish_model(client, trained_model)
    resp = await client.get("/v1/models/current/artifact")
    assert resp.status == 200 and resp.headers["X-Model-Version"] == version
    device_model = IntentModel.from_text(await resp.text())
    rng = np.random.default_rng(3)
    device_events: list[Event] = []
    last_refresh: int | None = None
    agree = 0
    for step in range(40):
        clock.advance(float(rng.integers(40, 400)))
        kinds = rng.choice(["impression", "click", "open", "scroll"], size=int(rng.integers(1, 5)))
        batch = [Event(type=str(k), ts=clock.ms - int(rng.integers(1, 30_000))) for k in kinds]
        device_events += batch
        await client.post(
            "/v1/events",
            json={
                "user_id": "edge",
                "batch_id": f"b{step}",
                "events": [msgspec.to_builtins(e) for e in batch],
            },
        )
        trigger = str(rng.choice(["open", "return", "scroll"]))
        body = await (
            await client.post(
                "/v1/decide",
                json={"user_id": "edge", "ts": clock.ms, "trigger": trigger, "tz_offset_min": 480},
            )
        ).json()
        ctx = Context(trigger=trigger, tz_offset_min=480, zone=None, last_refresh_ts=last_refresh)
        edge_score = device_model.predict_one(
            compute(sorted(device_events, key=lambda e: e.ts), clock.ms, ctx)
        )
        if body["reason"] in ("intent", "no_intent"):
            assert body["score"] == edge_score
            assert body["refresh"] == (edge_score >= body["threshold"])
            agree += 1
        if body["refresh"]:
            last_refresh = clock.ms
    assert agree >= 20


async def test_registry_train_and_propagation(make_client: MakeClient, raw: redis.Redis) -> None:
    a = await make_client(config_poll_s=0.2)
    b = await make_client(config_poll_s=0.2)
    assert (await a.get("/v1/models/current")).status == 404
    assert (await a.post("/v1/models/train")).status == 409  # no logs yet
    log = generate(users=150, days=2, seed=5)
    for d in log.decisions:
        raw_xadd(raw, "log:decisions", d)
    for e in log.events:
        raw_xadd(raw, "log:events", e)
    resp = await a.post("/v1/models/train")
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["published"] is True and report["metrics"]["auc"] > 0.6
    version = report["model"]["version"]
    # Same logs again: nothing better to publish, so the current model stays.
    again_resp = await a.post("/v1/models/train")
    assert again_resp.status == 200, await again_resp.text()
    again = await again_resp.json()
    assert again["published"] is False and again["current_metrics"]["auc"] == pytest.approx(
        report["metrics"]["auc"]
    )
    # The other worker picks the new version up by itself (documented: within 5 s).
    for _ in range(50):
        if b.app[REGISTRY].version == version:
            break
        await asyncio.sleep(0.1)
    assert b.app[REGISTRY].version == version
    listed = await (await b.get("/v1/models")).json()
    assert listed["current"] == version and [m["version"] for m in listed["models"]] == [version]
    current = await (await b.get("/v1/models/current")).json()
    assert current["features_version"] and current["metrics"]["calibration"]
    body = await (
        await b.post("/v1/decide", json={"user_id": "z", "ts": now_ms(), "trigger": "open"})
    ).json()
    assert body["model_version"] == version and body["reason"] in ("intent", "no_intent")


async def test_scorer_timeout_falls_back_degraded(
    make_client: MakeClient, trained_model: TrainResult
) -> None:
    client = await make_client(score_timeout_ms=1.0, score_batch_wait_ms=40.0)
    await publish_model(client, trained_model)
    body = await (
        await client.post("/v1/decide", json={"user_id": "t", "ts": now_ms(), "trigger": "open"})
    ).json()
    assert body["degraded"] is True and body["degraded_reasons"] == ["scorer_timeout"]
    assert body["reason"] == "fallback" and body["score"] is None


async def test_experiment_variant_threshold_is_used(
    make_client: MakeClient, trained_model: TrainResult
) -> None:
    client = await make_client()
    await publish_model(client, trained_model)
    exp = {
        "seed": "s",
        "weights": [0.5, 0.5],
        "status": "running",
        "variants": [
            {"key": "never", "params": {"policy": "intent", "threshold": 1.0}},
            {"key": "always", "params": {"policy": "intent", "threshold": 0.0}},
        ],
    }
    assert (await client.put("/v1/experiments/thr", json=exp)).status == 200
    seen = set()
    for i in range(30):
        body = await (
            await client.post(
                "/v1/decide", json={"user_id": f"v{i}", "ts": now_ms(), "trigger": "open"}
            )
        ).json()
        variant = body["experiment"]["variant"]
        seen.add(variant)
        assert body["threshold"] == (1.0 if variant == "never" else 0.0)
        assert body["refresh"] is (variant == "always")
    assert seen == {"never", "always"}


def test_decision_log_rows_carry_what_training_needs() -> None:
    fields = set(DecisionLog.__struct_fields__)
    assert {
        "received_ts",
        "last_refresh_ts",
        "features",
        "trigger",
        "tz_offset_min",
        "zone",
    } <= fields


async def test_exploration_traffic_flips_a_logged_coin_outside_experiments(
    make_client: MakeClient, trained_model: TrainResult, raw: redis.Redis
) -> None:
    """REFRESHD_EXPLORE_SHARE: randomised decisions, logged `explore`, never in experiments."""
    client = await make_client(explore_share=1.0)
    await publish_model(client, trained_model)
    bodies = []
    for i in range(80):
        resp = await client.post(
            "/v1/decide", json={"user_id": f"e{i}", "ts": now_ms(), "trigger": "scroll"}
        )
        bodies.append(await resp.json())
    assert {b["reason"] for b in bodies} <= {"intent", "no_intent"}
    assert {b["model_version"] for b in bodies} == {"explore"}
    assert {b["threshold"] for b in bodies} == {0.5}
    assert all(b["refresh"] == (b["score"] >= 0.5) for b in bodies)
    assert 0.25 < np.mean([b["refresh"] for b in bodies]) < 0.75  # a fair coin, not the model
    logged = {r["decision_id"]: r for r in raw_log(raw, "log:decisions")}
    assert all(logged[b["decision_id"]]["explore"] is True for b in bodies)
    # A user in a running experiment gets the variant's policy, never the coin.
    never = {"policy": "intent", "threshold": 1.0}
    exp = {"seed": "s", "weights": [0.5, 0.5], "status": "running",
           "variants": [{"key": "a", "params": never}, {"key": "b", "params": never}]}  # fmt: skip
    assert (await client.put("/v1/experiments/thr", json=exp)).status == 200
    body = await (
        await client.post("/v1/decide", json={"user_id": "x", "ts": now_ms(), "trigger": "scroll"})
    ).json()
    assert body["threshold"] == 1.0 and body["model_version"] != "explore"
    assert (
        "explore"
        not in {r["decision_id"]: r for r in raw_log(raw, "log:decisions")}[body["decision_id"]]
    )


async def test_a_model_with_a_staleness_curve_scores_decisions_with_it(
    make_client: MakeClient, trained_model: TrainResult
) -> None:
    """The curve in the artifact reaches /v1/decide: the score is P(click) × gain(list age)."""
    curve = Staleness(((60.0, 0.0), (3600.0, 1.0)))
    tagged = dataclasses.replace(
        trained_model, model_text=with_tags(trained_model.model_text, staleness=curve.to_text())
    )
    clock = FakeClock()
    client = await make_client(clock=clock, threshold=1e-9)  # any positive score refreshes
    await publish_model(client, tagged)
    model = IntentModel.from_text(tagged.model_text)

    async def decide(trigger: str) -> dict[str, Any]:
        body = {"user_id": "s", "ts": clock.ms, "trigger": trigger, "tz_offset_min": 0}
        return await (await client.post("/v1/decide", json=body)).json()  # type: ignore[no-any-return]

    first = await decide("open")  # never refreshed: the oldest list, gain 1
    never = Context(trigger="open", tz_offset_min=0, zone=None, last_refresh_ts=None)
    assert first["score"] == pytest.approx(
        model.predict_click(np.array([compute([], clock.ms, never)]))[0]
    )
    assert first["reason"] == "intent" and first["refresh"] is True
    clock.advance(40)  # past the 30 s cooldown, the list is 40 s old: no gain, score 0
    second = await decide("scroll")
    assert (second["reason"], second["score"], second["refresh"]) == ("no_intent", 0.0, False)


async def test_a_model_of_other_features_is_replaced_at_start(
    make_client: MakeClient, redis_url: str, trained_model: TrainResult
) -> None:
    # An upgrade that changed the features finds a model it cannot load: the service does not
    # wait for the next retrain (hours) on the fallback rule, it trains one at start.
    from intent.model import read_features_version, with_features_version
    from refreshd.store.redis import RedisStore

    store = RedisStore(redis_url)
    meta = await publish(store, trained_model, created_ts=now_ms(), source="old-release")
    text, blob = await store.get_model(meta.version)  # type: ignore[misc]
    await store.put_model(meta.version, with_features_version(text, "f-old"), blob)
    await store.close()
    client = await make_client(bootstrap_model=True)
    for _ in range(600):  # the bootstrap trains in a thread: a few seconds
        current = await client.app[STORE].current_model_version()
        if current != meta.version and client.app[REGISTRY].model is not None:
            break
        await asyncio.sleep(0.1)
    assert current != meta.version
    new_text, _ = await client.app[STORE].get_model(current)  # type: ignore[misc]
    assert read_features_version(new_text) == FEATURES_VERSION
    assert client.app[REGISTRY].version == current
