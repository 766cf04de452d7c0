"""The synthetic log: seeded, shaped like the service's logs, with late batches."""

from __future__ import annotations

import msgspec

from intent.events import EVENT_TYPES, Event
from refreshd.core.flow import DecisionLog
from synth.eventlog import generate


def test_same_seed_same_log() -> None:
    assert generate(users=20, days=1, seed=3) == generate(users=20, days=1, seed=3)
    assert generate(users=20, days=1, seed=3) != generate(users=20, days=1, seed=4)


def test_rows_are_shaped_like_the_service_logs() -> None:
    log = generate(users=30, days=2, seed=1)
    for d in log.decisions:
        fields = {k: v for k, v in d.items() if k not in ("received_ts", "last_refresh_ts", "zone")}
        msgspec.convert(fields, DecisionLog)
        assert d["received_ts"] >= d["ts"]
    for e in log.events:
        fields = {k: v for k, v in e.items() if k not in ("user_id", "batch_id", "received_ts")}
        msgspec.convert(fields, Event)
        assert e["type"] in EVENT_TYPES
    triggers = {d["trigger"] for d in log.decisions}
    assert triggers == {"open", "return", "timer", "scroll", "pull"}
    types = {e["type"] for e in log.events}
    assert {"open", "impression", "click", "background", "pull_refresh", "payment"} <= types


def test_most_batches_arrive_within_seconds_and_some_minutes_late() -> None:
    log = generate(users=50, days=2, seed=2)
    delays = [e["received_ts"] - e["ts"] for e in log.events]
    late = sum(d > 60_000 for d in delays) / len(delays)
    assert all(d > 0 for d in delays)
    assert 0.01 < late < 0.15
