"""The per-user lock: one holder at a time, waiters in arrival order, nothing left behind."""

from __future__ import annotations

import asyncio

from refreshd.live.locks import KeyedLock


async def test_holders_of_one_key_run_one_at_a_time_in_arrival_order() -> None:
    locks, order, inside = KeyedLock(), [], []

    async def user(i: int) -> None:
        async with locks.hold("u"):
            inside.append(i)
            assert len(inside) == 1
            await asyncio.sleep(0)
            order.append(i)
            inside.remove(i)

    await asyncio.gather(*(user(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]
    assert len(locks) == 0


async def test_other_keys_do_not_wait() -> None:
    locks = KeyedLock()
    async with locks.hold("a"):
        async with asyncio.timeout(1):
            async with locks.hold("b"):
                assert len(locks) == 2
    assert len(locks) == 0


async def test_a_cancelled_waiter_neither_holds_nor_blocks_the_next() -> None:
    locks, got = KeyedLock(), []

    async def wait_for(i: int) -> None:
        async with locks.hold("u"):
            got.append(i)

    async with locks.hold("u"):
        first = asyncio.create_task(wait_for(1))
        second = asyncio.create_task(wait_for(2))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
    await second
    assert got == [2] and first.cancelled()
    assert len(locks) == 0


async def test_a_waiter_cancelled_just_as_it_is_handed_the_key_passes_it_on() -> None:
    locks, got = KeyedLock(), []

    async def wait_for(i: int) -> None:
        async with locks.hold("u"):
            got.append(i)

    holder = locks.hold("u")
    await holder.__aenter__()
    first = asyncio.create_task(wait_for(1))
    second = asyncio.create_task(wait_for(2))
    await asyncio.sleep(0)
    await holder.__aexit__(None, None, None)  # hands the key to `first` ...
    first.cancel()  # ... which is cancelled before it runs
    await asyncio.gather(first, second, return_exceptions=True)
    assert got == [2] and first.cancelled()
    assert len(locks) == 0


async def test_an_error_in_the_body_releases_the_key() -> None:
    locks = KeyedLock()
    try:
        async with locks.hold("u"):
            raise ValueError("boom")
    except ValueError:
        pass
    assert len(locks) == 0
