"""Allocate recommended items to homepage slots under the dedupe rules: greedy or optimal."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec

from dedupe import constants as C
from dedupe.items import DedupeRequest, Item, Recent, SlotItems, StrategyName, validate_request
from dedupe.rules import (
    CategoryCap,
    ExactId,
    Rule,
    SameEntity,
    SameLabel,
    Screen,
    default_rules,
    load_rules,
)
from dedupe.solve import select

__all__ = [
    "Allocation",
    "Dropped",
    "Strategy",
    "allocate_request",
    "allocate_slots",
    "greedy",
    "optimal",
]

# What actually ran: "time_limited" is the solver's best incumbent when it ran out of time
# (never worse than greedy); "fallback_greedy" is greedy because the solver was not usable.
Strategy = Literal["greedy", "optimal", "time_limited", "fallback_greedy"]


class Dropped(msgspec.Struct, frozen=True):
    """An item left out, the slot it was in, and the rule that excluded it."""

    slot: str
    item_id: str
    rule: str


class Allocation(msgspec.Struct, frozen=True):
    """Kept items per slot (input order), what was dropped and why, and the kept score."""

    slots: list[SlotItems]
    dropped: list[Dropped]
    total_score: float
    strategy: Strategy


_Flat = list[tuple[int, Item]]


def greedy(
    slots: Sequence[SlotItems],
    rules: Sequence[Rule],
    recent: Iterable[Recent] = (),
    *,
    now_ms: int,
    pinned: Sequence[SlotItems] = (),
) -> Allocation:
    """Keep each item unless it breaks a rule against what earlier slots and items kept."""
    flat = _flatten(slots)
    keep, reasons = _screen(rules, recent, now_ms, pinned).walk(item for _, item in flat)
    return _build(slots, flat, keep, reasons, "greedy")


def optimal(
    slots: Sequence[SlotItems],
    rules: Sequence[Rule],
    recent: Iterable[Recent] = (),
    *,
    now_ms: int,
    pinned: Sequence[SlotItems] = (),
    max_items: int = C.OPTIMAL_MAX_ITEMS,
    time_limit_s: float = C.MILP_TIME_LIMIT_S,
) -> Allocation:
    """Keep the rule-abiding subset with the largest total score (pinned items stay as they are)."""
    recent = tuple(recent)
    flat = _flatten(slots)
    base = _screen(rules, recent, now_ms, pinned)
    # Items excluded by history or by pinned items are fixed to 0 before the solver sees them.
    cand = [i for i, (_, item) in enumerate(flat) if base.violation(item) is None]
    weights = [flat[i][1].score for i in cand]
    sel = select(
        weights,
        _groups(rules, [flat[i][1] for i in cand]),
        _caps(base, [flat[i][1] for i in cand]),
        max_items=max_items,
        time_limit_s=time_limit_s,
    )
    # Greedy is both the fallback (too many solver items, time out without an incumbent) and
    # the floor: optimal never returns less than the reference behaviour.
    ref_screen = _screen(rules, recent, now_ms, pinned)
    ref_keep, _ = ref_screen.walk(item for _, item in flat)
    ref_total = _total(flat, ref_keep)
    strategy: Strategy = "fallback_greedy"
    keep, final = ref_keep, ref_screen
    repaired = None
    if sel.chosen is not None:
        repaired = _repair(flat, {cand[j] for j in sel.chosen}, rules, recent, now_ms, pinned)
    if repaired is not None:
        keep, final = repaired
        opt_total = _total(flat, keep)
        strategy = "optimal" if sel.status == "optimal" else "time_limited"
        # Ties (and solver tolerance) go to greedy's choice: the reference behaviour users know.
        if ref_total >= opt_total - 1e-9 * max(1.0, abs(opt_total)):
            keep, final = ref_keep, ref_screen
            if strategy != "optimal":
                strategy = "fallback_greedy"
    # `final` holds the pinned items and exactly the kept ones (the walk or the repair added
    # them): a screen's state is the set of items added, whatever the order, so it is the
    # screen of the whole kept set without adding them all again.
    # Explain each drop against the whole kept set: the first rule, in rule order, it breaks.
    # The set is maximal after _repair, so the "score" default is unreachable in practice.
    reasons = {
        i: final.violation(item) or "score" for i, (_, item) in enumerate(flat) if i not in keep
    }
    return _build(slots, flat, keep, reasons, strategy)


def allocate_slots(
    slots: Sequence[SlotItems],
    rules: Sequence[Rule],
    recent: Iterable[Recent] = (),
    *,
    now_ms: int,
    strategy: StrategyName = "greedy",
    pinned: Sequence[SlotItems] = (),
) -> Allocation:
    """Run the named strategy."""
    run = optimal if strategy == "optimal" else greedy
    return run(slots, rules, recent, now_ms=now_ms, pinned=pinned)


def allocate_request(req: DedupeRequest, *, now_ms: int) -> Allocation:
    """Answer a decoded POST /v1/dedupe body.

    Raises DedupeInputError (alias RuleConfigError), naming the field, for a repeated slot
    name or bad `rules`; items without ids never get here (the types reject them on decode).
    """
    validate_request(req)
    rules = default_rules() if req.rules is None else load_rules(req.rules)
    return allocate_slots(req.slots, rules, req.recent, now_ms=now_ms, strategy=req.strategy)


def _flatten(slots: Sequence[SlotItems]) -> _Flat:
    return [(s, item) for s, slot in enumerate(slots) for item in slot.items]


def _screen(
    rules: Sequence[Rule], recent: Iterable[Recent], now_ms: int, pinned: Sequence[SlotItems]
) -> Screen:
    screen = Screen(rules, recent, now_ms=now_ms)
    for slot in pinned:
        for item in slot.items:
            screen.add(item)
    return screen


def _groups(rules: Sequence[Rule], items: Sequence[Item]) -> list[list[int]]:
    groups: dict[tuple[str, str], dict[int, None]] = {}
    for rule in rules:
        # The keys of group_keys, read directly: this runs per item and rule on every call.
        name = rule.name
        if isinstance(rule, ExactId):
            for j, item in enumerate(items):
                groups.setdefault((name, item.item_id), {})[j] = None
        elif isinstance(rule, SameEntity):
            for j, item in enumerate(items):
                groups.setdefault((name, item.entity_id), {})[j] = None
        elif isinstance(rule, SameLabel):
            for j, item in enumerate(items):
                for key in item.labels:
                    # A dict keeps first-seen order and drops an item's repeated labels.
                    groups.setdefault((name, key), {})[j] = None
    return [list(members) for members in groups.values() if len(members) > 1]


def _caps(screen: Screen, items: Sequence[Item]) -> list[tuple[list[int], int]]:
    if not any(isinstance(r, CategoryCap) for r in screen.rules):
        return []
    by_category: dict[str, list[int]] = {}
    for j, item in enumerate(items):
        by_category.setdefault(item.category, []).append(j)
    # Pinned items already use part of each cap, so the solver gets what is left.
    return [(members, screen.cap_left(cat) or 0) for cat, members in by_category.items()]


def _repair(
    flat: _Flat,
    keep: set[int],
    rules: Sequence[Rule],
    recent: Sequence[Recent],
    now_ms: int,
    pinned: Sequence[SlotItems],
) -> tuple[set[int], Screen] | None:
    # Rounded solver output is checked, not trusted: None if it breaks a rule after all.
    # Returns the kept set and the screen holding it (and the pinned items).
    screen = _screen(rules, recent, now_ms, pinned)
    for i in sorted(keep):
        if screen.violation(flat[i][1]) is not None:
            return None
        screen.add(flat[i][1])
    # The solver may leave out a zero-score item that breaks no rule; a dedupe must only drop
    # what a rule excludes, so add such items back in render order.
    out = set(keep)
    for i, (_, item) in enumerate(flat):
        if i not in out and screen.violation(item) is None:
            screen.add(item)
            out.add(i)
    return out, screen


def _total(flat: _Flat, keep: set[int]) -> float:
    return math.fsum(flat[i][1].score for i in keep)


def _build(
    slots: Sequence[SlotItems],
    flat: _Flat,
    keep: set[int],
    reasons: dict[int, str],
    strategy: Strategy,
) -> Allocation:
    kept: list[list[Item]] = [[] for _ in slots]
    dropped: list[Dropped] = []
    for i, (s, item) in enumerate(flat):
        if i in keep:
            kept[s].append(item)
        else:
            dropped.append(Dropped(slots[s].slot, item.item_id, reasons.get(i, "score")))
    return Allocation(
        slots=[SlotItems(slot.slot, items) for slot, items in zip(slots, kept, strict=True)],
        dropped=dropped,
        total_score=_total(flat, keep),
        strategy=strategy,
    )
