"""Model monitoring: score drift (PSI), missing features, model age, online calibration."""

from __future__ import annotations

import asyncio
import math
import re

import pytest

from intent.features import FEATURE_NAMES, MISSING
from intent.train import TrainResult
from refreshd.core.ladder import NODE_OF_REASON
from refreshd.core.messages import Reason
from refreshd.core.policy import NODE_TYPES
from refreshd.http.keys import REGISTRY, SERVICE, STORE
from refreshd.live.calibration import MATURITY_S, matured
from refreshd.live.monitor import MAX_WINDOWS, PSI_MIN_SCORES, Monitor
from refreshd.live.registry import ModelMeta, ModelRegistry, publish
from refreshd.live.service import Service
from refreshd.metrics import Metrics
from refreshd.settings import Settings
from refreshd.store.memory import MemoryStore
from synth.bootstrap import bootstrap
from synth.eventlog import START_TS
from tests.support import FakeClock, MakeClient, alert_rules, metric_value, replay, replay_items

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def shipped_model() -> TrainResult:
    """The model a fresh service trains on the synthetic log (refreshd.http.app's bootstrap)."""
    return bootstrap()


def meta(version: str, created_ts: int, quantiles: list[float] | None = None) -> ModelMeta:
    metrics = {} if quantiles is None else {"score_quantiles": quantiles}
    return ModelMeta(
        version=version,
        created_ts=created_ts,
        source="test",
        features_version="f",
        feature_names=list(FEATURE_NAMES),
        metrics=metrics,
    )


def make_monitor(window: int = 1000) -> tuple[Monitor, Metrics, ModelRegistry, FakeClock]:
    metrics, registry, clock = Metrics(), ModelRegistry(), FakeClock(START_TS)
    return Monitor(metrics, registry, clock, window=window), metrics, registry, clock


def scrape(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metric_value(metrics.render().decode(), name, **labels)


async def live_service(
    model: TrainResult, clock: FakeClock, **settings: object
) -> tuple[Service, Metrics, str]:
    """Return a service on a memory store with `model` published and loaded, and its version."""
    store, metrics = MemoryStore(), Metrics()
    service = Service(
        store,
        Settings(user_rate_per_s=0, bootstrap_model=False).replace(**settings),
        metrics,
        clock,
    )
    version = (await publish(store, model, created_ts=clock.ms, source="test")).version
    await service.registry.refresh(store)
    return service, metrics, version


def psi_threshold() -> float:
    """Return the PSI above which docs/alerts.yml's drift alert fires."""
    [rule] = [r for r in alert_rules() if "refreshd_score_psi" in r["expr"]]
    found = re.search(r">\s*([0-9.]+)\s*$", rule["expr"])
    assert found is not None, rule["expr"]
    return float(found.group(1))


# --- per decision ------------------------------------------------------------------------------


def test_missing_features_are_counted_per_feature_and_per_scored_vector() -> None:
    monitor, metrics, _, _ = make_monitor()
    first = [1.0] * len(FEATURE_NAMES)
    first[0] = first[3] = MISSING
    second = [1.0] * len(FEATURE_NAMES)
    second[0] = MISSING
    monitor.scored(first, 0.5, "m1")
    monitor.scored(second, 0.5, "m1")
    assert scrape(metrics, "refreshd_features_scored_total") == 2
    assert scrape(metrics, "refreshd_feature_missing_total", feature=FEATURE_NAMES[0]) == 2
    assert scrape(metrics, "refreshd_feature_missing_total", feature=FEATURE_NAMES[3]) == 1
    assert scrape(metrics, "refreshd_feature_missing_total", feature=FEATURE_NAMES[1]) == 0


def test_feature_ages_fill_cumulative_buckets_per_feature() -> None:
    monitor, metrics, _, _ = make_monitor()
    n = len(FEATURE_NAMES)
    young: list[float | None] = [5.0] * n
    old: list[float | None] = [7200.0] * n
    young[1] = old[1] = None  # a context feature: never observed
    monitor.aged(young)
    monitor.aged(old)
    monitor.aged([1.0] * (n - 1))  # another features version's vector: ignored
    name, feature = "refreshd_feature_age_seconds", FEATURE_NAMES[0]
    assert scrape(metrics, f"{name}_count", feature=feature) == 2
    assert scrape(metrics, f"{name}_sum", feature=feature) == 7205.0
    assert scrape(metrics, f"{name}_bucket", feature=feature, le="10.0") == 1
    assert scrape(metrics, f"{name}_bucket", feature=feature, le="3600.0") == 1
    assert scrape(metrics, f"{name}_bucket", feature=feature, le="21600.0") == 2
    assert scrape(metrics, f"{name}_bucket", feature=feature, le="+Inf") == 2
    assert scrape(metrics, f"{name}_count", feature=FEATURE_NAMES[1]) is None


def test_the_score_window_is_bounded_and_old_versions_are_dropped() -> None:
    monitor, *_ = make_monitor(window=100)
    for i in range(250):
        monitor.scored([0.0] * len(FEATURE_NAMES), i / 250, "m1")
    assert len(monitor.windows["m1"]) == 100 and monitor.windows["m1"][0] == 150 / 250
    for n in range(2, MAX_WINDOWS + 2):
        monitor.scored([0.0] * len(FEATURE_NAMES), 0.5, f"m{n}")
    assert len(monitor.windows) == MAX_WINDOWS and "m1" not in monitor.windows


def test_every_reason_names_a_ladder_node() -> None:
    reasons = Reason.__args__  # type: ignore[attr-defined]
    assert set(NODE_OF_REASON) == set(reasons)
    assert set(NODE_OF_REASON.values()) <= set(NODE_TYPES)
    assert NODE_OF_REASON["no_intent"] == "intent"


# --- before each scrape ------------------------------------------------------------------------


def test_psi_waits_for_enough_scores_and_follows_the_live_version() -> None:
    monitor, metrics, registry, clock = make_monitor(window=2 * PSI_MIN_SCORES)
    reference = [i / 100 for i in range(101)]
    registry.meta = meta("m1", clock.ms, reference)
    zero = [0.0] * len(FEATURE_NAMES)
    for i in range(PSI_MIN_SCORES - 1):
        monitor.scored(zero, (i % 100) / 100 + 0.005, "m1")
    assert scrape(metrics, "refreshd_score_psi", model_version="m1") is None
    monitor.scored(zero, 0.5, "m1")
    assert scrape(metrics, "refreshd_score_psi", model_version="m1") == pytest.approx(0, abs=0.02)
    registry.meta = meta("m2", clock.ms, reference)  # a new model: m1's gauge goes, m2 waits
    text = metrics.render().decode()
    assert "refreshd_score_psi{" not in text


def test_no_psi_for_a_model_without_training_scores() -> None:
    monitor, metrics, registry, clock = make_monitor(window=100)
    registry.meta = meta("old", clock.ms)  # published before the scores were recorded
    for _ in range(200):
        monitor.scored([0.0] * len(FEATURE_NAMES), 0.5, "old")
    assert scrape(metrics, "refreshd_score_psi", model_version="old") is None


def test_model_age_is_nan_without_a_model_and_counts_from_its_creation() -> None:
    _, metrics, registry, clock = make_monitor()
    age = scrape(metrics, "refreshd_model_age_seconds")
    assert age is not None and math.isnan(age)
    registry.meta = meta("m1", clock.ms - 5_000)
    clock.advance(3600)
    assert scrape(metrics, "refreshd_model_age_seconds") == 3605


# --- the drift acceptance test -----------------------------------------------------------------


async def test_psi_crosses_the_alert_threshold_when_the_cohort_shifts(
    shipped_model: TrainResult,
) -> None:
    # Users like the ones the model was trained on, then a cohort five times less active (fewer
    # sessions: emptier event windows, older last clicks), through one worker's service.
    like, _ = replay_items(users=40, days=2, seed=21)
    shifted, _ = replay_items(
        users=250, days=2, seed=22, activity=0.2, start_ts=START_TS + 2 * DAY_MS, user_prefix="s"
    )
    clock = FakeClock(like[0][0])
    service, metrics, version = await live_service(shipped_model, clock, psi_window=800)

    answers = await replay(service, clock, like)
    assert sum(a.model_version == version for a in answers) >= 800  # the window is full
    # Logged decisions' feature ages were observed (the age histogram, from the log rows).
    counts = [scrape(metrics, "refreshd_feature_age_seconds_count", feature=f) or 0
              for f in FEATURE_NAMES]  # fmt: skip
    assert 0 < max(counts) <= len(answers)
    stable = scrape(metrics, "refreshd_score_psi", model_version=version)
    answers = await replay(service, clock, shifted)
    assert sum(a.model_version == version for a in answers) >= 800  # ... of the new cohort
    drifted = scrape(metrics, "refreshd_score_psi", model_version=version)
    threshold = psi_threshold()
    assert stable is not None and drifted is not None
    assert stable < threshold / 2 < threshold < drifted, (stable, drifted)


# --- calibration -------------------------------------------------------------------------------


async def test_calibration_is_near_one_on_a_stationary_stream(shipped_model: TrainResult) -> None:
    items, _ = replay_items(users=60, days=2, seed=23)
    clock = FakeClock(items[0][0])
    service, metrics, version = await live_service(shipped_model, clock)
    await replay(service, clock, items)
    clock.advance(MATURITY_S)  # the last decisions' labels are final
    [result] = await service.monitor.calibrate(service.store)
    assert result.model_version == version and result.rows >= 1000
    assert 0.9 <= result.ratio <= 1.1, result
    assert scrape(metrics, "refreshd_calibration_ratio", model_version=version) == result.ratio


def test_only_final_labels_of_scored_decisions_count() -> None:
    now = START_TS + DAY_MS
    final = now - MATURITY_S * 1000
    rows = [
        {"decision_id": "ok", "ts": final, "model_version": "m", "features": [0.0]},
        {"decision_id": "young", "ts": final + 1, "model_version": "m", "features": [0.0]},
        {"decision_id": "unread", "ts": START_TS - 1, "model_version": "m", "features": [0.0]},
        {"decision_id": "fallback", "ts": final, "features": [0.0]},
        {
            "decision_id": "coin",
            "ts": final,
            "model_version": "explore",
            "explore": True,
            "features": [0.0],
        },
        {"decision_id": "no_vector", "ts": final, "model_version": "m"},
    ]
    got = matured(rows, now_ms=now, events_from_ms=START_TS)
    assert {v: [d["decision_id"] for d in ds] for v, ds in got.items()} == {"m": ["ok"]}


async def test_the_scheduled_job_sets_the_calibration_gauge(
    make_client: MakeClient, shipped_model: TrainResult
) -> None:
    # The app's job reads the logs from Valkey (every shard) and exports the gauge by itself.
    items, _ = replay_items(users=30, days=1, seed=24)
    clock = FakeClock(items[0][0])
    client = await make_client(clock=clock, user_rate_per_s=0, calibration_interval_s=0.5)
    store, registry = client.app[STORE], client.app[REGISTRY]
    version = (await publish(store, shipped_model, created_ts=clock.ms, source="test")).version
    await registry.refresh(store)
    await replay(client.app[SERVICE], clock, items)
    clock.advance(MATURITY_S)
    for _ in range(300):  # a run every 0.5 s: the wait is bounded, nothing is timed
        text = await (await client.get("/metrics")).text()
        ratio = metric_value(text, "refreshd_calibration_ratio", model_version=version)
        if ratio is not None:
            break
        await asyncio.sleep(0.1)
    assert ratio is not None and 0.7 < ratio < 1.4
