"""The per-(user, fence) state machine: outside, buffer, inside, with dwell.

Rules, with d the signed distance of a fix to the fence edge (negative inside), a its accuracy
radius, B the buffer width and h the hysteresis max(10 % of the fence's size, 20 m):

- A fix *qualifies* for a state only if its whole accuracy circle is in it: inside when
  d + a ≤ 0 (so a point exactly on the edge with a = 0 is inside), in the buffer when
  d + a ≤ B. A fix whose circle straddles an edge qualifies for nothing new: it never flips
  state. (Consequence: a fence smaller than the accuracy circle can only be entered by a
  fix accurate enough to fit inside it.)
- Leaving needs the whole circle beyond the edge *plus* h: out of the fence when d - a > h,
  out of the buffer when d - a > B + h (the buffer edge gets the same hysteresis, so a device
  on the buffer edge does not toggle the fast cadence).
- Entering needs `n_enter` consecutive qualifying fixes, leaving `n_exit` consecutive ones:
  one GPS outlier never moves the state.
- Going outside → inside emits enter_buffer then enter; inside → outside emits exit then
  exit_buffer, so every consumer sees the same nesting.
- `dwell` is emitted once, on the first fix at least `dwell_s` after `enter`.
- A fix not newer than the last applied one (out of order or duplicated) is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import msgspec

from geo import constants as C
from geo.fence import Fence
from geo.index import FenceIndex

__all__ = [
    "DEFAULT_TRACKER",
    "FenceTrack",
    "Fix",
    "State",
    "TrackerParams",
    "Transition",
    "TransitionType",
    "exits_for",
    "hysteresis_m",
    "step",
    "step_at",
    "track",
]

State = Literal["outside", "buffer", "inside"]
TransitionType = Literal["enter_buffer", "enter", "dwell", "exit", "exit_buffer"]

_LEVEL: dict[State, int] = {"outside": 0, "buffer": 1, "inside": 2}
_STATE: tuple[State, State, State] = ("outside", "buffer", "inside")
_UP: dict[int, TransitionType] = {1: "enter_buffer", 2: "enter"}
_DOWN: dict[int, TransitionType] = {2: "exit", 1: "exit_buffer"}


class Fix(msgspec.Struct, frozen=True, kw_only=True):
    """One location fix from a device."""

    lat: float
    lng: float
    accuracy_m: float
    ts_ms: int
    speed_mps: float | None = None


class Transition(msgspec.Struct, frozen=True, rename={"ts_ms": "ts"}):
    """A state change of one user at one fence; encodes as {fence_id, type, ts}."""

    fence_id: str
    type: TransitionType
    ts_ms: int


class FenceTrack(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the tracker remembers about one user at one fence."""

    state: State = "outside"
    since_ts_ms: int = 0  # when `state` was entered
    dwelled: bool = False  # dwell already emitted for this visit
    in_streak: int = 0  # consecutive fixes qualifying as inside
    buffer_streak: int = 0  # consecutive fixes qualifying as within the buffer
    out_streak: int = 0  # consecutive fixes surely beyond the fence edge + hysteresis
    away_streak: int = 0  # consecutive fixes surely beyond the buffer edge + hysteresis
    last_ts_ms: int | None = None

    def idle(self) -> bool:
        """Return whether this track carries no information worth storing."""
        return self.state == "outside" and not (self.in_streak or self.buffer_streak)


@dataclass(frozen=True)
class TrackerParams:
    """Tracker tunables (see geo.constants for why the defaults)."""

    n_enter: int = C.N_ENTER
    n_exit: int = C.N_EXIT
    hysteresis_fraction: float = C.HYSTERESIS_FRACTION
    hysteresis_min_m: float = C.HYSTERESIS_MIN_M


DEFAULT_TRACKER = TrackerParams()


def hysteresis_m(fence: Fence, params: TrackerParams = DEFAULT_TRACKER) -> float:
    """Return how far beyond an edge a fix must be to leave: max(10 % of size, 20 m)."""
    return max(params.hysteresis_fraction * fence.size_m, params.hysteresis_min_m)


def step(
    state: FenceTrack,
    fence: Fence,
    lat: float,
    lng: float,
    accuracy_m: float,
    ts_ms: int,
    params: TrackerParams = DEFAULT_TRACKER,
) -> tuple[FenceTrack, list[Transition]]:
    """Apply one fix to one user's track at one fence."""
    if state.last_ts_ms is not None and ts_ms <= state.last_ts_ms:
        return state, []
    return step_at(state, fence, fence.distance_m(lat, lng), accuracy_m, ts_ms, params)


def step_at(
    state: FenceTrack,
    fence: Fence,
    distance_m: float,
    accuracy_m: float,
    ts_ms: int,
    params: TrackerParams = DEFAULT_TRACKER,
) -> tuple[FenceTrack, list[Transition]]:
    """Apply one fix, given its signed distance to the fence edge."""
    if state.last_ts_ms is not None and ts_ms <= state.last_ts_ms:
        return state, []
    acc = max(accuracy_m, 0.0)
    hyst = hysteresis_m(fence, params)
    near, far = distance_m - acc, distance_m + acc  # the accuracy circle's nearest/farthest
    tol = C.ON_EDGE_TOLERANCE_M
    new = msgspec.structs.replace(
        state,
        in_streak=state.in_streak + 1 if far <= tol else 0,
        buffer_streak=state.buffer_streak + 1 if far <= fence.buffer_m + tol else 0,
        out_streak=state.out_streak + 1 if near > hyst else 0,
        away_streak=state.away_streak + 1 if near > fence.buffer_m + hyst else 0,
        last_ts_ms=ts_ms,
    )
    level = _LEVEL[state.state]
    target = level
    if new.in_streak >= params.n_enter:
        target = 2
    elif new.buffer_streak >= params.n_enter and level == 0:
        target = 1
    if target == level:
        if new.away_streak >= params.n_exit:
            target = 0
        elif new.out_streak >= params.n_exit and level == 2:
            target = 1
    out: list[Transition] = []
    if target > level:
        out = [Transition(fence.id, _UP[k], ts_ms) for k in range(level + 1, target + 1)]
    elif target < level:
        out = [Transition(fence.id, _DOWN[k], ts_ms) for k in range(level, target, -1)]
    if target != level:
        new.state = _STATE[target]
        new.since_ts_ms = ts_ms
        new.dwelled = False
    if (
        new.state == "inside"
        and not new.dwelled
        and ts_ms - new.since_ts_ms >= fence.dwell_s * 1000
    ):
        new.dwelled = True
        out.append(Transition(fence.id, "dwell", ts_ms))
    return new, out


def exits_for(fence_id: str, state: FenceTrack, ts_ms: int) -> list[Transition]:
    """Return the transitions that close a track whose fence disappeared."""
    level = _LEVEL[state.state]
    return [Transition(fence_id, _DOWN[k], ts_ms) for k in range(level, 0, -1)]


def track(
    states: Mapping[str, FenceTrack],
    index: FenceIndex,
    fix: Fix,
    params: TrackerParams = DEFAULT_TRACKER,
) -> tuple[dict[str, FenceTrack], list[Transition]]:
    """Apply one fix to all of a user's tracks; return the tracks worth keeping.

    The fences examined are those whose buffer holds the fix plus every fence already tracked,
    so a user who moved away (or whose fence changed shape) still gets exit transitions. A
    tracked fence that no longer exists is closed at once: exit and/or exit_buffer.
    """
    candidates = {fence_id for fence_id, _ in index.query(fix.lat, fix.lng)}
    candidates.update(states)
    kept: dict[str, FenceTrack] = {}
    transitions: list[Transition] = []
    for fence_id in sorted(candidates):
        old = states.get(fence_id) or FenceTrack()
        fence = index.get(fence_id)
        if fence is None:
            transitions.extend(exits_for(fence_id, old, fix.ts_ms))
            continue
        new, out = step(old, fence, fix.lat, fix.lng, fix.accuracy_m, fix.ts_ms, params)
        transitions.extend(out)
        if not new.idle():
            kept[fence_id] = new
    return kept, transitions
