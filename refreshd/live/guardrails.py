"""The per-request guardrails of running experiments: measured here, added up in the store.

`decision_latency_ms` and `error_responses` are not in any user's state: they are what the
service itself did for a request. The HTTP shell reports each device request of a user in a
guarded experiment (`observe`), and the meter keeps integer sums per (experiment, variant)
until the next config poll adds them with one pipelined HINCRBY round trip (`flush`). Sums not
yet added die with the worker (at most one poll's worth): they are measurements, not data a
device was told was kept. While the store is down they are kept for the next flush, bounded.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from refreshd.core.errors import StoreUnavailable
from refreshd.core.exposure import Increment, stats_key
from refreshd.core.expstats import observation_fields
from refreshd.store.protocol import Store

log = logging.getLogger(__name__)

# Distinct (experiment, variant) hashes kept while the store is down: 20 arms × 50 experiments.
MAX_PENDING_KEYS = 1000


class GuardrailMeter:
    """This worker's per-request guardrail sums, waiting to be added to the store."""

    def __init__(self) -> None:
        self.pending: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )

    def observe(self, exp_id: str, variant: str, metric: str, value: int) -> None:
        """Count one request's value of a per-request guardrail for the user's arm."""
        key = stats_key(exp_id, variant)
        if key not in self.pending and len(self.pending) >= MAX_PENDING_KEYS:
            return
        row = self.pending[key]
        for name, inc in observation_fields(metric, value).items():
            row[name] += inc

    def take(self) -> list[Increment]:
        out = [(key, dict(fields)) for key, fields in self.pending.items()]
        self.pending.clear()
        return out

    async def flush(self, store: Store) -> None:
        """Add the sums to the store; on an outage keep them for the next flush."""
        incrs = self.take()
        if not incrs:
            return
        try:
            await store.add_stats(incrs)
        except StoreUnavailable:
            for key, fields in incrs:
                if key in self.pending or len(self.pending) < MAX_PENDING_KEYS:
                    row = self.pending[key]
                    for name, inc in fields.items():
                        row[name] += inc
            log.debug("guardrails: store unavailable, %d sums kept", len(incrs))
