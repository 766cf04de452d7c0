"""Which lean connection (refreshd.store.connection) a key's command goes to.

One server: one connection for reads and, when writes wait for `WAITAOF`, a second one for
writes (a `WAITAOF` blocks its connection until it returns, and reads should not queue behind
it). Redis Cluster: the same pair per primary, found from redis-py's slot map
(`RedisCluster.nodes_manager`); a failed node or a redirect schedules one background refresh of
that map, so a failover is picked up by itself once the cluster has promoted a replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from redis.asyncio.cluster import RedisCluster
from redis.cluster import key_slot
from redis.exceptions import MovedError

from refreshd.store.connection import ScriptConnection

log = logging.getLogger(__name__)

# A failing cluster refreshes its slot map at most this often (each refresh asks one node).
REFRESH_EVERY_S = 0.1


class Router(Protocol):
    async def connection(self, key: str, *, write: bool) -> ScriptConnection: ...

    async def moved(self, exc: MovedError) -> None:
        """A node answered MOVED: point the slot at the node named (the command did not run)."""
        ...

    def failed(self) -> None:
        """A call failed (connection, timeout, CLUSTERDOWN, TRYAGAIN): re-learn the topology."""
        ...

    def has_replicas(self) -> bool: ...

    def close(self) -> None: ...


class SingleRouter:
    """One server: a connection for reads and one for acknowledged writes."""

    def __init__(self, reads: ScriptConnection, writes: ScriptConnection | None) -> None:
        self.reads = reads
        self.writes = writes or reads

    async def connection(self, key: str, *, write: bool) -> ScriptConnection:
        return self.writes if write else self.reads

    async def moved(self, exc: MovedError) -> None:
        pass

    def failed(self) -> None:
        pass

    def has_replicas(self) -> bool:
        return False  # not asked: a single server acknowledges after replicas only if told to

    def close(self) -> None:
        self.reads.close()
        if self.writes is not self.reads:
            self.writes.close()


class ClusterRouter:
    """Redis Cluster: a (reads, writes) connection pair per primary, by the key's slot."""

    def __init__(self, cluster: RedisCluster, *, timeout_s: float, split_writes: bool) -> None:
        self.cluster = cluster
        self.timeout_s = timeout_s
        self.split_writes = split_writes
        self._pairs: dict[tuple[str, int], tuple[ScriptConnection, ScriptConnection]] = {}
        self._refresh: asyncio.Task[None] | None = None
        self._last_refresh = 0.0

    async def connection(self, key: str, *, write: bool) -> ScriptConnection:
        await self.cluster.initialize()  # a no-op once the slot map is loaded
        node = self.cluster.nodes_manager.get_node_from_slot(key_slot(key.encode()))
        addr = (node.host, int(node.port))
        pair = self._pairs.get(addr)
        if pair is None:
            reads = ScriptConnection(host=addr[0], port=addr[1], timeout_s=self.timeout_s)
            writes = (
                ScriptConnection(host=addr[0], port=addr[1], timeout_s=self.timeout_s)
                if self.split_writes
                else reads
            )
            pair = self._pairs[addr] = (reads, writes)
        return pair[1] if write else pair[0]

    async def moved(self, exc: MovedError) -> None:
        await self.cluster.nodes_manager.move_slot(exc)
        self.failed()  # a moved slot after a failover: the rest of the map is stale too

    def failed(self) -> None:
        now = time.monotonic()
        if self._refresh is not None and not self._refresh.done():
            return
        if now - self._last_refresh < REFRESH_EVERY_S:
            return
        self._last_refresh = now
        self._refresh = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        try:
            async with asyncio.timeout(self.timeout_s * 4):
                await self.cluster.nodes_manager.initialize()
        except Exception as exc:  # the cluster is still failing over; the next failure retries
            log.debug("cluster topology refresh failed: %r", exc)
            return
        live = {(n.host, int(n.port)) for n in self.cluster.get_primaries()}
        for addr in [a for a in self._pairs if a not in live]:  # demoted or gone: drop
            for conn in set(self._pairs.pop(addr)):
                conn.close()

    def has_replicas(self) -> bool:
        return bool(self.cluster.get_replicas())

    def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        for pair in self._pairs.values():
            for conn in set(pair):
                conn.close()
        self._pairs.clear()
