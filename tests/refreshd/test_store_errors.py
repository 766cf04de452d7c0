"""Every error of a store that cannot serve now is StoreUnavailable (503 / degraded), never 500.

What redis-py and the lean connection raise while a Redis Cluster fails over: connection
errors, CLUSTERDOWN, TRYAGAIN, MOVED that outlived its redirect, "TTL exhausted" after a storm
of redirects, a MULTI discarded (EXECABORT), NOREPLICAS, a WAITAOF interrupted (UNBLOCKED) or
not confirmed in time (NotReplicated).
"""

from __future__ import annotations

import pytest
from redis import exceptions as R

from refreshd.core.errors import StoreUnavailable
from refreshd.store.connection import NotReplicated
from refreshd.store.redis import RedisStore

UNAVAILABLE = [
    R.ConnectionError("Connection closed by server."),
    R.TimeoutError("Timeout reading from socket"),
    R.BusyLoadingError("Valkey is loading the dataset in memory"),
    R.ClusterDownError("The cluster is down"),
    R.MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    R.ClusterError("TTL exhausted."),
    R.MovedError("3999 127.0.0.1:6381"),
    R.AskError("3999 127.0.0.1:6381"),
    R.TryAgainError("Multiple keys request during rehashing of slot"),
    R.SlotNotCoveredError('Slot "3999" not covered by the cluster.'),
    R.RedisClusterException("Redis Cluster cannot be connected."),
    R.ExecAbortError("Transaction discarded because of previous errors."),
    R.ReadOnlyError("You can't write against a read only replica."),
    R.ResponseError("NOREPLICAS Not enough good replicas to write."),
    R.ResponseError("UNBLOCKED force unblock from blocking operation, instance state changed"),
    R.ResponseError("BUSY Valkey is busy running a script."),
    NotReplicated("WAITAOF confirmed 1 local and 0 replica fsyncs in 250 ms, 1 and 1 needed"),
    TimeoutError(),
    OSError("Connection refused"),
]


@pytest.mark.parametrize("exc", UNAVAILABLE, ids=lambda e: f"{type(e).__name__}:{e}"[:60])
async def test_failover_errors_are_store_unavailable(exc: BaseException) -> None:
    store = RedisStore("redis://127.0.0.1:1/0")

    async def fail() -> None:
        raise exc

    with pytest.raises(StoreUnavailable):
        await store._call(fail)
    await store.close()


async def test_a_bug_is_not_hidden_as_unavailable() -> None:
    store = RedisStore("redis://127.0.0.1:1/0")

    async def fail() -> None:
        raise R.ResponseError("ERR wrong number of arguments for 'hset' command")

    with pytest.raises(R.ResponseError):
        await store._call(fail)
    await store.close()


def test_acks_need_a_plain_connection() -> None:
    with pytest.raises(ValueError, match="TLS"):
        RedisStore("rediss://127.0.0.1:1/0", ack_replicas=1)
