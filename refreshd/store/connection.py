"""A lean Redis connection for the two scripts every request runs (load state, commit).

redis-py's asyncio client spends ~120 µs of CPU around each ~40 µs round trip (pool checkout,
command packing through its encoder, per-call timeout tasks, response callbacks), measured on
the development VM with the load script. This connection does only what the hot path needs:
EVALSHA of a known script on one pipelined connection, replies handed to callers in order (a
Redis connection answers its commands in order), parsed by hiredis. Error replies become the
exceptions redis-py raises for them, so callers map failures exactly as before. Everything else
(configuration, logs, models, Redis Cluster) stays on redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = bytes | str | int | float
# Commands awaiting a reply on one connection before new ones are refused (503): thousands of
# requests in flight already mean the store is far behind; queueing more only grows memory.
MAX_IN_FLIGHT = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA1, the name the server caches it under."""

    body: bytes
    sha: bytes

    @classmethod
    def of(cls, body: str) -> Script:
        raw = body.encode()
        return cls(raw, hashlib.sha1(raw).hexdigest().encode())


def pack(*args: Arg) -> bytes:
    """Return one command in RESP (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            raw = arg
        elif isinstance(arg, str):
            raw = arg.encode()
        elif isinstance(arg, int):
            raw = b"%d" % arg
        elif isinstance(arg, float):
            raw = repr(arg).encode()  # as redis-py encodes floats
        else:
            raise TypeError(f"cannot send {type(arg).__name__} to Redis")
        parts += (b"$%d\r\n" % len(raw), raw, b"\r\n")
    return b"".join(parts)


def _error(reply: hiredis.ReplyError) -> Exception:
    # redis-py's own mapping: LOADING → BusyLoadingError (a ConnectionError), NOSCRIPT, ...
    exc: Exception = BaseParser.parse_error(str(reply))
    return exc


class _Protocol(asyncio.Protocol):
    """One connection: commands written in order, each reply resolves the oldest waiter."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                waiter = self._waiting.popleft()
                if not waiter.done():  # a caller that timed out has gone; drop its reply
                    waiter.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            self.close(RedisConnectionError(f"unreadable reply from the store: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(RedisConnectionError("connection to the store lost"))

    def call(self, command: bytes) -> asyncio.Future[Any]:
        if self.closed or self._transport is None:
            raise RedisConnectionError("connection to the store is closed")
        if len(self._waiting) >= MAX_IN_FLIGHT:  # the store is far behind: shed, do not queue
            raise RedisConnectionError("too many commands waiting for the store")
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._transport.write(command)
        return waiter

    def close(self, error: Exception | None = None) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()
        error = error or RedisConnectionError("connection to the store closed")
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)


class ScriptConnection:
    """Run registered Lua scripts on one lazily (re)connected, pipelined connection."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        timeout_s: float,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.username, self.password, self.db = username, password, db
        self.timeout_s = timeout_s
        self._proto: _Protocol | None = None
        self._connecting = asyncio.Lock()
        self._failures = 0  # failed connection attempts so far
        self._last_error: BaseException | None = None

    @staticmethod
    def supports(connection_class: type) -> bool:
        """Whether a redis-py pool's connections are plain TCP or Unix ones (not TLS)."""
        return connection_class in (Connection, UnixDomainSocketConnection)

    @classmethod
    def like(cls, kwargs: dict[str, Any], *, timeout_s: float) -> ScriptConnection:
        """Return a connection to where a redis-py pool's `connection_kwargs` point."""
        return cls(
            host=kwargs.get("host", "127.0.0.1"),
            port=int(kwargs.get("port", 6379)),
            path=kwargs.get("path"),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            db=int(kwargs.get("db") or 0),
            timeout_s=timeout_s,
        )

    async def evalsha(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a script (loading it first if the server lost its cache); return its reply."""
        proto = await self._connected()
        reply = await self._reply(
            proto, proto.call(pack(b"EVALSHA", script.sha, len(keys), *keys, *args))
        )
        if isinstance(reply, hiredis.ReplyError):
            if str(reply).startswith("NOSCRIPT"):  # a restarted server: EVAL caches it again
                command = pack(b"EVAL", script.body, len(keys), *keys, *args)
                reply = await self._reply(proto, proto.call(command))
            if isinstance(reply, hiredis.ReplyError):
                raise _error(reply)
        return reply

    async def _reply(self, proto: _Protocol, waiter: asyncio.Future[Any]) -> Any:
        # The store timeout per reply, as redis-py's socket timeout. Like redis-py, a timeout
        # drops the connection: a silently dead one (a forgotten NAT flow, a failover behind the
        # same address) is replaced on the next call instead of queueing replies that never
        # come, and the calls still waiting on it fail now rather than one timeout each.
        try:
            async with asyncio.timeout(self.timeout_s):
                return await waiter
        except TimeoutError:
            error = RedisTimeoutError("store did not answer in time")
            proto.close(error)
            raise error from None

    async def _connected(self) -> _Protocol:
        proto = self._proto
        if proto is not None and not proto.closed:
            return proto
        failures = self._failures
        async with self._connecting:
            if self._proto is not None and not self._proto.closed:
                return self._proto
            # Callers that queued behind a failed attempt share its failure instead of each
            # making (and waiting out) one more attempt; a caller arriving later tries afresh.
            if self._failures != failures:
                raise RedisConnectionError(f"store unreachable: {self._last_error}")
            try:
                self._proto = await self._connect()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self._failures += 1
                self._last_error = exc
                raise
            return self._proto

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout_s):
                if self.path is not None:
                    _, proto = await loop.create_unix_connection(_Protocol, self.path)
                else:
                    _, proto = await loop.create_connection(_Protocol, self.host, self.port)
        except TimeoutError:
            raise RedisTimeoutError("timed out connecting to the store") from None
        try:
            if self.password is not None:
                user = (self.username,) if self.username else ()
                await self._checked(proto, pack(b"AUTH", *user, self.password))
            if self.db:
                await self._checked(proto, pack(b"SELECT", self.db))
        except BaseException:
            proto.close()
            raise
        return proto

    async def _checked(self, proto: _Protocol, command: bytes) -> None:
        reply = await self._reply(proto, proto.call(command))
        if isinstance(reply, hiredis.ReplyError):
            raise _error(reply)

    def close(self) -> None:
        if self._proto is not None:
            self._proto.close()
            self._proto = None
