"""FenceBook: a bulk fence change (parsed and covered off the event loop) lands whole."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from geo import FenceIndex, parse_feature
from refreshd.fencebook import INLINE_PARSE_MAX, FenceBook
from refreshd.redis_store import RedisStore


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
    # Fence objects compare by identity: compare the cells' hits and edge fence ids.
    return {c: (hits, sorted(f.id for f in edges)) for c, (hits, edges) in index._cells.items()}


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
