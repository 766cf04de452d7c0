"""Step the arrival rate up until p99 breaks the SLO; report throughput at the SLO.

The rate grows by `factor` per step until one step misses the SLO; then `refine` more steps
bisect (geometrically) between the last passing and the first failing rate, so the answer is
within a few per cent instead of within one ×1.5 step. After a failing step the server gets a
few seconds to drain its backlog, so the next step does not inherit it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable

from load.openloop import MakeRequest, Result, run_open
from load.servers import cpu_seconds

# 50 ms is the decide SLO in the issue; a phone's render budget is of that order.
DEFAULT_SLO_MS = 50.0
# More than 1 % errors means the rate is not sustainable, whatever the latency.
MAX_ERROR_RATE = 0.01


@dataclasses.dataclass
class Step:
    result: Result
    server_cpu_s: float

    def row(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.result.summary())
        out["server_cpu_pct"] = round(100 * self.server_cpu_s / self.result.duration_s, 1)
        return out


@dataclasses.dataclass
class Ramp:
    steps: list[Step]
    slo_ms: float

    @property
    def best(self) -> Step | None:
        """The highest-rate step whose p99 met the SLO with few errors."""
        good = [s for s in self.steps if meets(s.result, self.slo_ms)]
        return max(good, key=lambda s: s.result.achieved_rps) if good else None

    def summary(self) -> dict[str, object]:
        best = self.best
        return {
            "slo_ms": self.slo_ms,
            "throughput_at_slo_rps": round(best.result.achieved_rps, 1) if best else 0.0,
            "steps": [s.row() for s in self.steps],
        }


async def search(
    probe: Callable[[float], Awaitable[bool]],
    *,
    start_rps: float,
    factor: float,
    max_rps: float,
    refine: int,
) -> float:
    """Return the highest rate `probe` passed: grow by `factor`, then bisect the bracket."""
    passed, failed = 0.0, None
    rate = start_rps
    while rate <= max_rps:
        if not await probe(rate):
            failed = rate
            break
        passed = rate
        rate *= factor
    if failed is None or passed == 0.0:
        return passed
    for _ in range(refine):
        rate = math.sqrt(passed * failed)
        if await probe(rate):
            passed = rate
        else:
            failed = rate
    return passed


def meets(result: Result, slo_ms: float) -> bool:
    return result.percentile_ms(99) <= slo_ms and result.error_rate <= MAX_ERROR_RATE


async def ramp(
    base_url: str,
    make_request: MakeRequest,
    *,
    server_pid: int | None,
    start_rps: float = 200,
    factor: float = 1.5,
    max_rps: float = 20_000,
    step_s: float = 4.0,
    slo_ms: float = DEFAULT_SLO_MS,
    warmup_s: float = 5.0,
    refine: int = 3,
    drain_s: float = 3.0,
    log: Callable[[str], None] = print,
) -> Ramp:
    """Run steps of increasing rate until one misses the SLO, then bisect `refine` times."""
    steps: list[Step] = []

    async def step(rate: float) -> bool:
        cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
        result = await run_open(base_url, make_request, rate=rate, duration_s=step_s)
        cpu = (cpu_seconds(server_pid) - cpu0) if server_pid else 0.0
        steps.append(Step(result, cpu))
        ok = meets(result, slo_ms)
        log(
            f"  {rate:8.0f} rps → achieved {result.achieved_rps:8.0f}"
            f"  p99 {result.percentile_ms(99):7.2f} ms"
            f"  errors {result.error_rate:.2%}  server cpu {100 * cpu / step_s:5.0f} %"
            + ("" if ok else "  (misses the SLO)")
        )
        await asyncio.sleep(0.5 if ok else drain_s)  # let the server drain between steps
        return ok

    # Warm-up, not recorded: connections, caches, and every worker's model loaded.
    await run_open(base_url, make_request, rate=start_rps, duration_s=warmup_s)
    await asyncio.sleep(0.5)
    await search(step, start_rps=start_rps, factor=factor, max_rps=max_rps, refine=refine)
    return Ramp(steps, slo_ms)
