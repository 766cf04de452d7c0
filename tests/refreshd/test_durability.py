"""Acknowledged events survive restarts of the service and of the embedded Valkey."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from aiohttp.test_utils import TestClient

from refreshd.store.embedded import EmbeddedValkey, EmbeddedValkeyError
from tests.support import MakeClient, now_ms, raw_log


async def send_batches(client: TestClient, prefix: str, n: int) -> list[str]:
    acked = []
    for i in range(n):
        batch = f"{prefix}{i}"
        body = {"user_id": f"u{i % 3}", "batch_id": batch,
                "events": [{"type": "click", "ts": now_ms(), "item_id": f"it{j}"} for j in range(4)]}  # fmt: skip
        resp = await client.post("/v1/events", json=body)
        if resp.status == 200:
            acked.append(batch)
    return acked


async def assert_all_present(client: TestClient, acked: list[str]) -> None:
    for i, batch in enumerate(acked):
        body = {
            "user_id": f"u{i % 3}",
            "batch_id": batch,
            "events": [{"type": "click", "ts": now_ms()}],
        }
        resp = await client.post("/v1/events", json=body)
        assert (await resp.json())["duplicate"] is True, f"batch {batch} was lost"


async def test_clean_restart_of_service_and_embedded_valkey(
    make_client: MakeClient, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = await make_client(redis_url=None, data_dir=data)
    acked = await send_batches(first, "b", 30)
    assert len(acked) == 30
    await first.close()  # stops the service, then the embedded Valkey (SIGTERM)
    assert (data / "valkey" / "appendonlydir").is_dir()

    second = await make_client(redis_url=None, data_dir=data)
    await assert_all_present(second, acked)
    await second.close()
    embedded = EmbeddedValkey(data)
    with redis.Redis.from_url(embedded.start()) as r:
        try:
            assert len(raw_log(r, "log:events")) == 30 * 4
        finally:
            embedded.stop()


async def test_killed_valkey_loses_nothing_acknowledged(
    make_client: MakeClient, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    embedded = EmbeddedValkey(data)
    client = await make_client(redis_url=embedded.start())
    acked = await send_batches(client, "k", 40)
    embedded.kill()  # SIGKILL: no shutdown hook runs, only the AOF remains
    await client.close()

    revived = EmbeddedValkey(data)
    client = await make_client(redis_url=revived.start())
    try:
        await assert_all_present(client, acked)
    finally:
        await client.close()
        revived.stop()


def test_two_services_cannot_share_one_data_dir(tmp_path: Path) -> None:
    first = EmbeddedValkey(tmp_path)
    first.start()
    try:
        with pytest.raises(EmbeddedValkeyError, match="in use"):
            EmbeddedValkey(tmp_path).start()
    finally:
        first.stop()
