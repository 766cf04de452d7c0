"""Per-user state kept in the store: values only, no I/O."""

from __future__ import annotations

import bisect
import operator

import msgspec

from geo.zones import GeoState
from refreshd import constants as C
from refreshd.expstats import UserTotals
from refreshd.schemas import Event
from refreshd.triggers import UserMatchState


class ExpUser(msgspec.Struct, kw_only=True):
    """A user's standing in one experiment: variant, first exposure, totals since then."""

    variant: str
    exposed_ts: int
    totals: UserTotals = msgspec.field(default_factory=UserTotals)


class UserState(msgspec.Struct, kw_only=True):
    """What the service remembers about one user between contacts."""

    version: int = 0  # compare-and-set counter; 0 means "never written"
    last_refresh_ts: int | None = None
    last_decision_ts: int | None = None
    last_event_ts: int | None = None
    decisions: int = 0
    refreshes: int = 0
    events: int = 0
    recent: list[Event] = msgspec.field(default_factory=list)  # sorted by ts, bounded
    match: UserMatchState = msgspec.field(default_factory=UserMatchState)  # event-rule runs
    exp: dict[str, ExpUser] = msgspec.field(default_factory=dict)  # experiment id → standing
    geo: GeoState | None = None  # fence tracks, coverage circle, zone, cards on screen


_ts = operator.attrgetter("ts")


def add_events(
    recent: list[Event],
    new: list[Event],
    *,
    max_events: int = C.RECENT_EVENTS_MAX,
    window_ms: int = C.RECENT_EVENTS_WINDOW_MS,
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
