"""The device's slot cache: each slot's last recommendations with a TTL, so refreshing one
slot is deduplicated against what the other slots show without a request coupling them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from dedupe import constants as C
from dedupe.allocate import Allocation, allocate_slots
from dedupe.items import Item, Recent, SlotItems, StrategyName
from dedupe.rules import Rule

__all__ = [
    "CachedSlot",
    "SlotCache",
    "is_fresh",
    "new_cache",
    "prune",
    "put",
    "refresh_slot",
    "visible",
]


class CachedSlot(msgspec.Struct, frozen=True):
    """What one slot shows, since when, and for how long."""

    items: list[Item]
    stored_ms: int
    ttl_s: float


class SlotCache(msgspec.Struct, frozen=True):
    """Per-slot cached items, keyed by slot, rendered in `order`."""

    order: list[str] = []
    entries: dict[str, CachedSlot] = {}
    ttl_s: float = C.SLOT_TTL_S


def new_cache(order: Iterable[str] = (), *, ttl_s: float = C.SLOT_TTL_S) -> SlotCache:
    """Return an empty cache for a homepage whose slots render in `order`."""
    return SlotCache(order=list(dict.fromkeys(order)), entries={}, ttl_s=ttl_s)


def is_fresh(entry: CachedSlot, *, now_ms: int) -> bool:
    """Return whether `entry` is still within its TTL at `now_ms`."""
    # Expired at exactly ttl_s: the TTL is how long an entry lives, not the last live instant.
    return now_ms - entry.stored_ms < entry.ttl_s * 1000


def put(
    cache: SlotCache,
    slot: str,
    items: Sequence[Item],
    *,
    now_ms: int,
    ttl_s: float | None = None,
) -> SlotCache:
    """Return `cache` with `slot` now showing `items` (an unknown slot renders last)."""
    entry = CachedSlot(list(items), now_ms, cache.ttl_s if ttl_s is None else ttl_s)
    order = cache.order if slot in cache.order else [*cache.order, slot]
    return msgspec.structs.replace(cache, order=order, entries={**cache.entries, slot: entry})


def visible(cache: SlotCache, *, now_ms: int) -> list[SlotItems]:
    """Return the unexpired slots in render order."""
    out = []
    for slot in cache.order:
        entry = cache.entries.get(slot)
        if entry is not None and is_fresh(entry, now_ms=now_ms):
            out.append(SlotItems(slot, entry.items))
    return out


def prune(cache: SlotCache, *, now_ms: int) -> SlotCache:
    """Return `cache` without expired entries (the render order is kept)."""
    live = {s: e for s, e in cache.entries.items() if is_fresh(e, now_ms=now_ms)}
    return msgspec.structs.replace(cache, entries=live)


def refresh_slot(
    cache: SlotCache,
    slot: str,
    fresh_items: Sequence[Item],
    rules: Sequence[Rule],
    recent: Iterable[Recent] = (),
    *,
    now_ms: int,
    strategy: StrategyName = "greedy",
) -> tuple[SlotCache, Allocation]:
    """Dedupe a refreshed slot against the other visible slots and store what it keeps."""
    # The other slots are on screen already: moving their cards would flicker, so they are
    # pinned and only the refreshed slot gives up duplicates. An expired slot pins nothing.
    others = [s for s in visible(cache, now_ms=now_ms) if s.slot != slot]
    result = allocate_slots(
        [SlotItems(slot, list(fresh_items))],
        rules,
        recent,
        now_ms=now_ms,
        strategy=strategy,
        pinned=others,
    )
    return put(cache, slot, result.slots[0].items, now_ms=now_ms), result
