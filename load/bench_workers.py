"""CPU seconds per decision for 1 and 2 workers at the same offered load, and their ratio.

Throughput of 2 workers against 1 cannot be measured on a 2-core machine that also runs the
generator and Valkey; what a second worker costs can. Both servers get the same open-model
decide-only load at a rate well below either's capacity, and the CPU of every process of the
server's tree (the workers and their parent; Valkey excluded) is read from /proc over the run.
A ratio near 1 means the second worker adds no work per decision (no lock contention, no
duplicated background tasks worth counting); above 1 is what each decision pays for it. The
servers' idle CPU share (measured for a few seconds before the load) tells a fixed cost per
worker from a cost per decision (e.g. each worker's user cache holding half the users).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from load import servers
from load.mix import decide_only
from load.openloop import run_open


def measure(
    workers: int, *, rate: float, duration_s: float, warmup_s: float, seed: int, idle_s: float = 3.0
) -> dict[str, Any]:
    """One fresh server with `workers` workers: warm it, then CPU per decision at `rate`."""
    with servers.refreshd(workers) as (url, pid):
        if warmup_s > 0:
            asyncio.run(run_open(url, decide_only(seed=seed + 100).request, rate=rate,
                                 duration_s=warmup_s))  # fmt: skip
        idle0 = servers.cpu_seconds(pid)
        time.sleep(idle_s)  # what the workers burn with no requests: pollers, probes
        cpu0 = servers.cpu_seconds(pid)
        idle = (cpu0 - idle0) / idle_s
        res = asyncio.run(
            run_open(url, decide_only(seed=seed).request, rate=rate, duration_s=duration_s)
        )
        cpu = servers.cpu_seconds(pid) - cpu0
    return {
        "workers": workers,
        "decisions": res.ok,
        "errors": res.errors + res.dropped,
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_decision": round(cpu / res.ok * 1000, 4) if res.ok else None,
        "idle_cpu_share": round(idle, 4),
        "p99_ms": res.percentile_ms(99),
    }


def run(
    rate: float = 400.0,
    duration_s: float = 10.0,
    rounds: int = 2,
    warmup_s: float = 2.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Alternate 1 and 2 workers `rounds` times; the ratio is of the summed CPU per decision."""
    log(
        f"== CPU per decision, 1 against 2 workers at {rate:g} rps decide-only "
        f"({rounds} × {duration_s:g} s each); load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    runs: list[dict[str, Any]] = []
    for r in range(rounds):
        for workers in (1, 2):
            one = measure(workers, rate=rate, duration_s=duration_s, warmup_s=warmup_s, seed=r)
            log(f"   {one}")
            runs.append(one)

    def per_decision(workers: int) -> float:
        mine = [x for x in runs if x["workers"] == workers]
        decisions = sum(x["decisions"] for x in mine)
        return sum(x["cpu_s"] for x in mine) / decisions * 1000 if decisions else float("nan")

    def idle(workers: int) -> float:
        mine = [x["idle_cpu_share"] for x in runs if x["workers"] == workers]
        return sum(mine) / len(mine)

    one_ms, two_ms = per_decision(1), per_decision(2)
    ratio = two_ms / one_ms if one_ms else float("nan")
    log(
        f"   CPU per decision: 1 worker {one_ms:.3f} ms, 2 workers {two_ms:.3f} ms, "
        f"2 / 1 = {ratio:.2f}; idle CPU {idle(1):.1%} and {idle(2):.1%} of a core; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    return {
        "rate": rate,
        "runs": runs,
        "cpu_ms_per_decision_1_worker": one_ms,
        "cpu_ms_per_decision_2_workers": two_ms,
        "ratio_2_over_1": ratio,
        "idle_cpu_share_1_worker": idle(1),
        "idle_cpu_share_2_workers": idle(2),
    }


if __name__ == "__main__":
    run()
