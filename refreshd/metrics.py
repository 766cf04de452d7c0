"""Prometheus metrics, one registry per application (tests run many apps in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from intent.features import FEATURE_NAMES

# Buckets in seconds: the decide SLO is 50 ms, so resolution is finest below it.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Feature age buckets in seconds: 10 s, 1 min, 5 min, 30 min, 1 h, 6 h, 1 day, 7 days. A
# session's features are seconds to minutes old; the long windows' are hours to days.
AGE_BUCKETS = (10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0, 604800.0)


class FeatureAgeHistogram(Collector):
    """`refreshd_feature_age_seconds{feature}`: the age of each scored feature at decision.

    A prometheus_client Histogram child per feature would cost ~1 µs per feature per decision
    (some 20 observations a decision); this one takes a batch of age vectors at once (numpy,
    `add`) and renders the cumulative buckets at each scrape. Features without an age (context
    features, or no such event) are not observed.
    """

    name = "refreshd_feature_age_seconds"

    def __init__(self, features: Sequence[str], buckets: Sequence[float] = AGE_BUCKETS) -> None:
        self.features = tuple(features)
        self.bounds = np.asarray(buckets, dtype=np.float64)
        # Per feature: counts per bucket (the last one is +Inf, not cumulative) and the sum.
        self.counts = np.zeros((len(self.features), len(buckets) + 1), dtype=np.int64)
        self.sums = np.zeros(len(self.features), dtype=np.float64)

    def add(self, ages: np.ndarray) -> None:
        """Observe a (vectors × features) array of ages in seconds; NaN is not observed."""
        observed = ~np.isnan(ages)
        width = self.counts.shape[1]
        # One bincount over (feature, bucket) cells for the whole batch.
        cells = (np.arange(ages.shape[1]) * width + np.searchsorted(self.bounds, ages))[observed]
        self.counts += np.bincount(cells, minlength=self.counts.size).reshape(self.counts.shape)
        self.sums += np.where(observed, ages, 0.0).sum(axis=0)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            self.name, "Age of each scored feature at decision: now minus its newest event",
            labels=["feature"],
        )  # fmt: skip
        les = [floatToGoString(b) for b in self.bounds.tolist()] + ["+Inf"]
        for name, counts, total in zip(self.features, self.counts, self.sums, strict=True):
            cumulative = np.cumsum(counts).tolist()
            if cumulative[-1]:
                family.add_metric([name], list(zip(les, cumulative, strict=True)), total)
        yield family


class Metrics:
    """The service's counters, gauges and histograms.

    `before_render` callbacks run before each scrape: gauges that summarise a window (score
    PSI, model age) are computed then, not on every decision.
    """

    def __init__(self, features: Sequence[str] = FEATURE_NAMES) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.before_render: list[Callable[[], None]] = []
        r = self.registry
        self.requests = Counter(
            "refreshd_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "refreshd_request_seconds",
            "HTTP request latency by route",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # (route, method, status) → the two children a request updates, bound once: looking
        # children up by labels takes a lock and builds a tuple per call.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.decisions = Counter(
            "refreshd_decisions",
            "Decisions by reason, outcome, the ladder node that decided, and degraded or not",
            ["reason", "refresh", "node", "degraded"],
            registry=r,
        )
        self.degraded = Counter(
            "refreshd_degraded_decisions",
            "Decisions made in degraded mode by cause",
            ["cause"],
            registry=r,
        )
        self.events = Counter("refreshd_events", "Events accepted", ["type"], registry=r)
        self.duplicate_batches = Counter(
            "refreshd_duplicate_batches", "Event batches replayed with a known batch_id", registry=r
        )
        self.store_errors = Counter(
            "refreshd_store_errors", "Store calls that failed or timed out", ["op"], registry=r
        )
        self.cas_conflicts = Counter(
            "refreshd_cas_conflicts", "User-state compare-and-set retries", registry=r
        )
        self.directives = Counter(
            "refreshd_directives",
            "Directive lifecycle: created, delivered, acknowledged, expired",
            ["stage"],
            registry=r,
        )
        self.rule_firings = Counter(
            "refreshd_rule_firings", "Event rules that fired, by rule", ["rule"], registry=r
        )
        self.late_events = Counter(
            "refreshd_late_events", "Events too late for rule matching (ignored)", registry=r
        )
        self.suppressed_matches = Counter(
            "refreshd_suppressed_matches", "Rule matches that fired nothing (cooldown)", registry=r
        )
        self.rate_limited = Counter(
            "refreshd_rate_limited", "Requests refused with 429 (per-user rate)", registry=r
        )
        self.transitions = Counter(
            "refreshd_fence_transitions", "Geofence transitions by type", ["type"], registry=r
        )
        self.fixes = Counter(
            "refreshd_location_fixes", "Location fixes by zone", ["zone"], registry=r
        )
        self.shadow_agreement = Gauge(
            "refreshd_shadow_agreement",
            "Share of this worker's shadowed decisions where the challenger's refresh verdict "
            "equals the champion's, by challenger",
            ["version"],
            registry=r,
        )
        self.shadow_scored = Counter(
            "refreshd_shadow_scored",
            "Decisions this worker scored with a challenger, by challenger",
            ["version"],
            registry=r,
        )
        self.shadow_dropped = Counter(
            "refreshd_shadow_dropped",
            "Decisions not shadowed because the shadow queue was full",
            registry=r,
        )
        self.store_up = Gauge(
            "refreshd_store_up", "1 when the last store check succeeded", registry=r
        )
        # Model monitoring (refreshd.live.monitor, docs/operations.md#model-monitoring).
        self.score_psi = Gauge(
            "refreshd_score_psi",
            "PSI of this worker's recent scores against the model's training scores",
            ["model_version"],
            registry=r,
        )
        self.features_scored = Counter(
            "refreshd_features_scored", "Feature vectors the model scored", registry=r
        )
        self.feature_missing = Counter(
            "refreshd_feature_missing",
            "Scored feature vectors in which a feature was missing (intent.features.MISSING)",
            ["feature"],
            registry=r,
        )
        self.calibration_ratio = Gauge(
            "refreshd_calibration_ratio",
            "Observed over predicted click rate of matured decisions, by model version",
            ["model_version"],
            registry=r,
        )
        self.model_age = Gauge(
            "refreshd_model_age_seconds",
            "Seconds since the live model was created (NaN while no model is loaded)",
            registry=r,
        )
        self.model_age.set(float("nan"))
        self.feature_age = FeatureAgeHistogram(features)
        r.register(self.feature_age)
        # Read at each scrape from the live model's meta and the clock (refreshd.http.app).
        self.model_freshness = Gauge(
            "refreshd_model_freshness_seconds",
            "Now minus the newest matured label the live model learnt from (NaN: none)",
            registry=r,
        )

    def request_children(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        """The request counter's and latency histogram's children for one route template."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        return children

    def render(self) -> bytes:
        for update in self.before_render:
            update()
        return generate_latest(self.registry)
