"""The events comparison: directives piggybacked on the next contact vs push-and-retry.

Both arms deliver the *same* directives: the ones the event rules created for the time
comparison's reference arm (pull-to-refresh, negative feedback, payment).

Policy (what refreshd does): a directive waits in the store and rides on the device's next
response, whatever the request; it costs no request of its own. Its delivery time is the
device's first contact after it was created (`client_sim.device` records it; a directive
still pending at the end of the horizon is delivered at the user's first session after it,
if that comes within the 24 h directive TTL).

Baseline: the service pushes each directive; a push reaches the device with probability
`events.push_success` (10 % by default, the reference's figure); a failed push is retried
after `push_backoff_s`, doubling up to `push_backoff_max_s`, until one gets through or the
directive expires (24 h). Each push is a sync request, and a push that gets through makes
the device fetch the directive: one more. Push outcomes are drawn from each user's own
stream, so the baseline is reproducible.
"""

from __future__ import annotations

import dataclasses

from client_sim.device import ArmStats
from client_sim.population import EVAL, stream
from client_sim.scenario import Scenario
from refreshd.constants import DIRECTIVE_TTL_S

__all__ = ["SyncUser", "sync_user"]


@dataclasses.dataclass(slots=True)
class SyncUser:
    directives: int
    delivered: int
    push_delivered: int
    push_requests: int
    latencies_s: list[float]
    push_latencies_s: list[float]


def sync_user(sc: Scenario, stats: ArmStats, *, seed: int, index: int) -> SyncUser:
    """Return both arms' delivery of one user's directives."""
    rng = stream(seed, EVAL, index, "push")
    cfg = sc.events
    ttl_ms = DIRECTIVE_TTL_S * 1000
    delivered = push_delivered = push_requests = 0
    lat: list[float] = []
    push_lat: list[float] = []
    for _, created, got in stats.directives:
        if got is not None:
            delivered += 1
            lat.append((got - created) / 1000)
        t, backoff = created, cfg.push_backoff_s * 1000
        while t < created + ttl_ms:
            push_requests += 1
            if rng.random() < cfg.push_success:
                push_requests += 1  # the device fetches what the push announced
                push_delivered += 1
                push_lat.append((t - created) / 1000)
                break
            t += int(backoff)
            backoff = min(backoff * 2, cfg.push_backoff_max_s * 1000)
    return SyncUser(len(stats.directives), delivered, push_delivered, push_requests, lat,
                    push_lat)  # fmt: skip
