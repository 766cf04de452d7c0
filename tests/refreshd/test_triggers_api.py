"""Event rules over HTTP: CRUD, validation, firing into directives that ride on later contacts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from refreshd.http.keys import SERVICE
from tests.support import FakeClock, MakeClient

RULE = {
    "pattern": [
        {"type": "feedback", "where": {"props.kind": "negative"}},
        {"type": "click", "times": 2},
    ],
    "contiguity": "relaxed",
    "within_s": 600,
    "action": {"type": "refresh", "slots": ["feed"]},
}


async def post_events(
    client: TestClient, batch: str, events: list[dict[str, Any]], **kw: Any
) -> dict:
    resp = await client.post(
        "/v1/events", json={"user_id": "u1", "batch_id": batch, "events": events, **kw}
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def decide(client: TestClient, ts: int, **kw: Any) -> dict:
    resp = await client.post(
        "/v1/decide", json={"user_id": "u1", "ts": ts, "trigger": "scroll", **kw}
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_crud(make_client: MakeClient) -> None:
    client = await make_client()
    listed = await (await client.get("/v1/triggers")).json()
    assert {t["id"] for t in listed["triggers"]} >= {
        "default.pull_refresh",
        "default.negative_feedback",
        "default.payment",
    }
    resp = await client.put("/v1/triggers/neg-clicks", json=RULE)
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == "neg-clicks" and body["rule"]["pattern"][1]["times"] == 2
    assert body["version"] > listed["version"]
    got = await (await client.get("/v1/triggers/neg-clicks")).json()
    assert got["rule"] == body["rule"]
    assert (await client.delete("/v1/triggers/neg-clicks")).status == 204
    assert (await client.get("/v1/triggers/neg-clicks")).status == 404
    assert (await client.delete("/v1/triggers/neg-clicks")).status == 404


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({**RULE, "colour": "red"}, "colour"),
        ({**RULE, "pattern": []}, "pattern"),
        ({**RULE, "within_s": -5}, "within_s"),
        ({**RULE, "pattern": [{"type": "dance"}]}, "pattern[0].type"),
        ({**RULE, "action": {"type": "explode"}}, "action.type"),
    ],
)
async def test_invalid_rules_are_422_naming_the_field(
    make_client: MakeClient, rule: dict, field: str
) -> None:
    client = await make_client()
    resp = await client.put("/v1/triggers/bad", json=rule)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["field"] == field, error
    assert (await client.get("/v1/triggers/bad")).status == 404


async def test_rule_fires_and_directive_rides_until_acked(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock)
    assert (await client.put("/v1/triggers/neg-clicks", json=RULE)).status == 200
    t = clock.ms
    first = await post_events(
        client,
        "b1",
        [
            {
                "type": "feedback",
                "ts": t,
                "props": {"kind": "negative"},
            },  # no slot: the default rule stays quiet
            {"type": "click", "ts": t + 1000},
        ],
    )
    assert first["directives"] == []  # one click is not enough
    second = await post_events(client, "b2", [{"type": "click", "ts": t + 2000}])
    [directive] = second["directives"]  # the response carrying it is "lost": no ack follows
    assert directive["type"] == "refresh" and directive["slots"] == ["feed"]
    assert directive["source"] == "rule:neg-clicks"
    clock.advance(5)
    again = await decide(client, clock.ms)
    assert [d["id"] for d in again["directives"]] == [directive["id"]]
    assert again["refresh"] is True and again["reason"] == "event" and again["slots"] == ["feed"]
    acked = await decide(client, clock.ms + 1, ack=[directive["id"]])
    assert acked["directives"] == []
    # A replayed batch does not fire the rule twice.
    assert (await post_events(client, "b2", [{"type": "click", "ts": t + 2000}]))[
        "duplicate"
    ] is True
    assert (await decide(client, clock.ms + 2))["directives"] == []
    metrics = await (await client.get("/metrics")).text()
    assert 'refreshd_rule_firings_total{rule="neg-clicks"} 1.0' in metrics


async def test_default_rules_refresh_on_pull_feedback_and_payment(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock)
    t = clock.ms
    out = await post_events(
        client,
        "b1",
        [
            {"type": "pull_refresh", "ts": t},
            {"type": "feedback", "ts": t + 1, "slot": "offers", "props": {"kind": "negative"}},
            {"type": "payment", "ts": t + 2, "value": 12.5},
        ],
    )
    by_source = {d["source"]: d for d in out["directives"]}
    assert by_source["rule:default.pull_refresh"].get("slots") is None  # all slots
    assert by_source["rule:default.negative_feedback"]["slots"] == ["offers"]
    assert by_source["rule:default.payment"]["slots"] == ["services"]


async def test_trailing_negation_fires_by_sweep_without_contact(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock)
    rule = {
        "pattern": [{"type": "open"}, {"type": "click", "negated": True}],
        "within_s": 60,
        "action": {"type": "refresh", "slots": ["feed"]},
    }
    assert (await client.put("/v1/triggers/bounce", json=rule)).status == 200
    await post_events(client, "b1", [{"type": "open", "ts": clock.ms}])
    service = client.app[SERVICE]
    assert await service.sweep() == 0  # not due yet
    clock.advance(61)
    assert await service.sweep() == 1  # the window closed with no click
    assert await service.sweep() == 0  # and it fires once
    out = await decide(client, clock.ms)
    assert [d["source"] for d in out["directives"]] == ["rule:bounce"]


async def test_negation_cancelled_by_the_event_in_time(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock)
    rule = {
        "pattern": [{"type": "open"}, {"type": "click", "negated": True}],
        "within_s": 60,
        "action": {"type": "refresh"},
    }
    await client.put("/v1/triggers/bounce", json=rule)
    await post_events(
        client, "b1", [{"type": "open", "ts": clock.ms}, {"type": "click", "ts": clock.ms + 5000}]
    )
    clock.advance(120)
    assert await client.app[SERVICE].sweep() == 0
    assert (await decide(client, clock.ms))["directives"] == []


async def test_rule_changes_reach_another_worker(make_client: MakeClient) -> None:
    a = await make_client(config_poll_s=0.2)
    b = await make_client(config_poll_s=0.2)
    await asyncio.sleep(0.3)
    assert (
        await a.put(
            "/v1/triggers/search-refresh",
            json={
                "pattern": [{"type": "search"}],
                "action": {"type": "refresh", "slots": ["feed"]},
            },
        )
    ).status == 200
    for _ in range(50):  # documented delay: one poll interval
        out = await b.get("/v1/triggers/search-refresh")
        if out.status == 200 and "search-refresh" in b.app[SERVICE].rulebook.rules:
            break
        await asyncio.sleep(0.1)
    assert "search-refresh" in b.app[SERVICE].rulebook.rules
    from tests.support import now_ms

    resp = await b.post(
        "/v1/events",
        json={"user_id": "w", "batch_id": "x", "events": [{"type": "search", "ts": now_ms()}]},
    )
    assert [d["source"] for d in (await resp.json())["directives"]] == ["rule:search-refresh"]
