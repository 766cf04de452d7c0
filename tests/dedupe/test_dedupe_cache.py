"""The device slot cache: TTL expiry and cross-slot dedupe when one slot refreshes."""

from __future__ import annotations

import msgspec
import pytest

from dedupe import (
    CategoryCap,
    Item,
    Recent,
    RecentlyShown,
    Rule,
    SameEntity,
    SameLabel,
    SlotCache,
    default_rules,
    is_fresh,
    new_cache,
    prune,
    put,
    refresh_slot,
    visible,
)
from dedupe.items import StrategyName

T0_MS = 1_700_000_000_000
TTL_S = 600


def make_item(item_id: str, entity_id: str, *labels: str, score: float = 0.5) -> Item:
    return Item(
        item_id=item_id, entity_id=entity_id, category="food", labels=list(labels), score=score
    )


def ids(cache: SlotCache, now_ms: int) -> dict[str, list[str]]:
    return {s.slot: [i.item_id for i in s.items] for s in visible(cache, now_ms=now_ms)}


def make_cache() -> SlotCache:
    cache = new_cache(["nearby", "offers", "feed"], ttl_s=TTL_S)
    cache = put(cache, "nearby", [make_item("a", "e1"), make_item("b", "e2", "m:7")], now_ms=T0_MS)
    return put(cache, "offers", [make_item("c", "e3")], now_ms=T0_MS + 60_000)


@pytest.mark.parametrize(
    ("age_s", "slots"),
    [
        (0, ["nearby", "offers"]),
        (TTL_S - 0.001, ["nearby", "offers"]),
        (TTL_S, ["offers"]),  # an entry lives ttl_s: at exactly ttl_s it is gone
        (TTL_S + 59.999, ["offers"]),
        (TTL_S + 60, []),
    ],
)
def test_slots_expire_after_their_ttl(age_s: float, slots: list[str]) -> None:
    now_ms = T0_MS + round(age_s * 1000)
    assert list(ids(make_cache(), now_ms)) == slots
    assert sorted(prune(make_cache(), now_ms=now_ms).entries) == sorted(slots)


def test_visible_follows_render_order_not_insertion_order() -> None:
    cache = new_cache(["nearby", "offers", "feed"], ttl_s=TTL_S)
    cache = put(cache, "feed", [make_item("x", "e9")], now_ms=T0_MS)
    cache = put(cache, "nearby", [make_item("a", "e1")], now_ms=T0_MS)
    cache = put(cache, "promo", [make_item("p", "e8")], now_ms=T0_MS)  # unknown: renders last
    assert list(ids(cache, T0_MS)) == ["nearby", "feed", "promo"]


def test_per_slot_ttl_override() -> None:
    cache = put(new_cache(ttl_s=TTL_S), "feed", [], now_ms=T0_MS, ttl_s=10)
    entry = cache.entries["feed"]
    assert is_fresh(entry, now_ms=T0_MS + 9_999)
    assert not is_fresh(entry, now_ms=T0_MS + 10_000)


@pytest.mark.parametrize("strategy", ["greedy", "optimal"])
def test_refresh_loses_duplicates_and_other_slots_keep_their_place(
    strategy: StrategyName,
) -> None:
    cache = make_cache()
    now_ms = T0_MS + 120_000
    fresh = [
        make_item("a", "e1", score=0.99),  # same id as nearby's a
        make_item("z", "e3", score=0.9),  # same entity as offers' c
        make_item("y", "e5", "m:7", score=0.8),  # same label as nearby's b
        make_item("w", "e6", score=0.1),
    ]
    new, result = refresh_slot(
        cache, "feed", fresh, [SameEntity(), SameLabel()], now_ms=now_ms, strategy=strategy
    )
    assert ids(new, now_ms) == {"nearby": ["a", "b"], "offers": ["c"], "feed": ["w"]}
    assert [(d.slot, d.item_id, d.rule) for d in result.dropped] == [
        ("feed", "a", "same_entity"),
        ("feed", "z", "same_entity"),
        ("feed", "y", "same_label"),
    ]
    assert result.total_score == pytest.approx(0.1)
    assert new.entries["feed"].stored_ms == now_ms
    assert cache.entries.keys() == {"nearby", "offers"}  # the input cache is not mutated


def test_refresh_replaces_the_slots_own_previous_items() -> None:
    cache = make_cache()
    new, result = refresh_slot(
        cache, "nearby", [make_item("a", "e1"), make_item("d", "e4")], default_rules(),
        now_ms=T0_MS + 120_000,
    )  # fmt: skip
    assert result.dropped == []
    assert ids(new, T0_MS + 120_000)["nearby"] == ["a", "d"]


def test_an_expired_slot_blocks_nothing() -> None:
    cache = make_cache()
    now_ms = T0_MS + TTL_S * 1000  # nearby has just expired, offers has not
    new, result = refresh_slot(
        cache, "feed", [make_item("a", "e1"), make_item("c", "e3")], [SameEntity()], now_ms=now_ms
    )
    assert ids(new, now_ms) == {"offers": ["c"], "feed": ["a"]}
    assert [(d.item_id, d.rule) for d in result.dropped] == [("c", "same_entity")]


def test_refresh_applies_history_and_caps_with_pinned_items_counted() -> None:
    cache = make_cache()  # three food items are visible
    now_ms = T0_MS + 120_000
    rules: list[Rule] = [SameEntity(), CategoryCap(k=4), RecentlyShown(minutes=30)]
    fresh = [make_item("r", "e7"), make_item("s", "e8"), make_item("t", "e9")]
    new, result = refresh_slot(
        cache, "feed", fresh, rules, [Recent("r", now_ms - 60_000)], now_ms=now_ms
    )
    assert ids(new, now_ms)["feed"] == ["s"]
    assert [(d.item_id, d.rule) for d in result.dropped] == [
        ("r", "recently_shown"),
        ("t", "category_cap"),
    ]


def test_cache_round_trips_through_msgpack() -> None:
    cache = make_cache()
    blob = msgspec.msgpack.encode(cache)
    assert msgspec.msgpack.decode(blob, type=SlotCache) == cache
