"""Micro-benchmark of the feature parity report: decision rows compared per second.

`python -m load.bench_parity` prints one run's numbers. Not a test: nothing is asserted. The
synthetic log's decisions get the vectors a point-in-time rebuild gives them as their logged
`features` (so every row matches), then the report runs over the whole log, rebuild and
comparison together, as `refreshd parity` does once it has read the logs.
"""

from __future__ import annotations

import json
import time
from typing import Any

from intent.dataset import build_dataset
from intent.parity import parity
from synth.eventlog import generate


def run(seed: int = 0) -> dict[str, Any]:
    """Time the parity report over 300 synthetic users' 3 days."""
    log = generate(users=300, days=3, seed=seed)
    served = build_dataset(log.decisions, log.events, triggers=None)
    vectors = dict(zip(served.decision_ids, served.X.tolist(), strict=True))
    decisions = [d | {"features": vectors[d["decision_id"]]} for d in log.decisions]
    until = max(d["ts"] for d in decisions) + 1
    start = time.perf_counter()
    report = parity(decisions, log.events, since_ms=0, until_ms=until)
    seconds = time.perf_counter() - start
    return {
        "decisions": report.decisions,
        "rows_compared": report.rows_compared,
        "event_rows": report.event_rows,
        "match_rate": report.match_rate,
        "seconds": seconds,
        "rows_per_s": report.rows_compared / seconds,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
