"""The worker's user cache: values round-trip exactly, LRU bound, invisible to the collector."""

from __future__ import annotations

import gc

from intent.events import Event
from refreshd.core.messages import Directive
from refreshd.core.state import UserState
from refreshd.live.usercache import UserCache


def make_state(version: int = 3, events: int = 5) -> UserState:
    recent = [
        Event(type="impression", ts=1_700_000_000_000 + i, item_id=f"i{i}", slot="feed")
        for i in range(events)
    ]
    return UserState(version=version, decisions=2, refreshes=1, recent=recent)


def make_directive(i: int) -> Directive:
    return Directive(
        id=f"d_{i}", type="refresh", created_ts=1_700_000_000_000 + i, expires_ts=2**50
    )


def test_get_returns_what_was_put() -> None:
    cache = UserCache(10)
    state, dirs = make_state(), [make_directive(1), make_directive(2)]
    cache.put("u1", state, dirs)
    assert cache.get("u1") == (state, dirs)
    assert cache.get("nobody") is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_returned_value_is_a_copy() -> None:
    cache = UserCache(10)
    cache.put("u1", make_state(), [])
    got = cache.get("u1")
    assert got is not None
    got[0].recent.clear()
    got[1].append(make_directive(9))
    assert cache.get("u1") == (make_state(), [])


def test_least_recently_used_user_is_evicted() -> None:
    cache = UserCache(2)
    cache.put("a", make_state(1), [])
    cache.put("b", make_state(2), [])
    assert cache.get("a") is not None  # "b" is now the oldest
    cache.put("c", make_state(3), [])
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None


def test_size_zero_caches_nothing_and_drop_forgets() -> None:
    off = UserCache(0)
    off.put("u", make_state(), [])
    assert off.get("u") is None
    cache = UserCache(10)
    cache.put("u", make_state(), [])
    cache.drop("u")
    cache.drop("never")
    assert cache.get("u") is None


def test_entries_are_not_tracked_by_the_cycle_collector() -> None:
    cache = UserCache(10)
    cache.put("u", make_state(events=50), [make_directive(1)])
    gc.collect()  # tuples of bytes are untracked at their first collection
    assert not any(gc.is_tracked(v) for v in cache._items.values())
