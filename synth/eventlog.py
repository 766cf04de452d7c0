"""A seeded synthetic decision and event log for bootstrapping and testing the intent model.

Each user has a latent intent to browse that the log never records. It shows only through
behaviour: users with a high base intent click more (visible in 24 h counts and CTR), intent
persists across sessions close in time (visible in 1 h counts and time since the last click),
and it peaks around lunch and evening local time (visible in the hour feature). Devices upload
events in 10 s batches; a few batches arrive minutes late, as after a network drop.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = ["START_TS", "SyntheticLog", "generate"]

# 2024-01-01 00:00 UTC, a Monday: a fixed origin so a seed always yields the same log.
START_TS = 1_704_067_200_000
# Devices flush their event buffer every 10 s and when the app goes to the background.
BATCH_S = 10
# One batch in 20 is delayed 1-30 min, so point-in-time joins have late events to exclude.
LATE_BATCH_P = 0.05
# The fixed rule that produced the log: refresh on open/return/timer at most every 5 min.
LOGGED_INTERVAL_S = 300
TIMER_S = 120
TZ_OFFSETS_MIN = (-480, -300, 0, 60, 330, 480, 540)
# Relative session rate per local hour: quiet at night, peaks at commute, lunch and evening.
_HOUR_RATE = np.array(
    [1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2, 3, 2.5, 2, 2.5, 3.5, 3, 2, 2, 2.5, 3, 3.5, 4, 4.5, 4, 3, 2]
)
_HOUR_P = _HOUR_RATE / _HOUR_RATE.sum()


@dataclasses.dataclass(frozen=True, slots=True)
class SyntheticLog:
    """Decision rows and event rows, shaped like the service's logs."""

    decisions: list[dict[str, Any]]
    events: list[dict[str, Any]]


@dataclasses.dataclass(slots=True)
class _User:
    uid: str
    tz_offset_min: int
    sessions_per_day: float
    base_logit: float
    has_places: bool
    reports_tz: bool
    last_refresh_ts: int | None = None
    last_intent_ts: int | None = None
    last_end_ts: int | None = None
    decisions: int = 0
    batches: int = 0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _hour_effect(local_hour: int) -> float:
    # Intent, unlike mere activity, is high at lunch and in the evening only.
    return 0.9 if local_hour in (12, 13, 19, 20, 21, 22) else -0.4


class _World:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.decisions: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def session(self, u: _User, start: int) -> None:
        """Simulate one visit: its events, its decisions and their upload batches."""
        rng = self.rng
        local_hour = (start + u.tz_offset_min * 60_000) // 3_600_000 % 24
        logit = u.base_logit + _hour_effect(int(local_hour))
        if u.last_intent_ts is not None and start - u.last_intent_ts < 2 * 3_600_000:
            logit += 1.8  # intent persists for a while: the signal behind recent-click features
        intent = rng.random() < _sigmoid(logit)
        mean_s = 240 if intent else 60
        end = start + int((15 + rng.exponential(mean_s)) * 1000)
        returning = u.last_end_ts is not None and start - u.last_end_ts < 15 * 60_000
        trigger = "return" if returning else "open"
        zone = int(rng.integers(1, 6)) if u.has_places and rng.random() < 0.5 else None
        evs: list[dict[str, Any]] = [{"type": trigger, "ts": start}]
        self.decide(u, start, trigger, zone)
        evs += self.impressions(start + 800)
        n_clicks = rng.poisson(1.6) + (rng.random() < 0.85) if intent else rng.random() < 0.07
        for t in np.sort(rng.uniform(start + 2_000, end, size=int(n_clicks))):
            evs.append({"type": "click", "ts": int(t), "item_id": f"i{rng.integers(500)}"})
        t = start + TIMER_S * 1000
        while t < end:
            self.decide(u, t, "timer", zone)
            evs += self.impressions(t + 800)
            t += TIMER_S * 1000
        for _ in range(int(rng.poisson(2.0 if intent else 0.7))):
            ts = int(rng.uniform(start + 1_000, end))
            evs.append({"type": "scroll", "ts": ts, "value": float(rng.integers(1, 20))})
            if rng.random() < 0.3 and ts + 50 < end:
                self.decide(u, ts + 50, "scroll", zone)
        if rng.random() < (0.15 if intent else 0.04):
            ts = int(rng.uniform(start + 1_000, end))
            evs.append({"type": "pull_refresh", "ts": ts})
            self.decide(u, ts + 20, "pull", zone)
        if rng.random() < (0.02 if intent else 0.08):
            ts = int(rng.uniform(start + 1_000, end))
            evs.append({"type": "feedback", "ts": ts, "props": {"kind": "negative"}})
        if rng.random() < (0.08 if intent else 0.03):
            ts = int(rng.uniform(start + 1_000, end))
            evs.append({"type": "payment", "ts": ts, "value": round(float(rng.gamma(2, 20)), 2)})
        if intent and rng.random() < 0.2:
            evs.append({"type": "search", "ts": int(rng.uniform(start + 1_000, end))})
        end = max(end, max(e["ts"] for e in evs) + 1)  # the last impressions may run over
        evs.append({"type": "background", "ts": end})
        self.upload(u, sorted(evs, key=lambda e: e["ts"]), start, end)
        u.last_end_ts = end
        if intent:
            u.last_intent_ts = end

    def impressions(self, ts: int) -> list[dict[str, Any]]:
        slots = ("feed", "nearby", "offers")
        return [
            {
                "type": "impression",
                "ts": ts + i * 40,
                "slot": s,
                "item_id": f"i{self.rng.integers(500)}",
            }
            for i, s in enumerate(slots)
        ]

    def decide(self, u: _User, ts: int, trigger: str, zone: int | None) -> None:
        last = u.last_refresh_ts
        if trigger == "pull":
            refresh, reason = True, "pull"
        else:
            due = last is None or ts - last >= LOGGED_INTERVAL_S * 1000
            refresh, reason = trigger != "scroll" and due, "fallback"
        row: dict[str, Any] = {
            "decision_id": f"{u.uid}-d{u.decisions}",
            "user_id": u.uid,
            "ts": ts,
            "trigger": trigger,
            "refresh": refresh,
            "reason": reason,
            "degraded": True,  # the log that bootstraps the first model had none to score with
            "received_ts": ts + int(self.rng.integers(20, 200)),
            "last_refresh_ts": last,
            "zone": zone,
        }
        if u.reports_tz:
            row["tz_offset_min"] = u.tz_offset_min
        self.decisions.append(row)
        u.decisions += 1
        if refresh:
            u.last_refresh_ts = ts

    def upload(self, u: _User, evs: list[dict[str, Any]], start: int, end: int) -> None:
        by_batch: dict[int, list[dict[str, Any]]] = {}
        for e in evs:
            by_batch.setdefault((e["ts"] - start) // (BATCH_S * 1000), []).append(e)
        for k, batch in by_batch.items():
            flushed = min(start + (k + 1) * BATCH_S * 1000, end)
            received = flushed + int(self.rng.integers(50, 1500))
            if self.rng.random() < LATE_BATCH_P:
                received += int(self.rng.uniform(60, 1800) * 1000)
            batch_id = f"{u.uid}-b{u.batches}"
            u.batches += 1
            for e in batch:
                self.events.append(
                    {**e, "user_id": u.uid, "batch_id": batch_id, "received_ts": received}
                )


def generate(
    *,
    users: int = 200,
    days: int = 3,
    seed: int = 0,
    start_ts: int = START_TS,
    activity: float = 1.0,
) -> SyntheticLog:
    """Return a synthetic log of `users` users over `days` days.

    `activity` scales every user's sessions per day: 1 is the world the bootstrap model is
    trained on, another value a cohort whose behaviour (and so its scores) has drifted.
    """
    rng = np.random.default_rng(seed)
    world = _World(rng)
    for n in range(users):
        u = _User(
            uid=f"u{n:05d}",
            tz_offset_min=int(rng.choice(TZ_OFFSETS_MIN)),
            sessions_per_day=activity * float(rng.lognormal(math.log(5), 0.6)),
            base_logit=float(rng.normal(-1.5, 1.2)),
            has_places=bool(rng.random() < 0.3),
            reports_tz=bool(rng.random() < 0.9),
        )
        starts = []
        for day in range(days):
            count = int(rng.poisson(u.sessions_per_day))
            hours = rng.choice(24, size=count, p=_HOUR_P)
            offsets = (hours * 3600 + rng.uniform(0, 3600, size=count)) * 1000
            local_midnight = start_ts + day * 86_400_000
            starts += [int(local_midnight + o - u.tz_offset_min * 60_000) for o in offsets]
        last_end = None
        for s in sorted(starts):
            if last_end is not None and s <= last_end:
                continue  # a visit cannot start before the previous one ended
            world.session(u, s)
            last_end = u.last_end_ts
    return SyntheticLog(world.decisions, world.events)
