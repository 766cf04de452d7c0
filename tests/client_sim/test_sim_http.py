"""HTTP mode against the real service (aiohttp test client on a real Valkey)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from client_sim.http_mode import NotLoopback, check_loopback, run_devices
from intent.train import TrainResult
from refreshd.http.keys import REGISTRY, STORE
from refreshd.live.registry import publish
from tests.client_sim.sim_support import small, split_features
from tests.support import MakeClient, now_ms


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


async def test_devices_score_on_the_edge_exactly_like_the_service(
    make_client: MakeClient, sim_model: TrainResult
) -> None:
    # A model trained on the simulator's own log splits on the visit facts the devices send,
    # so edge/service agreement covers them.
    assert {"home_dwell_s", "scrolls_in_visit", "scroll_depth"} & split_features(
        sim_model.model_text
    )
    assert any(f.startswith("launch_") for f in split_features(sim_model.model_text))
    client = await make_client()
    await publish(client.app[STORE], sim_model, created_ts=now_ms(), source="test")
    await client.app[REGISTRY].refresh(client.app[STORE])

    async def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        resp = await client.post(path, json=body)
        return resp.status, await resp.json()

    async def get(path: str) -> tuple[int, str, str | None]:
        resp = await client.get(path)
        return resp.status, await resp.text(), resp.headers.get("X-Model-Version")

    sc = small("travellers")
    stats = await run_devices(sc, post, users=20, hours=2.0, seed=1,
                              now_ms=int(time.time() * 1000), get=get)  # fmt: skip
    assert stats.errors == 0
    assert stats.edge_scored >= 8 and stats.model_downloads == 1
    assert stats.location_refreshes >= 1  # those count as refreshes in the features too
    assert stats.edge_agree == stats.edge_scored


async def test_an_experiment_reports_what_the_devices_saw_per_arm(
    make_client: MakeClient,
) -> None:
    # HTTP mode's half of `refresh-sim run --experiment`: the service assigns and counts, the
    # devices tally what they saw; the report must agree with them arm by arm.
    client = await make_client()
    exp = {"seed": "sim-http", "status": "running", "weights": [0.5, 0.5],
           "variants": [{"key": "control", "params": {"policy": "fixed"}},
                        {"key": "slow", "params": {"policy": "fixed",
                                                   "fallback_interval_s": 1800}}]}  # fmt: skip
    assert (await client.put("/v1/experiments/sim-thr", json=exp)).status == 200

    async def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        resp = await client.post(path, json=body)
        return resp.status, await resp.json()

    stats = await run_devices(small("city_commuters"), post, users=16, hours=0.5, seed=4,
                              now_ms=int(time.time() * 1000), experiment="sim-thr")  # fmt: skip
    assert stats.errors == 0
    report = await (await client.get("/v1/experiments/sim-thr/report")).json()
    arms = {v["key"]: v for v in report["variants"]}
    assert set(stats.arms) == set(arms) == {"control", "slow"}  # both arms got devices
    for key, seen in stats.arms.items():
        got = arms[key]
        assert got["users"] == seen["users"]
        assert round(got["metrics"]["refresh_requests"]["mean"] * got["users"]) == seen["refreshes"]
        assert round(got["metrics"]["clicks"]["mean"] * got["users"]) == seen["clicks"]
