"""Helpers shared by tests (importable, unlike conftest)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp.test_utils import TestClient

if TYPE_CHECKING:
    from refreshd.core.messages import DecideResponse
    from refreshd.live.service import Service


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class FakeClock:
    """A settable clock for deterministic tests of time rules."""

    def __init__(self, start_ms: int | None = None) -> None:
        self.ms = start_ms if start_ms is not None else now_ms()

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


MakeClient = Callable[..., Awaitable[TestClient]]


def raw_log(raw: Any, stream: str) -> list[dict[str, Any]]:
    """Return every row of a sharded log stream (all shards, in entry-id order) from Redis."""
    import json

    from refreshd.store.protocol import LOG_DECISIONS, all_tags, decision_id, shard_key

    rows = []
    for tag in all_tags():
        for entry_id, fields in raw.xrange(shard_key(stream, tag)):
            ms, _, seq = entry_id.decode().partition("-")
            row = json.loads(fields[b"d"])
            if stream == LOG_DECISIONS:  # stored without its id: the id is the row's place
                row = {"decision_id": decision_id(tag, entry_id.decode())} | row
            rows.append(((int(ms), int(seq)), row))
    return [r for _, r in sorted(rows, key=lambda x: x[0])]


def raw_xadd(raw: Any, stream: str, row: dict[str, Any]) -> None:
    """Append a row to the shard of its user's stream, as the service would."""
    import msgspec

    from refreshd.store.protocol import shard_key, shard_tag

    raw.xadd(shard_key(stream, shard_tag(row["user_id"])), {"d": msgspec.json.encode(row)})


def wait_ready(base: str, proc: Any, timeout_s: float, why: Callable[[], str] = lambda: "") -> None:
    """Wait until a `refreshd serve` subprocess answers 200 on /readyz; fail if it exits."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        assert proc.poll() is None, f"the service exited: {why()}"
        assert time.monotonic() < deadline, "service did not become ready"
        time.sleep(0.1)


# (received_ts, "events" | "decide", request body): one device contact of a replay.
ReplayItem = tuple[int, str, Any]


def replay_items(
    users: int,
    days: int,
    seed: int,
    *,
    activity: float = 1.0,
    start_ts: int | None = None,
    user_prefix: str = "",
) -> tuple[list[ReplayItem], int]:
    """Return a synthetic log (`synth.eventlog.generate`) as device contacts in arrival order.

    Users are named `user_prefix` + the generator's id, so two cohorts can share one store.
    Returns the items and the number of decisions among them.
    """
    from collections import defaultdict

    import msgspec
    import numpy as np

    from intent.events import Event
    from intent.features import LAUNCH_SOURCES
    from refreshd.core.messages import DecideRequest, EventsRequest
    from synth.eventlog import START_TS, generate

    log = generate(
        users=users,
        days=days,
        seed=seed,
        activity=activity,
        start_ts=START_TS if start_ts is None else start_ts,
    )
    batches: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in log.events:
        batches[(e["user_id"], e["batch_id"])].append(e)
    items: list[ReplayItem] = []
    for (uid, bid), evs in batches.items():
        body = EventsRequest(
            user_id=user_prefix + uid,
            batch_id=bid,
            events=[
                msgspec.convert(
                    {k: v for k, v in e.items() if k not in ("user_id", "batch_id", "received_ts")},
                    Event,
                )
                for e in evs
            ],
        )
        items.append((max(e["received_ts"] for e in evs), "events", body))
    # What a device reports of its visit (launch source, time on the homepage, scrolls, depth):
    # drawn here, on a stream of its own, each one absent a fifth of the time.
    visit = np.random.default_rng(seed + 1)
    for d in log.decisions:
        has = visit.random(4) >= 0.2
        req = DecideRequest(
            user_id=user_prefix + d["user_id"],
            ts=d["ts"],
            trigger=d["trigger"],
            tz_offset_min=d.get("tz_offset_min"),
            launch=str(visit.choice(LAUNCH_SOURCES)) if has[0] else None,  # type: ignore[arg-type]
            home_dwell_s=round(float(visit.exponential(40.0)), 3) if has[1] else None,
            scrolls=int(visit.poisson(1.5)) if has[2] else None,
            scroll_depth=float(visit.random()) if has[3] else None,
        )
        items.append((d["received_ts"], "decide", req))
    items.sort(key=lambda x: (x[0], x[1] == "decide"))
    return items, len(log.decisions)


async def replay(
    service: Service, clock: FakeClock, items: list[ReplayItem]
) -> list[DecideResponse]:
    """Send replay items to a service at their arrival times; return the decide answers."""
    answers = []
    for received_ts, kind, body in items:
        clock.ms = received_ts
        if kind == "events":
            await service.events(body)
        else:
            answers.append(await service.decide(body))
    return answers


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """Return the value of one sample in Prometheus text, or None when it is not there."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def alert_rules() -> list[dict[str, Any]]:
    """Return every alerting rule of docs/alerts.yml."""
    from pathlib import Path

    import yaml

    doc = yaml.safe_load((Path(__file__).parent.parent / "docs" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]
