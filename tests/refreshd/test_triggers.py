"""Event rules: validation, the CEP-like matcher's semantics, and its bounded state."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intent.events import Event
from refreshd.core.matcher import (
    ALLOWED_LATENESS_MS,
    MAX_RUNS_PER_RULE,
    MAX_RUNS_PER_USER,
    Firing,
    Rule,
    RuleError,
    RuleSet,
    UserMatchState,
    advance,
    default_rules,
    feed,
    parse_rule,
    rule_to_json,
)
from refreshd.core.rules import MAX_STEPS
from refreshd.http.errors import wire

T0 = 1_800_000_000_000
ACTION = {"type": "refresh", "slots": ["feed"]}


def E(etype: str, t_ms: int = 0, **kw: Any) -> Event:
    """Return an event `t_ms` after T0; `kind=` sets props.kind."""
    props = {"kind": kw.pop("kind")} if "kind" in kw else kw.pop("props", None)
    return Event(type=etype, ts=T0 + t_ms, props=props, **kw)  # type: ignore[arg-type]


def make_rule(pattern: list[dict[str, Any]], rule_id: str = "r", **kw: Any) -> Rule:
    return parse_rule(rule_id, {"pattern": pattern, "action": ACTION, **kw})


def fire_times(rule: Rule, events: list[Event], now_ms: int | None = None) -> list[int]:
    """Feed one batch; return the firings' fired_ts relative to T0."""
    now = now_ms if now_ms is not None else max(e.ts for e in events)
    result = feed({rule.id: rule}, UserMatchState(), events, now)
    return [f.fired_ts - T0 for f in result.fired]


FB_CLICK: list[dict[str, Any]] = [{"type": "feedback"}, {"type": "click"}]


@pytest.mark.parametrize(
    ("contiguity", "events", "fired"),
    [
        ("relaxed", [E("feedback"), E("impression", 1), E("click", 2)], [2]),
        ("strict", [E("feedback"), E("impression", 1), E("click", 2)], []),
        ("strict", [E("feedback"), E("click", 2)], [2]),
        # strict: the second feedback starts its own run, which the click completes
        ("strict", [E("feedback"), E("feedback", 1), E("click", 2)], [2]),
        ("relaxed", [E("click"), E("feedback", 1)], []),  # order matters
    ],
)
def test_contiguity(contiguity: str, events: list[Event], fired: list[int]) -> None:
    rule = make_rule(FB_CLICK, contiguity=contiguity)
    assert fire_times(rule, events) == fired


@pytest.mark.parametrize(
    ("contiguity", "kinds", "fired"),
    [
        ("relaxed", ["click", "click"], []),
        ("relaxed", ["click", "click", "click"], [2]),
        ("relaxed", ["click", "scroll", "click", "scroll", "click"], [4]),
        ("strict", ["click", "scroll", "click", "click", "click"], [4]),  # restarts after scroll
        ("strict", ["click", "click", "scroll", "click"], []),
    ],
)
def test_times(contiguity: str, kinds: list[str], fired: list[int]) -> None:
    rule = make_rule([{"type": "click", "times": 3}], contiguity=contiguity)
    assert fire_times(rule, [E(k, i) for i, k in enumerate(kinds)]) == fired


@pytest.mark.parametrize(
    ("pattern", "contiguity", "events", "counts"),
    [
        (
            [{"type": "search"}, {"type": "click", "one_or_more": True}, {"type": "payment"}],
            "relaxed",
            [E("search"), E("click", 1), E("scroll", 2), E("click", 3), E("payment", 4)],
            [4],
        ),
        (
            [{"type": "search"}, {"type": "click", "one_or_more": True}, {"type": "payment"}],
            "relaxed",
            [E("search"), E("payment", 1)],  # one_or_more needs at least one
            [],
        ),
        (
            [{"type": "search"}, {"type": "click", "one_or_more": True}, {"type": "payment"}],
            "strict",
            [E("search"), E("click", 1), E("scroll", 2), E("payment", 3)],
            [],
        ),
        # last step: completes on its first event (skip past last event drops the rest)
        ([{"type": "click", "one_or_more": True}], "relaxed", [E("click"), E("click", 1)], [1, 1]),
        # an event matching the loop and the next step advances, so the pattern can complete
        (
            [{"type": "click", "one_or_more": True}, {"type": "click", "where": {"slot": "x"}}],
            "relaxed",
            [E("click", slot="a"), E("click", 1, slot="b"), E("click", 2, slot="x")],
            [3],
        ),
    ],
)
def test_one_or_more(
    pattern: list[dict[str, Any]], contiguity: str, events: list[Event], counts: list[int]
) -> None:
    rule = make_rule(pattern, contiguity=contiguity)
    result = feed({"r": rule}, UserMatchState(), events, events[-1].ts)
    assert [f.count for f in result.fired] == counts


@pytest.mark.parametrize(
    ("events", "fired"),
    [
        ([E("feedback"), E("click", 2)], [2]),
        ([E("feedback"), E("open", 1), E("click", 2)], []),
        ([E("feedback"), E("open", 1), E("feedback", 2), E("click", 3)], [3]),  # fresh run
        ([E("feedback"), E("click", 1), E("open", 2), E("click", 3)], [1]),
    ],
)
def test_negated_step_in_the_middle(events: list[Event], fired: list[int]) -> None:
    rule = make_rule([{"type": "feedback"}, {"type": "open", "negated": True}, {"type": "click"}])
    assert fire_times(rule, events) == fired


TRAILING: list[dict[str, Any]] = [{"type": "click"}, {"type": "open", "negated": True}]


@pytest.mark.parametrize(
    ("events", "now_ms", "fired"),
    [
        ([E("click")], 9_999, []),  # window not over yet
        ([E("click")], 10_000, [10_000]),  # fires at the deadline, via advance
        ([E("click"), E("open", 5_000)], 60_000, []),  # negated in time
        ([E("click"), E("open", 9_999)], 60_000, []),
        ([E("click"), E("open", 10_000)], 60_000, [10_000]),  # at the deadline is too late
        ([E("click"), E("scroll", 20_000)], 0, [10_000]),  # a later event closes the window
    ],
)
def test_trailing_negation(events: list[Event], now_ms: int, fired: list[int]) -> None:
    rule = make_rule(TRAILING, within_s=10)
    assert fire_times(rule, events, T0 + now_ms) == fired


def test_trailing_negation_fires_on_a_later_sweep_only() -> None:
    rules = {"r": make_rule(TRAILING, within_s=10)}
    result = feed(rules, UserMatchState(), [E("click", slot="feed")], T0)
    assert result.fired == [] and result.state.rules["r"].runs
    assert advance(rules, result.state, T0 + 9_999).fired == []
    swept = advance(rules, result.state, T0 + 10_000)
    assert [(f.first_ts, f.fired_ts, f.count) for f in swept.fired] == [(T0, T0 + 10_000, 1)]
    assert swept.state.rules == {}
    negated = feed(rules, result.state, [E("open", 3_000)], T0 + 3_000)
    assert advance(rules, negated.state, T0 + 60_000).fired == []


def test_trailing_negation_after_one_or_more_counts_every_event() -> None:
    rule = make_rule([{"type": "click", "one_or_more": True}, *TRAILING[1:]], within_s=10)
    events = [E("click"), E("scroll", 1), E("click", 2), E("click", 3)]
    result = feed({"r": rule}, UserMatchState(), events, T0 + 10_000)
    assert [(f.count, f.last_ts - T0) for f in result.fired] == [(3, 3)]


@pytest.mark.parametrize(("gap_ms", "fired"), [(9_999, 1), (10_000, 0), (10_001, 0)])
def test_within_boundary_is_exclusive(gap_ms: int, fired: int) -> None:
    rule = make_rule(FB_CLICK, within_s=10)
    assert len(fire_times(rule, [E("feedback"), E("click", gap_ms)])) == fired


def test_cooldown_suppresses_and_counts() -> None:
    rule = make_rule([{"type": "pull_refresh"}], cooldown_s=60)
    events = [E("pull_refresh", t) for t in (0, 30_000, 59_999, 60_000, 61_000)]
    result = feed({"r": rule}, UserMatchState(), events, T0 + 61_000)
    assert [f.fired_ts - T0 for f in result.fired] == [0, 60_000]
    assert result.suppressed == 3


def test_cooldown_spans_calls() -> None:
    rules = {"r": make_rule([{"type": "payment"}], cooldown_s=60)}
    first = feed(rules, UserMatchState(), [E("payment")], T0)
    again = feed(rules, first.state, [E("payment", 59_000)], T0 + 59_000)
    later = feed(rules, again.state, [E("payment", 60_000)], T0 + 60_000)
    assert (len(first.fired), len(again.fired), len(later.fired)) == (1, 0, 1)


def test_two_users_interleaved_keep_separate_state() -> None:
    rules = RuleSet({"r": make_rule(FB_CLICK)})
    states = {"a": UserMatchState(), "b": UserMatchState()}
    fired: dict[str, list[Firing]] = {"a": [], "b": []}
    for uid, e in [("a", E("feedback")), ("b", E("click", 1)), ("b", E("feedback", 2)),
                   ("a", E("click", 3)), ("b", E("scroll", 4))]:  # fmt: skip
        result = feed(rules, states[uid], [e], e.ts)
        states[uid] = result.state
        fired[uid] += result.fired
    assert [f.last_ts - T0 for f in fired["a"]] == [3]
    assert fired["b"] == [] and len(states["b"].rules["r"].runs) == 1


@pytest.mark.parametrize(
    ("late_by_ms", "fired", "late"),
    [(50_000, 1, 0), (ALLOWED_LATENESS_MS, 1, 0), (ALLOWED_LATENESS_MS + 1, 0, 1)],
)
def test_out_of_order_across_batches(late_by_ms: int, fired: int, late: int) -> None:
    rules = {"r": make_rule(FB_CLICK, within_s=600)}
    first = feed(rules, UserMatchState(), [E("scroll", 100_000)], T0 + 100_000)
    # processed in arrival order: the late feedback then a fresh click
    second = feed(rules, first.state, [E("feedback", 100_000 - late_by_ms)], T0 + 100_000)
    third = feed(rules, second.state, [E("click", 101_000)], T0 + 101_000)
    assert (len(third.fired), second.late) == (fired, late)
    assert second.state.watermark == T0 + 100_000


def test_a_batch_is_matched_in_ts_order() -> None:
    assert fire_times(make_rule(FB_CLICK), [E("click", 5), E("feedback", 0)]) == [5]


def test_a_late_event_does_not_reach_back_into_a_fired_match() -> None:
    rules = {"r": make_rule(TRAILING, within_s=10)}
    first = feed(rules, UserMatchState(), [E("click"), E("scroll", 10_000)], T0 + 10_000)
    late_open = feed(rules, first.state, [E("open", 5_000)], T0 + 10_000)  # arrived too late
    assert len(first.fired) == 1 and late_open.fired == [] and late_open.late == 0


def test_skip_past_last_event_in_a_burst() -> None:
    rule = make_rule([{"type": "click", "times": 2}])
    result = feed({"r": rule}, UserMatchState(), [E("click", i) for i in range(5)], T0 + 4)
    assert [(f.first_ts - T0, f.last_ts - T0) for f in result.fired] == [(0, 1), (2, 3)]
    [waiting] = result.state.rules["r"].runs
    assert (waiting.first_ts - T0, waiting.count) == (4, 1)


def test_skip_past_last_event_drops_overlapping_runs() -> None:
    rule = make_rule(FB_CLICK)
    events = [E("feedback"), E("feedback", 1), E("click", 2), E("click", 3)]
    assert fire_times(rule, events) == [2]  # the second feedback's run shared the click


@pytest.mark.parametrize(
    ("event", "slots", "suppressed"),
    [
        (E("pull_refresh"), [None], 0),
        (E("feedback", kind="negative", slot="reco"), [["reco"]], 0),
        (E("feedback", kind="positive", slot="reco"), [], 0),
        (E("feedback", kind="negative"), [], 1),  # no slot to refresh: fire nothing
        (E("payment", value=12.5), [["services"]], 0),
        (E("click", slot="reco"), [], 0),
    ],
)
def test_default_rules(event: Event, slots: list[list[str] | None], suppressed: int) -> None:
    result = feed(default_rules(), UserMatchState(), [event], event.ts)
    assert [f.slots for f in result.fired] == slots
    assert all(f.type == "refresh" for f in result.fired)
    assert result.suppressed == suppressed


@pytest.mark.parametrize(
    ("where", "props", "matches"),
    [
        ({"props.n": {"gt": 2, "le": 5}}, {"n": 5}, True),
        ({"props.n": {"gt": 2, "le": 5}}, {"n": 6}, False),
        ({"props.n": {"lt": 2}}, {"n": "1"}, False),  # ordering needs a number
        ({"props.kind": {"in": ["a", "b"]}}, {"kind": "b"}, True),
        ({"props.kind": {"ne": "a"}}, {"kind": "b"}, True),
        ({"props.kind": {"ne": "a"}}, None, False),  # a missing field fails every operator
        ({"props.n": 3}, {"n": 3.0}, True),
        ({"slot": "feed"}, None, False),
    ],
)
def test_where_operators(where: dict[str, Any], props: Any, matches: bool) -> None:
    rule = make_rule([{"type": "click", "where": where}])
    assert len(fire_times(rule, [E("click", props=props)])) == int(matches)


def test_event_slot_placeholder_and_payload() -> None:
    body = {
        "pattern": [{"type": "feedback"}, {"type": "click"}],
        "action": {"type": "show_cards", "slots": ["$event.slot", "top"], "payload": {"k": 1}},
    }
    rules = {"r": parse_rule("r", body)}
    events = [E("feedback", slot="a"), E("click", 1, slot="b")]
    [f] = feed(rules, UserMatchState(), events, T0 + 1).fired
    assert (f.type, f.slots, f.payload, f.count) == ("show_cards", ["b", "top"], {"k": 1}, 2)
    d = f.directive(id="d1", created_ts=T0, expires_ts=T0 + 1)
    assert (d.type, d.slots, d.source) == ("show_cards", ["b", "top"], "rule:r")
    assert d.payload == {"k": 1}


def test_state_round_trips_through_msgpack_and_input_is_not_mutated() -> None:
    rules = {"r": make_rule(FB_CLICK, cooldown_s=60), "t": make_rule(TRAILING, "t")}
    state = feed(rules, UserMatchState(), [E("feedback"), E("click", 1), E("click", 2)], T0).state
    before = msgspec.msgpack.encode(state)
    decoded = msgspec.msgpack.decode(before, type=UserMatchState)
    assert decoded == state
    feed(rules, state, [E("feedback", 3), E("click", 4), E("open", 5)], T0 + 5)
    assert msgspec.msgpack.encode(state) == before


def test_redefined_or_deleted_rule_state_is_dropped() -> None:
    state = feed({"r": make_rule(FB_CLICK)}, UserMatchState(), [E("feedback")], T0).state
    assert state.rules["r"].runs
    redefined = {"r": make_rule([{"type": "feedback"}, {"type": "payment"}])}
    assert feed(redefined, state, [E("click", 1)], T0 + 1).fired == []
    assert advance({}, state, T0).state.rules == {}


# --- validation ------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "pattern": [
        {"type": "feedback", "where": {"props.kind": "negative"}},
        {"type": "click", "times": 2},
        {"type": "open", "negated": True},
    ],
    "contiguity": "relaxed",
    "within_s": 600,
    "cooldown_s": 0,
    "action": {"type": "refresh", "slots": ["feed"]},
}


def with_(path: str, value: Any) -> dict[str, Any]:
    """Return GOOD with one field set (dotted path; ints index lists; `...` deletes)."""
    body = msgspec.json.decode(msgspec.json.encode(GOOD))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split("/")]
    node = body
    for p in parents:
        node = node[p]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return body


STEP = {"type": "click"}
NOT_OPEN = {"type": "open", "negated": True}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (with_("extra", 1), "extra"),
        (with_("pattern/0/foo", 1), "pattern[0].foo"),
        (with_("action/foo", 1), "action.foo"),
        (with_("pattern", []), "pattern"),
        (with_("pattern", [STEP] * (MAX_STEPS + 1)), "pattern"),
        (with_("pattern", ...), "pattern"),
        (with_("pattern/1/type", "tap"), "pattern[1].type"),
        (with_("pattern/1", "click"), "pattern[1]"),
        (with_("within_s", 0), "within_s"),
        (with_("within_s", -5), "within_s"),
        (with_("within_s", "600"), "within_s"),
        (with_("within_s", True), "within_s"),
        (with_("cooldown_s", -1), "cooldown_s"),
        (with_("contiguity", "loose"), "contiguity"),
        (with_("pattern/1/times", 0), "pattern[1].times"),
        (with_("pattern/1/times", 1.5), "pattern[1].times"),
        (with_("pattern/1/one_or_more", True), "pattern[1].one_or_more"),
        (with_("pattern/2/times", 2), "pattern[2].negated"),
        (with_("pattern/0/negated", True), "pattern[0].negated"),
        (with_("pattern", [STEP, NOT_OPEN, STEP, NOT_OPEN, NOT_OPEN]), "pattern[4].negated"),
        (
            with_("pattern/0/where", {"props.kind": {"like": "neg"}}),
            "pattern[0].where.props.kind.like",
        ),
        (with_("pattern/0/where", {"props.n": {"lt": "3"}}), "pattern[0].where.props.n.lt"),
        (with_("pattern/0/where", {"props.n": {"in": []}}), "pattern[0].where.props.n.in"),
        (with_("pattern/0/where", {"props.n": None}), "pattern[0].where.props.n"),
        (with_("pattern/0/where", {"slot": 3}), "pattern[0].where.slot"),
        (with_("pattern/0/where", {"value": "x"}), "pattern[0].where.value"),
        (with_("pattern/0/where", {"colour": "red"}), "pattern[0].where.colour"),
        (with_("pattern/0/where", {"props.": "x"}), "pattern[0].where.props."),
        (with_("pattern/0/where", {"props.k": {}}), "pattern[0].where.props.k"),
        (with_("pattern/0/where", ["props.kind"]), "pattern[0].where"),
        (with_("action/type", "reboot"), "action.type"),
        (with_("action/slots", []), "action.slots"),
        (with_("action/slots", ["a b"]), "action.slots[0]"),
        (with_("action/payload", [1]), "action.payload"),
        (with_("action", ...), "action"),
    ],
)
def test_validation_names_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(RuleError) as exc:
        parse_rule("r", body)
    assert exc.value.field == field
    assert isinstance(exc.value, ValueError) and wire(exc.value).status == 422


def test_non_object_body() -> None:
    with pytest.raises(RuleError):
        parse_rule("r", [GOOD])


@pytest.mark.parametrize(
    "body",
    [
        GOOD,
        {"pattern": [STEP], "action": {"type": "fix_now"}},
        with_("pattern/0/where", {"props.n": {"gt": 1, "le": 2.5}, "slot": {"in": ["a", "b"]}}),
        with_("action/payload", {"cards": ["x"], "n": 1}),
    ],
)
def test_rule_json_round_trips(body: dict[str, Any]) -> None:
    rule = parse_rule("r", body)
    canonical = rule_to_json(rule)
    assert parse_rule("r", canonical) == rule
    assert rule_to_json(parse_rule("r", msgspec.json.decode(msgspec.json.encode(canonical)))) == (
        canonical
    )
    if body is GOOD:
        assert canonical == GOOD


def test_default_rules_round_trip() -> None:
    for rid, rule in default_rules().items():
        assert parse_rule(rid, rule_to_json(rule)) == rule


# --- properties -----------------------------------------------------------------------

PROPERTY_RULES = RuleSet(
    {
        "pair": make_rule(FB_CLICK, "pair", within_s=5),
        "strict3": make_rule([{"type": "click", "times": 3}], "strict3", contiguity="strict"),
        "loop": make_rule(
            [{"type": "search"}, {"type": "click", "one_or_more": True}, {"type": "payment"}],
            "loop",
            within_s=8,
        ),
        "mid": make_rule(
            [{"type": "feedback"}, {"type": "open", "negated": True}, {"type": "click"}],
            "mid",
            within_s=6,
            cooldown_s=3,
        ),
        "tail": make_rule(TRAILING, "tail", within_s=4),
        "tail_loop": make_rule(
            [{"type": "click", "one_or_more": True}, {"type": "open", "negated": True}],
            "tail_loop",
            contiguity="strict",
            within_s=3,
        ),
        **default_rules(),
    }
)
KINDS = ["click", "feedback", "open", "search", "payment", "scroll", "pull_refresh"]
event_lists = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 2_500), st.sampled_from([None, "a", "b"])),
    max_size=60,
).map(
    lambda rows: [
        E(kind, sum(gap for _, gap, _ in rows[: i + 1]), slot=slot, kind="negative")
        for i, (kind, _gap, slot) in enumerate(rows)
    ]
)


@settings(max_examples=150, deadline=None)
@given(event_lists)
def test_one_at_a_time_equals_one_batch(events: list[Event]) -> None:
    batch = feed(PROPERTY_RULES, UserMatchState(), events, events[-1].ts if events else T0)
    state, fired = UserMatchState(), list[Firing]()
    for e in events:
        result = feed(PROPERTY_RULES, state, [e], e.ts)
        state, fired = result.state, fired + result.fired
    assert fired == batch.fired
    assert state == batch.state
    end = T0 + 10**7
    assert advance(PROPERTY_RULES, state, end) == advance(PROPERTY_RULES, batch.state, end)


CAP_RULES = RuleSet(
    {f"r{i}": make_rule([{"type": "feedback"}, {"type": "payment"}], f"r{i}") for i in range(20)}
)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["feedback", "click"]), min_size=1, max_size=80))
def test_partial_matches_stay_within_the_caps(kinds: list[str]) -> None:
    state = UserMatchState()
    for i, kind in enumerate(kinds):
        state = feed(CAP_RULES, state, [E(kind, i)], T0 + i).state
        counts = [len(rs.runs) for rs in state.rules.values()]
        assert max(counts, default=0) <= MAX_RUNS_PER_RULE
        assert sum(counts) <= MAX_RUNS_PER_USER
    # every feedback starts a run in each of the 20 rules and nothing completes them
    expected = min(20 * min(kinds.count("feedback"), MAX_RUNS_PER_RULE), MAX_RUNS_PER_USER)
    assert sum(len(rs.runs) for rs in state.rules.values()) == expected
