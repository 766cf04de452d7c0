"""GET /v1/recommendations and POST /v1/dedupe over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import MakeClient

SLOTS = "feed,nearby,services,offers"


def entities(body: dict[str, Any]) -> list[str]:
    return [i["entity_id"] for s in body["slots"] for i in s["items"]]


async def test_independent_slots_repeat_entities_and_cloud_dedupe_removes_them(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    repeats = 0
    for u in range(20):
        resp = await client.get("/v1/recommendations", params={"user_id": f"u{u}", "slots": SLOTS})
        assert resp.status == 200
        body = await resp.json()
        assert [s["slot"] for s in body["slots"]] == SLOTS.split(",")
        ents = entities(body)
        repeats += len(ents) - len(set(ents))
        cloud = await (
            await client.get(
                "/v1/recommendations",
                params={"user_id": f"u{u}", "slots": SLOTS, "dedupe": "cloud"},
            )
        ).json()
        ents = entities(cloud)
        assert len(ents) == len(set(ents)) and cloud["dedupe"] == "cloud"
        assert {d["rule"] for d in cloud["dropped"]} <= {
            "exact_id",
            "same_entity",
            "same_label",
            "recently_shown",
        }
    assert repeats > 0  # the recommenders overlap, as in production


async def test_same_request_same_answer(make_client: MakeClient) -> None:
    client = await make_client()
    params = {"user_id": "u1", "slots": "feed,nearby", "lat": "31.23", "lng": "121.47", "n": "5"}
    a = await (await client.get("/v1/recommendations", params=params)).json()
    b = await (await client.get("/v1/recommendations", params=params)).json()
    assert a == b and all(len(s["items"]) == 5 for s in a["slots"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "user_id"),
        ({"user_id": "a{b}"}, "user_id"),
        ({"user_id": "u", "slots": ",".join(f"s{i}" for i in range(9))}, "slots"),
        ({"user_id": "u", "lat": "95", "lng": "0"}, "lat"),
        ({"user_id": "u", "lat": "1"}, "lng"),
        ({"user_id": "u", "lat": "x", "lng": "1"}, "lat"),
        ({"user_id": "u", "n": "0"}, "n"),
        ({"user_id": "u", "dedupe": "edge"}, "dedupe"),
    ],
)
async def test_bad_queries(make_client: MakeClient, params: dict[str, str], field: str) -> None:
    client = await make_client()
    resp = await client.get("/v1/recommendations", params=params)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == field


def item(
    item_id: str, entity: str, score: float, category: str = "food", labels: list[str] | None = None
) -> dict:
    return {
        "item_id": item_id,
        "entity_id": entity,
        "category": category,
        "labels": labels or [],
        "score": score,
    }


@pytest.mark.parametrize("strategy", ["greedy", "optimal"])
async def test_dedupe_endpoint(make_client: MakeClient, strategy: str) -> None:
    client = await make_client()
    body = {
        "slots": [
            {"slot": "nearby", "items": [item("i1", "e1", 0.2), item("i2", "e2", 0.9)]},
            {
                "slot": "services",
                "items": [item("i3", "e1", 0.8), item("i4", "e3", 0.5, labels=["m:1"])],
            },
            {"slot": "offers", "items": [item("i5", "e4", 0.4, labels=["m:1"])]},
        ],
        "strategy": strategy,
    }
    resp = await client.post("/v1/dedupe", json=body)
    assert resp.status == 200, await resp.text()
    out = await resp.json()
    kept = entities(out)
    assert len(kept) == len(set(kept))
    if strategy == "greedy":  # first slot in render order wins
        assert [i["item_id"] for i in out["slots"][0]["items"]] == ["i1", "i2"]
        assert {"slot": "services", "item_id": "i3", "rule": "same_entity"} in out["dropped"]
        assert out["total_score"] == pytest.approx(0.2 + 0.9 + 0.5)
    else:  # keeping i3 (0.8) instead of i1 (0.2) scores more
        assert out["total_score"] == pytest.approx(0.9 + 0.8 + 0.5)


@pytest.mark.parametrize(
    ("rules", "field_prefix"),
    [([{"rule": "category_cap", "k": -1}], "rules[0]"), ([{"rule": "nope"}], "rules[0]")],
)
async def test_bad_rules_are_422(
    make_client: MakeClient, rules: list[dict], field_prefix: str
) -> None:
    client = await make_client()
    body = {"slots": [{"slot": "a", "items": [item("i1", "e1", 1.0)]}], "rules": rules}
    resp = await client.post("/v1/dedupe", json=body)
    assert resp.status == 422
    assert (await resp.json())["error"]["field"].startswith(field_prefix)


async def test_negative_score_is_422(make_client: MakeClient) -> None:
    client = await make_client()
    body = {"slots": [{"slot": "a", "items": [item("i1", "e1", -1.0)]}]}
    resp = await client.post("/v1/dedupe", json=body)
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "slots[0].items[0].score"


def without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            {"slots": [{"slot": "a", "items": [without(item("i1", "e1", 1.0), "item_id")]}]},
            "slots[0].items[0].item_id",
            id="item-without-id",
        ),
        pytest.param(
            {"slots": [{"slot": "a", "items": [item("i1", "e1", 1.0), item("", "e2", 1.0)]}]},
            "slots[0].items[1].item_id",
            id="empty-item-id",
        ),
        pytest.param(
            {"slots": [{"slot": "a", "items": [item("", "e1", 1.0)]}]},
            "slots[0].items[0].item_id",
            id="empty-first-item-id",
        ),
        pytest.param(
            {
                "slots": [
                    {"slot": "nearby", "items": [item("i1", "e1", 1.0)]},
                    {"slot": "nearby", "items": [item("i2", "e2", 1.0)]},
                ]
            },
            "slots[1].slot",
            id="duplicate-slot-names",
        ),
        pytest.param(
            {
                "slots": [
                    {"slot": "nearby", "items": []},
                    {"slot": "feed", "items": []},
                    {"slot": "nearby", "items": []},
                ],
                "strategy": "optimal",
            },
            "slots[2].slot",
            id="duplicate-slot-names-optimal",
        ),
        pytest.param(
            {"slots": [{"slot": "a", "items": []}], "rules": [{"rule": "same_brand"}]},
            "rules[0].rule",
            id="unknown-rule-type",
        ),
        pytest.param(
            {"slots": [{"slot": "a", "items": []}], "rules": [{"k": 2}]},
            "rules[0].rule",
            id="rule-without-type",
        ),
        pytest.param(
            {"slots": [{"slot": "a", "items": []}], "strategy": "best"},
            "strategy",
            id="unknown-strategy",
        ),
    ],
)
async def test_bad_dedupe_bodies_are_422_naming_the_field(
    make_client: MakeClient, body: dict[str, Any], field: str
) -> None:
    client = await make_client()
    resp = await client.post("/v1/dedupe", json=body)
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert error["field"] == field
