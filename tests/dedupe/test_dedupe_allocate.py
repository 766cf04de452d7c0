"""Greedy and optimal allocation: invariants (hypothesis), optimality, fallbacks, pinning."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedupe import (
    Allocation,
    CategoryCap,
    ExactId,
    Item,
    Recent,
    RecentlyShown,
    Rule,
    SameEntity,
    SameLabel,
    SlotItems,
    greedy,
    optimal,
)

NOW_MS = 1_700_000_000_000
# A MILP call can take tens of ms and scipy's first import seconds: no per-example deadline.
PROPERTY = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])

# Small alphabets so that ids, entities, labels and categories collide often.
items_st = st.builds(
    Item,
    item_id=st.sampled_from([f"i{n}" for n in range(10)]),
    entity_id=st.sampled_from([f"e{n}" for n in range(6)]),
    category=st.sampled_from(["food", "coffee", "travel"]),
    labels=st.lists(st.sampled_from([f"m:{n}" for n in range(5)]), max_size=2),
    # Coarse scores make ties common; ties are where allocators most often go wrong.
    score=st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(0.0, 1.0)),
)


def slots_st(max_items: int = 6) -> st.SearchStrategy[list[SlotItems]]:
    return st.lists(
        st.builds(SlotItems, slot=st.sampled_from(["nearby", "feed"]), items=st.lists(
            items_st, max_size=max_items
        )),
        min_size=1,
        max_size=4,
    )  # fmt: skip


ALL_RULES: list[Rule] = [
    ExactId(),
    SameEntity(),
    SameLabel(),
    CategoryCap(k=2),
    CategoryCap(k=1),
    RecentlyShown(minutes=5),
    RecentlyShown(minutes=30),
]
rules_st = st.lists(
    st.sampled_from(ALL_RULES),
    unique_by=lambda r: r.name,
)
# Impressions of the same small id pool, spread around both windows and their exact edges
# (exactly N minutes ago is no longer recent); a negative age is a device clock running ahead.
recent_st = st.lists(
    st.builds(
        Recent,
        item_id=st.sampled_from([f"i{n}" for n in range(12)]),
        ts=st.one_of(
            st.sampled_from([0, 1, 5 * 60_000, 30 * 60_000, 30 * 60_000 + 1, -1_000]),
            st.integers(-120_000, 40 * 60_000),
        ).map(lambda age: NOW_MS - age),
    ),
    max_size=6,
)


def feasible(items: list[Item], rules: list[Rule], recent: Sequence[Recent] = ()) -> bool:
    """Check a kept set against the rules directly (independent of dedupe.rules.Screen)."""
    for rule in rules:
        if isinstance(rule, ExactId | SameEntity | SameLabel):
            keys = [
                k
                for i in items
                for k in (
                    [i.item_id]
                    if isinstance(rule, ExactId)
                    else [i.entity_id]
                    if isinstance(rule, SameEntity)
                    else set(i.labels)
                )
            ]
            if len(keys) != len(set(keys)):
                return False
        if isinstance(rule, CategoryCap) and any(
            n > rule.k for n in Counter(i.category for i in items).values()
        ):
            return False
        if isinstance(rule, RecentlyShown):
            # Shown less than `minutes` before now, by any impression of the same id.
            cutoff = NOW_MS - rule.minutes * 60_000
            shown = {r.item_id for r in recent if r.ts > cutoff}
            if any(i.item_id in shown for i in items):
                return False
    return True


def check_invariants(
    slots: list[SlotItems],
    rules: list[Rule],
    result: Allocation,
    recent: Sequence[Recent] = (),
) -> None:
    kept = [i for s in result.slots for i in s.items]
    assert feasible(kept, rules, recent)
    assert [s.slot for s in result.slots] == [s.slot for s in slots]
    for before, after in zip(slots, result.slots, strict=True):
        # Kept items are a subsequence of the slot's input: nothing invented, order kept.
        it = iter(before.items)
        assert all(any(x is y for y in it) for x in after.items)
    assert len(kept) + len(result.dropped) == sum(len(s.items) for s in slots)
    assert {d.rule for d in result.dropped} <= {r.name for r in rules}
    assert math.isclose(result.total_score, math.fsum(i.score for i in kept), abs_tol=1e-12)
    # Maximal: every dropped item really breaks a rule against the kept set.
    for s, slot in zip(result.slots, slots, strict=True):
        for item in slot.items:
            if not any(x is item for x in s.items):
                assert not feasible([*kept, item], rules, recent)


@PROPERTY
@given(slots=slots_st(), extra=rules_st, recent=recent_st, data=st.data())
def test_no_entity_or_label_appears_twice(
    slots: list[SlotItems], extra: list[Rule], recent: list[Recent], data: st.DataObject
) -> None:
    # Whatever else the rule list holds, and in any order, once it has both dedupe rules.
    others = [r for r in extra if not isinstance(r, SameEntity | SameLabel)]
    rules = data.draw(st.permutations([SameEntity(), SameLabel(), *others]))
    for run in (greedy, optimal):
        result = run(slots, rules, recent, now_ms=NOW_MS)
        kept = [i for s in result.slots for i in s.items]
        entities = [i.entity_id for i in kept]
        labels = [label for i in kept for label in set(i.labels)]
        assert len(entities) == len(set(entities))
        assert len(labels) == len(set(labels))
        check_invariants(slots, rules, result, recent)


@PROPERTY
@given(slots=slots_st(), rules=rules_st, recent=recent_st)
def test_every_kept_item_satisfies_every_rule(
    slots: list[SlotItems], rules: list[Rule], recent: list[Recent]
) -> None:
    for run in (greedy, optimal):
        result = run(slots, rules, recent, now_ms=NOW_MS)
        kept = [i for s in result.slots for i in s.items]
        # Each kept item on its own (history) and against every other kept item (pairs, caps).
        for item in kept:
            assert feasible([item], rules, recent)
        assert feasible(kept, rules, recent)
        check_invariants(slots, rules, result, recent)


@PROPERTY
@given(slots=slots_st(), rules=rules_st, recent=recent_st)
def test_optimal_total_is_at_least_greedy(
    slots: list[SlotItems], rules: list[Rule], recent: list[Recent]
) -> None:
    g = greedy(slots, rules, recent, now_ms=NOW_MS)
    o = optimal(slots, rules, recent, now_ms=NOW_MS)
    assert o.total_score >= g.total_score
    assert g.strategy == "greedy"
    assert o.strategy == "optimal"


@PROPERTY
@given(slots=slots_st(max_items=3), rules=rules_st, recent=recent_st)
def test_optimal_matches_brute_force(
    slots: list[SlotItems], rules: list[Rule], recent: list[Recent]
) -> None:
    flat = [i for s in slots for i in s.items]
    best = max(
        math.fsum(i.score for i in subset)
        for r in range(len(flat) + 1)
        for subset in itertools.combinations(flat, r)
        if feasible(list(subset), rules, recent)
    )
    result = optimal(slots, rules, recent, now_ms=NOW_MS)
    assert math.isclose(result.total_score, best, abs_tol=1e-9)


@PROPERTY
@given(slots=slots_st(), k=st.integers(1, 3))
def test_category_caps_are_respected(slots: list[SlotItems], k: int) -> None:
    for run in (greedy, optimal):
        result = run(slots, [SameEntity(), CategoryCap(k=k)], now_ms=NOW_MS)
        counts = Counter(i.category for s in result.slots for i in s.items)
        assert all(n <= k for n in counts.values())


@st.composite
def conflict_free(draw: st.DrawFn) -> tuple[list[SlotItems], list[Rule], list[Recent]]:
    """A homepage and rules under which nothing conflicts: fresh ids, entities and labels,
    caps no tighter than the busiest category, history outside the window or of other ids."""
    n = 0
    slots = []
    for s in range(draw(st.integers(1, 4))):
        items = []
        for _ in range(draw(st.integers(0, 5))):
            own = [f"m:{n}", f"o:{n}"]
            items.append(
                Item(
                    item_id=f"i{n}",
                    entity_id=f"e{n}",
                    category=draw(st.sampled_from(["food", "coffee", "travel"])),
                    # An item may repeat its own label: that is no conflict with itself.
                    labels=draw(st.lists(st.sampled_from(own), max_size=3)),
                    score=draw(st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 1.0))),
                )
            )
            n += 1
        slots.append(SlotItems(f"s{s}", items))
    busiest = max(Counter(i.category for s in slots for i in s.items).values(), default=1)
    rules: list[Rule] = [
        CategoryCap(k=draw(st.integers(busiest, busiest + 2))) if isinstance(r, CategoryCap) else r
        for r in draw(rules_st)
    ]
    windows = [round(r.minutes * 60_000) for r in rules if isinstance(r, RecentlyShown)]
    recent = []
    for _ in range(draw(st.integers(0, 4))):
        if windows and n and draw(st.booleans()):
            # A shown item, seen exactly at or before the start of the window.
            ts = NOW_MS - max(windows) - draw(st.integers(0, 10**7))
            recent.append(Recent(f"i{draw(st.integers(0, n - 1))}", ts))
        elif windows:
            # Something just seen that is not on this screen.
            recent.append(
                Recent(f"x{draw(st.integers(0, 9))}", NOW_MS - draw(st.integers(-(10**4), 10**4)))
            )
        elif n:
            # Without a recently_shown rule, history never drops anything.
            recent.append(Recent(f"i{draw(st.integers(0, n - 1))}", NOW_MS))
    return slots, rules, recent


@PROPERTY
@given(case=conflict_free())
def test_without_conflicts_both_return_the_input_unchanged(
    case: tuple[list[SlotItems], list[Rule], list[Recent]],
) -> None:
    slots, rules, recent = case
    for run in (greedy, optimal):
        result = run(slots, rules, recent, now_ms=NOW_MS)
        assert result.slots == slots
        assert result.dropped == []
        assert result.total_score == math.fsum(i.score for s in slots for i in s.items)
        assert result.strategy == run.__name__


def copy_of(slots: list[SlotItems]) -> list[SlotItems]:
    """An equal but wholly separate copy, so nothing can hang on object identity."""
    return msgspec.convert(msgspec.to_builtins(slots), list[SlotItems])


@PROPERTY
@given(slots=slots_st(), rules=rules_st, recent=recent_st)
def test_output_is_deterministic(
    slots: list[SlotItems], rules: list[Rule], recent: list[Recent]
) -> None:
    for run in (greedy, optimal):
        first = run(slots, rules, recent, now_ms=NOW_MS)
        again = run(slots, rules, list(recent), now_ms=NOW_MS)
        copied = run(copy_of(slots), list(rules), list(recent), now_ms=NOW_MS)
        assert first == again == copied
        assert msgspec.json.encode(first) == msgspec.json.encode(copied)


def item(item_id: str, entity_id: str, score: float, *labels: str, category: str = "food") -> Item:
    return Item(
        item_id=item_id, entity_id=entity_id, category=category, labels=list(labels), score=score
    )


def test_greedy_keeps_the_first_slot_that_claims_an_entity() -> None:
    slots = [
        SlotItems("nearby", [item("a", "e1", 0.2)]),
        SlotItems("feed", [item("b", "e1", 0.9), item("c", "e2", 0.5)]),
    ]
    g = greedy(slots, [SameEntity()], now_ms=NOW_MS)
    assert [[i.item_id for i in s.items] for s in g.slots] == [["a"], ["c"]]
    o = optimal(slots, [SameEntity()], now_ms=NOW_MS)
    assert [[i.item_id for i in s.items] for s in o.slots] == [[], ["b", "c"]]
    assert [(d.slot, d.item_id, d.rule) for d in o.dropped] == [("nearby", "a", "same_entity")]
    assert o.total_score == pytest.approx(1.4)


def path_instance() -> list[SlotItems]:
    # a conflicts with b (shared label) and with c (same entity); b and c are compatible,
    # so the component is not a clique and needs the solver: keeping b + c beats a.
    return [
        SlotItems("nearby", [item("a", "e1", 1.0, "m:1")]),
        SlotItems("feed", [item("b", "e2", 0.6, "m:1"), item("c", "e1", 0.6)]),
    ]


def test_optimal_solves_non_clique_conflicts_with_milp() -> None:
    rules: list[Rule] = [SameEntity(), SameLabel()]
    g = greedy(path_instance(), rules, now_ms=NOW_MS)
    o = optimal(path_instance(), rules, now_ms=NOW_MS)
    assert g.total_score == pytest.approx(1.0)
    assert o.total_score == pytest.approx(1.2)
    assert o.strategy == "optimal"
    assert [(d.item_id, d.rule) for d in o.dropped] == [("a", "same_entity")]


def test_optimal_falls_back_to_greedy_past_the_size_budget() -> None:
    rules: list[Rule] = [SameEntity(), SameLabel()]
    o = optimal(path_instance(), rules, now_ms=NOW_MS, max_items=2)
    assert o.strategy == "fallback_greedy"
    assert o.slots == greedy(path_instance(), rules, now_ms=NOW_MS).slots


def test_optimal_under_a_zero_time_budget_is_still_valid() -> None:
    rules: list[Rule] = [SameEntity(), SameLabel()]
    slots = path_instance()
    o = optimal(slots, rules, now_ms=NOW_MS, time_limit_s=0.0)
    assert o.strategy in {"optimal", "time_limited", "fallback_greedy"}
    check_invariants(slots, rules, o)
    assert o.total_score >= 1.0


def first_broken_rule(
    item: Item, shown: list[Item], rules: list[Rule], recent: Sequence[Recent]
) -> str | None:
    """The first rule, in order, that `item` breaks against `shown` (independent of Screen)."""
    for rule in rules:
        if isinstance(rule, ExactId) and any(s.item_id == item.item_id for s in shown):
            return rule.name
        if isinstance(rule, SameEntity) and any(s.entity_id == item.entity_id for s in shown):
            return rule.name
        if isinstance(rule, SameLabel) and any(set(s.labels) & set(item.labels) for s in shown):
            return rule.name
        if isinstance(rule, CategoryCap) and (
            sum(s.category == item.category for s in shown) >= rule.k
        ):
            return rule.name
        if isinstance(rule, RecentlyShown) and not feasible([item], [rule], recent):
            return rule.name
    return None


@PROPERTY
@given(slots=slots_st(), rules=rules_st, recent=recent_st, pinned=slots_st(max_items=2))
def test_optimal_drop_reasons_are_against_the_whole_kept_set(
    slots: list[SlotItems], rules: list[Rule], recent: list[Recent], pinned: list[SlotItems]
) -> None:
    """optimal explains drops with the screen left by the walk or repair that chose the kept
    set (not one rebuilt from it): the reasons must still be those of the whole kept set."""
    result = optimal(slots, rules, recent, now_ms=NOW_MS, pinned=pinned)
    shown = [i for s in [*pinned, *result.slots] for i in s.items]
    dropped = []  # in render order, as result.dropped lists them
    for before, after in zip(slots, result.slots, strict=True):
        kept = iter(after.items)
        nxt = next(kept, None)
        for x in before.items:
            if x is nxt:
                nxt = next(kept, None)
            else:
                dropped.append(x)
    assert [d.item_id for d in result.dropped] == [i.item_id for i in dropped]
    for d, item in zip(result.dropped, dropped, strict=True):
        assert d.rule == first_broken_rule(item, shown, rules, recent)


def test_optimal_reports_the_first_rule_in_order_for_each_drop() -> None:
    slots = [
        SlotItems("nearby", [item("a", "e1", 1.0, category="food")]),
        SlotItems(
            "feed",
            [item("b", "e1", 0.1, category="food"), item("c", "e3", 0.1, category="food")],
        ),
    ]
    o = optimal(
        slots,
        [CategoryCap(k=1), SameEntity(), RecentlyShown(minutes=5)],
        [Recent("c", NOW_MS - 1000)],
        now_ms=NOW_MS,
    )
    assert [(d.item_id, d.rule) for d in o.dropped] == [
        ("b", "category_cap"),
        ("c", "category_cap"),
    ]


def test_pinned_items_stay_and_count_against_rules() -> None:
    pinned = [SlotItems("nearby", [item("a", "e1", 0.1), item("x", "e9", 0.1, category="coffee")])]
    slots = [SlotItems("feed", [item("b", "e1", 0.9), item("c", "e2", 0.5), item("d", "e3", 0.4)])]
    rules: list[Rule] = [SameEntity(), CategoryCap(k=2)]
    for run in (greedy, optimal):
        result = run(slots, rules, now_ms=NOW_MS, pinned=pinned)
        assert [i.item_id for i in result.slots[0].items] == ["c"]
        assert [(d.item_id, d.rule) for d in result.dropped] == [
            ("b", "same_entity"),
            ("d", "category_cap"),
        ]
        assert result.total_score == pytest.approx(0.5)


def test_allocation_encodes_to_the_design_response_shape() -> None:
    slots = [SlotItems("nearby", [item("i1", "e1", 0.9, "m:42"), item("i2", "e1", 0.3)])]
    body = msgspec.json.decode(msgspec.json.encode(greedy(slots, [SameEntity()], now_ms=NOW_MS)))
    assert body == {
        "slots": [
            {
                "slot": "nearby",
                "items": [
                    {
                        "item_id": "i1",
                        "entity_id": "e1",
                        "category": "food",
                        "labels": ["m:42"],
                        "score": 0.9,
                    }
                ],
            }
        ],
        "dropped": [{"slot": "nearby", "item_id": "i2", "rule": "same_entity"}],
        "total_score": 0.9,
        "strategy": "greedy",
    }


# str hashes are salted per process, so set iteration order differs between runs; an
# allocation that depended on it would pass every in-process check above.
CROSS_PROCESS = """
import hashlib, msgspec
from dedupe import CategoryCap, default_rules, greedy, optimal
from synth.catalogue import homepage, make_catalogue
cat = make_catalogue(3, n_merchants=200, n_services=30, n_offers=100)
rules = (*default_rules(), CategoryCap(k=3))
h = hashlib.sha256()
for u in range(12):
    page = homepage(cat, ["nearby", "offers", "feed", "deals"], user_id=f"u{u}", n=8, now_ms=0)
    for run in (greedy, optimal):
        h.update(msgspec.json.encode(run(page, rules, now_ms=0)))
print(h.hexdigest())
"""


def test_output_does_not_depend_on_the_process_hash_seed() -> None:
    digests = set()
    for seed in ("0", "1"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", CROSS_PROCESS],
            env=env,
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1
