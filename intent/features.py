"""Feature declarations and the one function that evaluates them at a cut-off time.

Edge, service and training evaluate the same `FEATURES` with the same `compute`, so the
online/offline parity test can compare vectors value by value. A feature sees only events with
`cutoff_ts - window_s * 1000 <= ts < cutoff_ts`; the cut-off itself is excluded so an event
logged at the moment of a decision (and everything after it) can never leak into its features.

Missing values (no such event, no timezone, no refresh on record, a ratio over zero events) are
`MISSING` = -1.0: finite, so vectors compare equal in parity tests, and outside the range of
every count, duration, ratio and clock feature, so a tree can split it off. (A mean or last of
`value` could be -1.0 for real; the declared value feature is a sum of payment amounts.)
"""

from __future__ import annotations

import dataclasses
import hashlib
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from operator import attrgetter
from typing import Literal

from intent.events import EVENT_TYPES, RECENT_EVENTS_WINDOW_MS, Event

__all__ = [
    "FEATURES",
    "FEATURES_VERSION",
    "FEATURE_NAMES",
    "LAUNCH_SOURCES",
    "MISSING",
    "TRIGGERS",
    "Context",
    "FeatureSpec",
    "Kind",
    "compute",
    "feature_ages",
    "features_version",
]

# Finite so parity tests can use ==; below every real count, duration or clock value.
MISSING = -1.0
# Ordinal codes of the `trigger` feature; pull is last because it always refreshes anyway.
TRIGGERS: tuple[str, ...] = ("open", "return", "timer", "scroll", "pull")
# How the app was opened, as the device knows it before the homepage renders (one-hot below).
# `refreshd.core.messages.Launch` spells the same values for the wire.
LAUNCH_SOURCES: tuple[str, ...] = (
    "icon", "push", "deeplink", "scan_shortcut", "return_from_flow", "widget",
)  # fmt: skip
# Bump when `compute` changes meaning for unchanged declarations (part of FEATURES_VERSION).
SEMANTICS_REV = 1

Kind = Literal[
    "count",  # events of `event_types` in the window
    "sum",  # sum of `value` over window events that carry one (0.0 when none do)
    "mean",  # mean of `value` over window events that carry one
    "last",  # `value` of the latest window event that carries one
    "since_last",  # seconds from the latest window event to the cut-off
    "sequence",  # 1.0 if an `event_types` event is followed by a `then_types` one within_s
    "ratio",  # count(event_types) / count(then_types) in the window
    "hour",  # local hour of the cut-off, 0..23
    "weekday",  # local weekday of the cut-off, Monday = 0
    "trigger",  # index of the decision's trigger in TRIGGERS
    "zone",  # geo zone 1..5 from the context
    "since_refresh",  # seconds from the context's last refresh to the cut-off
    "launch",  # 1.0 if the visit was launched from source `arg`, 0.0 from another one
    "home_dwell",  # seconds the homepage has been on screen in this visit (the device's)
    "scrolls",  # scrolls so far in this visit (the device's count)
    "scroll_depth",  # deepest point of the feed reached in this visit, 0..1 (the device's)
]
EVENT_KINDS = frozenset({"count", "sum", "mean", "last", "since_last", "sequence", "ratio"})
VALUE_KINDS = frozenset({"sum", "mean", "last"})
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
# 1970-01-01 was a Thursday; shifting by 3 makes Monday 0 like datetime.weekday().
_EPOCH_WEEKDAY = 3


@dataclasses.dataclass(frozen=True, slots=True)
class FeatureSpec:
    """Declare one feature: what to aggregate, over which events, in which window."""

    name: str
    kind: Kind
    event_types: tuple[str, ...] = ()
    window_s: int = 0
    then_types: tuple[str, ...] = ()
    within_s: int = 0
    arg: str = ""  # the launch source a "launch" feature tests for

    def __post_init__(self) -> None:
        if self.kind == "launch" and self.arg not in LAUNCH_SOURCES:
            raise ValueError(f"{self.name}: launch needs arg, one of {list(LAUNCH_SOURCES)}")
        unknown = set(self.event_types + self.then_types) - set(EVENT_TYPES)
        if unknown:
            raise ValueError(f"{self.name}: unknown event types {sorted(unknown)}")
        if self.kind in EVENT_KINDS and (not self.event_types or self.window_s <= 0):
            raise ValueError(f"{self.name}: {self.kind} needs event_types and window_s > 0")
        if self.window_s * 1000 > RECENT_EVENTS_WINDOW_MS:
            # The service keeps 24 h of events; a longer window would silently see less.
            raise ValueError(f"{self.name}: window_s is longer than the service's event window")
        if self.kind in ("sequence", "ratio") and not self.then_types:
            raise ValueError(f"{self.name}: {self.kind} needs then_types")
        if self.kind == "sequence":
            if self.within_s <= 0:
                raise ValueError(f"{self.name}: sequence needs within_s > 0")
            if set(self.event_types) & set(self.then_types):
                raise ValueError(f"{self.name}: sequence steps must have disjoint types")

    @property
    def source_types(self) -> tuple[str, ...]:
        """Return the event types the feature reads (both steps of a sequence or ratio)."""
        return tuple(dict.fromkeys(self.event_types + self.then_types))


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """What a decision knows besides the events: trigger, timezone, zone, last refresh, and
    what the device reports of the visit so far (launch source, time on the homepage, scrolls,
    scroll depth; None when it did not say)."""

    trigger: str
    tz_offset_min: int | None = None
    zone: int | None = None
    last_refresh_ts: int | None = None
    launch: str | None = None
    home_dwell_s: float | None = None
    scrolls: int | None = None
    scroll_depth: float | None = None


def _windowed_counts() -> list[FeatureSpec]:
    out = []
    for etype in ("open", "click", "impression", "pull_refresh", "feedback"):
        for label, window_s in (("5m", 300), ("1h", 3600), ("24h", 86_400)):
            out.append(FeatureSpec(f"{etype}_count_{label}", "count", (etype,), window_s))
    return out


FEATURES: tuple[FeatureSpec, ...] = (
    *_windowed_counts(),
    FeatureSpec("background_count_1h", "count", ("background",), 3600),
    FeatureSpec("payment_count_24h", "count", ("payment",), 86_400),
    FeatureSpec("payment_value_sum_24h", "sum", ("payment",), 86_400),
    FeatureSpec("since_last_open_s", "since_last", ("open",), 86_400),
    FeatureSpec("since_last_click_s", "since_last", ("click",), 86_400),
    FeatureSpec("since_last_background_s", "since_last", ("background",), 86_400),
    FeatureSpec("ctr_24h", "ratio", ("click",), 86_400, then_types=("impression",)),
    FeatureSpec("open_then_click_60s_24h", "sequence", ("open",), 86_400, ("click",), 60),
    FeatureSpec("since_refresh_s", "since_refresh"),
    FeatureSpec("hour", "hour"),
    FeatureSpec("weekday", "weekday"),
    FeatureSpec("trigger", "trigger"),
    FeatureSpec("zone", "zone"),
    *(FeatureSpec(f"launch_{src}", "launch", arg=src) for src in LAUNCH_SOURCES),
    FeatureSpec("home_dwell_s", "home_dwell"),
    FeatureSpec("scrolls_in_visit", "scrolls"),
    FeatureSpec("scroll_depth", "scroll_depth"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)


def features_version(specs: Sequence[FeatureSpec]) -> str:
    """Return a short hash of the declarations, so a model trained on others is detected."""
    text = repr((SEMANTICS_REV, MISSING, TRIGGERS, LAUNCH_SOURCES, tuple(specs)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


FEATURES_VERSION = features_version(FEATURES)
_ts = attrgetter("ts")
_type = attrgetter("type")


class _Frame:
    """The events of the largest window, with their types and per-window counts."""

    __slots__ = ("_rtypes", "counts", "ctx", "cutoff", "events", "starts", "types")

    def __init__(
        self, events: Sequence[Event], cutoff: int, ctx: Context, windows: tuple[int, ...]
    ) -> None:
        self.events = events
        # One C-level pass; every event feature below works on this list of type names.
        self.types: list[str] = list(map(_type, events))
        self.cutoff = cutoff
        self.ctx = ctx
        self.starts = {w: bisect_left(events, cutoff - w, key=_ts) for w in windows}
        self.counts: dict[int, dict[str, int]] = {
            w: Counter(self.types[i:]) for w, i in self.starts.items()
        }
        self._rtypes: list[str] | None = None

    def reversed_types(self) -> list[str]:
        """Return the type names newest first (built once per call, for newest-first scans)."""
        if self._rtypes is None:
            self._rtypes = self.types[::-1]
        return self._rtypes

    def latest(self, types: tuple[str, ...], window_ms: int) -> int:
        """Return the index of the newest event of `types` inside the window, or -1."""
        counts = self.counts[window_ms]
        present = [t for t in types if counts.get(t)]
        if not present:
            return -1
        last = len(self.types) - 1
        return last - min(self.reversed_types().index(t) for t in present)

    def newest_first(self, types: tuple[str, ...], window_ms: int) -> Iterator[int]:
        """Yield the indexes of events of `types` inside the window, newest first."""
        if len(types) != 1:
            yield from reversed(self.positions(types, window_ms))
            return
        (t,) = types
        rtypes, last, k = self.reversed_types(), len(self.types) - 1, -1
        for _ in range(self.counts[window_ms].get(t, 0)):
            k = rtypes.index(t, k + 1)
            yield last - k

    def positions(self, types: tuple[str, ...], window_ms: int) -> list[int]:
        """Return the indexes of events of `types` inside the window, oldest first."""
        out: list[int] = []
        lo, n, all_types = self.starts[window_ms], len(self.types), self.types
        counts = self.counts[window_ms]
        for t in types:
            # Counting first lets the loop stop without a ValueError, which costs more.
            i = lo - 1
            for _ in range(counts.get(t, 0)):
                i = all_types.index(t, i + 1, n)
                out.append(i)
        if len(types) > 1:
            out.sort()
        return out


_Fn = Callable[[_Frame], float]


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    specs: Sequence[FeatureSpec]
    fns: tuple[_Fn, ...]
    windows: tuple[int, ...]  # distinct event windows, ms
    max_window_ms: int
    # What ages read: each distinct (source types, only events with a value), and per feature
    # (index into those, window ms), None for a context feature.
    age_keys: tuple[tuple[tuple[str, ...], bool], ...] = ()
    ages: tuple[tuple[int, int] | None, ...] = ()


def _count_fn(types: tuple[str, ...], window_ms: int) -> _Fn:
    if len(types) == 1:
        (only,) = types
        return lambda f: float(f.counts[window_ms].get(only, 0))
    return lambda f: float(sum(f.counts[window_ms].get(t, 0) for t in types))


def _value_fn(kind: str, types: tuple[str, ...], window_ms: int) -> _Fn:
    def fn(f: _Frame) -> float:
        values = [v for i in f.positions(types, window_ms) if (v := f.events[i].value) is not None]
        if kind == "sum":
            return float(sum(values))
        if not values:
            return MISSING
        return float(sum(values) / len(values)) if kind == "mean" else float(values[-1])

    return fn


def _since_last_fn(types: tuple[str, ...], window_ms: int) -> _Fn:
    def fn(f: _Frame) -> float:
        i = f.latest(types, window_ms)
        return MISSING if i < 0 else (f.cutoff - f.events[i].ts) / 1000.0

    return fn


def _ratio_fn(num: tuple[str, ...], den: tuple[str, ...], window_ms: int) -> _Fn:
    count_num, count_den = _count_fn(num, window_ms), _count_fn(den, window_ms)

    def fn(f: _Frame) -> float:
        d = count_den(f)
        return count_num(f) / d if d else MISSING

    return fn


def _sequence_fn(
    first: tuple[str, ...], then: tuple[str, ...], window_ms: int, within_ms: int
) -> _Fn:
    def fn(f: _Frame) -> float:
        # "A then B" follows the (ts, arrival) order of the list. Only the first B after an A
        # can be the closest one, and for an older A it is either before the next-newer A or
        # the same B as that A's, so all A's together scan the window once.
        types, events = f.types, f.events
        first_b, bound = -1, len(types)
        # Newest A first: recent sessions are the likeliest to match, so we usually stop early.
        for pa in f.newest_first(first, window_ms):
            segment = types[pa + 1 : bound]
            for t in then:
                if t in segment:
                    i = pa + 1 + segment.index(t)
                    first_b = i if first_b < pa or i < first_b else first_b
            bound = pa
            if first_b >= 0 and events[first_b].ts - events[pa].ts < within_ms:
                return 1.0
        return 0.0

    return fn


def _local_ms(f: _Frame) -> int | None:
    offset = f.ctx.tz_offset_min
    return None if offset is None else f.cutoff + offset * 60_000


def _hour(f: _Frame) -> float:
    local = _local_ms(f)
    return MISSING if local is None else float(local // _HOUR_MS % 24)


def _weekday(f: _Frame) -> float:
    local = _local_ms(f)
    return MISSING if local is None else float((local // _DAY_MS + _EPOCH_WEEKDAY) % 7)


_TRIGGER_CODE = {t: float(i) for i, t in enumerate(TRIGGERS)}


def _trigger(f: _Frame) -> float:
    return _TRIGGER_CODE.get(f.ctx.trigger, MISSING)


def _zone(f: _Frame) -> float:
    zone = f.ctx.zone
    return float(zone) if zone is not None and 1 <= zone <= 5 else MISSING


def _since_refresh(f: _Frame) -> float:
    last = f.ctx.last_refresh_ts
    if last is None:
        return MISSING
    # A refresh stamped after the cut-off (device clock skew) counts as "just now".
    return max(0, f.cutoff - last) / 1000.0


def _launch_fn(source: str) -> _Fn:
    def fn(f: _Frame) -> float:
        launch = f.ctx.launch
        if launch is None or launch not in _LAUNCH_SET:
            return MISSING
        return 1.0 if launch == source else 0.0

    return fn


_LAUNCH_SET = frozenset(LAUNCH_SOURCES)


def _home_dwell(f: _Frame) -> float:
    dwell = f.ctx.home_dwell_s
    return MISSING if dwell is None or dwell < 0 else float(dwell)


def _scrolls(f: _Frame) -> float:
    n = f.ctx.scrolls
    return MISSING if n is None or n < 0 else float(n)


def _scroll_depth(f: _Frame) -> float:
    depth = f.ctx.scroll_depth
    return MISSING if depth is None or not 0.0 <= depth <= 1.0 else float(depth)


_CONTEXT_FNS: dict[str, _Fn] = {
    "hour": _hour,
    "weekday": _weekday,
    "trigger": _trigger,
    "zone": _zone,
    "since_refresh": _since_refresh,
    "home_dwell": _home_dwell,
    "scrolls": _scrolls,
    "scroll_depth": _scroll_depth,
}


def _compile_one(spec: FeatureSpec) -> _Fn:
    window_ms = spec.window_s * 1000
    if spec.kind == "count":
        return _count_fn(spec.event_types, window_ms)
    if spec.kind in VALUE_KINDS:
        return _value_fn(spec.kind, spec.event_types, window_ms)
    if spec.kind == "since_last":
        return _since_last_fn(spec.event_types, window_ms)
    if spec.kind == "ratio":
        return _ratio_fn(spec.event_types, spec.then_types, window_ms)
    if spec.kind == "sequence":
        return _sequence_fn(spec.event_types, spec.then_types, window_ms, spec.within_s * 1000)
    if spec.kind == "launch":
        return _launch_fn(spec.arg)
    return _CONTEXT_FNS[spec.kind]


def _compile(specs: Sequence[FeatureSpec]) -> _Plan:
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("feature names must be unique")
    keys = list(
        dict.fromkeys(
            (s.source_types, s.kind in VALUE_KINDS) for s in specs if s.kind in EVENT_KINDS
        )
    )
    return _Plan(
        specs=specs,
        fns=tuple(_compile_one(s) for s in specs),
        windows=tuple(sorted({s.window_s * 1000 for s in specs if s.kind in EVENT_KINDS})),
        max_window_ms=max((s.window_s * 1000 for s in specs), default=0),
        age_keys=tuple(keys),
        ages=tuple(
            (keys.index((s.source_types, s.kind in VALUE_KINDS)), s.window_s * 1000)
            if s.kind in EVENT_KINDS
            else None
            for s in specs
        ),
    )


# Compiled plans by the identity of their spec tuple: hashing 40 dataclasses per call would
# cost more than computing the features.
_PLANS: dict[int, _Plan] = {id(FEATURES): _compile(FEATURES)}
# Ad-hoc spec tuples (tests, experiments) are few; the cap keeps a loop of them from leaking.
_MAX_PLANS = 64


def _plan_for(specs: Sequence[FeatureSpec]) -> _Plan:
    plan = _PLANS.get(id(specs))
    if plan is None or plan.specs is not specs:
        plan = _compile(specs)
        if isinstance(specs, tuple) and len(_PLANS) < _MAX_PLANS:
            _PLANS[id(specs)] = plan
    return plan


def compute(
    events: Sequence[Event],
    cutoff_ts: int,
    ctx: Context,
    *,
    specs: Sequence[FeatureSpec] = FEATURES,
) -> list[float]:
    """Return the feature vector at `cutoff_ts` from events sorted by ts (ascending)."""
    plan = _plan_for(specs)
    frame = _frame(plan, events, cutoff_ts, ctx)
    return [fn(frame) for fn in plan.fns]


def feature_ages(
    events: Sequence[Event], cutoff_ts: int, *, specs: Sequence[FeatureSpec] = FEATURES
) -> list[float | None]:
    """Return, per feature, seconds from the newest event it used to `cutoff_ts`.

    "Used" as `compute` sees it: an event of the feature's source types inside its window
    (`cutoff_ts - window_s * 1000 <= ts < cutoff_ts`), and for a sum, mean or last one that
    carries a value. None for a feature that reads no events (the context features) or when
    no such event exists. An audit reads this to tell a stale vector from a fresh one.
    """
    plan = _plan_for(specs)
    hi = bisect_left(events, cutoff_ts, key=_ts)
    lo = bisect_left(events, cutoff_ts - plan.max_window_ms, 0, hi, key=_ts)
    # The newest ts of each type in the largest window (and of each type among events that
    # carry a value): events are sorted, so the last write of a key wins. Every decision logs
    # these ages, so this is two comprehensions, not a scan per feature.
    window = events[lo:hi]
    newest = {e.type: e.ts for e in window}
    valued = {e.type: e.ts for e in window if e.value is not None}
    # Features share their sources (a count over 5 min, 1 h, 24 h): the newest ts once each.
    latest = [
        max((seen[t] for t in types if t in seen), default=None)
        for types, seen in (
            (types, valued if by_value else newest) for types, by_value in plan.age_keys
        )
    ]
    out: list[float | None] = []
    for reads in plan.ages:
        ts = None if reads is None else latest[reads[0]]
        if ts is None or reads is None or ts < cutoff_ts - reads[1]:
            out.append(None)
        else:
            out.append((cutoff_ts - ts) / 1e3)
    return out


def _frame(plan: _Plan, events: Sequence[Event], cutoff_ts: int, ctx: Context) -> _Frame:
    hi = bisect_left(events, cutoff_ts, key=_ts)
    lo = bisect_left(events, cutoff_ts - plan.max_window_ms, 0, hi, key=_ts)
    return _Frame(events[lo:hi], cutoff_ts, ctx, plan.windows)
