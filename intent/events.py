"""Behaviour events, as the device sends them, and the recent-events window the features read.

The event is a value of the pure core: the service's wire schema, the feature windows, the
training datasets and the simulator all use this one struct.
"""

from __future__ import annotations

import bisect
import operator
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "EVENT_TYPES",
    "RECENT_EVENTS_MAX",
    "RECENT_EVENTS_WINDOW_MS",
    "Event",
    "EventType",
    "add_events",
]

# The id grammar of the service (refreshd.constants.ID_PATTERN / ID_MAX_LEN, checked equal by a
# test): ids become parts of store keys, so no braces or spaces, bounded length.
_ID_PATTERN = r"^[A-Za-z0-9._:@\-]+$(?!\n)"
_ID_MAX_LEN = 128

# The user state keeps this many recent events: enough for 24 h feature windows of a
# heavy user, small enough that one GET stays well under a millisecond.
RECENT_EVENTS_MAX = 500
RECENT_EVENTS_WINDOW_MS = 24 * 3_600_000

EventType = Literal[
    "open", "return", "background", "impression", "click",
    "pull_refresh", "feedback", "payment", "search", "scroll",
]  # fmt: skip
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]

TsMs = Annotated[int, Meta(ge=0, le=4_102_444_800_000, description="epoch milliseconds")]
SlotName = Annotated[str, Meta(min_length=1, max_length=64, pattern=_ID_PATTERN)]
PropValue = Annotated[str, Meta(max_length=256)] | Annotated[float, Meta(ge=-1e12, le=1e12)]
Props = Annotated[
    dict[Annotated[str, Meta(min_length=1, max_length=64)], PropValue], Meta(max_length=32)
]


class Event(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    type: EventType
    ts: TsMs
    item_id: Annotated[str, Meta(min_length=1, max_length=_ID_MAX_LEN)] | None = None
    slot: SlotName | None = None
    value: Annotated[float, Meta(ge=-1e12, le=1e12)] | None = None
    props: Props | None = None


_ts = operator.attrgetter("ts")


def add_events(
    recent: list[Event],
    new: list[Event],
    *,
    max_events: int = RECENT_EVENTS_MAX,
    window_ms: int = RECENT_EVENTS_WINDOW_MS,
) -> list[Event]:
    """Return the recent-events window with `new` merged in ts order, pruned by age and count.

    Ties keep arrival order: an event goes after every event already there with its ts.
    """
    if not new:
        merged = list(recent)
    else:
        batch = sorted(new, key=_ts)  # stable: equal timestamps keep their arrival order
        if not recent or batch[0].ts >= recent[-1].ts:
            merged = recent + batch  # the common case: the batch is newer than the window
        else:
            merged = list(recent)
            for event in batch:
                merged.insert(bisect.bisect_right(merged, event.ts, key=_ts), event)
    if merged:
        horizon = merged[-1].ts - window_ms
        start = bisect.bisect_left(merged, horizon, key=_ts)
        start = max(start, len(merged) - max_events)
        merged = merged[start:]
    return merged
