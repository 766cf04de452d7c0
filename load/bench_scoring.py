"""Micro-batched vs single-row scoring under 200 concurrent requests, in one run.

Prints rows/s of one `predict` per request (stock `Booster.predict`, and `IntentModel`'s
single-row fast path) against the `MicroBatcher` (the service's path), and the latency batching
adds (time from `score()` to its answer, p50/p99).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import lightgbm as lgb
import numpy as np

from intent.features import FEATURE_NAMES
from intent.model import IntentModel
from refreshd.live.batcher import MicroBatcher
from synth.bootstrap import bootstrap

CONCURRENCY = 200
ROUNDS = 25


def run(concurrency: int = CONCURRENCY, rounds: int = ROUNDS, seed: int = 0) -> dict[str, Any]:
    """Return model rows/s single vs micro-batched and the latency batching adds."""
    result = bootstrap(users=80, days=1, seed=seed)
    model = IntentModel.from_text(result.model_text, version="bench")
    rows = np.random.default_rng(seed).uniform(0, 50, size=(concurrency, len(FEATURE_NAMES)))

    stock = lgb.Booster(model_str=result.model_text)
    t0 = time.perf_counter()
    for _ in range(rounds):
        for r in rows:
            stock.predict(r.reshape(1, -1), num_threads=1)
    stock_rps = rounds * concurrency / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    for _ in range(rounds):
        for r in rows:
            model.predict_one(r)
    single_rps = rounds * concurrency / (time.perf_counter() - t0)

    async def batched() -> MicroBatcher:
        batcher = MicroBatcher(lambda: model, max_batch=256, max_wait_ms=1.0)
        for _ in range(rounds):
            await asyncio.gather(*(batcher.score(r) for r in rows))
        return batcher

    batcher = asyncio.run(batched())
    ms = np.array(batcher.latencies_s) * 1000
    batched_rps = batcher.rows / batcher.predict_s
    return {
        "concurrency": concurrency,
        "stock_single_row_rows_per_s": round(stock_rps),
        "single_row_rows_per_s": round(single_rps),
        "fast_single_row_vs_stock": round(single_rps / stock_rps, 1),
        "micro_batched_rows_per_s": round(batched_rps),
        "rows_per_batch": round(batcher.rows / batcher.batches, 1),
        "speedup_per_row": round(batched_rps / single_rps, 1),
        "speedup_per_row_vs_stock": round(batched_rps / stock_rps, 1),
        "batching_latency_ms": {
            "p50": round(float(np.percentile(ms, 50)), 3),
            "p99": round(float(np.percentile(ms, 99)), 3),
        },
        "targets": "speedup over stock single-row ≥ 10×, p99 added latency ≤ 3 ms",
        "note": "rows/s count model time; latency is from score() to the answer inside the batcher",
    }


if __name__ == "__main__":
    print(run())
