"""Experiments over HTTP: config, assignment, exposure, statistics that match the logs."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient

from refreshd.core.experiments import assign, parse_experiment
from tests.support import MakeClient, now_ms, raw_log

EXP = {
    "seed": "thr-2026",
    "hash_version": 2,
    "coverage": 1.0,
    "weights": [0.5, 0.5],
    "status": "running",
    "variants": [
        {"key": "control", "params": {"policy": "fixed"}},
        {"key": "t30", "params": {"policy": "intent", "threshold": 0.3}},
    ],
}


async def put(client: TestClient, exp_id: str, body: dict[str, Any]) -> Any:
    return await client.put(f"/v1/experiments/{exp_id}", json=body)


async def test_crud_and_assignment(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await put(client, "thr", EXP)
    assert resp.status == 200, await resp.text()
    got = await (await client.get("/v1/experiments/thr")).json()
    assert got["experiment"]["seed"] == "thr-2026"
    assert [
        e["id"] for e in (await (await client.get("/v1/experiments")).json())["experiments"]
    ] == ["thr"]
    cfg = parse_experiment("thr", EXP)
    for uid in ("u1", "u2", "alice", "bob"):
        a = await (
            await client.get("/v1/experiments/thr/assignment", params={"user_id": uid})
        ).json()
        expected = assign("thr", cfg, uid)
        assert a == {"in_experiment": True, "variant": expected.variant, "hash": expected.hash}
    assert (await client.get("/v1/experiments/nope")).status == 404
    assert (await client.get("/v1/experiments/thr/assignment")).status == 422


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"weights": [0.6, 0.6]}, "weights"),
        ({"coverage": 1.5}, "coverage"),
        ({"variants": [{"key": "a"}, {"key": "a"}]}, "variants"),
        ({"hash_version": 3}, "hash_version"),
        ({"colour": 1}, "colour"),
    ],
)
async def test_invalid_experiments_are_422(
    make_client: MakeClient, change: dict, field: str
) -> None:
    client = await make_client()
    resp = await put(client, "bad", {**EXP, **change})
    assert resp.status == 422
    assert (await resp.json())["error"]["field"].startswith(field)


async def test_started_experiment_cannot_change_its_buckets(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await put(client, "thr", EXP)).status == 200
    resp = await put(client, "thr", {**EXP, "weights": [0.9, 0.1]})
    assert resp.status == 409 and (await resp.json())["error"]["field"] == "weights"
    assert (
        await put(client, "thr", {**EXP, "status": "stopped"})
    ).status == 200  # status may change


async def drive(clients: list[TestClient], users: list[str], rng: random.Random) -> None:
    async def one_user(i: int, uid: str) -> None:
        client = clients[i % len(clients)]
        t = now_ms() - 600_000
        for step in range(4):
            t += rng.randrange(1_000, 60_000)
            trigger = rng.choice(["open", "return", "scroll", "pull"])
            body = {"user_id": uid, "ts": t, "trigger": trigger}
            assert (await client.post("/v1/decide", json=body)).status == 200
            events = [
                {
                    "type": rng.choice(["impression", "impression", "click", "open"]),
                    "ts": t + rng.randrange(-5_000, 5_000),
                }
                for _ in range(rng.randrange(1, 6))
            ]
            resp = await client.post(
                "/v1/events", json={"user_id": uid, "batch_id": f"{uid}-{step}", "events": events}
            )
            assert resp.status == 200

    await asyncio.gather(*(one_user(i, u) for i, u in enumerate(users)))


def expected_from_logs(raw: redis.Redis) -> dict[str, dict[str, int]]:
    decisions = raw_log(raw, "log:decisions")
    events = raw_log(raw, "log:events")
    exposed: dict[str, tuple[str, int]] = {}
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for d in sorted(decisions, key=lambda d: d["ts"]):
        if d.get("experiment") != "thr":
            continue
        if d["user_id"] not in exposed:
            exposed[d["user_id"]] = (d["variant"], d["ts"])
            out[d["variant"]]["users"] += 1
        out[d["variant"]]["refreshes"] += d["refresh"]
    for e in events:
        if e["user_id"] in exposed:
            variant, since = exposed[e["user_id"]]
            if e["ts"] >= since and e["type"] in ("click", "impression"):
                out[variant][e["type"] + "s"] += 1
    return out


@pytest.mark.parametrize("workers", [1, 2])
async def test_report_counts_equal_counts_from_the_logs(
    make_client: MakeClient, raw: redis.Redis, workers: int
) -> None:
    clients = [await make_client() for _ in range(workers)]
    assert (await put(clients[0], "thr", EXP)).status == 200
    for c in clients[1:]:  # the other worker picks it up on its next poll; force it now
        from refreshd.http.keys import EXPERIMENTS, STORE

        await c.app[EXPERIMENTS].refresh(c.app[STORE])
    users = [f"user{i}" for i in range(60)]
    await drive(clients, users, random.Random(workers))
    report = await (await clients[0].get("/v1/experiments/thr/report")).json()
    assert report["experiment"] == "thr" and 0 <= report["srm_p"] <= 1
    expected = expected_from_logs(raw)
    assert sum(v["users"] for v in report["variants"]) == len(users)
    for v in report["variants"]:
        want = expected[v["key"]]
        n = v["users"]
        assert n == want["users"]
        assert v["metrics"]["refresh_requests"]["mean"] == pytest.approx(want["refreshes"] / n)
        assert v["metrics"]["clicks"]["mean"] == pytest.approx(want["clicks"] / n)
        if want["impressions"]:
            assert v["metrics"]["pvctr"]["mean"] == pytest.approx(
                want["clicks"] / want["impressions"]
            )
    treatment = report["variants"][1]["metrics"]["refresh_requests"]
    assert set(treatment) >= {"mean", "relative_lift", "ci", "p_value", "chance_to_win"}
