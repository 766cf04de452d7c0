"""What model monitoring costs: per decision, per scrape, per calibration run, in one run.

Per decision: `Monitor.scored` + `aged` + `decided` on real feature vectors (the synthetic log's,
with their real share of missing values) against the one labelled counter increment a decision
cost before (`labels(reason, refresh).inc()`). Per scrape: the PSI of a full window. Per
calibration run: decoding the logs' JSON rows and `refreshd.live.calibration.measure` on them,
per 10 000 decisions.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from prometheus_client import Counter

from intent.dataset import build_dataset
from intent.features import MISSING
from intent.model import IntentModel
from intent.train import train
from refreshd import constants as C
from refreshd.core.messages import DecideResponse
from refreshd.live.calibration import MATURITY_S, measure
from refreshd.live.monitor import Monitor
from refreshd.live.registry import ModelMeta, ModelRegistry
from refreshd.metrics import Metrics
from synth.eventlog import generate

_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder()


def run(users: int = 300, days: int = 3, seed: int = 0) -> dict[str, Any]:
    """Return µs per decision, ms per scrape and seconds per 10 000 calibrated decisions."""
    log = generate(users=users, days=days, seed=seed)
    dataset = build_dataset(log.decisions, log.events)
    result = train(dataset, seed=seed)
    model = IntentModel.from_text(result.model_text, version="bench")
    vectors = [list(map(float, row)) for row in dataset.X]
    scores = model.predict(dataset.X).tolist()
    # Ages as the flow logs them: a tenth of a second, None for a missing feature.
    ages = [[None if x == MISSING else round(abs(x) * 60.0, 1) for x in v] for v in vectors]
    answer = DecideResponse("d", True, "intent", 0.5, 0.3, None, "bench", 60, [], False, [])

    metrics, registry = Metrics(), ModelRegistry()
    now = int(dataset.ts.max()) + MATURITY_S * 1000
    registry.meta = ModelMeta(
        version="bench",
        created_ts=now,
        source="bench",
        features_version=dataset.features_version,
        feature_names=list(dataset.feature_names),
        metrics=result.metrics,
    )
    monitor = Monitor(metrics, registry, lambda: now, window=C.PSI_WINDOW)
    t0 = time.perf_counter()
    for v, s, a in zip(vectors, scores, ages, strict=True):
        monitor.scored(v, s, "bench")
        monitor.aged(a)
        monitor.decided(answer)
    monitor_us = (time.perf_counter() - t0) / len(vectors) * 1e6
    before = Counter("bench_decisions", "the counter before", ["reason", "refresh"], registry=None)
    t0 = time.perf_counter()
    for _ in vectors:
        before.labels(answer.reason, str(answer.refresh).lower()).inc()
    counter_us = (time.perf_counter() - t0) / len(vectors) * 1e6

    t0 = time.perf_counter()
    for _ in range(20):
        monitor.update()
    scrape_ms = (time.perf_counter() - t0) / 20 * 1000

    rows = [
        {**d, "features": vectors[i], "model_version": "bench", "received_ts": int(d["ts"])}
        for i, d in enumerate(
            {str(r["decision_id"]): r for r in log.decisions}[did] for did in dataset.decision_ids
        )
    ]
    decision_blobs = [_json.encode(r) for r in rows]
    event_blobs = [_json.encode(e) for e in log.events]
    t0 = time.perf_counter()
    decoded = [_decode.decode(b) for b in decision_blobs]
    events = [_decode.decode(b) for b in event_blobs]
    [calibration] = measure(decoded, events, now_ms=now, models={"bench": model})
    calibrate_s = time.perf_counter() - t0
    missing = sum(v == MISSING for row in vectors for v in row) / len(vectors)
    return {
        "decisions": len(vectors),
        "missing_per_vector": round(missing, 1),
        "monitor_us_per_decision": round(monitor_us, 2),
        "before_us_per_decision": round(counter_us, 2),
        "psi_window": C.PSI_WINDOW,
        "scrape_update_ms": round(scrape_ms, 3),
        "calibrated_decisions": calibration.rows,
        "events": len(events),
        "calibration_s_per_10k_decisions": round(calibrate_s / calibration.rows * 10_000, 2),
        "calibration_ratio": round(calibration.ratio, 3),
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
