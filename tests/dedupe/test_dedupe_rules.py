"""Each dedupe rule on its own, rule JSON validation, and the recently_shown boundary."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from dedupe import (
    CategoryCap,
    ExactId,
    Item,
    Recent,
    RecentlyShown,
    RuleConfigError,
    SameEntity,
    SameLabel,
    SlotItems,
    default_rules,
    dump_rules,
    greedy,
    load_rules,
    optimal,
)

NOW_MS = 1_700_000_000_000


def make_item(
    item_id: str,
    entity_id: str | None = None,
    *,
    category: str = "food",
    labels: tuple[str, ...] = (),
    score: float = 0.5,
) -> Item:
    return Item(
        item_id=item_id,
        entity_id=entity_id or f"e-{item_id}",
        category=category,
        labels=list(labels),
        score=score,
    )


def kept_ids(slots: list[SlotItems]) -> list[list[str]]:
    return [[i.item_id for i in s.items] for s in slots]


# Two slots; each case names the rule under test and what greedy keeps per slot.
RULE_CASES = [
    pytest.param(
        [ExactId()],
        [[make_item("a")], [make_item("a"), make_item("b")]],
        [["a"], ["b"]],
        [("s1", "a", "exact_id")],
        id="exact_id-across-slots",
    ),
    pytest.param(
        [ExactId()],
        [[make_item("a"), make_item("a")], []],
        [["a"], []],
        [("s0", "a", "exact_id")],
        id="exact_id-within-slot",
    ),
    pytest.param(
        [SameEntity()],
        [[make_item("a", "e1")], [make_item("b", "e1"), make_item("c", "e2")]],
        [["a"], ["c"]],
        [("s1", "b", "same_entity")],
        id="same_entity",
    ),
    pytest.param(
        [SameLabel()],
        [
            [make_item("a", labels=("m:1", "o:3"))],
            [make_item("b", labels=("o:3",)), make_item("c", labels=("m:2",))],
        ],
        [["a"], ["c"]],
        [("s1", "b", "same_label")],
        id="same_label-any-shared-label",
    ),
    pytest.param(
        [CategoryCap(k=2)],
        [
            [make_item("a"), make_item("b", category="coffee")],
            [make_item("c"), make_item("d"), make_item("e", category="coffee")],
        ],
        [["a", "b"], ["c", "e"]],
        [("s1", "d", "category_cap")],
        id="category_cap-per-screen",
    ),
    pytest.param(
        [],
        [[make_item("a", "e1")], [make_item("a", "e1")]],
        [["a"], ["a"]],
        [],
        id="no-rules-keep-everything",
    ),
    pytest.param(
        [SameEntity(), ExactId()],
        [[make_item("a", "e1")], [make_item("a", "e1")]],
        [["a"], []],
        [("s1", "a", "same_entity")],
        id="first-rule-in-order-is-reported",
    ),
]


@pytest.mark.parametrize(("rules", "slot_items", "kept", "dropped"), RULE_CASES)
def test_each_rule_drops_what_it_names(
    rules: list[Any],
    slot_items: list[list[Item]],
    kept: list[list[str]],
    dropped: list[tuple[str, str, str]],
) -> None:
    slots = [SlotItems(f"s{i}", items) for i, items in enumerate(slot_items)]
    result = greedy(slots, rules, now_ms=NOW_MS)
    assert kept_ids(result.slots) == kept
    assert [(d.slot, d.item_id, d.rule) for d in result.dropped] == dropped
    # With no cross-slot trade-off to make, optimal agrees with the reference behaviour.
    assert kept_ids(optimal(slots, rules, now_ms=NOW_MS).slots) == kept


@pytest.mark.parametrize(
    ("age_ms", "dropped"),
    [
        (0, True),
        (30 * 60_000 - 1, True),
        (30 * 60_000, False),  # exactly N minutes ago is no longer "in the last N minutes"
        (30 * 60_000 + 1, False),
        (-5_000, True),  # device clock ahead of ours: treated as just shown
    ],
)
def test_recently_shown_boundary(age_ms: int, dropped: bool) -> None:
    slots = [SlotItems("feed", [make_item("a"), make_item("b")])]
    recent = [Recent("a", NOW_MS - age_ms), Recent("zz", NOW_MS)]
    for run in (greedy, optimal):
        result = run(slots, [RecentlyShown(minutes=30)], recent, now_ms=NOW_MS)
        assert [(d.item_id, d.rule) for d in result.dropped] == (
            [("a", "recently_shown")] if dropped else []
        )


def test_recently_shown_uses_the_latest_impression() -> None:
    slots = [SlotItems("feed", [make_item("a")])]
    recent = [Recent("a", NOW_MS - 3_600_000), Recent("a", NOW_MS - 60_000)]
    result = greedy(slots, [RecentlyShown(minutes=30)], recent, now_ms=NOW_MS)
    assert [d.rule for d in result.dropped] == ["recently_shown"]


def test_json_rules_load_in_order_and_round_trip() -> None:
    text = (
        '[{"rule": "exact_id"}, {"rule": "same_entity"}, {"rule": "same_label"},'
        ' {"rule": "category_cap", "k": 2}, {"rule": "recently_shown", "minutes": 30}]'
    )
    rules = load_rules(text)
    assert rules == (
        ExactId(),
        SameEntity(),
        SameLabel(),
        CategoryCap(k=2),
        RecentlyShown(minutes=30.0),
    )
    assert load_rules(dump_rules(rules)) == rules
    assert load_rules(msgspec.json.encode(dump_rules(rules))) == rules
    assert load_rules([]) == ()


def test_default_rules_cover_every_duplicate_kind_without_a_cap() -> None:
    names = [r.name for r in default_rules()]
    assert names == ["exact_id", "same_entity", "same_label", "recently_shown"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("{not json", "rules"),
        ({"rule": "exact_id"}, "rules"),
        ([{"rule": "exact_id"}] * 17, "rules"),
        (["exact_id"], "rules[0]"),
        ([{}], "rules[0].rule"),
        ([{"rule": 3}], "rules[0].rule"),
        ([{"rule": "exact_id"}, {"rule": "same_brand"}], "rules[1].rule"),
        ([{"rule": "exact_id"}, {"rule": "exact_id"}], "rules[1].rule"),
        ([{"rule": "exact_id", "k": 2}], "rules[0].k"),
        ([{"rule": "category_cap"}], "rules[0].k"),
        ([{"rule": "category_cap", "k": 0}], "rules[0].k"),
        ([{"rule": "category_cap", "k": 2.5}], "rules[0].k"),
        ([{"rule": "category_cap", "k": True}], "rules[0].k"),
        ([{"rule": "category_cap", "k": "2"}], "rules[0].k"),
        ([{"rule": "category_cap", "k": 10**9}], "rules[0].k"),
        ([{"rule": "category_cap", "k": 2, "per": "slot"}], "rules[0].per"),
        ([{"rule": "recently_shown"}], "rules[0].minutes"),
        ([{"rule": "recently_shown", "minutes": 0}], "rules[0].minutes"),
        ([{"rule": "recently_shown", "minutes": -1}], "rules[0].minutes"),
        ([{"rule": "recently_shown", "minutes": float("inf")}], "rules[0].minutes"),
        ([{"rule": "recently_shown", "minutes": float("nan")}], "rules[0].minutes"),
        ([{"rule": "recently_shown", "minutes": 10**7}], "rules[0].minutes"),
        ([{"rule": "recently_shown", "minutes": None}], "rules[0].minutes"),
    ],
)
def test_bad_rule_json_names_the_field(data: Any, field: str) -> None:
    with pytest.raises(RuleConfigError) as err:
        load_rules(data)
    assert err.value.field == field
    assert err.value.message
    assert isinstance(err.value, ValueError)


def test_field_prefix_is_configurable() -> None:
    with pytest.raises(RuleConfigError) as err:
        load_rules([{"rule": "category_cap", "k": -1}], field="body.rules")
    assert err.value.field == "body.rules[0].k"


def test_fractional_minutes_are_allowed() -> None:
    (rule,) = load_rules([{"rule": "recently_shown", "minutes": 0.5}])
    assert isinstance(rule, RecentlyShown)
    assert rule.window_ms == 30_000
