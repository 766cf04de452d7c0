"""Feature declarations: each kind, window edges, clocks, sentinels, and a reference model."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from intent_support import T0, MakeEvent

from intent.events import Event
from intent.features import (
    FEATURE_NAMES,
    FEATURES,
    FEATURES_VERSION,
    LAUNCH_SOURCES,
    MISSING,
    Context,
    FeatureSpec,
    compute,
    feature_ages,
    features_version,
)

CTX = Context(trigger="open", tz_offset_min=0)

OPEN_5M = FeatureSpec("n", "count", ("open",), 300)
CLICK_5M = FeatureSpec("n2", "count", ("open", "click"), 300)
PAY_SUM = FeatureSpec("s", "sum", ("payment",), 3600)
PAY_MEAN = FeatureSpec("m", "mean", ("payment",), 3600)
PAY_LAST = FeatureSpec("l", "last", ("payment",), 3600)
SINCE_CLICK = FeatureSpec("t", "since_last", ("click",), 3600)
CTR = FeatureSpec("r", "ratio", ("click",), 3600, then_types=("impression",))
SEQ = FeatureSpec("q", "sequence", ("open",), 3600, ("click",), 60)


@pytest.mark.parametrize(
    ("spec", "events", "expected"),
    [
        # count: [cutoff - window, cutoff) — the cut-off is out, the window's start is in
        (OPEN_5M, [("open", 300), ("open", 10), ("open", 0)], 2.0),
        (OPEN_5M, [("open", 300.001), ("open", 0)], 0.0),
        (OPEN_5M, [("open", -5)], 0.0),  # after the cut-off
        (OPEN_5M, [("click", 10)], 0.0),
        (OPEN_5M, [], 0.0),
        (CLICK_5M, [("open", 200), ("click", 100), ("impression", 50)], 2.0),
        # sum / mean / last over events that carry a value; others do not count
        (PAY_SUM, [("payment", 4000, 100.0), ("payment", 30, 3.0), ("payment", 20, 4.0)], 7.0),
        (PAY_SUM, [("payment", 20)], 0.0),
        (PAY_SUM, [], 0.0),
        (PAY_MEAN, [("payment", 30, 3.0), ("payment", 20, 4.0), ("payment", 10)], 3.5),
        (PAY_MEAN, [("payment", 10)], MISSING),
        (PAY_LAST, [("payment", 30, 3.0), ("payment", 20, 4.0), ("payment", 10)], 4.0),
        (PAY_LAST, [("payment", 0, 9.0)], MISSING),
        # seconds since the newest event in the window
        (SINCE_CLICK, [("click", 600), ("click", 42.5), ("open", 1)], 42.5),
        (SINCE_CLICK, [("click", 3600)], 3600.0),
        (SINCE_CLICK, [("click", 3601)], MISSING),
        (SINCE_CLICK, [("click", 0)], MISSING),
        (SINCE_CLICK, [], MISSING),
        # ratio, missing when the denominator is zero
        (CTR, [("impression", 50), ("impression", 40), ("click", 30), ("impression", 20)], 1 / 3),
        (CTR, [("click", 30)], MISSING),
        # sequence: A then B, strictly less than within_s apart
        (SEQ, [("open", 100), ("click", 50)], 1.0),
        (SEQ, [("open", 100), ("click", 40)], 0.0),  # exactly 60 s apart
        (SEQ, [("open", 100), ("click", 40.001)], 1.0),
        (SEQ, [("click", 100), ("open", 90)], 0.0),  # B before A
        (SEQ, [("open", 500), ("click", 10), ("open", 300), ("click", 270)], 1.0),
        (SEQ, [("open", 3601), ("click", 3590)], 0.0),  # A outside the window
        (SEQ, [("open", 30), ("click", 0)], 0.0),  # B at the cut-off
        (SEQ, [], 0.0),
    ],
)
def test_event_kinds(
    make_event: MakeEvent, spec: FeatureSpec, events: list[tuple], expected: float
) -> None:
    evs = [make_event(e[0], e[1], value=e[2]) if len(e) > 2 else make_event(*e) for e in events]
    evs.sort(key=lambda e: e.ts)
    assert compute(evs, T0, CTX, specs=(spec,)) == [expected]


@pytest.mark.parametrize(
    ("tz_offset_min", "hour", "weekday"),
    [
        (0, 12.0, 0.0),  # T0 is Monday 12:00 UTC
        (330, 17.0, 0.0),  # India, 17:30
        (-780, 23.0, 6.0),  # 13 h behind: still Sunday evening
        (840, 2.0, 1.0),  # Kiribati: already Tuesday
        (None, MISSING, MISSING),
    ],
)
def test_hour_and_weekday_in_local_time(
    tz_offset_min: int | None, hour: float, weekday: float
) -> None:
    specs = (FeatureSpec("h", "hour"), FeatureSpec("w", "weekday"))
    ctx = Context(trigger="open", tz_offset_min=tz_offset_min)
    assert compute([], T0, ctx, specs=specs) == [hour, weekday]
    if tz_offset_min is not None:
        local = dt.datetime.fromtimestamp(
            T0 / 1000, dt.timezone(dt.timedelta(minutes=tz_offset_min))
        )
        assert (local.hour, local.weekday()) == (hour, weekday)


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        (Context("open", zone=3, last_refresh_ts=T0 - 90_000), [0.0, 3.0, 90.0]),
        (Context("pull", zone=5, last_refresh_ts=T0), [4.0, 5.0, 0.0]),
        (Context("timer", zone=None, last_refresh_ts=None), [2.0, MISSING, MISSING]),
        (Context("open", zone=0), [0.0, MISSING, MISSING]),
        (Context("open", zone=6), [0.0, MISSING, MISSING]),
        (Context("shake", last_refresh_ts=T0 + 5_000), [MISSING, MISSING, 0.0]),  # clock skew
    ],
)
def test_context_kinds(ctx: Context, expected: list[float]) -> None:
    specs = (
        FeatureSpec("t", "trigger"),
        FeatureSpec("z", "zone"),
        FeatureSpec("r", "since_refresh"),
    )
    assert compute([], T0, ctx, specs=specs) == expected


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        # launch one-hot (push, scan_shortcut), home dwell, scrolls, depth
        (Context("open", launch="push", home_dwell_s=0.0, scrolls=0, scroll_depth=0.0),
         [1.0, 0.0, 0.0, 0.0, 0.0]),
        (Context("scroll", launch="scan_shortcut", home_dwell_s=12.5, scrolls=3, scroll_depth=1.0),
         [0.0, 1.0, 12.5, 3.0, 1.0]),
        (Context("timer"), [MISSING] * 5),  # the device said nothing of the visit
        (Context("open", launch="shake", home_dwell_s=-2.0, scrolls=-1, scroll_depth=1.5),
         [MISSING] * 5),  # out-of-range values (the API rejects them) never pass as real ones
    ],
)  # fmt: skip
def test_visit_kinds(ctx: Context, expected: list[float]) -> None:
    specs = (
        FeatureSpec("p", "launch", arg="push"),
        FeatureSpec("s", "launch", arg="scan_shortcut"),
        FeatureSpec("d", "home_dwell"),
        FeatureSpec("n", "scrolls"),
        FeatureSpec("x", "scroll_depth"),
    )
    assert compute([], T0, ctx, specs=specs) == expected


def test_launch_features_are_one_hot_over_every_source() -> None:
    names = [f"launch_{s}" for s in LAUNCH_SOURCES]
    assert all(n in FEATURE_NAMES for n in names)
    for source in LAUNCH_SOURCES:
        row = dict(zip(FEATURE_NAMES, compute([], T0, Context("open", launch=source)),
                       strict=True))  # fmt: skip
        assert [row[n] for n in names] == [float(n == f"launch_{source}") for n in names]
    with pytest.raises(ValueError, match="launch needs arg"):
        FeatureSpec("bad", "launch", arg="shake")


def test_declared_features_cover_the_brief() -> None:
    for kind in ("open", "click", "impression", "pull_refresh", "feedback"):
        for window in ("5m", "1h", "24h"):
            assert f"{kind}_count_{window}" in FEATURE_NAMES
    for name in (
        "since_last_open_s",
        "since_last_click_s",
        "since_refresh_s",
        "hour",
        "weekday",
        "trigger",
        "zone",
        "ctr_24h",
        "open_then_click_60s_24h",
    ):
        assert name in FEATURE_NAMES
    assert len(set(FEATURE_NAMES)) == len(FEATURES)


def test_no_events_gives_zero_counts_and_sentinels() -> None:
    row = dict(zip(FEATURE_NAMES, compute([], T0, Context("open"), specs=FEATURES), strict=True))
    assert row["click_count_24h"] == 0.0
    assert row["since_last_click_s"] == MISSING
    assert row["ctr_24h"] == MISSING
    assert row["hour"] == MISSING


def test_version_hashes_the_declarations() -> None:
    assert features_version(FEATURES) == FEATURES_VERSION
    assert features_version(FEATURES[:-1]) != FEATURES_VERSION
    changed = (FeatureSpec("open_count_5m", "count", ("open",), 301), *FEATURES[1:])
    assert features_version(changed) != FEATURES_VERSION


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "x", "kind": "count"},  # no types, no window
        {"name": "x", "kind": "count", "event_types": ("tap",), "window_s": 60},
        {"name": "x", "kind": "ratio", "event_types": ("click",), "window_s": 60},
        {"name": "x", "kind": "count", "event_types": ("click",), "window_s": 86_401},  # > 24 h
        {"name": "x", "kind": "sequence", "event_types": ("open",), "window_s": 60,
         "then_types": ("click",)},  # no within_s
        {"name": "x", "kind": "sequence", "event_types": ("open",), "window_s": 60,
         "then_types": ("open",), "within_s": 5},  # same type on both steps
    ],
)  # fmt: skip
def test_bad_declarations_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FeatureSpec(**kwargs)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        compute([], T0, CTX, specs=(OPEN_5M, OPEN_5M))


# --- properties -------------------------------------------------------------------------------

TYPES = ("open", "click", "impression", "payment", "background")
SPECS = (
    OPEN_5M, CLICK_5M, PAY_SUM, PAY_MEAN, PAY_LAST, SINCE_CLICK, CTR, SEQ,
    FeatureSpec("c24", "count", ("click", "impression"), 86_400),
    FeatureSpec("t2", "since_last", ("open", "background"), 600),
    FeatureSpec("q2", "sequence", ("open", "background"), 86_400, ("click", "payment"), 120),
    FeatureSpec("m2", "mean", ("payment", "click"), 86_400),
    FeatureSpec("l2", "last", ("payment", "click"), 86_400),
)  # fmt: skip


def _events(lo_s: int, hi_s: int) -> st.SearchStrategy[list[Event]]:
    event = st.builds(
        lambda t, s, v: Event(type=t, ts=T0 + s * 1000, value=v),
        st.sampled_from(TYPES),
        st.integers(lo_s, hi_s),
        st.none() | st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 2)),
    )
    return st.lists(event, max_size=60).map(lambda evs: sorted(evs, key=lambda e: e.ts))


def _reference(spec: FeatureSpec, events: list[Event], cutoff: int) -> float:
    """Evaluate one declaration the slow, obvious way."""
    win = [e for e in events if cutoff - spec.window_s * 1000 <= e.ts < cutoff]
    sel = [e for e in win if e.type in spec.event_types]
    vals = [e.value for e in sel if e.value is not None]
    if spec.kind == "count":
        return float(len(sel))
    if spec.kind == "sum":
        return float(sum(vals))
    if spec.kind == "mean":
        return sum(vals) / len(vals) if vals else MISSING
    if spec.kind == "last":
        return vals[-1] if vals else MISSING
    if spec.kind == "since_last":
        return (cutoff - max(e.ts for e in sel)) / 1000 if sel else MISSING
    if spec.kind == "ratio":
        den = sum(e.type in spec.then_types for e in win)
        return len(sel) / den if den else MISSING
    assert spec.kind == "sequence"
    return float(any(
        win[j].ts - win[i].ts < spec.within_s * 1000
        for i in range(len(win)) if win[i].type in spec.event_types
        for j in range(i + 1, len(win)) if win[j].type in spec.then_types
    ))  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(events=_events(-30 * 3600, 3600))
def test_compute_matches_the_reference(events: list[Event]) -> None:
    got = compute(events, T0, CTX, specs=SPECS)
    assert got == pytest.approx([_reference(s, events, T0) for s in SPECS], abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(
    before=_events(-30 * 3600, -1), after=_events(0, 3600), ctx_zone=st.none() | st.integers(1, 5)
)
def test_events_at_or_after_the_cutoff_change_nothing(
    before: list[Event], after: list[Event], ctx_zone: int | None
) -> None:
    ctx = Context("timer", tz_offset_min=60, zone=ctx_zone, last_refresh_ts=T0 - 1000)
    assert compute(before + after, T0, ctx) == compute(before, T0, ctx)
    assert compute(before + after, T0, ctx, specs=SPECS) == compute(before, T0, ctx, specs=SPECS)


# --- feature ages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "events", "expected"),
    [
        # the window's start is in, the cut-off is out, like compute's
        (OPEN_5M, [("open", 300), ("open", 10), ("open", 0)], 10.0),
        (OPEN_5M, [("open", 300)], 300.0),
        (OPEN_5M, [("open", 300.001)], None),
        (OPEN_5M, [("open", 0), ("open", -5)], None),
        (OPEN_5M, [("click", 10)], None),  # not a source type
        (CLICK_5M, [("open", 200), ("click", 100), ("impression", 50)], 100.0),
        # a value feature uses only events that carry a value
        (PAY_SUM, [("payment", 30, 3.0), ("payment", 20)], 30.0),
        (PAY_LAST, [("payment", 20)], None),
        # a ratio and a sequence read both steps' types
        (CTR, [("click", 90), ("impression", 40)], 40.0),
        (SEQ, [("open", 100), ("click", 70)], 70.0),
        (SEQ, [("open", 100)], 100.0),
    ],
)
def test_feature_ages(
    make_event: MakeEvent, spec: FeatureSpec, events: list[tuple], expected: float | None
) -> None:
    evs = [make_event(e[0], e[1], value=e[2]) if len(e) > 2 else make_event(*e) for e in events]
    evs.sort(key=lambda e: e.ts)
    assert feature_ages(evs, T0, specs=(spec,)) == [expected]


def test_context_features_have_no_age(make_event: MakeEvent) -> None:
    ages = dict(zip(FEATURE_NAMES, feature_ages([make_event("open", 5)], T0), strict=True))
    assert len(ages) == len(FEATURES)
    for name in ("hour", "weekday", "trigger", "zone", "since_refresh_s", "launch_icon",
                 "home_dwell_s", "scrolls_in_visit", "scroll_depth", "click_count_5m"):  # fmt: skip
        assert ages[name] is None, name
    assert ages["open_count_5m"] == ages["since_last_open_s"] == 5.0


def test_source_types_are_both_steps_once() -> None:
    assert SEQ.source_types == ("open", "click")
    assert CTR.source_types == ("click", "impression")
    repeated = FeatureSpec("x", "count", ("open", "click", "open"), 60)
    assert repeated.source_types == ("open", "click")
    assert FeatureSpec("hour", "hour").source_types == ()


@settings(max_examples=150, deadline=None)
@given(events=_events(-30 * 3600, 3600))
def test_ages_follow_computes_windows(events: list[Event]) -> None:
    ages = feature_ages(events, T0, specs=SPECS)
    for spec, age in zip(SPECS, ages, strict=True):
        # Seconds since the newest source event in the window is what a since_last computes,
        # and "no age" is exactly a count of zero over the source types.
        since = FeatureSpec("a", "since_last", spec.source_types, spec.window_s)
        count = FeatureSpec("c", "count", spec.source_types, spec.window_s)
        (since_s, n) = compute(events, T0, CTX, specs=(since, count))
        if spec.kind in ("sum", "mean", "last"):
            carrying = [e for e in events if e.value is not None]
            (since_s,) = compute(carrying, T0, CTX, specs=(since,))
        assert age == (None if since_s == MISSING else since_s), spec.name
        assert (age is None) == (n == 0) or spec.kind in ("sum", "mean", "last")
