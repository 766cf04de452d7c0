"""Per-user token buckets: a misbehaving device cannot flood the service (429, not a queue).

Pure bookkeeping: the caller passes the time. Buckets live in the worker (no store round
trip on the hot path), so with N workers a user gets at most N times the rate; the bound is
for runaway clients, not for billing.
"""

from __future__ import annotations

from collections import OrderedDict

# Users tracked per worker; the least recently seen are forgotten (they start with a full bucket).
MAX_TRACKED_USERS = 200_000


class RateLimiter:
    """Allow `rate_per_s` requests per user on average with bursts up to `burst`."""

    def __init__(
        self, rate_per_s: float, burst: float, *, max_users: int = MAX_TRACKED_USERS
    ) -> None:
        if rate_per_s < 0 or burst < 1:
            raise ValueError("rate_per_s must be >= 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = burst
        self.max_users = max_users
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def allow(self, key: str, now_s: float) -> float:
        """Take a token for `key`; return 0 if allowed, else the seconds until one is free."""
        if not self.enabled:
            return 0.0
        tokens, last = self._buckets.pop(key, (self.burst, now_s))
        tokens = min(self.burst, tokens + max(0.0, now_s - last) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now_s)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now_s)
            wait = (1 - tokens) / self.rate
        while len(self._buckets) > self.max_users:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)
