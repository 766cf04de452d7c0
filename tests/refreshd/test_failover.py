"""Redis Cluster failover: a master SIGKILLed (its replica maybe stalled first), a hung master.

Promise: with 3 masters + 3 replicas and writes acknowledged only once `WAITAOF 1 1` confirmed
them, no acknowledged event batch is lost when a master dies and its replica is promoted (a
replay of every acknowledged `batch_id` afterwards answers `duplicate: true`); during the
failover decisions degrade, writes answer 503 + Retry-After, nothing answers 500; the service
finds the new topology by itself.

`REFRESHD_FAILOVER_BATCHES` sets how many acknowledged batches the main test collects across
the kill: 1200 by default, so the default suite stays near a minute; the runs reported for
issue 18 used 2000 (`REFRESHD_FAILOVER_BATCHES=2000 pytest tests/refreshd/test_failover.py`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from refreshd.store.protocol import shard_tag, user_key
from tests.support import MakeClient, now_ms, wait_ready
from tests.valkey_cluster import Cluster, start_replicated_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]

BATCHES = int(os.environ.get("REFRESHD_FAILOVER_BATCHES", "1200"))
EVENTS_PER_BATCH = 2


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh 3-master + 3-replica cluster per test (the tests break it)."""
    # A free port can be taken between finding it and binding it (other tests, other
    # processes): try a few times before concluding the binary cannot run a cluster.
    for attempt in range(3):
        try:
            cluster = start_replicated_cluster(tmp_path / f"ha{attempt}")
            break
        except Exception as exc:  # e.g. a binary built without cluster support
            error = exc
    else:
        pytest.skip(f"cannot start a replicated Valkey cluster: {error}")
    yield cluster
    cluster.stop()


class Load:
    """Devices sending event batches (retrying a 503 with the same batch_id) and deciding."""

    def __init__(self, base: str, writers: int = 12) -> None:
        self.base = base
        self.writers = writers
        self.bodies: dict[str, dict[str, Any]] = {}
        self.acked: list[str] = []
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.degraded = 0
        self.retry_after_missing = 0
        self.stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Load:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._tasks = [asyncio.create_task(self._writer(w)) for w in range(self.writers)]
        self._tasks.append(asyncio.create_task(self._decider()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.gather(*self._tasks)
        await self.session.close()

    async def post(self, kind: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        try:
            async with self.session.post(f"{self.base}{path}", json=body) as resp:
                self.statuses[(kind, resp.status)] += 1
                if resp.status == 503 and "Retry-After" not in resp.headers:
                    self.retry_after_missing += 1
                return resp.status, await resp.json()
        except (aiohttp.ClientError, TimeoutError):
            self.statuses[(kind, -1)] += 1
            return -1, None

    async def _writer(self, w: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            batch = f"w{w}-{i}"
            body = {
                "user_id": f"u{w}-{i % 40}",
                "batch_id": batch,
                "events": [
                    {"type": "click", "ts": now_ms(), "item_id": f"x{j}"}
                    for j in range(EVENTS_PER_BATCH)
                ],
            }
            self.bodies[batch] = body
            while not self.stop.is_set():  # a device retries the same batch id until accepted
                status, _ = await self.post("events", "/v1/events", body)
                if status == 200:
                    self.acked.append(batch)
                    break
                await asyncio.sleep(0.05)

    async def _decider(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            body = {"user_id": f"d{i % 64}", "ts": now_ms(), "trigger": "open"}
            status, got = await self.post("decide", "/v1/decide", body)
            if status == 200 and "store_unavailable" in got["degraded_reasons"]:
                self.degraded += 1
            await asyncio.sleep(0.01)

    def server_errors(self) -> dict[tuple[str, int], int]:
        return {k: n for k, n in self.statuses.items() if k[1] >= 500 and k[1] != 503}


async def until(pred: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def replay_all(base: str, bodies: list[dict[str, Any]]) -> Counter[str]:
    """Send every acknowledged batch again; count how each replay was answered."""
    outcome: Counter[str] = Counter()
    queue = list(bodies)

    async def one(session: aiohttp.ClientSession) -> None:
        while queue:
            body = queue.pop()
            for _attempt in range(100):
                async with session.post(f"{base}/v1/events", json=body) as resp:
                    if resp.status == 200:
                        got = await resp.json()
                        outcome["duplicate" if got["duplicate"] else "accepted_as_new"] += 1
                        break
                    outcome[f"status_{resp.status}"] += 1
                    assert resp.status == 503, resp.status
                await asyncio.sleep(0.1)
            else:
                outcome["never_answered"] += 1

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.gather(*(one(session) for _ in range(12)))
    return outcome


@pytest.mark.parametrize("stall", ["none", "replica-stopped", "replica-cut-off"])
async def test_master_killed_under_write_load_loses_no_acknowledged_batch(
    ha: Cluster, make_client: MakeClient, stall: str
) -> None:
    """`replica-stopped`: the replica is SIGSTOPped for 1 s, then its master SIGKILLed as it
    resumes. `replica-cut-off`: the replica is SIGSTOPped and its link dropped, the master takes
    writes for 1 s and is SIGKILLed, then the replica resumes and is promoted without them:
    with REFRESHD_ACK_REPLICAS=0 this loses every batch acknowledged in that second."""
    client = await make_client(
        redis_url=None, redis_cluster=ha.seeds, store_timeout_s=0.3, user_rate_per_s=0
    )
    base = str(client.make_url("")).rstrip("/")
    victim = ha.masters[0]
    replica = ha.replicas[0]
    t0 = time.monotonic()
    async with Load(base) as load:
        await until(lambda: len(load.acked) >= BATCHES // 2, 60, "the first half of the batches")
        t_half = time.monotonic()
        waits = 0
        for m in ha.masters:
            with m.client() as c:
                waits += int(c.info("commandstats").get("cmdstat_waitaof", {}).get("calls", 0))
        if stall == "replica-stopped":  # the replica misses ~1 s of its master's writes ...
            replica.stop_process()
            await asyncio.sleep(1.0)
            replica.continue_process()
        elif stall == "replica-cut-off":
            replica.stop_process()
            with victim.client() as c:
                c.execute_command("CLIENT", "KILL", "TYPE", "replica")
            await asyncio.sleep(1.0)
        victim.kill()  # ... and its master dies before it catches up
        if stall == "replica-cut-off":
            replica.continue_process()
        t_kill, at_kill = time.monotonic(), len(load.acked)
        await asyncio.to_thread(ha.wait_promoted, replica, 30)
        t_promoted = time.monotonic()
        # The promoted replica has no replica of its own, so its writes cannot be acknowledged
        # (503) until the killed master, restarted, rejoins as its replica.
        victim.restart()
        await asyncio.to_thread(ha.wait_ok, 60)
        t_ok = time.monotonic()
        await until(lambda: len(load.acked) >= max(BATCHES, at_kill + BATCHES // 4), 60, "load")
    t_end = time.monotonic()
    print(
        f"first half {t_half - t0:.1f} s ({waits} WAITAOF), total load {t_end - t0:.1f} s; "
        f"acked {len(load.acked)} ({at_kill} before the kill); promoted after "
        f"{t_promoted - t_kill:.1f} s, replicated again after {t_ok - t_kill:.1f} s; "
        f"{dict(load.statuses)}"
    )
    assert not load.server_errors(), load.statuses
    assert load.retry_after_missing == 0
    assert load.statuses[("decide", -1)] == 0 and load.statuses[("events", -1)] == 0
    assert load.degraded > 0, load.statuses  # the dead master's users got the fallback
    assert load.statuses[("events", 503)] > 0, load.statuses  # and their writes were refused
    outcome = await replay_all(base, [load.bodies[b] for b in load.acked])
    print(f"replays in {time.monotonic() - t_end:.1f} s: {dict(outcome)}")
    assert outcome["duplicate"] == len(load.acked), (len(load.acked), outcome)
    assert len(load.acked) >= BATCHES


def service_tasks() -> int:
    """Tasks of the service, not the test's or idle keep-alive connections of its client."""
    skip = ("test_", "RequestHandler.start")
    return sum(1 for t in asyncio.all_tasks() if not t.get_coro().__qualname__.startswith(skip))


def users_on(ha: Cluster, master: int, n: int) -> list[str]:
    """`n` user ids whose shard lives on `ha.masters[master]`."""
    owners: dict[str, int] = {}
    out: list[str] = []
    i = 0
    while len(out) < n:
        i += 1
        uid = f"h{i}"
        tag = shard_tag(uid)
        if tag not in owners:
            owners[tag] = ha.master_of_key(user_key(uid))
        if owners[tag] == master:
            out.append(uid)
    return out


async def test_hung_master_bounds_latency_and_piles_nothing_up(
    ha: Cluster, make_client: MakeClient
) -> None:
    """A master that stops answering (SIGSTOP, shorter than the node timeout): its users'
    requests give up at the store timeout — decisions degraded, writes 503 — instead of waiting
    for it; afterwards the service serves those users again by itself."""
    client = await make_client(
        redis_url=None, redis_cluster=ha.seeds, store_timeout_s=0.1, user_rate_per_s=0
    )
    uids = users_on(ha, 0, 20)
    for uid in uids:  # warm: connections to every master exist
        assert (
            await client.post(
                "/v1/decide", json={"user_id": uid, "ts": now_ms(), "trigger": "open"}
            )
        ).status == 200
    tasks_before = service_tasks()
    ha.masters[0].stop_process()
    try:
        decides = [
            client.post("/v1/decide", json={"user_id": u, "ts": now_ms(), "trigger": "open"})
            for u in uids
        ]
        events = [
            client.post(
                "/v1/events",
                json={"user_id": u, "batch_id": "hb", "events": [{"type": "open", "ts": now_ms()}]},
            )
            for u in uids[:8]
        ]
        results = await asyncio.gather(*decides, *events)
    finally:
        ha.masters[0].continue_process()
    bodies = [await r.json() for r in results]
    # Had a request waited for the node, the node would have answered it normally after the
    # resume: every answer is the outage's, so none waited.
    for r, b in zip(results[: len(uids)], bodies[: len(uids)], strict=True):
        assert r.status == 200 and "store_unavailable" in b["degraded_reasons"], b
    for r in results[len(uids) :]:
        assert r.status == 503 and r.headers["Retry-After"]
    await asyncio.sleep(0.3)
    assert service_tasks() <= tasks_before + 3  # nothing left waiting on the node
    await asyncio.to_thread(ha.wait_ok, 30)

    async def served() -> bool:
        resp = await client.post(
            "/v1/decide", json={"user_id": uids[0], "ts": now_ms(), "trigger": "open"}
        )
        return resp.status == 200 and not (await resp.json())["degraded_reasons"]

    deadline = time.monotonic() + 30
    while not await served():
        assert time.monotonic() < deadline, "the service did not recover"
        await asyncio.sleep(0.1)


async def test_unreplicated_write_answers_503_and_its_retry_is_accepted_once(
    ha: Cluster, make_client: MakeClient
) -> None:
    """A stalled replica: the write is applied on the master but not acknowledged (503); the
    device's retry with the same batch_id answers once the replica is back, stored once."""
    client = await make_client(
        redis_url=None,
        redis_cluster=ha.seeds,
        store_timeout_s=0.3,
        ack_timeout_ms=100,
        user_rate_per_s=0,
    )
    [uid] = users_on(ha, 1, 1)
    body = {"user_id": uid, "batch_id": "b1", "events": [{"type": "open", "ts": now_ms()}]}
    ha.replicas[1].stop_process()
    try:
        resp = await client.post("/v1/events", json=body)
        assert resp.status == 503 and resp.headers["Retry-After"]
        decided = await (
            await client.post(
                "/v1/decide", json={"user_id": uid, "ts": now_ms(), "trigger": "open"}
            )
        ).json()
        assert "store_unavailable" in decided["degraded_reasons"]  # its commit was not acked
    finally:
        ha.replicas[1].continue_process()
    for _ in range(100):
        resp = await client.post("/v1/events", json=body)
        if resp.status == 200:
            break
        await asyncio.sleep(0.05)
    assert resp.status == 200 and (await resp.json())["duplicate"] is True
    with redis.Redis(port=ha.masters[1].port) as r:
        rows = [
            row for _id, row in r.xrange(f"log:events:{shard_tag(uid)}") if b'"b1"' in row[b"d"]
        ]
    assert len(rows) == 1


def test_service_killed_mid_write_leaves_nothing_half_written(ha: Cluster) -> None:
    """SIGKILL of the service under write load: every batch is all there (its mark and all its
    event rows, one commit) or not at all, and every acknowledged one is there."""
    import json
    import signal
    import subprocess
    import sys

    from redis.cluster import ClusterNode, RedisCluster

    from tests.refreshd.test_cli import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REFRESHD_BOOTSTRAP_MODEL": "false",
        "REFRESHD_USER_RATE_PER_S": "0",
        "REFRESHD_REDIS_CLUSTER": ",".join(ha.seeds),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "refreshd", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(base, proc, 60)

        async def scenario() -> Load:
            async with Load(base, writers=8) as load:
                await until(lambda: len(load.acked) >= 300, 60, "load")
                proc.send_signal(signal.SIGKILL)  # mid-write: requests are in flight
                proc.wait()
                await asyncio.sleep(0.3)
            return load

        load = asyncio.run(scenario())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    nodes = [ClusterNode("127.0.0.1", n.port) for n in ha.masters]
    with RedisCluster(startup_nodes=nodes) as rc:
        marks = {k.decode().rsplit(":", 1)[1] for k in rc.scan_iter(match="b:*", count=1000)}
        rows: Counter[str] = Counter()
        from refreshd.store.protocol import all_tags

        for tag in all_tags():
            for _id, fields in rc.xrange(f"log:events:{tag}"):
                rows[json.loads(fields[b"d"])["batch_id"]] += 1
    assert not set(load.acked) - marks, "an acknowledged batch has no mark"
    assert set(rows) == marks, "a batch mark without its events, or events without the mark"
    assert all(n == EVENTS_PER_BATCH for n in rows.values()), "a batch half-written"
    assert len(marks) >= len(load.acked)


async def test_every_node_killed_and_restarted_loses_nothing_acknowledged(
    ha: Cluster, make_client: MakeClient
) -> None:
    """All six nodes SIGKILLed at once under write load, then started again from their AOF and
    nodes.conf: every batch acknowledged before, during or after is stored exactly once."""
    client = await make_client(
        redis_url=None, redis_cluster=ha.seeds, store_timeout_s=0.3, user_rate_per_s=0
    )
    base = str(client.make_url("")).rstrip("/")
    async with Load(base) as load:
        await until(lambda: len(load.acked) >= BATCHES // 4, 60, "batches before the outage")
        for node in ha.nodes:
            node.kill()
        at_kill = len(load.acked)
        await asyncio.sleep(1.0)  # devices meet 503s and fallback decisions meanwhile
        for node in ha.nodes:
            node.restart()
        await asyncio.to_thread(ha.wait_ok, 60)
        await until(lambda: len(load.acked) >= at_kill + BATCHES // 4, 60, "batches after it")
    assert not load.server_errors(), load.statuses
    assert load.retry_after_missing == 0
    assert load.statuses[("events", 503)] > 0, load.statuses  # the outage was seen
    outcome = await replay_all(base, [load.bodies[b] for b in load.acked])
    assert outcome["duplicate"] == len(load.acked), (len(load.acked), outcome)
