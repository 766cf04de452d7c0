"""Admin token on configuration writes, per-user rate limiting, no stack traces."""

from __future__ import annotations

import pytest

from tests.support import FakeClock, MakeClient

RULE = {"pattern": [{"type": "search"}], "action": {"type": "refresh"}}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic abc"}, 401),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"Authorization": "Bearer s3cret"}, 200),
    ],
)
async def test_admin_writes_need_the_token(
    make_client: MakeClient, headers: dict, status: int
) -> None:
    client = await make_client(admin_token="s3cret")
    resp = await client.put("/v1/triggers/r1", json=RULE, headers=headers)
    assert resp.status == status
    if status != 200:
        body = await resp.json()
        assert body["error"]["code"] in ("unauthorized", "forbidden")
    # Reads and device traffic never need it.
    assert (await client.get("/v1/triggers")).status == 200


async def test_every_admin_route_is_guarded(make_client: MakeClient) -> None:
    from refreshd.http.routes import ROUTES

    client = await make_client(admin_token="s3cret")
    admin = [r for r in ROUTES if r.admin]
    assert {(r.method, r.path) for r in admin} >= {
        ("PUT", "/v1/triggers/{id}"),
        ("DELETE", "/v1/triggers/{id}"),
        ("PUT", "/v1/experiments/{id}"),
        ("POST", "/v1/directives"),
    }
    for r in admin:
        resp = await client.request(r.method, r.path.replace("{id}", "x"), json={})
        assert resp.status == 401, (r.method, r.path)


async def test_without_a_token_configured_admin_routes_are_open(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await client.put("/v1/triggers/r1", json=RULE)).status == 200


async def test_per_user_rate_limit(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock, user_rate_per_s=1.0, user_burst=3)
    statuses = []
    for _ in range(5):
        resp = await client.post(
            "/v1/decide", json={"user_id": "flood", "ts": clock.ms, "trigger": "scroll"}
        )
        statuses.append(resp.status)
    assert statuses == [200, 200, 200, 429, 429]
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"]["code"] == "rate_limited"
    other = await client.post(
        "/v1/decide", json={"user_id": "calm", "ts": clock.ms, "trigger": "scroll"}
    )
    assert other.status == 200
    clock.advance(1.0)
    again = await client.post(
        "/v1/decide", json={"user_id": "flood", "ts": clock.ms, "trigger": "scroll"}
    )
    assert again.status == 200
