"""Continuous retraining on matured labels: freshness, warm starts, the not-worse gate."""

from __future__ import annotations

import math
from typing import Any

import lightgbm as lgb
import pytest
import redis
from aiohttp.test_utils import TestClient

from intent.dataset import INTENT_TRIGGERS, LABEL_HORIZON_S, build_dataset
from intent.features import FEATURES_VERSION
from intent.model import with_tags
from intent.train import DEFAULT_PARAMS, TrainResult, evaluate
from refreshd.http.app import _locked_retrain
from refreshd.http.keys import REGISTRY
from refreshd.live.registry import ModelRegistry, publish
from refreshd.live.training import freshness_s, retrain
from refreshd.store.protocol import LOG_DECISIONS, LOG_EVENTS
from refreshd.store.redis import RedisStore
from synth.eventlog import START_TS, SyntheticLog, generate
from tests.support import FakeClock, MakeClient, raw_xadd

HOUR_MS = 3_600_000
# The freshness target: a label matures after its window; one retrain interval more at most.
TARGET_S = LABEL_HORIZON_S + 300


@pytest.fixture(scope="module")
def synthetic() -> SyntheticLog:
    # Enough users that ten hours hold the 500 new labels a warm start needs.
    return generate(users=200, days=3, seed=5)


@pytest.fixture(scope="module")
def small() -> SyntheticLog:
    return generate(users=80, days=2, seed=5)


def arrive(raw: redis.Redis, log: SyntheticLog, after_ms: int, until_ms: int) -> None:
    """Append to the store's logs the rows the service received in (after_ms, until_ms]."""
    with raw.pipeline(transaction=False) as pipe:
        for stream, rows in ((LOG_DECISIONS, log.decisions), (LOG_EVENTS, log.events)):
            for row in rows:
                if after_ms < row["received_ts"] <= until_ms:
                    raw_xadd(pipe, stream, row)
        pipe.execute()


async def live_traffic(client: TestClient, clock: FakeClock, tag: str) -> None:
    """Decide for a few users now through the API; half of them click 30 s later."""
    start = clock.ms
    for i in range(10):
        body = {"user_id": f"live-{tag}-{i}", "ts": start, "trigger": "open", "tz_offset_min": 0}
        assert (await client.post("/v1/decide", json=body)).status == 200
    clock.advance(30)
    for i in range(0, 10, 2):
        events = [{"type": "impression", "ts": start + 1000}, {"type": "click", "ts": clock.ms}]
        body = {"user_id": f"live-{tag}-{i}", "batch_id": f"b{tag}{i}", "events": events}
        assert (await client.post("/v1/events", json=body)).status in (200, 202)


def gauge(text: str) -> float:
    (line,) = [ln for ln in text.splitlines() if ln.startswith("refreshd_model_freshness_seconds ")]
    return float(line.split()[1])


async def test_continuous_retrain_keeps_the_model_within_the_label_window_plus_5_min(
    make_client: MakeClient, raw: redis.Redis, synthetic: SyntheticLog
) -> None:
    clock = FakeClock(START_TS + 48 * HOUR_MS)
    # No scheduler run: the test calls the job itself, with the compressed (fake) clock.
    client = await make_client(clock=clock, retrain_interval_s=0, full_retrain_s=86_400)
    assert math.isnan(gauge(await (await client.get("/metrics")).text()))  # no model yet
    arrive(raw, synthetic, 0, clock.ms)
    await live_traffic(client, clock, "a")
    clock.advance(LABEL_HORIZON_S + 60)  # the live decisions' labels mature
    await _locked_retrain(client.app, source="retrain", only_if_missing=False)
    first = client.app[REGISTRY].meta
    assert first is not None and first.window is not None and first.window.warm_start_of is None
    # The newest label used is a live decision's (clicked or not), matured, and recent.
    assert LABEL_HORIZON_S <= freshness_s(first, clock.ms) <= TARGET_S
    scraped = gauge(await (await client.get("/metrics")).text())
    assert scraped == pytest.approx(freshness_s(first, clock.ms))

    # Ten hours later: the synthetic traffic of those hours and a few live decisions arrived.
    before = clock.ms
    clock.ms = START_TS + 58 * HOUR_MS
    arrive(raw, synthetic, before, clock.ms)
    await live_traffic(client, clock, "b")
    young = clock.ms  # decisions from here on are younger than their label window
    arrive(raw, synthetic, clock.ms, clock.ms + 5 * 60_000)
    clock.advance(LABEL_HORIZON_S + 60)
    await _locked_retrain(client.app, source="retrain", only_if_missing=False)
    second = client.app[REGISTRY].meta
    assert second is not None and second.window is not None
    assert second.window.warm_start_of == first.version  # continued the champion
    assert second.window.label_horizon_ts <= clock.ms - LABEL_HORIZON_S * 1000
    assert second.window.label_horizon_ts >= young - 60_000  # the live decisions are in
    assert LABEL_HORIZON_S <= freshness_s(second, clock.ms) <= TARGET_S
    assert gauge(await (await client.get("/metrics")).text()) <= TARGET_S


def _seen_champion(decisions: list[dict[str, Any]], events: list[dict[str, Any]]) -> TrainResult:
    """A model fitted on every row, the holdout included: on that holdout nothing beats it."""
    dataset = build_dataset(decisions, events)
    params = {**DEFAULT_PARAMS, "num_threads": 1, "min_data_in_leaf": 5, "num_leaves": 63}
    names = list(dataset.feature_names)
    booster = lgb.train(params, lgb.Dataset(dataset.X, dataset.y, feature_name=names), 100)
    text = with_tags(booster.model_to_string(), features_version=FEATURES_VERSION)
    return TrainResult(text, dataset.feature_names, FEATURES_VERSION, evaluate(text, dataset), 100)


async def test_a_worse_candidate_is_refused_by_the_gate(
    redis_url: str, raw: redis.Redis, small: SyntheticLog
) -> None:
    now = START_TS + 48 * HOUR_MS
    arrive(raw, small, 0, now)
    store, registry = RedisStore(redis_url), ModelRegistry()
    try:
        champion = await publish(
            store,
            _seen_champion(small.decisions, small.events),
            created_ts=now,
            source="test",
        )
        await registry.refresh(store)
        report = await retrain(store, registry, now_ms=now + HOUR_MS)
        assert not report.published and report.model is None
        assert report.current_metrics is not None
        assert report.metrics["auc"] < report.current_metrics["auc"]
        assert report.reason.startswith(f"kept {champion.version} (candidate AUC ")
        assert "champion" in report.reason
        assert await store.current_model_version() == champion.version
    finally:
        await store.close()


async def test_training_reads_only_matured_labels(
    redis_url: str, raw: redis.Redis, small: SyntheticLog
) -> None:
    # Everything was logged, but "now" is 5 min after the newest decision: its label and those
    # of the 5 min before it are still open and must not be trained on as "no click".
    newest = max(d["received_ts"] for d in small.decisions)
    arrive(raw, small, 0, newest)
    store, registry = RedisStore(redis_url), ModelRegistry()
    try:
        now = newest + 5 * 60_000
        report = await retrain(store, registry, now_ms=now, min_rows=100)
        assert report.published and report.window is not None
        assert report.window.label_horizon_ts <= now - LABEL_HORIZON_S * 1000
        immature = [
            d
            for d in small.decisions
            if d["received_ts"] + LABEL_HORIZON_S * 1000 > now and d["trigger"] in INTENT_TRIGGERS
        ]
        assert immature  # the test has something to leave out
        everything = build_dataset(small.decisions, small.events)
        assert report.rows == len(everything) - len(immature)
        assert report.model is not None
        assert await store.current_model_version() == report.model.version
    finally:
        await store.close()
