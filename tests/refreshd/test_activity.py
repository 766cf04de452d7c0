"""The per-user daily activity CUPED reads, and the covariate fixed at a user's exposure."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from intent.events import Event
from refreshd.core.activity import (
    DAY_MS,
    DAYS_KEPT,
    DayActivity,
    add_clicks,
    add_decision,
    pre_period,
)
from refreshd.core.experiments import parse_experiment
from refreshd.core.exposure import record_decision, record_events, stats_key
from refreshd.core.expstats import UserTotals, stats_from_fields, stats_from_users

DAY0 = 20_000  # days since the epoch
T = DAY0 * DAY_MS


def at(day: int, hour: float = 12.0) -> int:
    return T + day * DAY_MS + int(hour * 3_600_000)


def test_decisions_and_clicks_land_on_their_own_day() -> None:
    days: list[DayActivity] = []
    days = add_decision(days, at(0), True)
    days = add_decision(days, at(0, 23.9), False)  # only refreshes count
    days = add_clicks(days, [Event(type="click", ts=at(1)), Event(type="impression", ts=at(1))])
    days = add_clicks(days, [Event(type="click", ts=at(0, 1))])  # a late batch of yesterday
    assert days == [DayActivity(DAY0, 1, 1), DayActivity(DAY0 + 1, 0, 1)]


def test_history_keeps_the_last_eight_days_and_ignores_older_events() -> None:
    days: list[DayActivity] = []
    for d in range(20):
        days = add_decision(days, at(d), True)
    assert [x.day for x in days] == list(range(DAY0 + 20 - DAYS_KEPT, DAY0 + 20))
    assert add_clicks(days, [Event(type="click", ts=at(5))]) == days  # too old to matter


def test_pre_period_is_the_whole_days_before_the_exposure_day() -> None:
    days: list[DayActivity] = []
    for d in range(8):
        days = add_clicks(days, [Event(type="click", ts=at(d))] * (d + 1))
    # Exposed on day 7: day 7's own 8 clicks are left out; 7 days back is days 0..6.
    assert pre_period(days, at(7, 20), 7) == UserTotals(clicks=sum(range(1, 8)))
    assert pre_period(days, at(7, 0.1), 1) == UserTotals(clicks=7)
    assert pre_period(days, at(7), 3) == UserTotals(clicks=5 + 6 + 7)
    assert pre_period([], at(7), 7) == UserTotals()


def test_the_covariate_is_fixed_at_exposure_and_feeds_the_cross_products() -> None:
    history = [DayActivity(DAY0 - 2, 3, 4), DayActivity(DAY0 - 1, 1, 2)]
    exp = parse_experiment("e", {"status": "running", "variants": [{"key": "a"}, {"key": "b"}]})
    state, incs = record_decision({}, "e", "a", at(0), True, history=history, lookback_days=7)
    assert state["e"].pre == UserTotals(refreshes=4, clicks=6)
    flat: dict[str, int] = {}
    for _, fields in incs:
        for k, v in fields.items():
            flat[k] = flat.get(k, 0) + v
    # Later history does not move the covariate.
    state, incs2 = record_decision(state, "e", "a", at(0, 13), False, history=[], lookback_days=1)
    state, incs3 = record_events(state, [Event(type="click", ts=at(0, 14))] * 3, {"e": exp})
    assert state["e"].pre == UserTotals(refreshes=4, clicks=6)
    for key, fields in incs2 + incs3:
        assert key == stats_key("e", "a")
        for k, v in fields.items():
            flat[k] = flat.get(k, 0) + v
    s = stats_from_fields(flat)
    assert s.metrics["clicks"].sum_c == 6 and s.metrics["clicks"].sum_xc == 3 * 6
    assert s.metrics["refresh_requests"].sum_c2 == 16 and s.metrics["refresh_requests"].sum_xc == 4
    assert s.metrics["converted"].sum_c == 1 and s.metrics["converted"].sum_xc == 1
    assert s.metrics["pvctr"].sum_c == 0
    assert s == stats_from_users([state["e"].totals], [state["e"].pre])


totals = st.builds(UserTotals, refreshes=st.integers(0, 20), clicks=st.integers(0, 20))


@settings(max_examples=100, deadline=None)
@given(users=st.lists(st.tuples(totals, st.lists(totals, min_size=1, max_size=4)), max_size=10))
def test_incremental_covariate_sums_equal_recomputation(users: Any) -> None:
    from refreshd.core.expstats import delta_fields

    flat: dict[str, int] = {}
    for pre, seq in users:
        old = None
        for new in seq:
            for k, v in delta_fields(old, new, pre).items():
                flat[k] = flat.get(k, 0) + v
            old = new
    want = stats_from_users([seq[-1] for _, seq in users], [pre for pre, _ in users])
    assert stats_from_fields(flat) == want
