"""The five zones of a location fix, and `locate`: one fix in, everything the device needs out.

Zones, highest first when several apply:

4. INSIDE: the tracker has the user inside at least one fence; its service cards show.
5. EXITED: this fix produced an `exit` (and the user is inside no other fence): reclaim.
3. BUFFER: the tracker has the user in at least one buffer ring; fast fixes.
2. LEFT: the device left its coverage circle (or just left the last buffer): new circle and a
   refresh.
1. COVERED: inside the coverage circle, far from fences: nothing to do.

The first fix of a user gets a circle and zone 1 without a refresh: there was no circle to
leave. While the user is in a buffer or fence (zones 3-5) the circle has radius 0: there is no
"free" area, the tracker decides. A refresh is due on leaving the circle and on every
enter_buffer / enter / exit / exit_buffer (not on dwell, which changes nothing on screen).
Cadence: far from fences, the time to reach the nearest buffer; in a buffer or while an entry or
exit is being confirmed, the fast buffer cadence; settled inside fences, the time to reach the
first exit line (edge + hysteresis) or another fence's buffer, bounded by a due dwell.
Cards shown are remembered in the state, so `reclaim_cards` is exactly what was shown and is no
longer due, even when a fence was deleted or its cards were edited meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import msgspec

from geo import constants as C
from geo.cadence import DEFAULT_CADENCE, CadenceParams, inside_fix_s, next_fix_s
from geo.coverage import Circle, left_circle
from geo.fence import Card
from geo.index import FenceIndex
from geo.tracker import (
    DEFAULT_TRACKER,
    FenceTrack,
    Fix,
    TrackerParams,
    Transition,
    hysteresis_m,
    track,
)

__all__ = ["DEFAULT_GEO", "GeoParams", "GeoState", "LocateResult", "Zone", "locate"]

_REFRESHING = frozenset({"enter_buffer", "enter", "exit", "exit_buffer"})


class Zone(IntEnum):
    """Where a fix puts the user: one of the five zones above."""

    COVERED = 1
    LEFT = 2
    BUFFER = 3
    INSIDE = 4
    EXITED = 5


class GeoState(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Everything geo remembers about one user; msgpack-serialisable with msgspec."""

    fences: dict[str, FenceTrack] = msgspec.field(default_factory=dict)
    coverage: Circle | None = None
    index_version: int = -1  # the FenceIndex version `coverage` was computed against
    last_ts_ms: int | None = None
    zone: Zone = Zone.COVERED
    cards: list[Card] = msgspec.field(default_factory=list)  # service cards on screen


@dataclass(frozen=True)
class GeoParams:
    """All geo tunables in one value (see geo.constants for why the defaults)."""

    r_max_m: float = C.R_MAX_M
    leave_margin_m: float = C.LEAVE_MARGIN_M
    tracker: TrackerParams = field(default_factory=TrackerParams)
    cadence: CadenceParams = field(default_factory=CadenceParams)


DEFAULT_GEO = GeoParams(tracker=DEFAULT_TRACKER, cadence=DEFAULT_CADENCE)


class LocateResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one fix means: transitions, zone, circle, cadence, refresh, cards, new state."""

    transitions: list[Transition]
    zone: Zone
    coverage: Circle
    next_fix_s: int
    refresh: bool
    service_cards: list[Card]
    reclaim_cards: list[Card]
    new_geo_state: GeoState
    ignored: bool = False  # the fix was out of order or a duplicate; nothing changed


def locate(
    prev: GeoState | None, index: FenceIndex, fix: Fix, params: GeoParams = DEFAULT_GEO
) -> LocateResult:
    """Apply one fix to a user's geo state and say what the device should do."""
    prev = prev or GeoState()
    if prev.last_ts_ms is not None and fix.ts_ms <= prev.last_ts_ms:
        return _ignored(prev, fix, params)
    tracks, transitions = track(prev.fences, index, fix, params.tracker)
    inside = [fid for fid, t in tracks.items() if t.state == "inside"]
    near_place = any(t.state != "outside" for t in tracks.values())
    settled = bool(inside) and all(_settled(t) for t in tracks.values())
    reach_m = max(params.r_max_m, params.cadence.reach_m)
    # In a buffer or mid-transition the fast cadence applies and no circle is drawn: the
    # nearest-buffer search (the costliest part of a fix far from fences) is not needed.
    nearest_m = (
        index.nearest_buffer_edge_m(fix.lat, fix.lng, reach_m, exclude=inside)
        if settled or not near_place
        else 0.0
    )
    left = False
    if near_place:
        coverage = Circle(fix.lat, fix.lng, 0.0)
    else:
        old = prev.coverage
        left = (
            old is not None
            and old.radius_m > 0.0
            and left_circle(
                old, fix.lat, fix.lng, accuracy_m=fix.accuracy_m, margin_m=params.leave_margin_m
            )
        )
        if old is None or old.radius_m == 0.0 or left or prev.index_version != index.version:
            coverage = Circle(fix.lat, fix.lng, min(params.r_max_m, nearest_m))
        else:
            coverage = old
    kinds = {t.type for t in transitions}
    cadence = (
        _inside_fix_s(index, tracks, inside, nearest_m, fix, params)
        if settled
        else next_fix_s(nearest_m, fix.speed_mps, near_place or nearest_m == 0.0, params.cadence)
    )
    if inside:
        zone = Zone.INSIDE
    elif "exit" in kinds:
        zone = Zone.EXITED
    elif near_place:
        zone = Zone.BUFFER
    elif left or "exit_buffer" in kinds:
        zone = Zone.LEFT
    else:
        zone = Zone.COVERED
    cards = _cards(index, inside)
    state = GeoState(
        fences=tracks,
        coverage=coverage,
        index_version=index.version,
        last_ts_ms=fix.ts_ms,
        zone=zone,
        cards=cards,
    )
    return LocateResult(
        transitions=transitions,
        zone=zone,
        coverage=coverage,
        next_fix_s=cadence,
        refresh=left or bool(kinds & _REFRESHING),
        service_cards=cards,
        reclaim_cards=[c for c in prev.cards if c not in cards],
        new_geo_state=state,
    )


def _settled(t: FenceTrack) -> bool:
    """Return whether a track is inside or outside with no transition building up."""
    if t.state == "inside":
        return not t.out_streak
    return t.state == "outside" and not (t.in_streak or t.buffer_streak)


def _inside_fix_s(
    index: FenceIndex,
    tracks: dict[str, FenceTrack],
    inside: list[str],
    other_m: float,
    fix: Fix,
    params: GeoParams,
) -> int:
    """Return the cadence inside fences: travel to the first exit or other buffer, or dwell."""
    travel_m = other_m
    dwell_left_s: float | None = None
    for fence_id in inside:
        fence = index.get(fence_id)
        if fence is None:
            return params.cadence.buffer_s
        distance, error = fence.approx_distance_m(fix.lat, fix.lng)
        # Leaving needs the device beyond the edge by the hysteresis; err on the short side.
        travel_m = min(travel_m, max(0.0, hysteresis_m(fence, params.tracker) - distance - error))
        t = tracks[fence_id]
        if not t.dwelled:
            left = fence.dwell_s - (fix.ts_ms - t.since_ts_ms) / 1000.0
            dwell_left_s = left if dwell_left_s is None else min(dwell_left_s, left)
    return inside_fix_s(travel_m, dwell_left_s, fix.speed_mps, params.cadence)


def _cards(index: FenceIndex, fence_ids: list[str]) -> list[Card]:
    """Return the service cards of these fences, in fence-id order, without repeats."""
    out: list[Card] = []
    for fence_id in sorted(fence_ids):
        fence = index.get(fence_id)
        for card in fence.service_cards if fence is not None else ():
            if card not in out:
                out.append(card)
    return out


def _ignored(prev: GeoState, fix: Fix, params: GeoParams) -> LocateResult:
    near_place = any(t.state != "outside" for t in prev.fences.values())
    return LocateResult(
        transitions=[],
        zone=prev.zone,
        coverage=prev.coverage or Circle(fix.lat, fix.lng, 0.0),
        next_fix_s=params.cadence.buffer_s if near_place else params.cadence.min_s,
        refresh=False,
        service_cards=list(prev.cards),
        reclaim_cards=[],
        new_geo_state=prev,
        ignored=True,
    )
