"""FenceBook: a bulk fence change (parsed and covered off the event loop) lands whole."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from geo import FenceIndex, parse_feature
from refreshd.live.fencebook import INLINE_PARSE_MAX, FenceBook
from refreshd.store.redis import RedisStore


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_url)
    yield s
    await s.close()


def feature(k: int, radius_m: float = 60.0) -> dict:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [13.4 + 0.003 * k, 52.5]},
        "properties": {"radius_m": radius_m, "buffer_m": 50},
    }


def cells(index: FenceIndex) -> dict[int, tuple]:
    # Edge checks hold each fence's `where`, which compares by identity: compare the cells'
    # hits and edge fence ids.
    return {c: (hits, sorted(i for i, _ in edges)) for c, (hits, edges) in index._cells.items()}


def expected(book: FenceBook, features: dict[str, dict]) -> None:
    plain = FenceIndex(parse_feature(fid, f) for fid, f in sorted(features.items()))
    assert sorted(f.id for f in book.index) == sorted(features)
    assert cells(book.index) == cells(plain)


async def test_bulk_change_then_an_incremental_one(store: RedisStore) -> None:
    n = 3 * INLINE_PARSE_MAX  # more than are parsed inline: the worker-thread path
    features = {f"f{k:03d}": feature(k) for k in range(n)}
    for fid, f in features.items():
        await store.put_config("fences", fid, msgspec.json.encode(f))
    await store.put_config("fences", "broken", b'{"type": "Feature"}')  # skipped, logged
    book = FenceBook()
    assert await book.refresh(store)
    expected(book, features)
    for k in range(5):
        await store.delete_config("fences", f"f{k:03d}")
        del features[f"f{k:03d}"]
    features["f010"] = feature(10, radius_m=200.0)
    await store.put_config("fences", "f010", msgspec.json.encode(features["f010"]))
    assert await book.refresh(store)
    expected(book, features)
    assert not await book.refresh(store)  # unchanged version: nothing to do


async def test_after_the_first_read_only_changed_fences_are_read(store: RedisStore) -> None:
    """One fence write makes each worker read that fence, not every stored blob again."""
    features = {f"g{k:03d}": feature(k) for k in range(30)}
    for fid, f in features.items():
        await store.put_config("fences", fid, msgspec.json.encode(f))
    book = FenceBook()
    assert await book.refresh(store)
    read: list[int] = []
    full, changes = store.get_config, store.get_config_changes

    async def counting_full(kind: str) -> tuple[int, dict[str, bytes]]:
        version, items = await full(kind)
        read.append(len(items))
        return version, items

    async def counting_changes(kind: str, since: int) -> tuple[int, dict[str, bytes | None]]:
        version, items = await changes(kind, since)
        read.append(len(items))
        return version, items

    store.get_config = counting_full  # type: ignore[method-assign]
    store.get_config_changes = counting_changes  # type: ignore[method-assign]
    features["g007"] = feature(7, radius_m=150.0)
    await store.put_config("fences", "g007", msgspec.json.encode(features["g007"]))
    await store.delete_config("fences", "g008")
    del features["g008"]
    assert await book.refresh(store)
    assert read == [2]  # the changed fence and the deleted one
    expected(book, features)
    fresh = FenceBook()  # a worker starting now reads everything once
    assert await fresh.refresh(store)
    assert read == [2, 29]
    expected(fresh, features)


async def test_a_periodic_full_read_catches_what_the_change_log_misses(store: RedisStore) -> None:
    """A fence written without a log entry (an older version mid-upgrade) is still found."""
    await store.put_config("fences", "h1", msgspec.json.encode(feature(1)))
    book = FenceBook()
    assert await book.refresh(store)
    # What an older worker's write looks like: the item and the version, no log entry.
    await store.redis.hset("cfg:{fences}", "h2", msgspec.json.encode(feature(2)))
    await store.redis.incr("cfg:{fences}:ver")
    assert await book.refresh(store)
    assert sorted(f.id for f in book.index) == ["h1"]  # the log has nothing on h2
    book.full_read_every_s = 0.0  # the full read is due: it runs even with no new version
    assert await book.refresh(store)
    assert sorted(f.id for f in book.index) == ["h1", "h2"]
