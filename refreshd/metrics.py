"""Prometheus metrics, one registry per application (tests run many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Buckets in seconds: the decide SLO is 50 ms, so resolution is finest below it.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The service's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
        self.decisions = Counter(
            "refreshd_decisions",
            "Decisions by reason and outcome",
            ["reason", "refresh"],
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
        self.store_up = Gauge(
            "refreshd_store_up", "1 when the last store check succeeded", registry=r
        )
        # Read at each scrape from the live model's meta and the clock (refreshd.http.app).
        self.model_freshness = Gauge(
            "refreshd_model_freshness_seconds",
            "Now minus the newest matured label the live model learnt from (NaN: none)",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
