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
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = bytes | str | int | float
# Commands awaiting a reply on one connection before new ones are refused (503): thousands of
# requests in flight already mean the store is far behind; queueing more only grows memory.
MAX_IN_FLIGHT = 4096


class NotReplicated(RedisError):
    """A write was applied on the primary but `WAITAOF` did not confirm it in time: it must
    not be acknowledged (the caller answers 503; the device retries with the same id)."""


# One WAITAOF waits at most this long; an unconfirmed write sends another, up to the ack
# timeout. Measured on Valkey 9.1 (3 masters + 3 replicas on loopback): about 1 % of single
# `WAITAOF 1 1 1000` calls took ~1 s, until the replica's once-a-second ACK, though the replica
# had fsynced long before. A new WAITAOF makes the master ask its replicas again (REPLCONF
# GETACK) and returns at once: with 10 ms slices the worst of 400 writes took 85 ms, not 1 s.
ACK_SLICE_MS = 10


@dataclasses.dataclass(frozen=True, slots=True)
class Ack:
    """`WAITAOF numlocal numreplicas`, sent after acknowledged writes, for up to `timeout_ms`."""

    local: int
    replicas: int
    timeout_ms: int

    @property
    def slice_ms(self) -> int:
        return min(self.timeout_ms, ACK_SLICE_MS)

    @property
    def command(self) -> bytes:
        return pack(b"WAITAOF", self.local, self.replicas, self.slice_ms)

    def satisfied(self, reply: Any) -> bool:
        if isinstance(reply, hiredis.ReplyError):
            raise _error(reply)
        local, replicas = int(reply[0]), int(reply[1])
        return local >= self.local and replicas >= self.replicas

    def failure(self, reply: Any) -> NotReplicated:
        return NotReplicated(
            f"WAITAOF confirmed {int(reply[0])} local and {int(reply[1])} replica fsyncs in "
            f"{self.timeout_ms} ms, {self.local} and {self.replicas} needed"
        )


def _retrieve(fut: asyncio.Future[Any]) -> None:
    # An ack nobody awaited (its write failed) must not log "exception never retrieved".
    if not fut.cancelled():
        fut.exception()


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
    """Return one command in RESP (an array of bulk strings), packed by hiredis in C: the same
    bytes as redis-py's encoder (floats by `repr`), at a third of a Python packer's cost."""
    return cast(bytes, hiredis.pack_command(args))  # type: ignore[arg-type]  # stub: 1-tuple


def _error(reply: hiredis.ReplyError) -> Exception:
    # redis-py's own mapping: LOADING → BusyLoadingError (a ConnectionError), NOSCRIPT, ...
    exc: Exception = BaseParser.parse_error(str(reply))
    return exc


class _Protocol(asyncio.Protocol):
    """One connection: commands written in order, each reply resolves the oldest waiter.

    Two things the hot path does once per connection rather than once per call:
    - writes are coalesced: commands sent in one turn of the event loop go out in one
      `transport.write` at the end of the turn (one syscall for every request of the turn, not
      one each; the socket write was ~9 % of a worker's CPU under wrk);
    - the store timeout is one watchdog timer, not an `asyncio.timeout` per call (entering,
      rescheduling and leaving those was ~8 %): replies come in order, so only the oldest
      waiter can be overdue, and when it is the connection is dropped, failing every waiter at
      once, as a per-call timeout did.
    """

    def __init__(self, timeout_s: float) -> None:
        self._reader = hiredis.Reader()
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._deadlines: collections.deque[float] = collections.deque()  # one per waiter
        self._transport: asyncio.Transport | None = None
        self._ack: asyncio.Future[Any] | None = None  # the WAITAOF this turn's writes share
        self._out: list[bytes] = []  # commands of this turn, not yet written
        self._watchdog: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self.timeout_s = timeout_s
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                waiter = self._waiting.popleft()
                self._deadlines.popleft()
                if not waiter.done():  # a caller that was cancelled has gone; drop its reply
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
        waiter: asyncio.Future[Any] = self._loop.create_future()
        self._queue(waiter, command, self.timeout_s)
        return waiter

    def _queue(self, waiter: asyncio.Future[Any], command: bytes, timeout_s: float) -> None:
        """Queue `command` for the end of this turn; its reply is due within `timeout_s`."""
        deadline = self._loop.time() + timeout_s
        self._waiting.append(waiter)
        self._deadlines.append(deadline)
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(command)
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(deadline, self._check)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and not self.closed and self._transport is not None:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _check(self) -> None:
        """The watchdog: drop the connection if its oldest reply is overdue, else wait on."""
        self._watchdog = None
        if self.closed or not self._deadlines:
            return
        oldest = self._deadlines[0]
        if self._loop.time() >= oldest:
            self.close(RedisTimeoutError("store did not answer in time"))
        else:
            self._watchdog = self._loop.call_at(oldest, self._check)

    def call_acked(
        self, command: bytes, ack: bytes, ack_timeout_s: float
    ) -> tuple[asyncio.Future[Any], asyncio.Future[Any]]:
        """Send a write; return its reply and the reply of a `WAITAOF` sent after it.

        One `WAITAOF` follows the writes of one turn of the event loop (the server runs a
        connection's commands in order and the replication stream is ordered, so it covers all
        of them). Await the shared future through `asyncio.shield`: it belongs to every write
        of the group.
        """
        return self.call(command), self.ack_soon(ack, ack_timeout_s)

    def ack_soon(self, ack: bytes, timeout_s: float) -> asyncio.Future[Any]:
        """Return the reply of the `WAITAOF` that follows what this turn of the loop sent; it
        is due `timeout_s` after it is sent."""
        if self._ack is None:
            fut: asyncio.Future[Any] = self._loop.create_future()
            fut.add_done_callback(_retrieve)
            self._ack = fut
            self._loop.call_soon(self._after_turn, ack, fut, timeout_s)
        return self._ack

    def _after_turn(self, ack: bytes, fut: asyncio.Future[Any], timeout_s: float) -> None:
        """Send the group's `WAITAOF` once the reply of its last write is in, not with it.

        Sent in the same packet as the writes, the master asks its replicas for their offsets
        (REPLCONF GETACK) in the same pass in which it sends them the writes, a replica answers
        before its own fsync of them, and does not tell again until its once-a-second ACK: with
        Valkey 9.1 nearly every such `WAITAOF 1 1` waited out its timeout. Sent after the reply,
        the replica has usually fsynced by the time it is asked.
        """
        self._ack = None
        last = self._waiting[-1] if self._waiting else None
        if last is None or last.done():
            self._send_ack(ack, fut, timeout_s)
        else:
            last.add_done_callback(lambda _: self._send_ack(ack, fut, timeout_s))

    def _send_ack(self, ack: bytes, fut: asyncio.Future[Any], timeout_s: float) -> None:
        if self.closed or self._transport is None:
            if not fut.done():
                fut.set_exception(RedisConnectionError("connection to the store closed"))
            return
        self._queue(fut, ack, timeout_s)

    def close(self, error: Exception | None = None) -> None:
        self.closed = True
        self._out.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._transport is not None:
            self._transport.close()
        error = error or RedisConnectionError("connection to the store closed")
        self._deadlines.clear()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if self._ack is not None and not self._ack.done():
            self._ack.set_exception(error)


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

    async def evalsha(
        self, script: Script, keys: Sequence[str], args: Sequence[Arg], ack: Ack | None = None
    ) -> Any:
        """Run a script (loading it first if the server lost its cache); return its reply.

        With `ack`, return only once `WAITAOF` confirmed the write (else `NotReplicated`).
        """
        proto = await self._connected()
        command = pack(b"EVALSHA", script.sha, len(keys), *keys, *args)
        reply = await self._send(proto, command, ack)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            # A restarted server: EVAL caches it again.
            command = pack(b"EVAL", script.body, len(keys), *keys, *args)
            reply = await self._send(proto, command, ack)
        return reply

    async def command(self, *args: Arg, ack: Ack | None = None) -> Any:
        """Run one command (with `ack`: confirmed by `WAITAOF`); return its reply."""
        return await self._send(await self._connected(), pack(*args), ack)

    async def _send(self, proto: _Protocol, command: bytes, ack: Ack | None) -> Any:
        if ack is None:
            reply = await proto.call(command)
            if isinstance(reply, hiredis.ReplyError) and not str(reply).startswith("NOSCRIPT"):
                raise _error(reply)
            return reply
        # The group's WAITAOF may queue behind the previous group's (the connection is blocked
        # while one waits): up to two slices on top of the store timeout per WAITAOF.
        ack_timeout_s = self.timeout_s + 2 * ack.slice_ms / 1000
        waiter, acked = proto.call_acked(command, ack.command, ack_timeout_s)
        reply = await waiter
        if isinstance(reply, hiredis.ReplyError):  # nothing was written: no wait
            if str(reply).startswith("NOSCRIPT"):
                return reply
            raise _error(reply)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ack.timeout_ms / 1000
        while True:
            got = await asyncio.shield(acked)  # shared by the writes of a turn: never cancel it
            if ack.satisfied(got):
                return reply
            if loop.time() >= deadline:
                raise ack.failure(got)
            acked = proto.ack_soon(ack.command, ack_timeout_s)  # ask again (see ACK_SLICE_MS)

    # Replies are due within the store timeout, as with redis-py's socket timeout, and, like
    # redis-py, a timeout drops the connection: a silently dead one (a forgotten NAT flow, a
    # failover behind the same address) is replaced on the next call instead of queueing
    # replies that never come, and the calls still waiting on it fail now rather than one
    # timeout each. The connection's watchdog (`_Protocol._check`) enforces it.

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

        def make() -> _Protocol:
            return _Protocol(self.timeout_s)

        try:
            async with asyncio.timeout(self.timeout_s):
                if self.path is not None:
                    _, proto = await loop.create_unix_connection(make, self.path)
                else:
                    _, proto = await loop.create_connection(make, self.host, self.port)
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
        reply = await proto.call(command)
        if isinstance(reply, hiredis.ReplyError):
            raise _error(reply)

    def close(self) -> None:
        if self._proto is not None:
            self._proto.close()
            self._proto = None
