"""Wire shapes of POST /v1/dedupe: items, slots in render order, impression history."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from dedupe import constants as C
from dedupe.errors import DedupeInputError

ItemId = Annotated[str, Meta(min_length=1, max_length=C.ID_MAX_LEN)]
Name = Annotated[str, Meta(min_length=1, max_length=C.NAME_MAX_LEN)]
Label = Annotated[str, Meta(min_length=1, max_length=C.ID_MAX_LEN)]
# Non-negative: a negative relevance would make dropping a conflict-free card "optimal".
Score = Annotated[float, Meta(ge=0.0, le=C.SCORE_MAX)]
TsMs = Annotated[int, Meta(ge=0, le=4_102_444_800_000, description="epoch milliseconds")]
StrategyName = Literal["greedy", "optimal"]


class Item(msgspec.Struct, frozen=True, kw_only=True):
    """One recommended card: an id, the entity behind it, and its equivalence labels."""

    item_id: ItemId
    entity_id: ItemId
    category: Name
    labels: Annotated[list[Label], Meta(max_length=C.MAX_LABELS_PER_ITEM)] = []
    score: Score = 0.0


class SlotItems(msgspec.Struct, frozen=True):
    """One homepage slot and its items in the recommender's rank order."""

    slot: Name
    items: Annotated[list[Item], Meta(max_length=C.MAX_ITEMS_PER_SLOT)]


class Recent(msgspec.Struct, frozen=True):
    """One impression from the device's history: which item, shown when."""

    item_id: ItemId
    ts: TsMs


class DedupeRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Decode the POST /v1/dedupe body; `rules` stays raw so `load_rules` can name bad fields."""

    slots: Annotated[list[SlotItems], Meta(max_length=C.MAX_SLOTS)]
    recent: Annotated[list[Recent], Meta(max_length=C.MAX_RECENT)] = []
    rules: Annotated[list[Any], Meta(max_length=C.MAX_RULES)] | None = None
    strategy: StrategyName = "greedy"


def iter_items(slots: Iterable[SlotItems]) -> Iterator[tuple[str, Item]]:
    """Yield (slot, item) pairs in render order."""
    for slot in slots:
        for item in slot.items:
            yield slot.slot, item


def validate_request(req: DedupeRequest) -> None:
    """Reject what the types cannot express: a slot name used twice (DedupeInputError)."""
    # Render order, drop reasons and the response are all keyed by slot name, so a repeated
    # name is ambiguous; the second occurrence is the one reported.
    seen: set[str] = set()
    for i, slot in enumerate(req.slots):
        if slot.slot in seen:
            raise DedupeInputError(f"duplicate slot name {slot.slot!r}", f"slots[{i}].slot")
        seen.add(slot.slot)


def decode_request(body: bytes | str) -> DedupeRequest:
    """Decode and validate a POST /v1/dedupe body (raises msgspec errors on bad input)."""
    return msgspec.json.decode(body, type=DedupeRequest)
