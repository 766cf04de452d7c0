"""`Store` on redis.asyncio: one Lua script per request makes each user's write atomic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from refreshd import constants as C
from refreshd.core.errors import StoreUnavailable
from refreshd.core.messages import Directive
from refreshd.core.state import UserState
from refreshd.store.connection import Script, ScriptConnection
from refreshd.store.protocol import (
    DUE,
    LOG_DECISIONS,
    LOG_EVENTS,
    MODEL_CURRENT,
    MODELS,
    Commit,
    CommitResult,
    ConfigWrite,
    all_tags,
    batch_key,
    config_key,
    config_log_key,
    config_version_key,
    decode_directive,
    decode_state,
    directives_key,
    encode_directive,
    live_directives,
    model_key,
    shard_key,
    shard_tag,
    user_key,
)

T = TypeVar("T")

# Log rows fetched per call when reading a stream for training.
LOG_PAGE = 5000
# A page of log rows may wait behind training work in other threads; this is not a device call.
LOG_READ_TIMEOUT_S = 30.0
# Inactive users' state expires after 90 days, so memory stays bounded without a sweeper.
USER_TTL_S = 90 * 86_400

# KEYS: user, directives, batch mark, log:decisions, log:events
# ARGV: expected version, state blob, has batch (0/1), batch ttl s, log maxlen,
#       directive ttl ms, user ttl s, then counted lists: acks, (id, blob) pairs,
#       decision log blobs, event log blobs.
COMMIT_LUA = """
local function pending() return redis.call('HVALS', KEYS[2]) end
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  return {'duplicate', pending()}
end
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return {'conflict', pending()} end
redis.call('HSET', KEYS[1], 'v', v + 1, 's', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
if ARGV[3] == '1' then redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[4])) end
local i = 8
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HDEL', KEYS[2], ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2 end
if n > 0 then redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6])) end
local maxlen = ARGV[5]
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*', 'd', ARGV[i]); i = i + 1
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '*', 'd', ARGV[i]); i = i + 1
end
local nkeys = tonumber(ARGV[i]); i = i + 1
for k = 1, nkeys do
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    redis.call('HINCRBY', KEYS[5 + k], ARGV[i], ARGV[i + 1]); i = i + 2
  end
end
return {'ok', pending()}
"""


def _order(d: Directive) -> tuple[int, str]:
    return (d.created_ts, d.id)


# One call for state and directives: cheaper in redis-py than a two-command pipeline.
LOAD_LUA = """
local s = redis.call('HMGET', KEYS[1], 'v', 's')
return {s[1], s[2], redis.call('HVALS', KEYS[2])}
"""


# Configuration writes bump the kind's version and note it against the item in one step, so a
# reader can follow changes since the version it last saw (get_config_changes). That score is
# also the item's version: a write with an expected version (ARGV[3], '' for none) checks it
# in the same script, so two writers holding the same version cannot both succeed. An item
# stored before the change log existed counts as version 0.
_ITEM_VERSION_LUA = """
local function item_version()
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
  return tonumber(redis.call('ZSCORE', KEYS[3], ARGV[1]) or '0')
end
"""
PUT_CONFIG_LUA = (
    _ITEM_VERSION_LUA
    + """
if ARGV[3] ~= '' then
  local current = item_version()
  if current ~= tonumber(ARGV[3]) then return {'conflict', current} end
end
local v = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], v, ARGV[1])
return {'ok', v}
"""
)
DELETE_CONFIG_LUA = (
    _ITEM_VERSION_LUA
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return false end
if ARGV[2] ~= '' then
  local current = item_version()
  if current ~= tonumber(ARGV[2]) then return {'conflict', current} end
end
redis.call('HDEL', KEYS[1], ARGV[1])
local v = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[3], v, ARGV[1])
return {'ok', v}
"""
)
CONFIG_CHANGES_LUA = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf')
local blobs = {}
if #ids > 0 then blobs = redis.call('HMGET', KEYS[1], unpack(ids)) end
return {redis.call('GET', KEYS[2]), ids, blobs}
"""


def _config_keys(kind: str) -> list[str]:
    return [config_key(kind), config_version_key(kind), config_log_key(kind)]


def _expected_arg(expected: int | None) -> str:
    return "" if expected is None else str(int(expected))


def _config_write(raw: Any) -> ConfigWrite:
    status, version = raw
    text = status.decode() if isinstance(status, bytes) else str(status)
    return ConfigWrite("ok" if text == "ok" else "conflict", int(version))


COMMIT = Script.of(COMMIT_LUA)
LOAD = Script.of(LOAD_LUA)


class RedisStore:
    """The production store: Redis or Valkey through redis.asyncio."""

    def __init__(
        self,
        url: str | None = None,
        *,
        cluster_nodes: Sequence[str] = (),
        timeout_s: float = C.STORE_TIMEOUT_S,
        log_maxlen: int = C.LOG_MAXLEN,
        batch_ttl_s: int = C.BATCH_MARK_TTL_S,
        directive_ttl_s: int = C.DIRECTIVE_TTL_S,
    ) -> None:
        if (url is None) == (not cluster_nodes):
            raise ValueError("give either a Redis URL or Redis Cluster nodes")
        self.url = url
        self.timeout_s = timeout_s
        self.log_maxlen = log_maxlen
        self.batch_ttl_s = batch_ttl_s
        self.directive_ttl_s = directive_ttl_s
        # No client-side retries: a failed call surfaces at once as StoreUnavailable and the
        # caller degrades (decide) or answers 503 (writes); the device retries, not us.
        self.redis: Any
        if url is not None:
            self.redis = aioredis.Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
                max_connections=512,
            )
        else:
            # Every multi-key call uses keys of one hash tag, so each lands on one slot.
            pairs = (n.rpartition(":") for n in cluster_nodes)
            nodes = [ClusterNode(host, int(port)) for host, _, port in pairs]
            self.redis = RedisCluster(
                startup_nodes=nodes,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
                max_connections=512,
            )
        self._commit = self.redis.register_script(COMMIT_LUA)
        self._load = self.redis.register_script(LOAD_LUA)
        self._put_config = self.redis.register_script(PUT_CONFIG_LUA)
        self._delete_config = self.redis.register_script(DELETE_CONFIG_LUA)
        self._config_changes = self.redis.register_script(CONFIG_CHANGES_LUA)
        # The per-request scripts take a leaner path than redis-py when the server is one plain
        # TCP or Unix socket (see refreshd.connection); Cluster and TLS keep redis-py.
        self._scripts: ScriptConnection | None = None
        pool = None if url is None else self.redis.connection_pool
        if pool is not None and ScriptConnection.supports(pool.connection_class):
            self._scripts = ScriptConnection.like(pool.connection_kwargs, timeout_s=timeout_s)

    async def _run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run one of the per-request scripts on the lean connection, else through redis-py."""
        if self._scripts is not None:
            return await self._scripts.evalsha(script, keys, args)
        registered = self._commit if script is COMMIT else self._load
        return await registered(keys=keys, args=args)

    async def _call(self, fn: Callable[[], Awaitable[T]], timeout_s: float | None = None) -> T:
        try:
            async with asyncio.timeout(timeout_s or self.timeout_s * 2):
                return await fn()
        except (
            RedisConnectionError,
            RedisTimeoutError,
            ClusterDownError,
            RedisClusterException,
            TimeoutError,
            OSError,
        ) as exc:
            raise StoreUnavailable() from exc
        except (ReadOnlyError, OutOfMemoryError, NoPermissionError, TryAgainError) as exc:
            # A server that cannot serve now (a replica after a failover, out of memory, ACLs,
            # a slot moving) is unavailable, not a bug: 503 and the fallback, never a 500.
            if isinstance(exc, ReadOnlyError) and self._scripts is not None:
                self._scripts.close()  # reconnect: the address may point at the new primary
            raise StoreUnavailable() from exc
        except ResponseError as exc:
            if str(exc).startswith("BUSY "):  # another script hogs the server
                raise StoreUnavailable() from exc
            raise

    async def load_user(self, uid: str, now_ms: int) -> tuple[UserState, list[Directive]]:
        async def run() -> tuple[UserState, list[Directive]]:
            version, blob, dirs = await self._run(LOAD, [user_key(uid), directives_key(uid)], [])
            state = decode_state(blob or None)
            state.version = int(version or 0)
            return state, sorted((decode_directive(b) for b in dirs), key=_order)

        return await self._call(run)

    async def commit(self, commit: Commit) -> CommitResult:
        uid = commit.uid
        args: list[Any] = [
            commit.expected_version,
            commit.state_blob,
            1 if commit.batch_id else 0,
            self.batch_ttl_s,
            self.log_maxlen,
            self.directive_ttl_s * 1000,
            USER_TTL_S,
            len(commit.ack_ids),
            *commit.ack_ids,
            len(commit.new_directives),
        ]
        for d in commit.new_directives:
            args += [d.id, encode_directive(d)]
        args += [len(commit.decision_logs), *commit.decision_logs]
        args += [len(commit.event_logs), *commit.event_logs]
        args.append(len(commit.stat_incrs))
        for _key, fields in commit.stat_incrs:
            args.append(len(fields))
            for name, inc in fields.items():
                args += [name, inc]
        tag = shard_tag(uid)
        keys = [
            user_key(uid),
            directives_key(uid),
            batch_key(uid, commit.batch_id or "-"),
            shard_key(LOG_DECISIONS, tag),
            shard_key(LOG_EVENTS, tag),
            *(shard_key(key, tag) for key, _ in commit.stat_incrs),
        ]

        async def run() -> CommitResult:
            status, blobs = await self._run(COMMIT, keys, args)
            dirs = live_directives([decode_directive(b) for b in blobs], commit.now_ms)
            return CommitResult(status.decode(), dirs)

        return await self._call(run)

    async def add_directive(self, uid: str, directive: Directive, ttl_s: int) -> None:
        async def run() -> None:
            key = directives_key(uid)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, directive.id, encode_directive(directive))
                pipe.pexpire(key, max(ttl_s, self.directive_ttl_s) * 1000, gt=False)
                # A write outside a commit bumps the version, so a worker's cached copy of the
                # user (and any commit built on it) is refused and reloaded.
                pipe.hincrby(user_key(uid), "v", 1)
                await pipe.execute()

        await self._call(run)

    async def has_batch(self, uid: str, batch_id: str) -> bool:
        return bool(await self._call(lambda: self.redis.exists(batch_key(uid, batch_id))))

    async def read_log(self, stream: str, count: int) -> list[bytes]:
        # Each shard's stream is read newest first in pages (the store timeout applies per call),
        # then the shards are merged by entry id (milliseconds-sequence), newest `count` kept.
        rows: list[tuple[tuple[int, int], bytes]] = []
        for tag in all_tags():
            key = shard_key(stream, tag)
            top = "+"
            taken = 0
            while taken < count:
                page = min(LOG_PAGE, count - taken)
                call = partial(self.redis.xrevrange, key, top, "-", count=page)
                # Training reads run beside CPU-heavy work in threads: a generous deadline.
                got: Any = await self._call(call, timeout_s=LOG_READ_TIMEOUT_S)
                for entry_id, fields in got:
                    ms, _, seq = bytes(entry_id).decode().partition("-")
                    rows.append(((int(ms), int(seq)), bytes(fields[b"d"])))
                taken += len(got)
                if len(got) < page:
                    break
                top = "(" + bytes(got[-1][0]).decode()
        rows.sort(key=lambda r: r[0])
        return [blob for _, blob in rows[-count:]] if count else []

    async def put_model(self, version: str, text: str, meta: bytes) -> None:
        async def run() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(model_key(version), mapping={"text": text, "meta": meta})
                pipe.zadd(MODELS, {version: time.time()})
                await pipe.execute()

        await self._call(run)

    async def set_current_model(self, version: str) -> None:
        await self._call(lambda: self.redis.set(MODEL_CURRENT, version))

    async def current_model_version(self) -> str | None:
        raw: Any = await self._call(lambda: self.redis.get(MODEL_CURRENT))
        return None if raw is None else bytes(raw).decode()

    async def get_model(self, version: str) -> tuple[str, bytes] | None:
        raw: Any = await self._call(lambda: self.redis.hmget(model_key(version), "text", "meta"))
        text, meta = raw
        if text is None or meta is None:
            return None
        return bytes(text).decode(), bytes(meta)

    async def list_models(self) -> list[bytes]:
        async def run() -> list[bytes]:
            versions: Any = await self.redis.zrange(MODELS, 0, -1)
            if not versions:
                return []
            async with self.redis.pipeline(transaction=False) as pipe:
                for v in versions:
                    pipe.hget(model_key(bytes(v).decode()), "meta")
                metas = await pipe.execute()
            return [bytes(m) for m in metas if m is not None]

        return await self._call(run)

    async def put_config(
        self, kind: str, item_id: str, blob: bytes, expected: int | None = None
    ) -> ConfigWrite:
        keys, args = _config_keys(kind), [item_id, blob, _expected_arg(expected)]
        return _config_write(await self._call(lambda: self._put_config(keys=keys, args=args)))

    async def delete_config(
        self, kind: str, item_id: str, expected: int | None = None
    ) -> ConfigWrite | None:
        keys, args = _config_keys(kind), [item_id, _expected_arg(expected)]
        raw = await self._call(lambda: self._delete_config(keys=keys, args=args))
        return None if raw is None else _config_write(raw)

    async def get_config_item(self, kind: str, item_id: str) -> tuple[int, bytes] | None:
        async def run() -> tuple[int, bytes] | None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hget(config_key(kind), item_id)
                pipe.zscore(config_log_key(kind), item_id)
                blob, score = await pipe.execute()
            return None if blob is None else (int(score or 0), bytes(blob))

        return await self._call(run)

    async def get_config_items(self, kind: str) -> tuple[int, dict[str, tuple[int, bytes]]]:
        async def run() -> tuple[int, dict[str, tuple[int, bytes]]]:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.get(config_version_key(kind))
                pipe.hgetall(config_key(kind))
                pipe.zrange(config_log_key(kind), 0, -1, withscores=True)
                version, items, log = await pipe.execute()
            scores = {bytes(i).decode(): int(s) for i, s in log}
            out = {bytes(k).decode(): bytes(v) for k, v in items.items()}
            return int(version or 0), {k: (scores.get(k, 0), v) for k, v in out.items()}

        return await self._call(run)

    async def get_config_changes(
        self, kind: str, since: int
    ) -> tuple[int, dict[str, bytes | None]]:
        keys = _config_keys(kind)
        raw = await self._call(lambda: self._config_changes(keys=keys, args=[int(since)]))
        version, ids, blobs = raw
        return int(version or 0), {
            bytes(i).decode(): None if b is None else bytes(b)
            for i, b in zip(ids, blobs, strict=True)
        }

    async def get_config(self, kind: str) -> tuple[int, dict[str, bytes]]:
        async def run() -> tuple[int, dict[str, bytes]]:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.get(config_version_key(kind))
                pipe.hgetall(config_key(kind))
                version, items = await pipe.execute()
            return int(version or 0), {bytes(k).decode(): bytes(v) for k, v in items.items()}

        return await self._call(run)

    async def config_version(self, kind: str) -> int:
        raw: Any = await self._call(lambda: self.redis.get(config_version_key(kind)))
        return int(raw or 0)

    async def read_stats(self, keys: Sequence[str]) -> list[dict[str, int]]:
        async def run() -> list[dict[str, int]]:
            tags = all_tags()
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    for tag in tags:
                        pipe.hgetall(shard_key(key, tag))
                rows = await pipe.execute()
            out: list[dict[str, int]] = []
            for i in range(len(keys)):
                total: dict[str, int] = {}
                for row in rows[i * len(tags) : (i + 1) * len(tags)]:
                    for k, v in row.items():
                        name = bytes(k).decode()
                        total[name] = total.get(name, 0) + int(v)
                out.append(total)
            return out

        return await self._call(run)

    async def try_lock(self, name: str, owner: str, ttl_s: int) -> bool:
        return bool(
            await self._call(lambda: self.redis.set(f"lock:{name}", owner, nx=True, ex=ttl_s))
        )

    async def release_lock(self, name: str, owner: str) -> None:
        script = (
            "if redis.call('GET', KEYS[1]) == ARGV[1] then "
            "return redis.call('DEL', KEYS[1]) end return 0"
        )
        await self._call(lambda: self.redis.eval(script, 1, f"lock:{name}", owner))

    async def mark_due(self, uid: str, due_ms: int) -> None:
        await self._call(lambda: self.redis.zadd(DUE, {uid: due_ms}, lt=True))

    async def due_users(self, now_ms: int, limit: int) -> list[str]:
        async def run() -> list[str]:
            uids: Any = await self.redis.zrangebyscore(DUE, "-inf", now_ms, start=0, num=limit)
            if uids:
                await self.redis.zrem(DUE, *uids)
            return [bytes(u).decode() for u in uids]

        return await self._call(run)

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self.redis.ping))
        except StoreUnavailable:
            return False

    async def close(self) -> None:
        if self._scripts is not None:
            self._scripts.close()
        await self.redis.aclose()
