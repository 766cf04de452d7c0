"""The lean script connection: same replies as redis-py, recovers from flushes and drops."""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis
import redis.asyncio as aioredis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from refreshd.core.errors import StoreUnavailable
from refreshd.store import connection
from refreshd.store.connection import Script, ScriptConnection, pack
from refreshd.store.redis import RedisStore

ECHO = Script.of("return {KEYS[1], ARGV[1], ARGV[2], ARGV[3], redis.call('GET', KEYS[1])}")


def connect(url: str, timeout_s: float = 1.0) -> ScriptConnection:
    return ScriptConnection.like(parse_url(url), timeout_s=timeout_s)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((b"GET", "k"), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
        ((b"X", 12, -3, "é"), b"*4\r\n$1\r\nX\r\n$2\r\n12\r\n$2\r\n-3\r\n$2\r\n\xc3\xa9\r\n"),
        ((b"X", 0.5, b""), b"*3\r\n$1\r\nX\r\n$3\r\n0.5\r\n$0\r\n\r\n"),
    ],
)
def test_pack_writes_resp_arrays_of_bulk_strings(args: tuple[object, ...], expected: bytes) -> None:
    assert pack(*args) == expected  # type: ignore[arg-type]


async def test_replies_equal_redis_py_and_a_flushed_script_cache_is_refilled(
    redis_url: str, raw: redis.Redis
) -> None:
    raw.set("k", b"v\x00")
    conn = connect(redis_url)
    try:
        args = [b"\xff\x00", 7, "x"]
        async with aioredis.Redis.from_url(redis_url) as client:
            via_py = await client.eval(ECHO.body, 1, "k", *args)  # type: ignore[misc]
        assert await conn.evalsha(ECHO, ["k"], args) == via_py
        raw.script_flush()
        assert await conn.evalsha(ECHO, ["k"], args) == via_py
        assert raw.script_exists(ECHO.sha.decode()) == [True]
    finally:
        conn.close()


async def test_many_concurrent_calls_get_their_own_replies(redis_url: str) -> None:
    conn = connect(redis_url)
    try:
        got = await asyncio.gather(
            *(conn.evalsha(ECHO, [f"k{i}"], [i, "", ""]) for i in range(300))
        )
        assert [r[:2] for r in got] == [[f"k{i}".encode(), str(i).encode()] for i in range(300)]
    finally:
        conn.close()


async def test_a_script_error_is_a_response_error(redis_url: str) -> None:
    conn = connect(redis_url)
    try:
        with pytest.raises(ResponseError, match="boom"):
            await conn.evalsha(Script.of("return redis.error_reply('ERR boom')"), [], [])
        assert (await conn.evalsha(ECHO, ["k"], [1, 2, 3]))[:2] == [b"k", b"1"]  # still usable
    finally:
        conn.close()


async def test_a_killed_connection_fails_then_reconnects(redis_url: str, raw: redis.Redis) -> None:
    conn = connect(redis_url)
    try:
        await conn.evalsha(ECHO, ["k"], [1, 2, 3])
        raw.client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(RedisConnectionError):
            for _ in range(50):  # the close reaches us on the loop's next turns
                await conn.evalsha(ECHO, ["k"], [1, 2, 3])
                await asyncio.sleep(0.01)
        assert (await conn.evalsha(ECHO, ["k"], [1, 2, 3]))[:2] == [b"k", b"1"]
    finally:
        conn.close()


class FakeServer:
    """A loopback RESP server: connection `i` answers every command with `replies[i]`, or never."""

    def __init__(self, replies: list[bytes | None]) -> None:
        self.replies = replies
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reply = self.replies[min(self.connections, len(self.replies) - 1)]
        self.connections += 1
        self.writers.append(writer)
        while await reader.read(65536):
            if reply is not None:
                writer.write(reply)
                await writer.drain()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.writers:
            writer.close()
        self.server.close()
        await self.server.wait_closed()


async def test_a_silent_connection_times_out_and_is_replaced() -> None:
    # Like redis-py, a timeout drops the connection: a silently dead one is not kept forever.
    fake = FakeServer([None, b":1\r\n"])
    async with fake as port:
        conn = ScriptConnection(host="127.0.0.1", port=port, timeout_s=0.1)
        try:
            waiting = [asyncio.ensure_future(conn.evalsha(ECHO, ["k"], [])) for _ in range(3)]
            results = await asyncio.gather(*waiting, return_exceptions=True)
            assert all(isinstance(r, RedisTimeoutError) for r in results)
            assert await conn.evalsha(ECHO, ["k"], []) == 1  # on a new connection
            assert fake.connections == 2
        finally:
            conn.close()


async def test_calls_beyond_the_in_flight_cap_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "MAX_IN_FLIGHT", 5)
    async with FakeServer([None]) as port:
        conn = ScriptConnection(host="127.0.0.1", port=port, timeout_s=5.0)
        try:
            waiting = [asyncio.ensure_future(conn.evalsha(ECHO, ["k"], [])) for _ in range(5)]
            await asyncio.sleep(0.05)
            with pytest.raises(RedisConnectionError, match="too many"):
                await conn.evalsha(ECHO, ["k"], [])
            for w in waiting:
                w.cancel()
        finally:
            conn.close()


async def test_callers_behind_a_failed_connect_share_its_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn = ScriptConnection(host="127.0.0.1", port=1, timeout_s=0.5)
    attempts = 0

    async def refused() -> None:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.05)
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(conn, "_connect", refused)
    results = await asyncio.gather(
        *(conn.evalsha(ECHO, ["k"], []) for _ in range(5)), return_exceptions=True
    )
    assert attempts == 1  # one attempt; the four queued behind it failed at once
    assert all(isinstance(r, (RedisConnectionError, ConnectionRefusedError)) for r in results)
    with pytest.raises(ConnectionRefusedError):  # a later caller tries afresh
        await conn.evalsha(ECHO, ["k"], [])
    assert attempts == 2


@pytest.mark.parametrize(
    "reply",
    [
        b"-READONLY You can't write against a read only replica.\r\n",
        b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
        b"-BUSY Redis is busy running a script.\r\n",
    ],
)
async def test_a_store_that_cannot_serve_now_is_unavailable_not_a_500(reply: bytes) -> None:
    async with FakeServer([reply]) as port:
        await assert_load_unavailable(port, timeout_s=0.5)


async def test_store_maps_a_refused_connection_to_unavailable() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    await assert_load_unavailable(port, timeout_s=0.2)


async def assert_load_unavailable(port: int, *, timeout_s: float) -> None:
    store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout_s=timeout_s)
    try:
        with pytest.raises(StoreUnavailable):
            await store.load_user("u1", 0)
    finally:
        await store.close()
