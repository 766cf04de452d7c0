"""Micro-benchmark of the event-rule matcher: events/s and bytes of state per user.

`python -m load.bench_triggers` prints one run's numbers. Not a test: nothing is asserted.
Rules are random but shaped like real ones: they start on a meaningful event (a click, a
feedback, a payment...), never on an impression or a scroll, which would start a run on almost
every event; later steps and negations may use any type.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc
from typing import Any

import msgspec

from intent.events import EVENT_TYPES, Event
from refreshd.core.matcher import Rule, RuleSet, UserMatchState, advance, feed, parse_rule

T0 = 1_800_000_000_000
SLOTS = ["feed", "services", "reco", "top"]
STARTS = ["click", "feedback", "payment", "pull_refresh", "search", "open", "return"]
# Rough shape of a homepage's event mix: impressions and scrolls dominate, payments are rare.
WEIGHTS = {
    "impression": 30, "scroll": 20, "click": 15, "open": 8, "return": 5, "background": 5,
    "search": 6, "feedback": 4, "pull_refresh": 4, "payment": 3,
}  # fmt: skip


def random_rule(rng: random.Random, i: int) -> Rule:
    """Return a random valid rule of 1-4 steps, some with quantifiers, where and negation."""
    steps: list[dict[str, Any]] = []
    for k in range(rng.randint(1, 4)):
        step: dict[str, Any] = {"type": rng.choice(EVENT_TYPES if k else STARTS)}
        roll = rng.random()
        if k and not steps[-1].get("negated") and roll < 0.15:
            step["negated"] = True
        elif roll < 0.3:
            step["times"] = rng.randint(2, 4)
        elif roll < 0.4:
            step["one_or_more"] = True
        if rng.random() < 0.3:
            step["where"] = {"slot": {"in": rng.sample(SLOTS, 2)}}
        steps.append(step)
    body = {
        "pattern": steps,
        "contiguity": "strict" if rng.random() < 0.2 else "relaxed",
        "within_s": rng.choice([30, 120, 600, 1800]),
        "cooldown_s": rng.choice([0, 0, 60, 300]),
        "action": {"type": "refresh", "slots": [rng.choice(SLOTS)]},
    }
    return parse_rule(f"bench.{i}", body)


def random_events(rng: random.Random, n: int, start_ms: int) -> list[Event]:
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    ts, out = start_ms, []
    for kind in rng.choices(kinds, weights, k=n):
        ts += rng.randint(200, 20_000)
        out.append(Event(type=kind, ts=ts, slot=rng.choice(SLOTS)))  # type: ignore[arg-type]
    return out


def run(
    n_rules: int = 100,
    n_users: int = 100_000,
    events_per_user: int = 4,
    batch: int = 4,
    measure_events: int = 100_000,
    distinct: int = 20_000,
    seed: int = 7,
) -> dict[str, Any]:
    """Warm `n_users` states, then time `measure_events` events through the matcher."""
    rng = random.Random(seed)
    rules = RuleSet({r.id: r for r in (random_rule(rng, i) for i in range(n_rules))})
    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder(UserMatchState)

    # Warm-up: users get a few events; states are kept encoded, as the store keeps them (so
    # 100k users cost no Python heap or GC time here). `distinct` users are really matched and
    # the rest copy their bytes, which keeps the run short with the same size distribution.
    started = time.perf_counter()
    blobs: list[bytes] = []
    for u in range(min(n_users, distinct)):
        events = random_events(rng, events_per_user, T0 + u)
        blobs.append(enc.encode(feed(rules, UserMatchState(), events, events[-1].ts).state))
    blobs += [blobs[u % len(blobs)] for u in range(len(blobs), n_users)]
    warm_s = time.perf_counter() - started

    # Timed: batches to random users, the way POST /v1/events arrives (decode, feed, encode).
    # Each batch lands within a user's open windows (next contact a few minutes later).
    users = [rng.randrange(n_users) for _ in range(measure_events // batch)]
    batches = [random_events(rng, batch, T0 + users[i] + 120_000) for i in range(len(users))]
    n_timed = len(users) * batch

    # CPU time, not wall time: other processes on the machine should not move the numbers.
    # The codec alone on the same states, to separate it from the matcher.
    original = list(blobs)
    gc.collect()
    started = time.process_time()
    for u in users:
        enc.encode(dec.decode(original[u]))
    codec_s = time.process_time() - started

    # The events the way POST /v1/events handles them: decode, feed, encode.
    fired = 0
    started = time.process_time()
    for u, events in zip(users, batches, strict=True):
        result = feed(rules, dec.decode(blobs[u]), events, events[-1].ts)
        blobs[u] = enc.encode(result.state)
        fired += len(result.fired)
    elapsed = time.process_time() - started
    pure_s = elapsed - codec_s

    active = [len(b) for b in blobs]
    # Idle: every window closed (a sweep a day later), only counters and cooldowns left.
    later = T0 + 86_400_000
    idle_states = [advance(rules, dec.decode(b), later).state for b in blobs[:10_000]]
    idle = [len(enc.encode(s)) for s in idle_states]
    runs = [sum(len(r.runs) for r in dec.decode(b).rules.values()) for b in blobs[:10_000]]

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    decoded = [dec.decode(b) for b in blobs[:10_000]]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    heap = sum(s.size_diff for s in after.compare_to(before, "filename")) / len(decoded)

    return {
        "rules": n_rules,
        "users": n_users,
        "warmup_s": round(warm_s, 2),
        "events_timed": n_timed,
        "events_per_s_with_msgpack": round(n_timed / elapsed),
        "events_per_s_matcher_only": round(n_timed / pure_s),
        "us_per_batch": round(elapsed / len(users) * 1e6, 1),
        "fired_per_1k_events": round(1000 * fired / n_timed, 1),
        "state_bytes_mean": round(statistics.fmean(active), 1),
        "state_bytes_max": max(active),
        "runs_per_user_mean": round(statistics.fmean(runs), 2),
        "runs_per_user_max": max(runs),
        "idle_state_bytes_mean": round(statistics.fmean(idle), 1),
        "decoded_state_heap_bytes_mean": round(heap),
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:32} {value}")
