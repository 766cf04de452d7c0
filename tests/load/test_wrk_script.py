"""The wrk script's bodies are valid: two seconds of each mode against a real service, no refusals.

Skipped when wrk is not installed (`.ci/wrk` installs it). Nothing here is timed; the run only
has to produce requests, and every one of them must be answered 2xx.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from load.mix import fences
from load.wrk import find_wrk, run_wrk
from tests.support import MakeClient

WRK = find_wrk()
pytestmark = pytest.mark.skipif(
    WRK is None, reason="wrk is not installed: run .ci/wrk (Debian/Ubuntu: apt-get install wrk)"
)


def statuses(metrics: str) -> dict[tuple[str, str], float]:
    """Return refreshd_requests_total by (route, status) from a Prometheus scrape."""
    out: dict[tuple[str, str], float] = {}
    pattern = r"^refreshd_requests_total\{(.*)\} (\S+)$"
    for labels, value in re.findall(pattern, metrics, re.M):
        d = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        out[(d["route"], d["status"])] = out.get((d["route"], d["status"]), 0) + float(value)
    return out


@pytest.mark.parametrize(
    ("mode", "routes"),
    [
        ("decide", {"/v1/decide"}),
        ("realistic", {"/v1/decide", "/v1/events", "/v1/location"}),
        ("location", {"/v1/location"}),
        ("events", {"/v1/events"}),
    ],
)
async def test_wrk_script_bodies_are_accepted(
    make_client: MakeClient, mode: str, routes: set[str]
) -> None:
    assert WRK is not None
    client = await make_client()
    for fid, feature in fences(20):
        resp = await client.put(f"/v1/geofences/{fid}", json=feature)
        assert resp.status in (200, 201), await resp.text()
    base = str(client.make_url("")).rstrip("/")
    # run_wrk blocks in wait4; in a thread, the service keeps answering on this loop.
    run = await asyncio.to_thread(run_wrk, base, mode=mode, duration_s=2, connections=4, wrk=WRK)
    assert run.requests > 0
    assert run.status_errors == 0 and run.socket_errors == 0, run.summary()
    scrape = await (await client.get("/metrics")).text()
    counted = {key: n for key, n in statuses(scrape).items() if key[0].startswith("/v1/") and n}
    hit = {route for route, _ in counted}
    assert hit >= routes, counted
    assert {status for route, status in counted if route in routes} == {"200"}, counted
