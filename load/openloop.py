"""Open-model load: requests start on a fixed arrival schedule, whatever the server does.

Latency is measured from each request's *scheduled* start, so a server that stalls is charged
for the queue it causes (no coordinated omission). Targets must be loopback addresses, and
every run is bounded in request count and wall time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from hdrh.histogram import HdrHistogram

# Latencies are recorded in microseconds, from 1 µs to 60 s, 3 significant digits.
HIST_MAX_US = 60_000_000
# Past this many requests in flight the server is clearly saturated; later arrivals are
# counted as errors (dropped) instead of piling up unbounded client-side tasks.
DEFAULT_MAX_INFLIGHT = 2000

Request = tuple[str, str, bytes | None]  # method, path, JSON body
MakeRequest = Callable[[int], Request]


def check_loopback(base_url: str) -> None:
    """Refuse any target that is not this machine."""
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"load targets must be loopback addresses, not {host!r}")


@dataclasses.dataclass
class Result:
    rate: float
    duration_s: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    dropped: int = 0
    statuses: dict[int, int] = dataclasses.field(default_factory=dict)
    hist: HdrHistogram = dataclasses.field(default_factory=lambda: HdrHistogram(1, HIST_MAX_US, 3))

    def percentile_ms(self, p: float) -> float:
        return (
            float(self.hist.get_value_at_percentile(p)) / 1000
            if self.hist.get_total_count()
            else 0.0
        )

    @property
    def achieved_rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    @property
    def error_rate(self) -> float:
        return (self.errors + self.dropped) / self.sent if self.sent else 0.0

    def summary(self) -> dict[str, float | int | dict[int, int]]:
        return {
            "target_rps": self.rate,
            "achieved_rps": round(self.achieved_rps, 1),
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "dropped": self.dropped,
            "error_rate": round(self.error_rate, 5),
            "p50_ms": self.percentile_ms(50),
            "p90_ms": self.percentile_ms(90),
            "p99_ms": self.percentile_ms(99),
            "p999_ms": self.percentile_ms(99.9),
            "statuses": dict(sorted(self.statuses.items())),
        }


async def run_open(
    base_url: str,
    make_request: MakeRequest,
    *,
    rate: float,
    duration_s: float,
    max_inflight: int = DEFAULT_MAX_INFLIGHT,
    timeout_s: float = 10.0,
    session: aiohttp.ClientSession | None = None,
) -> Result:
    """Send `rate` requests per second for `duration_s` seconds on a fixed schedule."""
    check_loopback(base_url)
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration_s must be positive")
    total = int(rate * duration_s)
    result = Result(rate=rate, duration_s=duration_s)
    own = session is None
    connector = aiohttp.TCPConnector(limit=max_inflight, force_close=False)
    session = session or aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
    )
    inflight = 0
    tasks: set[asyncio.Task[None]] = set()
    headers = {"Content-Type": "application/json"}

    async def one(i: int, scheduled: float) -> None:
        nonlocal inflight
        method, path, body = make_request(i)
        try:
            async with session.request(method, base_url + path, data=body, headers=headers) as resp:
                await resp.read()
                result.statuses[resp.status] = result.statuses.get(resp.status, 0) + 1
                if resp.status < 400 or resp.status == 409:
                    result.ok += 1
                else:
                    result.errors += 1
        except (aiohttp.ClientError, TimeoutError, OSError):
            result.errors += 1
        finally:
            inflight -= 1
            elapsed_us = int((time.perf_counter() - scheduled) * 1_000_000)
            result.hist.record_value(max(1, min(elapsed_us, HIST_MAX_US)))

    start = time.perf_counter() + 0.05
    try:
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            result.sent += 1
            if inflight >= max_inflight:
                result.dropped += 1
                continue
            inflight += 1
            task = asyncio.create_task(one(i, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(list(tasks), timeout=timeout_s)
        for t in list(tasks):  # bounded: whatever is still running after the timeout is cut
            t.cancel()
    finally:
        if own:
            await session.close()
    return result
