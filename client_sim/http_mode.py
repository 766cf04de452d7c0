"""HTTP mode: simulated devices drive a running refreshd over HTTP, concurrently (asyncio).

The same world as fast mode (users, sessions, views, clicks, positions), at a smaller scale,
for end-to-end checks: each device replays its first visits of the scenario day, shifted so
that they end by now (the service rejects timestamps from the future or older than a week),
and paced to a few requests per second so the per-user rate limit never trips. A device
posts its events in batches with retries (same `batch_id`, so a retry is accepted once),
sends a location fix when the app opens, asks `/v1/decide` on open and return (with the
visit's launch source, time on the homepage, scrolls and depth), and acknowledges every
directive it received on its next request.

Edge scoring: given a way to GET, devices download the current model artifact
(`/v1/models/current/artifact`, again whenever a decision names another version) and score
every opportunity themselves, from the events the service acknowledged, the zone of their last
fix and their last refresh, with the same `intent.features.compute` and `add_events` the
service runs. Each scored decision's edge score is compared with the one `/v1/decide` returned:
`http.edge_score_agreement_pct` must be 100.

Only loopback services are accepted: this is a test driver, not a load tool for other hosts
(`load/` is). Without `--url` a private `refreshd serve` is started on a free port with its
own embedded Valkey and stopped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from client_sim.behaviour import clicks, freshness
from client_sim.device import Built, build_world
from client_sim.experiment import DEVICE_COUNTS, ExperimentResult, experiment_json, experiment_text
from client_sim.mobility import HOUR_MS
from client_sim.places import build_places
from client_sim.population import EVAL
from client_sim.scenario import Scenario
from client_sim.sessions import U_CLICK, U_ITEM
from intent.events import Event, add_events
from intent.features import Context, compute
from intent.model import IntentModel
from refreshd.core.experiments import ExperimentConfig, experiment_to_json

__all__ = [
    "EdgeModels",
    "Get",
    "HttpStats",
    "Post",
    "check_loopback",
    "run_devices",
    "run_http_cli",
]

Post = Callable[[str, dict[str, Any]], Awaitable[tuple[int, Any]]]
# GET path -> (status, body text, X-Model-Version header or None)
Get = Callable[[str], Awaitable[tuple[int, str, str | None]]]
ARTIFACT = "/v1/models/current/artifact"
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
    edge_scored: int = 0  # decisions scored by the service that the device scored too
    edge_agree: int = 0  # ... with exactly the same score
    model_downloads: int = 0
    location_refreshes: int = 0  # fixes the service answered with refresh: true
    # With an experiment: what the devices saw per variant since the service first put them
    # in it (client_sim.experiment.DEVICE_COUNTS), to set next to its report.
    arms: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def count(self, path: str) -> None:
        self.requests[path] = self.requests.get(path, 0) + 1


class EdgeModels:
    """The model artifacts devices downloaded, by version (one download per version per run)."""

    def __init__(self, get: Get, stats: HttpStats) -> None:
        self.get = get
        self.stats = stats
        self.models: dict[str, IntentModel] = {}
        self._lock = asyncio.Lock()

    async def model(self, version: str) -> IntentModel | None:
        """Return the model of this version, downloading the current one if it is new."""
        async with self._lock:
            if version not in self.models:
                status, text, got = await self.get(ARTIFACT)
                self.stats.model_downloads += 1
                if status == 200 and got is not None:
                    self.models[got] = IntentModel.from_text(text, version=got)
            return self.models.get(version)


class HttpDevice:
    """One simulated phone talking to the service."""

    def __init__(
        self, built: Built, sc: Scenario, post: Post, stats: HttpStats, shift: int,
        edge: EdgeModels | None = None, experiment: str | None = None,
    ) -> None:  # fmt: skip
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
        self.edge = edge
        # What the service knows of this device, as the device knows it: for edge scoring.
        self.known: list[Event] = []
        self.zone: int | None = None
        self.last_refresh_ts: int | None = None
        self.experiment = experiment
        self.arm: dict[str, int] | None = None  # this device's variant's tally, once exposed

    def _tally(self, what: str, n: int = 1) -> None:
        if self.arm is not None:
            self.arm[what] += n

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
        done = await self.call("/v1/events", self._ack({"user_id": self.uid, "batch_id": batch,
                                                        "events": events}))  # fmt: skip
        if done is not None:  # acknowledged: now part of the service's window
            self.known = add_events(self.known, msgspec.convert(events, list[Event]))

    async def decide(self, body: dict[str, Any]) -> Any:
        """POST /v1/decide; score the opportunity on the device too and compare."""
        resp = await self.call("/v1/decide", self._ack(body))
        if resp is None:
            return None
        exp = resp.get("experiment") or {}
        if self.experiment is not None and exp.get("id") == self.experiment:
            if self.arm is None:  # exposed: the service counts this user from now on
                self.arm = self.stats.arms.setdefault(
                    exp["variant"], dict.fromkeys(DEVICE_COUNTS, 0)
                )
                self.arm["users"] += 1
            self._tally("decides")
            self._tally("refreshes", int(bool(resp.get("refresh"))))
        version, score = resp.get("model_version"), resp.get("score")
        # An exploration decision's score is the service's coin, not a model's: nothing to compare.
        if self.edge is not None and version not in (None, "explore") and score is not None:
            model = await self.edge.model(version)
            if model is not None:
                ctx = Context(trigger=body["trigger"], tz_offset_min=body.get("tz_offset_min"),
                              zone=self.zone, last_refresh_ts=self.last_refresh_ts,
                              launch=body.get("launch"), home_dwell_s=body.get("home_dwell_s"),
                              scrolls=body.get("scrolls"),
                              scroll_depth=body.get("scroll_depth"))  # fmt: skip
                edge_score = model.predict_one(compute(self.known, body["ts"], ctx))
                self.stats.edge_scored += 1
                self.stats.edge_agree += edge_score == score
        if resp.get("refresh"):
            self.last_refresh_ts = max(body["ts"], self.last_refresh_ts or 0)
        return resp

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
                    fix = await self.call("/v1/location", self._ack({
                        "user_id": self.uid, "ts": ts, "lat": lat, "lng": lng,
                        "accuracy_m": self.sc.mobility.gps_accuracy_m}))  # fmt: skip
                    if fix is not None:
                        self.zone = fix.get("zone", self.zone)
                        if fix.get("refresh"):  # left the coverage circle or changed zone
                            self.stats.location_refreshes += 1
                            self.last_refresh_ts = max(ts, self.last_refresh_ts or 0)
                            screen_ts = ts
                    body = {"user_id": self.uid, "ts": ts + 1, "trigger": view.trigger,
                            "slots": list(self.sc.catalogue.slots)}  # fmt: skip
                    if w.user.reports_tz:
                        body["tz_offset_min"] = w.user.tz_offset_min
                    # What the app knows of the visit (as fast mode's device reports it).
                    body |= {"launch": s.launch, "scrolls": s.scrolls[k],
                             "scroll_depth": s.depth[k],
                             "home_dwell_s": (view.ts + 1 - s.start) / 1000.0}  # fmt: skip
                    resp = await self.decide(body)
                    self.stats.decides += 1
                    if resp and resp.get("refresh"):
                        self.stats.refreshes += 1
                        screen_ts = ts
                        self.events.append({"type": "impression", "ts": ts + 300, "slot": "feed"})
                        self._tally("impressions")
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
                self._tally("clicks", n)
            if s.payment_ts is not None:
                self.events.append({"type": "payment", "ts": s.payment_ts + self.shift,
                                    "value": s.payment_value})  # fmt: skip
            self.events.append({"type": "background", "ts": s.end + self.shift})
            await self.flush()
        # Acknowledge what is still owed on one last contact.
        if self.acks:
            body = {"user_id": self.uid, "ts": until - 1000, "trigger": "timer"}
            await self.decide(body)


async def run_devices(sc: Scenario, post: Post, *, users: int, hours: float, seed: int,
                      now_ms: int, get: Get | None = None,
                      experiment: str | None = None) -> HttpStats:  # fmt: skip
    """Run `users` devices over the last `hours` hours; return what happened.

    With `get`, devices also score with the downloaded model (edge scoring) and compare. With
    `experiment` (an id the service runs), devices tally what they saw per variant (`arms`).
    """
    places = build_places(sc.places)
    stats = HttpStats(devices=min(users, MAX_DEVICES))
    edge = EdgeModels(get, stats) if get is not None else None
    t0 = sc.start_ms
    span = int(hours * HOUR_MS)
    devices = []
    for i in range(stats.devices):
        b = build_world(sc, places, seed=seed, cohort=EVAL, index=i, t0=t0, t1=t0 + 24 * HOUR_MS)
        first = b.world.sessions[b.world.first_eval].start if b.world.sessions else t0
        shift = (now_ms - span + 10_000) - first  # the first visit opens as the run starts
        devices.append(HttpDevice(b, sc, post, stats, shift, edge, experiment))
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
        "http.edge_scored": one(stats.edge_scored),
        "http.edge_score_agreement_pct": one(
            round(100 * stats.edge_agree / stats.edge_scored, 6) if stats.edge_scored else None
        ),
    }


# After the PUT, the service's other workers see the experiment within one config poll (1 s).
CONFIG_SETTLE_S = 2.0


class ExperimentRefused(RuntimeError):
    """The service did not take the experiment (the message has its answer)."""


def run_http_cli(
    sc: Scenario, args: argparse.Namespace, experiment: tuple[str, ExperimentConfig] | None = None
) -> int:
    """Run HTTP mode for the CLI; write report.json and report.md.

    With `experiment` (id, config), PUT it first, and afterwards GET its report and print it
    next to the devices' own per-arm totals (HTTP mode has no paired run).
    """
    import sys

    import aiohttp

    # A service with REFRESHD_ADMIN_TOKEN set wants it on the experiment routes.
    token = os.environ.get("REFRESHD_ADMIN_TOKEN")
    admin = {"Authorization": f"Bearer {token}"} if token else {}

    async def go(url: str) -> tuple[HttpStats, dict[str, Any] | None]:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
                async with session.post(url + path, json=body) as resp:
                    return resp.status, await resp.json(content_type=None)

            async def get(path: str) -> tuple[int, str, str | None]:
                async with session.get(url + path) as resp:
                    return resp.status, await resp.text(), resp.headers.get("X-Model-Version")

            exp_path = None
            if experiment is not None:
                exp_path = f"{url}/v1/experiments/{experiment[0]}"
                body = experiment_to_json(experiment[1])
                async with session.put(exp_path, json=body, headers=admin) as resp:
                    if resp.status != 200:
                        raise ExperimentRefused(
                            f"PUT {exp_path}: {resp.status} {await resp.text()}"
                        )
                await asyncio.sleep(CONFIG_SETTLE_S)
            now = int(time.time() * 1000)
            stats = await run_devices(sc, post, users=args.users, hours=args.hours,
                                      seed=args.seed, now_ms=now, get=get,
                                      experiment=experiment[0] if experiment else None)  # fmt: skip
            report = None
            if exp_path is not None:
                async with session.get(exp_path + "/report", headers=admin) as resp:
                    if resp.status != 200:
                        raise ExperimentRefused(f"GET {exp_path}/report: {resp.status}")
                    report = await resp.json()
            return stats, report

    try:
        if args.url:
            stats, report = asyncio.run(go(check_loopback(args.url)))
        else:
            from load.servers import refreshd

            with refreshd() as (url, _pid):
                stats, report = asyncio.run(go(url))
    except (NotLoopback, ExperimentRefused) as exc:
        print(f"refresh-sim: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    doc = {"scenario": sc.name, "users": stats.devices, "hours": args.hours, "seed": args.seed,
           "metrics": _metrics(stats)}  # fmt: skip
    lines = [f"# refresh-sim HTTP run: {sc.name}", "", "| metric | value |", "|---|---|"]
    lines += [f"| `{k}` | {v['policy']} |" for k, v in sorted(doc["metrics"].items())]
    lines += ["", f"requests by endpoint: {json.dumps(stats.requests, sort_keys=True)}", ""]
    result = None
    if experiment is not None and report is not None:
        result = ExperimentResult(experiment[0], experiment[1], report, stats.arms, mode="http")
        doc["experiment"] = experiment_json(result)
        lines += [*experiment_text(result).splitlines(), ""]
    (out / "report.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    (out / "report.md").write_text("\n".join(lines))
    print(f"refresh-sim: {sum(stats.requests.values())} requests, {stats.errors} errors; "
          f"report in {out}/", file=sys.stderr)  # fmt: skip
    if result is not None:
        print(experiment_text(result), end="")
    return 1 if stats.errors else 0
