"""Soak: hold a steady open-model load for minutes and watch memory of service and Valkey.

The promise under test: memory stays bounded — logs are capped streams, idempotency marks and
directives expire, per-user state is bounded — so a service left running does not grow without
limit. Prints one line per interval and a summary of growth between the second interval and the
last (the first includes warm-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from intent.events import RECENT_EVENTS_MAX
from load.mix import Mix
from load.openloop import run_open
from load.servers import _tree, is_valkey, refreshd
from load.wrk import find_wrk, run_wrk
from refreshd.store.embedded import EmbeddedValkey
from refreshd.store.protocol import LOG_DECISIONS, LOG_EVENTS, all_tags, shard_key


def rss_mb(pid: int, *, tree: bool = True) -> float:
    """Resident memory of a process tree in MiB (Valkey excluded; it is measured by INFO);
    with `tree=False`, of the process alone."""
    total_kb = 0
    for p in _tree(pid) if tree else [pid]:
        with contextlib.suppress(OSError):
            if is_valkey(p):
                continue
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def _longest(r: redis.Redis, stream: str) -> int:
    """The longest shard of a log stream (each shard is capped at the log maxlen)."""
    return max(int(r.xlen(shard_key(stream, tag))) for tag in all_tags())


@dataclasses.dataclass
class Sample:
    t_s: float
    service_rss_mb: float  # the server's process tree: the worker and the retraining process
    worker_rss_mb: float  # the worker alone (a one-worker server serves in its own process)
    valkey_used_mb: float
    keys: int
    log_events: int  # entries in the longest shard of log:events
    log_decisions: int
    p99_ms: float
    errors: int
    achieved_rps: float


def prefill(base: str, users: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Fill every user's recent-events window to its cap with wrk's event batches.

    A soak from an empty store sees per-user state grow for as long as the windows fill (at
    the soak's rates, an hour or more), so its memory cannot be flat within 30 minutes. After
    this, what a user holds is at its bound, and growth left in the soak is what is not bounded
    per user (the 24 h idempotency marks in Valkey).
    """
    wrk = find_wrk(install=True)
    if wrk is None:
        raise SystemExit("--prefill needs wrk (.ci/wrk says how to install it)")
    probe = run_wrk(base, mode="events", duration_s=3, connections=32, users=users, wrk=wrk)
    needed = users * RECENT_EVENTS_MAX / 8 * 1.5  # 8 events a batch; random users: 1.5x
    duration = max(round(needed / max(probe.rps, 1.0)), 1)  # wrk takes whole seconds
    log(f"  prefill: {needed:.0f} event batches at {probe.rps:.0f}/s, {duration:.0f} s")
    run = run_wrk(base, mode="events", duration_s=duration, connections=32, users=users, wrk=wrk)
    return {"batches": run.requests + probe.requests, "errors": run.status_errors, "s": duration}


def measured_capacity(base: str, users: int, duration_s: float = 10.0) -> float:
    """The realistic mix's rate with wrk (closed loop, 64 connections) against `base`."""
    wrk = find_wrk(install=True)
    if wrk is None:
        raise SystemExit("--share needs wrk (.ci/wrk says how to install it)")
    return run_wrk(base, mode="realistic", duration_s=duration_s, users=users, wrk=wrk).rps


def soak(
    *,
    rate: float,
    minutes: float,
    interval_s: float = 60.0,
    log_maxlen: int = 5_000,
    users: int = 10_000,
    fill: bool = False,
    share: float | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the soak and return the samples and the growth summary (with `fill`, after
    `prefill`). With `share`, the rate is that share of the capacity `wrk` measures on the
    realistic mix against this server and its state, just before the soak."""
    filled: dict[str, Any] | None = None
    capacity: float | None = None
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="refreshd-soak-") as data:
        valkey = EmbeddedValkey(Path(data))
        url = valkey.start()
        env = {"REFRESHD_LOG_MAXLEN": str(log_maxlen), "REFRESHD_BOOTSTRAP_MODEL": "true"}
        try:
            with refreshd(1, env=env, redis_url=url) as (base, pid), redis.Redis.from_url(url) as r:
                if fill:
                    filled = prefill(base, users, log)
                if share is not None:
                    capacity = measured_capacity(base, users)
                    rate = share * capacity
                    log(f"  capacity (wrk, realistic mix): {capacity:.0f} rps; soak at {rate:.0f}")
                mix = Mix(users=users, seed=7, location_enabled=True)
                start = time.monotonic()
                rounds = max(1, round(minutes * 60 / interval_s))
                for i in range(rounds):
                    res = asyncio.run(run_open(base, mix.request, rate=rate, duration_s=interval_s))
                    info: Any = r.info("memory")
                    s = Sample(
                        t_s=round(time.monotonic() - start, 1),
                        service_rss_mb=round(rss_mb(pid), 1),
                        worker_rss_mb=round(rss_mb(pid, tree=False), 1),
                        valkey_used_mb=round(info["used_memory"] / 2**20, 1),
                        keys=int(r.dbsize()),
                        log_events=_longest(r, LOG_EVENTS),
                        log_decisions=_longest(r, LOG_DECISIONS),
                        p99_ms=res.percentile_ms(99),
                        errors=res.errors + res.dropped,
                        achieved_rps=round(res.achieved_rps, 1),
                    )
                    samples.append(s)
                    log(f"  [{i + 1}/{rounds}] {s}")
        finally:
            valkey.stop()
    first = samples[1] if len(samples) > 1 else samples[0]
    last = samples[-1]
    return {
        "rate": rate,
        "capacity_rps": capacity,
        "minutes": minutes,
        "users": users,
        "prefill": filled,
        "log_maxlen": log_maxlen,
        "service_rss_growth_pct": round(
            100 * (last.service_rss_mb - first.service_rss_mb) / first.service_rss_mb, 1
        ),
        "worker_rss_growth_pct": round(
            100 * (last.worker_rss_mb - first.worker_rss_mb) / first.worker_rss_mb, 1
        ),
        "samples": [dataclasses.asdict(s) for s in samples],
        "service_rss_growth_mb": round(last.service_rss_mb - first.service_rss_mb, 1),
        "valkey_growth_mb": round(last.valkey_used_mb - first.valkey_used_mb, 1),
        "streams_capped": last.log_events <= log_maxlen * 1.2
        and last.log_decisions <= log_maxlen * 1.2,
    }
