"""Decide latency with and without a shadow (challenger) model, in one run.

One `refreshd serve` worker on its own embedded Valkey, a bootstrap champion and a second
model trained on another seed as the challenger. The same open-model decide load runs with
the shadow off and on, alternating, so the machine's drift hits both alike. Shadow scoring is
off the decision's path by design (a queue drained by a background task); this measures what
it still costs the decisions: the event loop's share of the background work and the CPU.

    python -m load shadow [--rate 400] [--duration 10] [--rounds 2]
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from load.mix import decide_only
from load.openloop import run_open
from load.servers import cpu_seconds, refreshd
from refreshd.live.registry import ModelMeta, model_version, publish
from refreshd.store.embedded import EmbeddedValkey
from refreshd.store.redis import RedisStore
from synth.bootstrap import bootstrap

# Long enough for every worker's config poll (1 s) to pick a start or stop up.
SETTLE_S = 2.5


async def _seed(url: str) -> str:
    """Publish a champion and store a challenger; return the challenger's version."""
    store = RedisStore(url)
    try:
        now = time.time_ns() // 1_000_000
        await publish(store, bootstrap(seed=0), created_ts=now, source="bench")
        challenger = bootstrap(seed=1)
        version = model_version(challenger, now + 1)
        meta = ModelMeta(version=version, created_ts=now + 1, source="bench",
                         features_version=challenger.features_version,
                         feature_names=list(challenger.feature_names), metrics={})  # fmt: skip
        await store.put_model(version, challenger.model_text, msgspec.json.encode(meta))
        return version
    finally:
        await store.close()


def _call(url: str, method: str) -> Any:
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=60) as resp:
        raw = resp.read()
        return (
            json.loads(raw)
            if raw and resp.headers.get_content_type() == "application/json"
            else raw
        )


def run(
    *, rate: float = 400.0, duration_s: float = 10.0, rounds: int = 2,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:  # fmt: skip
    """Measure decide latency with the shadow off and on; return both and the report."""
    phases: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="refreshd-shadow-") as data:
        valkey = EmbeddedValkey(Path(data))
        url = valkey.start()
        try:
            log("== training champion and challenger (bootstrap, two seeds)")
            challenger = asyncio.run(_seed(url))
            env = {"REFRESHD_BOOTSTRAP_MODEL": "false", "REFRESHD_RETRAIN_INTERVAL_S": "0"}
            with refreshd(1, env=env, redis_url=url) as (base, pid):
                mix = decide_only(seed=3)
                asyncio.run(run_open(base, mix.request, rate=rate, duration_s=2.0))  # warm-up
                shadow = f"{base}/v1/models/{challenger}/shadow"
                for i in range(rounds):
                    for phase in ("off", "on"):
                        if phase == "on":
                            _call(shadow, "POST")
                        elif i > 0:  # the first "off" runs before any shadow was started
                            _call(shadow, "DELETE")
                        time.sleep(SETTLE_S)
                        cpu0 = cpu_seconds(pid)
                        res = asyncio.run(
                            run_open(base, mix.request, rate=rate, duration_s=duration_s)
                        )
                        summary = res.summary() | {
                            "cpu_s_per_1k": 1000 * (cpu_seconds(pid) - cpu0) / max(1, res.sent)
                        }
                        phases[phase].append(summary)
                        log(f"   round {i + 1} shadow {phase}: p50 {summary['p50_ms']:.2f} ms, "
                            f"p99 {summary['p99_ms']:.2f} ms, {summary['achieved_rps']:.0f} rps, "
                            f"{summary['cpu_s_per_1k']:.3f} CPU s per 1000 decisions")  # fmt: skip
                report = _call(f"{shadow}-report", "GET")
                metrics = _call(f"{base}/metrics", "GET").decode()
        finally:
            valkey.stop()
    dropped = next(
        (float(line.split()[-1]) for line in metrics.splitlines()
         if line.startswith("refreshd_shadow_dropped_total")), 0.0,
    )  # fmt: skip
    out = {
        "rate": rate,
        "duration_s": duration_s,
        "off": phases["off"],
        "on": phases["on"],
        "median_p99_ms": {p: _median([s["p99_ms"] for s in v]) for p, v in phases.items()},
        "median_p50_ms": {p: _median([s["p50_ms"] for s in v]) for p, v in phases.items()},
        "shadowed_decisions": report["decisions"],
        "shadow_dropped": dropped,
        "agreement": report["agreement"],
    }
    log(f"== shadow on/off, median of {rounds} rounds at {rate:.0f} rps: p50 "
        f"{out['median_p50_ms']['on']:.2f}/{out['median_p50_ms']['off']:.2f} ms, p99 "
        f"{out['median_p99_ms']['on']:.2f}/{out['median_p99_ms']['off']:.2f} ms; "
        f"{report['decisions']} decisions shadowed, {dropped:.0f} dropped")  # fmt: skip
    return out


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return (s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, default=str))
