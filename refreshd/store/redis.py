"""`Store` on redis.asyncio: one Lua script per request makes each user's write atomic."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterError,
    ExecAbortError,
    MovedError,
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
from refreshd.store.connection import Ack, Arg, NotReplicated, Script, ScriptConnection
from refreshd.store.nodes import ClusterRouter, Router, SingleRouter
from refreshd.store.protocol import (
    DUE,
    LOG_DECISIONS,
    LOG_EVENTS,
    MODEL_CURRENT,
    MODEL_HISTORY,
    MODEL_HISTORY_MAX,
    MODELS,
    Commit,
    CommitResult,
    ConfigWrite,
    all_tags,
    batch_key,
    config_history_key,
    config_key,
    config_log_key,
    config_version_key,
    decision_id,
    decode_directive,
    decode_state,
    directives_key,
    encode_directive,
    live_directives,
    model_key,
    parse_decision_id,
    shard_key,
    shard_tag,
    user_decisions_key,
    user_key,
    with_decision_id,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

# Log rows fetched per call when reading a stream for training.
LOG_PAGE = 5000
# A page of log rows may wait behind training work in other threads; this is not a device call.
LOG_READ_TIMEOUT_S = 30.0
# Inactive users' state expires after 90 days, so memory stays bounded without a sweeper.
USER_TTL_S = 90 * 86_400

# KEYS: user, directives, batch mark, log:decisions, log:events, the user's decision ids,
#       then the statistics hashes
# ARGV: expected version, state blob, has batch (0/1), batch ttl s, log maxlen,
#       directive ttl ms, user ttl s, decision ids kept per user, then counted lists: acks,
#       (id, blob) pairs, decision log blobs, event log blobs, statistics increments.
# Returns {status, pending directive blobs[, the decision rows' stream entry ids]}.
COMMIT_LUA = """
local function pending() return redis.call('HVALS', KEYS[2]) end
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  -- Rewrite the mark (same value, same TTL): a write of this connection after the first one,
  -- so the WAITAOF that follows a duplicate also covers the original (the replication stream
  -- is ordered). Else a replay answered "duplicate" could rest on a write no replica has.
  redis.call('SET', KEYS[3], '1', 'KEEPTTL')
  return {'duplicate', pending()}
end
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return {'conflict', pending()} end
redis.call('HSET', KEYS[1], 'v', v + 1, 's', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
if ARGV[3] == '1' then redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[4])) end
local i = 9
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HDEL', KEYS[2], ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2 end
if n > 0 then redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6])) end
local maxlen = ARGV[5]
n = tonumber(ARGV[i]); i = i + 1
local ids = {}
for _ = 1, n do
  local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*', 'd', ARGV[i]); i = i + 1
  ids[#ids + 1] = id
  redis.call('LPUSH', KEYS[6], id)
end
if n > 0 then
  redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[8]) - 1)
  redis.call('EXPIRE', KEYS[6], tonumber(ARGV[7]))
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '*', 'd', ARGV[i]); i = i + 1
end
local nkeys = tonumber(ARGV[i]); i = i + 1
for k = 1, nkeys do
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    redis.call('HINCRBY', KEYS[6 + k], ARGV[i], ARGV[i + 1]); i = i + 2
  end
end
return {'ok', pending(), ids}
"""


def _order(d: Directive) -> tuple[int, str]:
    return (d.created_ts, d.id)


# A directive queued from outside a contact. Bumping the version makes a worker's cached copy of
# the user (and any commit built on it) be refused and reloaded.
# KEYS: directives, user; ARGV: directive id, blob, ttl ms
ADD_DIRECTIVE_LUA = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('HINCRBY', KEYS[2], 'v', 1)
return 1
"""

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
local keep = tonumber(ARGV[4])
if keep > 0 then
  redis.call('HSET', KEYS[4], v, ARGV[2])
  redis.call('HDEL', KEYS[4], v - keep)
end
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


# KEYS: model:current, its history list. ARGV: new version, change blob, expected version
# ('' for none), history length kept. A pointer no longer at the expected version is reported,
# not overwritten: a promotion judged against one champion must not replace another.
SWITCH_MODEL_LUA = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
return 1
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
ADD_DIRECTIVE = Script.of(ADD_DIRECTIVE_LUA)
PUT_CONFIG = Script.of(PUT_CONFIG_LUA)
DELETE_CONFIG = Script.of(DELETE_CONFIG_LUA)
SWITCH_MODEL = Script.of(SWITCH_MODEL_LUA)

# Errors of a store that cannot serve now (down, failing over, a slot moving, out of memory, ACLs,
# a replica after a failover, a write not replicated in time): 503 and the fallback, never 500.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,  # CLUSTERDOWN, MASTERDOWN, "TTL exhausted" after too many redirects
    RedisClusterException,  # no node covers the slot, no reachable startup node
    AskError,  # MOVED and ASK that outlived their redirect
    TryAgainError,
    ExecAbortError,  # a MULTI discarded because a queued command was redirected
    ReadOnlyError,
    OutOfMemoryError,
    NoPermissionError,
    NotReplicated,
    TimeoutError,
    OSError,
)
# Error replies without a class of their own in redis-py that also mean "not now".
UNAVAILABLE_PREFIXES = ("BUSY ", "NOREPLICAS", "UNBLOCKED", "LOADING", "CLUSTERDOWN", "TRYAGAIN")
# Re-learn where the slots are after these (the topology may have changed).
TOPOLOGY_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,
    AskError,
    TryAgainError,
    ReadOnlyError,
)


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
        ack_replicas: int | None = None,
        ack_timeout_ms: int = C.ACK_TIMEOUT_MS,
    ) -> None:
        """`ack_replicas`: writes are acknowledged only once `WAITAOF 1 <n>` confirms them on
        the primary's AOF and `n` replicas' (None: 1 on a Redis Cluster with replicas, else 0;
        0: no wait)."""
        if (url is None) == (not cluster_nodes):
            raise ValueError("give either a Redis URL or Redis Cluster nodes")
        self.url = url
        self.cluster_nodes = tuple(cluster_nodes)  # with `url`: enough to connect again elsewhere
        self.timeout_s = timeout_s
        self.log_maxlen = log_maxlen
        self.batch_ttl_s = batch_ttl_s
        self.directive_ttl_s = directive_ttl_s
        self.ack_replicas = ack_replicas
        self.ack_timeout_ms = ack_timeout_ms
        self._ack_local = 1  # 0 once the primary says its AOF is off
        self._acks: Ack | bool | None = False  # False: not resolved yet
        # A write may wait up to two WAITAOF timeouts (see ScriptConnection) beyond the reply.
        self._write_timeout_s = timeout_s * 2 + 2 * ack_timeout_ms / 1000
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
        self._registered = {
            s: self.redis.register_script(s.body.decode())
            for s in (COMMIT, LOAD, ADD_DIRECTIVE, PUT_CONFIG, DELETE_CONFIG, SWITCH_MODEL)
        }
        self._config_changes = self.redis.register_script(CONFIG_CHANGES_LUA)
        # The per-request scripts and every acknowledged write take a leaner path than redis-py
        # (see refreshd.store.connection): on one plain TCP or Unix server, and on each primary
        # of a Redis Cluster. A TLS URL keeps redis-py (and cannot wait for replicas).
        split = ack_replicas != 0
        self._router: Router | None = None
        if url is None:
            self._router = ClusterRouter(self.redis, timeout_s=timeout_s, split_writes=split)
        elif ScriptConnection.supports(self.redis.connection_pool.connection_class):
            kwargs = self.redis.connection_pool.connection_kwargs
            reads = ScriptConnection.like(kwargs, timeout_s=timeout_s)
            writes = ScriptConnection.like(kwargs, timeout_s=timeout_s) if ack_replicas else None
            self._router = SingleRouter(reads, writes)
        elif ack_replicas:
            raise ValueError("waiting for replicas needs a plain TCP or Unix connection, not TLS")

    def _ack(self) -> Ack | None:
        """The WAITAOF writes wait for (resolved once the cluster's topology is known)."""
        if self._acks is False:
            n = self.ack_replicas
            if n is None:
                n = 1 if self._router is not None and self._router.has_replicas() else 0
            self._acks = Ack(self._ack_local, n, self.ack_timeout_ms) if n else None
        assert self._acks is not True
        return self._acks

    async def _routed(
        self,
        key: str,
        write: bool,
        send: Callable[[ScriptConnection, Ack | None], Awaitable[T]],
    ) -> T:
        """Send to the connection of `key`'s primary; follow one MOVED (the command did not run
        there); after a failure, have the router re-learn the topology."""
        router = self._router
        assert router is not None
        for attempt in range(2):
            conn = await router.connection(key, write=write)
            try:
                return await send(conn, self._ack() if write else None)
            except MovedError as exc:
                if attempt:
                    router.failed()
                    raise
                await router.moved(exc)
            except TOPOLOGY_ERRORS:
                router.failed()
                raise
            except ResponseError as exc:
                if "appendonly is disabled" in str(exc) and self._ack_local:
                    log.warning("the store's AOF is off: writes wait for replicas only")
                    self._ack_local = 0
                    self._acks = False
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(
        self, script: Script, keys: list[str], args: list[Any], *, write: bool = False
    ) -> Any:
        """Run a script on the lean connection of its slot's primary, else through redis-py."""
        if self._router is None:
            return await self._registered[script](keys=keys, args=args)
        return await self._routed(
            keys[0], write, lambda conn, ack: conn.evalsha(script, keys, args, ack)
        )

    async def _write(self, key: str, *command: Arg) -> Any:
        """Run one write command on `key`'s primary, acknowledged like the scripts."""
        if self._router is None:
            return await self.redis.execute_command(*command)
        return await self._routed(key, True, lambda conn, ack: conn.command(*command, ack=ack))

    async def _call(
        self, fn: Callable[[], Awaitable[T]], timeout_s: float | None = None, *, lean: bool = False
    ) -> T:
        """Run a store call; map what means "the store cannot serve now" to StoreUnavailable.

        `lean`: `fn` only runs scripts through `_run`, which on the lean connections is bounded
        already (the connect timeout, and each connection's reply watchdog): no timeout of its
        own, which was ~4 % of a worker's CPU per request. Through redis-py it keeps one.
        """
        try:
            if lean and self._router is not None:
                return await fn()
            async with asyncio.timeout(timeout_s or self.timeout_s * 2):
                return await fn()
        except UNAVAILABLE as exc:
            if isinstance(exc, ReadOnlyError) and isinstance(self._router, SingleRouter):
                self._router.close()  # reconnect: the address may point at the new primary
            if isinstance(exc, NotReplicated):
                log.debug("write not acknowledged: %s", exc)
            raise StoreUnavailable() from exc
        except ResponseError as exc:
            if str(exc).startswith(UNAVAILABLE_PREFIXES):  # a script hogs the server, ...
                raise StoreUnavailable() from exc
            raise

    async def load_user(self, uid: str, now_ms: int) -> tuple[UserState, list[Directive]]:
        async def run() -> tuple[UserState, list[Directive]]:
            version, blob, dirs = await self._run(LOAD, [user_key(uid), directives_key(uid)], [])
            state = decode_state(blob or None)
            state.version = int(version or 0)
            return state, sorted((decode_directive(b) for b in dirs), key=_order)

        return await self._call(run, lean=True)

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
            C.USER_DECISIONS_KEPT,
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
            user_decisions_key(uid),
            *(shard_key(key, tag) for key, _ in commit.stat_incrs),
        ]

        async def run() -> CommitResult:
            status, blobs, *rest = await self._run(COMMIT, keys, args, write=True)
            dirs = live_directives([decode_directive(b) for b in blobs], commit.now_ms)
            ids = tuple(decision_id(tag, bytes(e).decode()) for e in rest[0]) if rest else ()
            return CommitResult(status.decode(), dirs, ids)

        return await self._call(run, self._write_timeout_s, lean=True)

    async def add_directive(self, uid: str, directive: Directive, ttl_s: int) -> None:
        keys = [directives_key(uid), user_key(uid)]
        args: list[Any] = [
            directive.id,
            encode_directive(directive),
            max(ttl_s, self.directive_ttl_s) * 1000,
        ]
        await self._call(
            lambda: self._run(ADD_DIRECTIVE, keys, args, write=True), self._write_timeout_s
        )

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
                    entry = bytes(entry_id).decode()
                    ms, _, seq = entry.partition("-")
                    blob = bytes(fields[b"d"])
                    if stream == LOG_DECISIONS:
                        blob = with_decision_id(blob, decision_id(tag, entry))
                    rows.append(((int(ms), int(seq)), blob))
                taken += len(got)
                if len(got) < page:
                    break
                top = "(" + bytes(got[-1][0]).decode()
        rows.sort(key=lambda r: r[0])
        return [blob for _, blob in rows[-count:]] if count else []

    async def get_decision(self, did: str) -> bytes | None:
        where = parse_decision_id(did)
        if where is None:
            return None
        tag, entry = where
        key = shard_key(LOG_DECISIONS, tag)
        got: Any = await self._call(partial(self.redis.xrange, key, entry, entry, count=1))
        if not got:
            return None
        return with_decision_id(bytes(got[0][1][b"d"]), did)

    async def user_decisions(self, uid: str, limit: int) -> list[bytes]:
        tag = shard_tag(uid)
        key = shard_key(LOG_DECISIONS, tag)
        entries: Any = await self._call(
            partial(self.redis.lrange, user_decisions_key(uid), 0, max(limit, 1) - 1)
        )
        ids = [bytes(raw).decode() for raw in entries]
        if not ids:
            return []

        async def run() -> list[Any]:
            # One round trip: every entry lives in the user's shard, so one node answers all.
            async with self.redis.pipeline(transaction=False) as pipe:
                for entry in ids:
                    pipe.xrange(key, entry, entry, count=1)
                return list(await pipe.execute())

        found: list[Any] = await self._call(run)
        # The log may have dropped the oldest: skip what it no longer has.
        return [
            with_decision_id(bytes(got[0][1][b"d"]), decision_id(tag, entry))
            for entry, got in zip(ids, found, strict=True)
            if got
        ]

    async def append_log(
        self, stream: str, rows: Sequence[tuple[str, bytes]], maxlen: int, ttl_s: int
    ) -> None:
        if not rows:
            return

        async def run() -> None:
            keys = set()
            async with self.redis.pipeline(transaction=False) as pipe:
                for uid, blob in rows:
                    key = shard_key(stream, shard_tag(uid))
                    keys.add(key)
                    pipe.xadd(key, {"d": blob}, maxlen=maxlen, approximate=True)
                for key in keys:
                    pipe.expire(key, ttl_s)
                await pipe.execute()

        await self._call(run, self._write_timeout_s)

    async def put_model(self, version: str, text: str, meta: bytes) -> None:
        key = model_key(version)

        async def run() -> None:
            await self._write(key, "HSET", key, "text", text, "meta", meta)
            await self._write(MODELS, "ZADD", MODELS, time.time(), version)

        await self._call(run, self._write_timeout_s * 2)

    async def current_model_version(self) -> str | None:
        raw: Any = await self._call(lambda: self.redis.get(MODEL_CURRENT))
        return None if raw is None else bytes(raw).decode()

    async def switch_model(self, version: str, change: bytes, expected: str | None) -> bool:
        keys = [MODEL_CURRENT, MODEL_HISTORY]
        args: list[Any] = [version, change, expected or "", MODEL_HISTORY_MAX]
        switched = await self._call(
            lambda: self._run(SWITCH_MODEL, keys, args, write=True), self._write_timeout_s
        )
        return bool(int(switched))

    async def model_history(self, count: int) -> list[bytes]:
        raw: Any = await self._call(lambda: self.redis.lrange(MODEL_HISTORY, 0, count - 1))
        return [bytes(b) for b in raw]

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
        self,
        kind: str,
        item_id: str,
        blob: bytes,
        expected: int | None = None,
        *,
        history: int = 0,
    ) -> ConfigWrite:
        keys = [*_config_keys(kind), config_history_key(kind)]
        args = [item_id, blob, _expected_arg(expected), int(history)]
        raw = await self._call(
            lambda: self._run(PUT_CONFIG, keys, args, write=True), self._write_timeout_s
        )
        return _config_write(raw)

    async def get_config_at(self, kind: str, version: int) -> bytes | None:
        raw: Any = await self._call(lambda: self.redis.hget(config_history_key(kind), version))
        return None if raw is None else bytes(raw)

    async def delete_config(
        self, kind: str, item_id: str, expected: int | None = None
    ) -> ConfigWrite | None:
        keys, args = _config_keys(kind), [item_id, _expected_arg(expected)]
        raw = await self._call(
            lambda: self._run(DELETE_CONFIG, keys, args, write=True), self._write_timeout_s
        )
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

    async def add_stats(self, incrs: Sequence[tuple[str, Mapping[str, int]]]) -> None:
        if not incrs:
            return

        async def run() -> None:
            # Any shard will do (read_stats sums them all): spread by the key's own hash.
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, fields in incrs:
                    sharded = shard_key(key, shard_tag(key))
                    for name, inc in fields.items():
                        pipe.hincrby(sharded, name, inc)
                await pipe.execute()

        await self._call(run, self._write_timeout_s)

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
        if self._router is not None:
            self._router.close()
        await self.redis.aclose()
