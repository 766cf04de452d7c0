"""Geofences and location fixes over HTTP."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from refreshd.http.keys import FENCES
from tests.support import FakeClock, MakeClient

LAT, LNG = 31.2304, 121.4737  # a mall in Shanghai


def circle_fence(
    lat: float = LAT, lng: float = LNG, radius_m: float = 100, buffer_m: float = 200
) -> dict:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lng, lat]},
        "properties": {
            "radius_m": radius_m,
            "buffer_m": buffer_m,
            "dwell_s": 60,
            "service_cards": ["parking", {"id": "coupon", "title": "10 % off"}],
        },
    }


def square(lat: float, lng: float, half_deg: float) -> dict:
    ring = [
        [lng - half_deg, lat - half_deg],
        [lng + half_deg, lat - half_deg],
        [lng + half_deg, lat + half_deg],
        [lng - half_deg, lat + half_deg],
        [lng - half_deg, lat - half_deg],
    ]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"buffer_m": 100},
    }


def north_of(metres: float, lat: float = LAT, lng: float = LNG) -> tuple[float, float]:
    return lat + metres / 111_195.0, lng


async def fix(
    client: TestClient, clock: FakeClock, metres: float, accuracy_m: float = 5.0, **kw: Any
) -> dict:
    clock.advance(5)
    lat, lng = north_of(metres)
    resp = await client.post(
        "/v1/location",
        json={
            "user_id": "walker",
            "ts": clock.ms,
            "lat": lat,
            "lng": lng,
            "accuracy_m": accuracy_m,
            **kw,
        },
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_crud(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.put("/v1/geofences/mall", json=circle_fence())
    assert resp.status == 200
    out = await resp.json()
    assert out["feature"]["properties"]["buffer_m"] == 200
    got = await (await client.get("/v1/geofences/mall")).json()
    assert got["feature"] == out["feature"]
    coll = await (await client.get("/v1/geofences")).json()
    assert coll["type"] == "FeatureCollection" and len(coll["features"]) == 1
    assert (await client.delete("/v1/geofences/mall")).status == 204
    assert (await client.get("/v1/geofences/mall")).status == 404


BAD_FENCES = [
    (
        "self-intersecting",
        {
            "type": "Feature",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]],
            },
            "properties": {},
        },
        "geometry",
    ),
    (
        "unclosed ring",
        {
            "type": "Feature",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[0, 0], [0.01, 0], [0.01, 0.01], [0, 0.01]]],
            },
            "properties": {},
        },
        "geometry",
    ),
    ("lat out of range", circle_fence(lat=95.0), "geometry"),
    ("zero radius", {**circle_fence(), "properties": {"radius_m": 0}}, "properties.radius_m"),
    (
        "negative buffer",
        {**circle_fence(), "properties": {"radius_m": 50, "buffer_m": -1}},
        "properties.buffer_m",
    ),
    ("not a feature", {"type": "Point", "coordinates": [0, 0]}, None),
    (
        "line string",
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}},
        "geometry",
    ),
    (
        "too many vertices",
        {
            "type": "Feature",
            "properties": {},
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [
                        [
                            math.cos(t / 10001 * 2 * math.pi) * 0.01,
                            math.sin(t / 10001 * 2 * math.pi) * 0.01,
                        ]
                        for t in range(10001)
                    ]
                    + [[0.01, 0.0]]
                ],
            },
        },
        "geometry",
    ),
]


@pytest.mark.parametrize(("name", "feature", "field"), BAD_FENCES, ids=[b[0] for b in BAD_FENCES])
async def test_bad_geometry_is_422_naming_the_problem(
    make_client: MakeClient, name: str, feature: dict, field: str | None
) -> None:
    client = await make_client(max_body_bytes=4 << 20)
    resp = await client.put("/v1/geofences/bad", json=feature)
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert error["message"]
    if field is not None:
        assert (error["field"] or "").startswith(field), error
    assert (await client.get("/v1/geofences/bad")).status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lat": 91.0}, "lat"),
        ({"lng": 181.0}, "lng"),
        ({"accuracy_m": -1.0}, "accuracy_m"),
        ({"speed_mps": -3.0}, "speed_mps"),
        ({"accuracy_m": "near"}, "accuracy_m"),
        ({"ts": 1}, "ts"),
    ],
)
async def test_bad_fixes_are_422(make_client: MakeClient, body: dict, field: str) -> None:
    client = await make_client()
    from tests.support import now_ms

    base = {"user_id": "u", "ts": now_ms(), "lat": LAT, "lng": LNG, "accuracy_m": 10.0}
    resp = await client.post("/v1/location", json={**base, **body})
    assert resp.status == 422 and (await resp.json())["error"]["field"] == field


async def test_walk_in_dwell_and_out(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock)
    await client.put("/v1/geofences/mall", json=circle_fence())
    far = await fix(client, clock, 2000)
    assert far["zone"] == 1 and far["transitions"] == [] and far["refresh"] is False
    assert 0 < far["coverage"]["radius_m"] <= 2000 - 300 + 1  # never reaches into the buffer
    assert far["next_fix_s"] > 30  # far away: no need for frequent fixes
    kinds: list[str] = []
    cards_seen = False
    for metres in [1500, 900, 400, 250, 250, 150, 50, 0, 0, 0]:
        out = await fix(client, clock, metres)
        kinds += [t["type"] for t in out["transitions"]]
        cards_seen |= bool(out["service_cards"])
        if out["zone"] == 3:
            assert out["next_fix_s"] <= 15  # high-frequency fixes in the buffer ring
    assert kinds.count("enter_buffer") == 1 and kinds.count("enter") == 1
    assert cards_seen and out["zone"] == 4 and "parking" in out["service_cards"]
    clock.advance(60)
    out = await fix(client, clock, 0)
    assert [t["type"] for t in out["transitions"]] == ["dwell"]
    reclaimed = None
    for metres in [200, 300, 400, 600, 900, 1200]:
        out = await fix(client, clock, metres)
        kinds += [t["type"] for t in out["transitions"]]
        reclaimed = reclaimed or next(
            (d for d in out["directives"] if d["type"] == "reclaim_cards"), None
        )
    assert kinds.count("exit") == 1 and kinds.count("exit_buffer") == 1
    assert reclaimed is not None and "parking" in reclaimed["payload"]["cards"]


async def test_leaving_the_coverage_circle_refreshes(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock)
    await client.put("/v1/geofences/mall", json=circle_fence())
    first = await fix(client, clock, 3000)
    radius = first["coverage"]["radius_m"]
    inside = await fix(client, clock, 3000 + radius / 2)
    assert inside["refresh"] is False and inside["zone"] == 1
    out = await fix(client, clock, 3000 + radius + 200)
    assert out["refresh"] is True and out["zone"] == 2
    assert out["coverage"]["lat"] != first["coverage"]["lat"]


async def test_out_of_order_fix_is_ignored(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock)
    await client.put("/v1/geofences/mall", json=circle_fence())
    await fix(client, clock, 0)
    await fix(client, clock, 0)
    lat, lng = north_of(5000)
    stale = await client.post(
        "/v1/location",
        json={
            "user_id": "walker",
            "ts": clock.ms - 60_000,
            "lat": lat,
            "lng": lng,
            "accuracy_m": 5,
        },
    )
    body = await stale.json()
    assert body["ignored"] is True and body["transitions"] == [] and body["zone"] == 4


async def test_decide_with_a_position_refreshes_for_geo(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock)
    await client.put("/v1/geofences/mall", json=circle_fence())
    lat, lng = north_of(5000)
    first = await (
        await client.post(
            "/v1/decide",
            json={"user_id": "d", "ts": clock.ms, "trigger": "scroll", "lat": lat, "lng": lng},
        )
    ).json()
    assert first["reason"] != "geo"  # the first position only sets the circle
    clock.advance(60)
    lat2, lng2 = north_of(5000 + 4000)
    moved = await (
        await client.post(
            "/v1/decide",
            json={"user_id": "d", "ts": clock.ms, "trigger": "scroll", "lat": lat2, "lng": lng2},
        )
    ).json()
    assert moved["refresh"] is True and moved["reason"] == "geo"


async def test_fence_changes_reach_another_worker_within_2_s(make_client: MakeClient) -> None:
    a = await make_client(config_poll_s=0.5)
    b = await make_client(config_poll_s=0.5)
    await a.put("/v1/geofences/mall", json=circle_fence())
    loop = asyncio.get_running_loop()
    start = loop.time()
    while b.app[FENCES].index.get("mall") is None:
        assert loop.time() - start < 2.0, "fence did not reach the other worker within 2 s"
        await asyncio.sleep(0.05)
