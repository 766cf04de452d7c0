"""The pure decision core: rule order, cooldown, fallback, state updates."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from intent.events import Event, add_events
from refreshd.core import engine
from refreshd.core.messages import DecideRequest, Directive
from refreshd.core.state import UserState

T0 = 1_800_000_000_000
POLICY = engine.Policy(min_interval_s=30, fallback_interval_s=300)


def req(trigger: str = "open", ts: int = T0, **kw: object) -> DecideRequest:
    return DecideRequest(user_id="u1", ts=ts, trigger=trigger, **kw)  # type: ignore[arg-type]


def refreshed_at(ts: int) -> UserState:
    return UserState(version=3, last_refresh_ts=ts, last_decision_ts=ts)


def directive(kind: str = "refresh", slots: list[str] | None = None, id: str = "d1") -> Directive:
    return Directive(id=id, type=kind, created_ts=T0, expires_ts=T0 + 10**6, slots=slots)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "trigger", "dt_s", "dirs", "refresh", "reason"),
    [
        (UserState(), "open", 0, [], True, "fallback"),  # never refreshed: refresh on open
        (UserState(), "scroll", 0, [], False, "fallback"),  # scroll never refreshes by fallback
        (refreshed_at(T0), "open", 10, [], False, "cooldown"),
        (refreshed_at(T0), "pull", 10, [], True, "pull"),  # pull beats cooldown
        (refreshed_at(T0), "open", 10, [directive()], True, "event"),  # directive beats cooldown
        (refreshed_at(T0), "open", 10, [directive("fix_now")], False, "cooldown"),
        (refreshed_at(T0), "open", 120, [], False, "fallback"),  # past cooldown, before interval
        (refreshed_at(T0), "return", 300, [], True, "fallback"),  # interval reached (inclusive)
        (refreshed_at(T0), "timer", 301, [], True, "fallback"),
        (refreshed_at(T0), "scroll", 900, [], False, "fallback"),
    ],
)
def test_rule_order(
    state: UserState, trigger: str, dt_s: int, dirs: list[Directive], refresh: bool, reason: str
) -> None:
    out = engine.decide(
        state, req(trigger, T0 + dt_s * 1000), decision_id="x", directives=dirs, policy=POLICY
    )
    assert (out.decision.refresh, out.decision.reason) == (refresh, reason)


def test_refresh_updates_state_and_log() -> None:
    state = refreshed_at(T0)
    out = engine.decide(
        state, req("open", T0 + 400_000, lat=1.0, lng=2.0), decision_id="abc", policy=POLICY
    )
    assert out.state.version == state.version + 1
    assert out.state.last_refresh_ts == T0 + 400_000
    assert out.state.refreshes == state.refreshes + 1 and out.state.decisions == state.decisions + 1
    assert out.log.decision_id == "abc" and out.log.refresh and out.log.lat == 1.0


@pytest.mark.parametrize(
    ("trigger", "directives", "score", "explore", "logged"),
    [
        ("open", [], 0.7, True, True),  # a randomised intent decision
        ("open", [], 0.2, True, True),  # ... whichever way the coin fell
        ("open", [], 0.7, False, False),  # a model's decision is not exploration
        ("pull", [], 0.7, True, False),  # pull always refreshes: nothing was randomised
        ("open", [directive()], 0.7, True, False),  # an event rule decided
    ],
)
def test_only_randomised_intent_decisions_are_logged_as_exploration(
    trigger: str, directives: list[Directive], score: float, explore: bool, logged: bool
) -> None:
    policy = engine.Policy(threshold=0.5, explore=explore)
    out = engine.decide(UserState(), req(trigger), decision_id="x", directives=directives,
                        policy=policy, score=score)  # fmt: skip
    assert out.log.explore is logged
    assert ("explore" in msgspec.to_builtins(out.log)) is logged  # absent from ordinary rows


def test_no_refresh_keeps_last_refresh() -> None:
    out = engine.decide(refreshed_at(T0), req("open", T0 + 5_000), decision_id="x", policy=POLICY)
    assert out.state.last_refresh_ts == T0 and out.state.refreshes == 0
    assert out.decision.next_check_s == 25  # cooldown ends 25 s later


def test_directive_slots_are_unioned_and_none_means_all() -> None:
    dirs = [directive(slots=["feed"], id="a"), directive(slots=["services"], id="b")]
    out = engine.decide(
        UserState(), req("open", slots=["feed", "nearby"]), decision_id="x", directives=dirs
    )
    assert out.decision.slots == ["feed", "services"]
    dirs.append(directive(slots=None, id="c"))
    out = engine.decide(
        UserState(), req("open", slots=["feed", "nearby"]), decision_id="x", directives=dirs
    )
    assert out.decision.slots == ["feed", "nearby"]


def test_intent_policy_without_model_is_degraded_but_fixed_policy_is_not() -> None:
    intent = engine.decide(UserState(), req(), decision_id="x", policy=POLICY)
    assert intent.decision.degraded_reasons == ["no_model"]
    fixed = engine.Policy(kind="fixed")
    assert (
        engine.decide(UserState(), req(), decision_id="x", policy=fixed).decision.degraded_reasons
        == []
    )
    outage = engine.decide(
        UserState(), req(), decision_id="x", policy=fixed, degraded_reasons=["store_unavailable"]
    )
    assert outage.decision.degraded_reasons == ["store_unavailable"] and outage.log.degraded


def test_clock_going_backwards_does_not_cool_down_forever() -> None:
    # A device whose clock jumped back must not be locked in cooldown by a future refresh.
    out = engine.decide(
        refreshed_at(T0), req("open", T0 - 3_600_000), decision_id="x", policy=POLICY
    )
    assert out.decision.reason != "cooldown"
    assert out.state.last_refresh_ts == T0  # the older ts does not move the record back


def test_apply_events_counts_and_orders() -> None:
    events = [Event(type="click", ts=T0 + 5), Event(type="open", ts=T0 + 1)]
    state = engine.apply_events(UserState(version=2), events)
    assert [e.ts for e in state.recent] == [T0 + 1, T0 + 5]
    assert (state.version, state.events, state.last_event_ts) == (3, 2, T0 + 5)
    assert engine.apply_events(state, []) is state


@given(
    st.lists(st.integers(min_value=0, max_value=10**8), max_size=60),
    st.lists(st.integers(min_value=0, max_value=10**8), max_size=60),
    st.integers(min_value=1, max_value=50),
    st.integers(min_value=1, max_value=10**8),
)
def test_recent_window_is_sorted_bounded_and_keeps_the_newest(
    old: list[int], new: list[int], max_events: int, window_ms: int
) -> None:
    recent = add_events(
        [],
        [Event(type="open", ts=t) for t in sorted(old)],
        max_events=max_events,
        window_ms=window_ms,
    )
    merged = add_events(
        recent, [Event(type="click", ts=t) for t in new], max_events=max_events, window_ms=window_ms
    )
    ts = [e.ts for e in merged]
    assert ts == sorted(ts) and len(ts) <= max_events
    if ts:
        assert ts[0] >= ts[-1] - window_ms
        assert ts[-1] == max(old + new)


@given(
    st.lists(st.integers(min_value=0, max_value=20), max_size=30),
    st.lists(st.integers(min_value=0, max_value=20), max_size=30),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=0, max_value=25),
)
def test_recent_window_merges_like_a_stable_sort(
    old: list[int], new: list[int], max_events: int, window_ms: int
) -> None:
    # Few distinct timestamps: ties are the point. Equal timestamps keep arrival order, the
    # window's events before the batch's.
    recent = [Event(type="open", ts=t, item_id=f"o{i}") for i, t in enumerate(sorted(old))]
    batch = [Event(type="click", ts=t, item_id=f"n{i}") for i, t in enumerate(new)]
    expected = sorted(recent + batch, key=lambda e: e.ts)
    if expected:
        horizon = expected[-1].ts - window_ms
        expected = [e for e in expected if e.ts >= horizon][-max_events:]
    got = add_events(recent, batch, max_events=max_events, window_ms=window_ms)
    assert [e.item_id for e in got] == [e.item_id for e in expected]
    assert [e.item_id for e in recent] == [f"o{i}" for i in range(len(old))]  # not mutated
