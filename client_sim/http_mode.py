"""HTTP mode: simulated devices drive a running refreshd over HTTP, concurrently (asyncio).

The same world as fast mode (users, sessions, views, clicks, positions), at a smaller scale,
for end-to-end checks: each device replays its first visits of the scenario day, shifted so
that they end by now (the service rejects timestamps from the future or older than a week),
and paced to a few requests per second so the per-user rate limit never trips. A device
posts its events in batches with retries (same `batch_id`, so a retry is accepted once),
sends a location fix when the app opens, asks `/v1/decide` on open and return, and
acknowledges every directive it received on its next request.

Only loopback services are accepted: this is a test driver, not a load tool for other hosts
(`load/` is). Without `--url` a private `refreshd serve` is started on a free port with its
own embedded Valkey and stopped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from client_sim.behaviour import clicks, freshness
from client_sim.device import Built, build_world
from client_sim.mobility import HOUR_MS
from client_sim.places import build_places
from client_sim.population import EVAL
from client_sim.scenario import Scenario
from client_sim.sessions import U_CLICK, U_ITEM

__all__ = ["HttpStats", "Post", "check_loopback", "run_devices", "run_http_cli"]

Post = Callable[[str, dict[str, Any]], Awaitable[tuple[int, Any]]]
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# A device paces itself below the service's per-user limit (20/s sustained).
MIN_GAP_S = 0.1
RETRIES = 3
MAX_DEVICES = 200


class NotLoopback(ValueError):
    """The URL does not point at this machine."""


def check_loopback(url: str) -> str:
    """Return the URL without a trailing slash; raise NotLoopback for any other host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or (parts.hostname or "") not in LOOPBACK:
        raise NotLoopback(f"refusing {url!r}: HTTP mode only drives a service on loopback")
    return url.rstrip("/")


@dataclasses.dataclass
class HttpStats:
    requests: dict[str, int] = dataclasses.field(default_factory=dict)
    errors: int = 0
    retries: int = 0
    refreshes: int = 0
    decides: int = 0
    directives_received: int = 0
    directives_acked: int = 0
    clicks: int = 0
    devices: int = 0

    def count(self, path: str) -> None:
        self.requests[path] = self.requests.get(path, 0) + 1


class HttpDevice:
    """One simulated phone talking to the service."""

    def __init__(
        self, built: Built, sc: Scenario, post: Post, stats: HttpStats, shift: int
    ) -> None:
        self.b = built
        self.sc = sc
        self.post = post
        self.stats = stats
        self.shift = shift
        self.uid = built.world.user.uid
        self.acks: list[str] = []
        self.seen: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self.batches = 0
        self.last_call = 0.0

    async def call(self, path: str, body: dict[str, Any]) -> Any:
        for attempt in range(RETRIES + 1):
            gap = MIN_GAP_S - (time.monotonic() - self.last_call)
            if gap > 0:
                await asyncio.sleep(gap)
            self.last_call = time.monotonic()
            self.stats.count(path)
            try:
                status, data = await self.post(path, body)
            except (TimeoutError, OSError):
                status, data = 0, None
            if 200 <= status < 300:
                for d in (data or {}).get("directives", []):
                    if d["id"] not in self.seen:
                        self.seen.add(d["id"])
                        self.stats.directives_received += 1
                        self.acks.append(d["id"])
                return data
            if status in (400, 404, 413, 415, 422) or attempt == RETRIES:
                self.stats.errors += 1
                return None
            self.stats.retries += 1
            await asyncio.sleep(0.05 * 2**attempt)
        return None  # pragma: no cover

    def _ack(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.acks:
            body["ack"] = self.acks[:100]
            self.stats.directives_acked += len(body["ack"])
            self.acks = self.acks[100:]
        return body

    async def flush(self) -> None:
        if not self.events:
            return
        batch = f"{self.uid}-b{self.batches}"
        self.batches += 1
        events, self.events = sorted(self.events, key=lambda e: e["ts"]), []
        await self.call("/v1/events", self._ack({"user_id": self.uid, "batch_id": batch,
                                                 "events": events}))  # fmt: skip

    async def run(self, until: int) -> None:
        w = self.b.world
        screen_ts = None
        for si in range(w.first_eval, len(w.sessions)):
            s = w.sessions[si]
            if s.end + self.shift >= until:
                break
            for k, view in enumerate(s.looks):
                ts = view.ts + self.shift
                lat, lng = w.look_lat[si][k], w.look_lng[si][k]
                if view.trigger in ("open", "return"):
                    await self.flush()
                    await self.call("/v1/location", self._ack({
                        "user_id": self.uid, "ts": ts, "lat": lat, "lng": lng,
                        "accuracy_m": self.sc.mobility.gps_accuracy_m}))  # fmt: skip
                    body = {"user_id": self.uid, "ts": ts + 1, "trigger": view.trigger,
                            "slots": list(self.sc.catalogue.slots)}  # fmt: skip
                    if w.user.reports_tz:
                        body["tz_offset_min"] = w.user.tz_offset_min
                    resp = await self.call("/v1/decide", self._ack(body))
                    self.stats.decides += 1
                    if resp and resp.get("refresh"):
                        self.stats.refreshes += 1
                        screen_ts = ts
                        self.events.append({"type": "impression", "ts": ts + 300, "slot": "feed"})
                    self.events.append({"type": view.trigger, "ts": ts})
                age = 8 * HOUR_MS if screen_ts is None else ts - screen_ts
                n = clicks(  # the HTTP device does not model the fold: every view is in the feed
s.latent, freshness(age, 0.0, self.sc.clicks), float(s.u[k][U_CLICK]),
                           self.sc.clicks)  # fmt: skip
                for j in range(n):
                    self.events.append({"type": "click", "ts": ts + 2000 + j * 500,
                                        "item_id": f"i{int(s.u[k][U_ITEM] * 1e4) + j:05d}",
                                        "slot": "feed"})  # fmt: skip
                self.stats.clicks += n
            if s.payment_ts is not None:
                self.events.append({"type": "payment", "ts": s.payment_ts + self.shift,
                                    "value": s.payment_value})  # fmt: skip
            self.events.append({"type": "background", "ts": s.end + self.shift})
            await self.flush()
        # Acknowledge what is still owed on one last contact.
        if self.acks:
            body = {"user_id": self.uid, "ts": until - 1000, "trigger": "timer"}
            await self.call("/v1/decide", self._ack(body))


async def run_devices(sc: Scenario, post: Post, *, users: int, hours: float, seed: int,
                      now_ms: int) -> HttpStats:  # fmt: skip
    """Run `users` devices over the last `hours` hours; return what happened."""
    places = build_places(sc.places)
    stats = HttpStats(devices=min(users, MAX_DEVICES))
    t0 = sc.start_ms
    span = int(hours * HOUR_MS)
    devices = []
    for i in range(stats.devices):
        b = build_world(sc, places, seed=seed, cohort=EVAL, index=i, t0=t0, t1=t0 + 24 * HOUR_MS)
        first = b.world.sessions[b.world.first_eval].start if b.world.sessions else t0
        shift = (now_ms - span + 10_000) - first  # the first visit opens as the run starts
        devices.append(HttpDevice(b, sc, post, stats, shift))
    await asyncio.gather(*(d.run(now_ms) for d in devices))
    return stats


def _metrics(stats: HttpStats) -> dict[str, Any]:
    def one(v: float | None) -> dict[str, Any]:
        return {"baseline": None, "policy": v, "relative_change": None, "ci": None}

    total = sum(stats.requests.values())
    return {
        "http.devices": one(stats.devices),
        "http.requests": one(total),
        "http.errors": one(stats.errors),
        "http.retries": one(stats.retries),
        "http.refresh_share": one(
            round(stats.refreshes / stats.decides, 6) if stats.decides else None
        ),
        "http.directives_acked_pct": one(
            round(100 * stats.directives_acked / stats.directives_received, 6)
            if stats.directives_received
            else None
        ),
        "http.clicks": one(stats.clicks),
    }


def run_http_cli(sc: Scenario, args: argparse.Namespace) -> int:
    """Run HTTP mode for the CLI; write report.json and report.md."""
    import sys

    import aiohttp

    async def go(url: str) -> HttpStats:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
                async with session.post(url + path, json=body) as resp:
                    return resp.status, await resp.json(content_type=None)

            now = int(time.time() * 1000)
            return await run_devices(sc, post, users=args.users, hours=args.hours,
                                     seed=args.seed, now_ms=now)  # fmt: skip

    try:
        if args.url:
            stats = asyncio.run(go(check_loopback(args.url)))
        else:
            from load.servers import refreshd

            with refreshd() as (url, _pid):
                stats = asyncio.run(go(url))
    except NotLoopback as exc:
        print(f"refresh-sim: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    doc = {"scenario": sc.name, "users": stats.devices, "hours": args.hours, "seed": args.seed,
           "metrics": _metrics(stats)}  # fmt: skip
    (out / "report.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    lines = [f"# refresh-sim HTTP run: {sc.name}", "", "| metric | value |", "|---|---|"]
    lines += [f"| `{k}` | {v['policy']} |" for k, v in sorted(doc["metrics"].items())]
    lines += ["", f"requests by endpoint: {json.dumps(stats.requests, sort_keys=True)}", ""]
    (out / "report.md").write_text("\n".join(lines))
    print(f"refresh-sim: {sum(stats.requests.values())} requests, {stats.errors} errors; "
          f"report in {out}/", file=sys.stderr)  # fmt: skip
    return 1 if stats.errors else 0
