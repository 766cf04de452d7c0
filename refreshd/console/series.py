"""The overview's 15-minute window: cumulative counter snapshots taken every 10 s.

The service's Prometheus counters (refreshd.metrics) only grow; the console keeps a ring of
their values every `BUCKET_S` and reads any rate or share as a difference of two snapshots, so
it adds no code to the decide path. The newest, partial bucket is "now minus the last
snapshot": a decision shows on the next page load, not 10 s later.

Each worker process holds its own counters, so with `REFRESHD_WORKERS` > 1 the window is this
worker's traffic (the page says so); /metrics, scraped per worker, is the fleet's view.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import Counter, Histogram

from refreshd.metrics import Metrics

__all__ = ["BUCKET_S", "WINDOW_S", "Snapshot", "Window", "quantile", "snapshot"]

BUCKET_S = 10
WINDOW_S = 15 * 60
DECIDE_ROUTE = ("/v1/decide", "POST")


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """Cumulative counts at `ts` (seconds): decisions by reason, degraded by cause, and the
    decide latency histogram's cumulative buckets (upper bound in seconds → count)."""

    ts: float
    decisions: Mapping[str, float]
    degraded: Mapping[str, float]
    latency: Mapping[float, float]

    @property
    def total(self) -> float:
        return sum(self.decisions.values())


def _totals(counter: Counter, label: str) -> dict[str, float]:
    out: dict[str, float] = collections.defaultdict(float)
    for family in counter.collect():
        for s in family.samples:
            if s.name.endswith("_total"):
                out[s.labels[label]] += s.value
    return dict(out)


def _buckets(histogram: Histogram, route: str, method: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for family in histogram.collect():
        for s in family.samples:
            if (
                s.name.endswith("_bucket")
                and s.labels.get("route") == route
                and s.labels.get("method") == method
            ):
                out[float(s.labels["le"])] = s.value
    return out


def snapshot(metrics: Metrics, ts: float) -> Snapshot:
    """Read the counters the overview needs from this worker's metrics."""
    return Snapshot(
        ts,
        _totals(metrics.decisions, "reason"),
        _totals(metrics.degraded, "cause"),
        _buckets(metrics.latency, *DECIDE_ROUTE),
    )


def _minus(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    return {k: v - b.get(k, 0.0) for k, v in a.items() if v - b.get(k, 0.0) > 0}


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Estimate a quantile from cumulative histogram buckets as Prometheus'
    `histogram_quantile` does (linear within the bucket); None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lo, below = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if math.isinf(b):  # above the largest finite bound: say that bound
                return lo
            return lo + (b - lo) * ((rank - below) / (count - below) if count > below else 1.0)
        lo, below = b, count
    return lo


class Window:
    """A ring of snapshots; every figure of the overview is a difference of two of them."""

    def __init__(self, first: Snapshot, *, window_s: int = WINDOW_S) -> None:
        self._ring: collections.deque[Snapshot] = collections.deque(
            [first], maxlen=window_s // BUCKET_S + 1
        )

    def add(self, snap: Snapshot) -> None:
        self._ring.append(snap)

    @property
    def oldest(self) -> Snapshot:
        return self._ring[0]

    def buckets(self, now: Snapshot) -> list[tuple[float, dict[str, float]]]:
        """(bucket start, decisions by reason in it) for each bucket, the partial one last."""
        snaps = [*self._ring, now]
        return [(a.ts, _minus(b.decisions, a.decisions)) for a, b in itertools.pairwise(snaps)]

    def summary(self, now: Snapshot) -> WindowSummary:
        start = self.oldest
        decisions = _minus(now.decisions, start.decisions)
        degraded = _minus(now.degraded, start.degraded)
        latency = {le: n - start.latency.get(le, 0.0) for le, n in now.latency.items()}
        return WindowSummary(
            seconds=max(now.ts - start.ts, 0.0),
            decisions=decisions,
            degraded=degraded,
            p50_s=quantile(0.5, latency),
            p99_s=quantile(0.99, latency),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class WindowSummary:
    seconds: float
    decisions: Mapping[str, float]
    degraded: Mapping[str, float]  # a decision can have several causes
    p50_s: float | None
    p99_s: float | None

    @property
    def total(self) -> float:
        return sum(self.decisions.values())

    @property
    def degraded_share(self) -> float | None:
        """The share of decisions that degraded, at least: the most frequent cause's (the
        counters count causes, and a decision may have several)."""
        if not self.total:
            return None
        return min(1.0, max(self.degraded.values(), default=0.0) / self.total)


def reasons(buckets: Iterable[tuple[float, Mapping[str, float]]]) -> Sequence[str]:
    """Every reason seen in the buckets, most frequent first."""
    total: dict[str, float] = collections.defaultdict(float)
    for _, counts in buckets:
        for k, v in counts.items():
            total[k] += v
    return sorted(total, key=lambda k: (-total[k], k))
