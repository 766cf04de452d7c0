"""Holdouts over HTTP: held-out users stay on the fixed rule and out of every experiment, and
the report sets them against everyone else."""

from __future__ import annotations

from typing import Any

import pytest

from refreshd.core.experiments import assign
from refreshd.core.holdouts import as_experiment, parse_holdout
from tests.support import MakeClient, now_ms

EXP = {
    "seed": "thr-2026",
    "status": "running",
    "variants": [
        {"key": "control", "params": {"policy": "fixed"}},
        {"key": "t30", "params": {"policy": "intent", "threshold": 0.3}},
    ],
}
HOLDOUT = {"share": 0.2}


async def test_held_out_users_never_enter_an_experiment_and_are_reported(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    assert (await client.put("/v1/holdouts/main", json=HOLDOUT)).status == 200
    assert (await client.put("/v1/experiments/thr", json=EXP)).status == 200
    held_cfg = as_experiment("main", parse_holdout("main", HOLDOUT))
    users = [f"h{i}" for i in range(300)]
    t = now_ms() - 60_000
    held, general = [], []
    for uid in users:
        resp = await client.post("/v1/decide", json={"user_id": uid, "ts": t, "trigger": "open"})
        body = await resp.json()
        assert resp.status == 200, body
        if assign("holdout:main", held_cfg, uid).variant == "holdout":
            held.append(uid)
            assert body["experiment"] == {"id": "holdout:main", "variant": "holdout"}
            assert body["reason"] not in ("intent", "no_intent")  # the fixed rule decided
        else:
            general.append(uid)
            assert body["experiment"]["id"] == "thr"
        events = [{"type": "impression", "ts": t + 10}, {"type": "click", "ts": t + 20}]
        resp = await client.post(
            "/v1/events", json={"user_id": uid, "batch_id": "b1", "events": events}
        )
        assert resp.status == 200
    assert 30 < len(held) < 90  # about 20 % of 300
    report = await (await client.get("/v1/holdouts/main/report")).json()
    assert [(v["key"], v["users"]) for v in report["variants"]] == [
        ("holdout", len(held)),
        ("general", len(general)),
    ]
    assert report["srm_warning"] is False
    # Every user clicked once since exposure, in either group.
    assert report["variants"][0]["metrics"]["clicks"]["mean"] == pytest.approx(1.0)
    assert report["variants"][1]["metrics"]["clicks"]["mean"] == pytest.approx(1.0)
    exp = await (await client.get("/v1/experiments/thr/report")).json()
    assert sum(v["users"] for v in exp["variants"]) == len(general)  # no held-out user


async def test_the_audit_and_a_replay_keep_the_holdout(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await client.put("/v1/holdouts/all", json={"share": 0.5, "seed": "s"})).status == 200
    cfg = as_experiment("all", parse_holdout("all", {"share": 0.5, "seed": "s"}))
    uid = next(
        f"a{i}" for i in range(100) if assign("holdout:all", cfg, f"a{i}").variant == "holdout"
    )
    resp = await client.post("/v1/decide", json={"user_id": uid, "ts": now_ms(), "trigger": "open"})
    did = (await resp.json())["decision_id"]
    audit = await (await client.get(f"/v1/decisions/{did}")).json()
    assert audit["experiment"] == {"id": "holdout:all", "variant": "holdout"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"share": 0}, "share"),
        ({"share": 0.6}, "share"),
        ({"share": "a fifth"}, "share"),
        ({}, "share"),
        ({"share": 0.1, "status": "paused"}, "status"),
        ({"share": 0.1, "metrics": ["clicks", "clicks"]}, "metrics"),
        ({"share": 0.1, "guardrails": ["crashes"]}, "guardrails[0]"),
        ({"share": 0.1, "stats": {"correction": "bonferroni"}}, "stats.correction"),
        ({"share": 0.1, "colour": "red"}, "colour"),
    ],
)
async def test_bad_holdouts_are_422_naming_the_field_and_write_nothing(
    make_client: MakeClient, body: dict[str, Any], field: str
) -> None:
    client = await make_client()
    resp = await client.put("/v1/holdouts/bad", json=body)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["field"] == field
    assert (await client.get("/v1/holdouts/bad")).status == 404


async def test_a_started_holdout_keeps_its_users_and_unknown_ids_are_404(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    assert (await client.put("/v1/holdouts/main", json=HOLDOUT)).status == 200
    resp = await client.put("/v1/holdouts/main", json={"share": 0.3})
    assert resp.status == 409 and (await resp.json())["error"]["field"] == "share"
    assert (
        await client.put("/v1/holdouts/main", json={**HOLDOUT, "status": "stopped"})
    ).status == 200
    assert (await client.get("/v1/holdouts/nope/report")).status == 404
    listed = await (await client.get("/v1/holdouts")).json()
    assert [h["id"] for h in listed["holdouts"]] == ["main"]
    assert (await client.delete("/v1/holdouts/main")).status in (200, 204)
    assert (await client.get("/v1/holdouts/main")).status == 404
