"""HTTP mode against the real service (aiohttp test client on a real Valkey)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from client_sim.http_mode import NotLoopback, check_loopback, run_devices
from tests.client_sim.sim_support import small
from tests.support import MakeClient


@pytest.mark.parametrize("url", ["http://10.0.0.1:8080", "https://127.0.0.1", "http://example.com"])
def test_refuses_non_loopback(url: str) -> None:
    with pytest.raises(NotLoopback):
        check_loopback(url)


def test_accepts_loopback() -> None:
    assert check_loopback("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"


async def test_devices_run_against_the_service(make_client: MakeClient) -> None:
    client = await make_client()

    async def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        resp = await client.post(path, json=body)
        return resp.status, await resp.json()

    sc = small("city_commuters", behaviour={"payment_prob_utility": 1.0})
    stats = await run_devices(sc, post, users=6, hours=0.5, seed=2,
                              now_ms=int(time.time() * 1000))  # fmt: skip
    assert stats.errors == 0
    assert stats.requests.get("/v1/decide", 0) >= 6
    assert stats.requests.get("/v1/events", 0) >= 1
    assert stats.directives_received > 0
    assert stats.directives_acked == stats.directives_received
