"""Admin token on configuration writes and reads, secure-by-default start, request ids, request
size bounds, per-user rate limiting, no stack traces."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest

from refreshd import constants as C
from refreshd.cli import is_loopback
from tests.support import FakeClock, MakeClient, now_ms

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
    # Configuration reads need it as well (issue 18: rules and fences are business data).
    assert (await client.get("/v1/triggers", headers=headers)).status == status


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
        resp = await client.request(r.method, re.sub(r"{\w+}", "x", r.path), json={})
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


CONFIG_READS = [
    "/v1/triggers",
    "/v1/triggers/r1",
    "/v1/geofences",
    "/v1/geofences/g1",
    "/v1/experiments",
    "/v1/experiments/e1",
    "/v1/experiments/e1/report",
    "/v1/policy",
    "/v1/models",
    "/v1/features",
    "/metrics",
]


@pytest.mark.parametrize("path", CONFIG_READS)
async def test_configuration_reads_need_the_token_when_one_is_set(
    make_client: MakeClient, path: str
) -> None:
    client = await make_client(admin_token="s3cret")
    assert (await client.get(path)).status == 401
    assert (await client.get(path, headers={"Authorization": "Bearer nope"})).status == 403
    ok = await client.get(path, headers={"Authorization": "Bearer s3cret"})
    assert ok.status in (200, 404)  # 404: the item does not exist, but the caller may ask
    open_client = await make_client()
    assert (await open_client.get(path)).status in (200, 404)


async def test_device_routes_stay_open_with_a_token(make_client: MakeClient) -> None:
    client = await make_client(admin_token="s3cret")
    ts = now_ms()
    assert (
        await client.post("/v1/decide", json={"user_id": "d", "ts": ts, "trigger": "open"})
    ).status == 200
    events = {"user_id": "d", "batch_id": "b", "events": [{"type": "open", "ts": ts}]}
    assert (await client.post("/v1/events", json=events)).status == 200
    fix = {"user_id": "d", "ts": ts, "lat": 31.23, "lng": 121.47, "accuracy_m": 5}
    assert (await client.post("/v1/location", json=fix)).status == 200
    for path in ("/healthz", "/readyz", "/openapi.json", "/v1/recommendations?user_id=d"):
        assert (await client.get(path)).status in (200, 503), path


async def test_tokens_are_compared_in_constant_time() -> None:
    import inspect

    from refreshd.http import middleware

    source = inspect.getsource(middleware.require_token)
    assert "hmac.compare_digest" in source and "==" not in source


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    environ = {k: v for k, v in os.environ.items() if k != "REFRESHD_ADMIN_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "refreshd", "serve", *args],
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_off_loopback_without_a_token_refuses_to_start() -> None:
    proc = _serve("--host", "0.0.0.0", "--port", "0")
    assert proc.returncode == 2
    assert "REFRESHD_ADMIN_TOKEN" in proc.stderr and "--insecure-no-auth" in proc.stderr


def test_serve_off_loopback_with_insecure_no_auth_gets_past_the_check() -> None:
    # An impossible port stops it right after the check, before anything binds.
    proc = _serve("--host", "0.0.0.0", "--port", "70000", "--insecure-no-auth")
    assert "refusing" not in proc.stderr and "--port must be" in proc.stderr
    proc = _serve("--host", "0.0.0.0", "--port", "70000", env={"REFRESHD_ADMIN_TOKEN": "s3cret"})
    assert "refusing" not in proc.stderr and "--port must be" in proc.stderr


async def test_request_ids_are_echoed_or_made(make_client: MakeClient) -> None:
    client = await make_client()
    mine = await client.get("/healthz", headers={"X-Request-Id": "req-42.a:b@c"})
    assert mine.headers["X-Request-Id"] == "req-42.a:b@c"
    made = await client.get("/healthz")
    assert len(made.headers["X-Request-Id"]) == 32
    for bad in ("a b", "x" * 129, "evil\u00e9", "<script>"):
        resp = await client.get("/healthz", headers={"X-Request-Id": bad})
        assert resp.headers["X-Request-Id"] != bad
    error = await client.get("/v1/nope", headers={"X-Request-Id": "r-404"})
    assert error.status == 404 and error.headers["X-Request-Id"] == "r-404"


async def test_request_id_is_in_the_log_line_of_an_error(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client()
    from refreshd.http.keys import SERVICE

    service = client.app[SERVICE]

    async def boom(req: object) -> object:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(service, "decide", boom)
    with caplog.at_level(logging.ERROR, logger="refreshd.http.middleware"):
        resp = await client.post(
            "/v1/decide",
            json={"user_id": "u", "ts": now_ms(), "trigger": "open"},
            headers={"X-Request-Id": "trace-me-1"},
        )
    assert resp.status == 500 and resp.headers["X-Request-Id"] == "trace-me-1"
    assert any("trace-me-1" in r.getMessage() for r in caplog.records)


async def test_oversized_query_string_gets_414_with_the_error_body(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    resp = await client.get("/v1/recommendations?user_id=u&pad=" + "x" * C.MAX_QUERY_BYTES)
    assert resp.status == 414
    assert (await resp.json())["error"]["code"] == "uri_too_long"


async def test_oversized_header_gets_431_with_the_error_body(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.get("/healthz", headers={"X-Pad": "x" * C.MAX_HEADER_BYTES})
    assert resp.status == 431
    body = await resp.json()
    assert body["error"]["code"] == "headers_too_large" and resp.headers["X-Request-Id"]


async def test_aiohttp_parser_limits_are_the_backstop(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.get("/healthz", headers={"X-Pad": "x" * (C.HTTP_MAX_FIELD_SIZE + 10)})
    assert 400 <= resp.status < 500
