"""Micro-benchmark of experiments: assignments/s, stats updates/s, report latency.

`python -m load.bench_experiments` prints one run's numbers. Not a test: nothing is asserted.
When the `growthbook` SDK is installed (test extras) it also times the SDK's own experiment
runner on the same ids, so the ratio says what GrowthBook-identical assignment costs here.
"""

from __future__ import annotations

import random
import time
from typing import Any

from refreshd.core.experiments import assign, parse_experiment
from refreshd.core.expstats import (
    UserTotals,
    apply_delta,
    build_report,
    delta_fields,
    stats_from_users,
)

BODY = {
    "seed": "thr-2026",
    "coverage": 0.9,
    "namespace": ["home", 0.0, 0.8],
    "status": "running",
    "weights": [0.4, 0.15, 0.15, 0.15, 0.15],
    "variants": [{"key": k} for k in ("control", "t20", "t30", "t40", "t50")],
}


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds) if seconds > 0 else float("inf")


def _sdk_rate(ids: list[str]) -> float | None:
    try:
        from growthbook import Experiment, GrowthBook
    except ImportError:
        return None
    exp: Experiment[int] = Experiment(
        key="bench",
        variations=list(range(5)),
        weights=BODY["weights"],  # type: ignore[arg-type]
        coverage=0.9,
        namespace=("home", 0.0, 0.8),
        hashAttribute="user_id",
        hashVersion=2,
        seed="thr-2026",
    )
    gb = GrowthBook(attributes={})
    t0 = time.perf_counter()
    for uid in ids:
        gb.set_attributes({"user_id": uid})
        gb.run(exp)
    dt = time.perf_counter() - t0
    gb.destroy()
    return _rate(len(ids), dt)


def run(n_ids: int = 50_000, seed: int = 1) -> dict[str, Any]:
    """Return one run's throughput numbers."""
    rng = random.Random(seed)
    cfg = parse_experiment("bench", BODY)
    ids = [f"{rng.getrandbits(64):016x}" for _ in range(n_ids)]

    t0 = time.perf_counter()
    for uid in ids:
        assign("bench", cfg, uid)
    assign_rate = _rate(n_ids, time.perf_counter() - t0)

    totals = [
        UserTotals(
            refreshes=rng.randint(0, 9), clicks=rng.randint(0, 4), impressions=rng.randint(0, 20)
        )
        for _ in range(n_ids // 10)
    ]
    t0 = time.perf_counter()
    for t in totals:
        delta_fields(None, t)
    delta_rate = _rate(len(totals), time.perf_counter() - t0)
    stats = stats_from_users([])
    t0 = time.perf_counter()
    for t in totals:
        stats = apply_delta(stats, None, t)
    apply_rate = _rate(len(totals), time.perf_counter() - t0)

    per_variant = {v.key: stats for v in cfg.variants}
    t0 = time.perf_counter()
    reps = 50
    for _ in range(reps):
        build_report("bench", cfg, per_variant)
    report_ms = round((time.perf_counter() - t0) / reps * 1000, 3)

    out: dict[str, Any] = {
        "assign_per_s": assign_rate,
        "delta_fields_per_s": delta_rate,
        "apply_delta_per_s": apply_rate,
        "report_5_variants_5_metrics_ms": report_ms,
    }
    sdk = _sdk_rate(ids)
    if sdk is not None:
        out["growthbook_sdk_run_per_s"] = sdk
        out["assign_vs_sdk_speedup"] = round(assign_rate / sdk, 2)
    return out


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:34} {value}")
