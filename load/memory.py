"""Bytes per user: in Valkey and in a worker's cache, after a day of typical activity.

`python -m load memory [--users 200] [--scenario client_sim/scenarios/city_commuters.toml]`
starts a one-worker service on its own embedded Valkey and has the simulator's devices
(`client_sim.http_mode.run_devices`) live one scenario day each against it: their visits,
decides, event batches, location fixes and acknowledgements, compressed in time (the
timestamps are the day's, shifted to end by now). Then it reads `MEMORY USAGE` of every key and
groups the keys of each user (state, directives, decision index, batch marks) apart from the
shared structures (the capped log streams, experiment statistics, configuration). A worker's
cache holds each user's encoded state; its cost per user is measured with tracemalloc by
filling a `UserCache` with the states read back from Valkey.

The log streams are shared and capped (REFRESHD_LOG_MAXLEN entries per shard), so they cost
per logged row, not per user: they are reported per entry.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import redis

from client_sim.http_mode import run_devices
from client_sim.scenario import load_scenario
from load.servers import refreshd
from refreshd.live.usercache import UserCache
from refreshd.store.embedded import EmbeddedValkey

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIO = ROOT / "client_sim" / "scenarios" / "city_commuters.toml"
# Key prefixes of one user's keys (refreshd.store.protocol): `<kind>:{sNN}:<user id>[:...]`.
USER_KINDS = {"u": "state", "dir": "directives", "ud": "decision index", "b": "batch marks"}


def _owner(key: str) -> tuple[str, str] | None:
    """(kind, rest) of a per-user key, None for a shared one. `rest` is the user id, and for
    a batch mark `<user id>:<batch id>` (both may hold colons: `batch_owner` splits it)."""
    kind, sep, rest = key.partition(":")
    if kind not in USER_KINDS or not sep or not rest.startswith("{s"):
        return None
    return USER_KINDS[kind], rest.partition(":")[2]


def batch_owner(rest: str, users: set[str]) -> str:
    """The user of a batch mark: the longest known user id before one of its colons."""
    cuts = [i for i, ch in enumerate(rest) if ch == ":"]
    for i in reversed(cuts):
        if rest[:i] in users:
            return rest[:i]
    return rest.split(":", 1)[0]


def _percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0


def cache_bytes_per_user(states: list[tuple[bytes, int]]) -> float:
    """Bytes a `UserCache` holds per user (its entry, user id and state blob), by tracemalloc.

    The ids and blobs are copied inside the trace: in a worker they belong to the cache.
    """
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache = UserCache(max_users=len(states) + 1)
    for i, (blob, version) in enumerate(states):
        cache.put_blob(f"user-{i:06d}", bytes(memoryview(blob)), version, [])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / max(len(states), 1)


def read_valkey(url: str) -> dict[str, Any]:
    """Group `MEMORY USAGE` of every key by user and by shared structure."""
    per_user: dict[str, int] = collections.Counter()
    by_kind: dict[str, int] = collections.Counter()
    shared: dict[str, int] = collections.Counter()
    log_entries = 0
    states: list[tuple[bytes, int]] = []
    marks: list[tuple[str, int]] = []
    with redis.Redis.from_url(url) as r:
        for raw in r.scan_iter(count=1000):
            key = raw.decode()
            size = int(r.memory_usage(key, samples=0) or 0)
            owner = _owner(key)
            if owner is None:
                family = key.split(":", 1)[0]
                shared[family] += size
                if family == "log":
                    log_entries += int(r.xlen(key))
                continue
            kind, rest = owner
            by_kind[kind] += size
            if kind == "batch marks":
                marks.append((rest, size))
                continue
            per_user[rest] += size
            if kind == "state":
                version, blob = r.hmget(key, "v", "s")
                if blob is not None:
                    states.append((blob, int(version or 0)))
        info: Any = r.info("memory")
    known = set(per_user)
    for rest, size in marks:
        per_user[batch_owner(rest, known)] += size
    sizes = list(per_user.values())
    n = len(sizes) or 1
    return {
        "users": len(sizes),
        "valkey_bytes_per_user": {
            "mean": round(sum(sizes) / n),
            "p50": _percentile(sizes, 0.5),
            "p95": _percentile(sizes, 0.95),
            "max": max(sizes, default=0),
        },
        "valkey_bytes_per_user_by_kind_mean": {k: round(v / n) for k, v in by_kind.items()},
        "state_blob_bytes_mean": round(statistics.mean(len(b) for b, _ in states)) if states else 0,
        "shared_bytes": dict(shared),
        "log_entries": log_entries,
        "log_bytes_per_entry": round(shared.get("log", 0) / log_entries) if log_entries else None,
        "valkey_used_memory_mb": round(info["used_memory"] / 2**20, 1),
        "worker_cache_bytes_per_user": round(cache_bytes_per_user(states)),
    }


async def _drive(url: str, scenario: Path, users: int, seed: int) -> dict[str, Any]:
    sc = load_scenario(scenario)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
            async with session.post(url + path, json=body) as resp:
                return resp.status, await resp.json(content_type=None)

        stats = await run_devices(
            sc, post, users=users, hours=24, seed=seed, now_ms=int(time.time() * 1000)
        )
    return {
        "devices": stats.devices,
        "requests": dict(stats.requests),
        "errors": stats.errors,
        "requests_per_user": round(sum(stats.requests.values()) / max(stats.devices, 1), 1),
    }


def measure(*, users: int, scenario: Path, seed: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="refreshd-memory-") as data:
        valkey = EmbeddedValkey(Path(data))
        url = valkey.start()
        try:
            with refreshd(1, redis_url=url) as (base, _pid):
                t0 = time.monotonic()
                driven = asyncio.run(_drive(base, scenario, users, seed))
                driven["seconds"] = round(time.monotonic() - t0, 1)
            return {"scenario": scenario.name, "day": driven, **read_valkey(url)}
        finally:
            valkey.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m load memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=200, help="devices (at most 200)")
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = measure(users=args.users, scenario=args.scenario, seed=args.seed)
    print(json.dumps(out, indent=2))
    return 0 if out["day"]["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
