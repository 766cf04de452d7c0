"""Declarative, ordered dedupe rules: JSON loading with field-named errors, and the screen
state that tests a candidate item against what is already kept."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import msgspec

from dedupe import constants as C
from dedupe.errors import RuleConfigError
from dedupe.items import Item, Recent

__all__ = [
    "CategoryCap",
    "ExactId",
    "GroupRule",
    "RecentlyShown",
    "Rule",
    "RuleConfigError",
    "SameEntity",
    "SameLabel",
    "Screen",
    "default_rules",
    "dump_rules",
    "group_keys",
    "is_recent",
    "load_rules",
    "recent_index",
]


class ExactId(msgspec.Struct, frozen=True, tag_field="rule", tag="exact_id"):
    """At most one item per item id on the screen."""

    name: ClassVar[str] = "exact_id"


class SameEntity(msgspec.Struct, frozen=True, tag_field="rule", tag="same_entity"):
    """At most one item per entity id on the screen."""

    name: ClassVar[str] = "same_entity"


class SameLabel(msgspec.Struct, frozen=True, tag_field="rule", tag="same_label"):
    """No two kept items share an equivalence label."""

    name: ClassVar[str] = "same_label"


class CategoryCap(msgspec.Struct, frozen=True, tag_field="rule", tag="category_cap"):
    """At most `k` items of any one category on the screen."""

    name: ClassVar[str] = "category_cap"
    k: int


class RecentlyShown(msgspec.Struct, frozen=True, tag_field="rule", tag="recently_shown"):
    """Drop items the device showed less than `minutes` ago."""

    name: ClassVar[str] = "recently_shown"
    minutes: float

    @property
    def window_ms(self) -> int:
        """Return the look-back window in milliseconds."""
        return round(self.minutes * 60_000)


GroupRule = ExactId | SameEntity | SameLabel
Rule = ExactId | SameEntity | SameLabel | CategoryCap | RecentlyShown
_BY_NAME: dict[str, type[Rule]] = {
    r.name: r for r in (ExactId, SameEntity, SameLabel, CategoryCap, RecentlyShown)
}
_SIMPLE: dict[str, type[GroupRule]] = {r.name: r for r in (ExactId, SameEntity, SameLabel)}
# The only option each rule accepts, besides "rule" itself.
_OPTIONS: dict[str, tuple[str, ...]] = {"category_cap": ("k",), "recently_shown": ("minutes",)}


def default_rules() -> tuple[Rule, ...]:
    """Return the reference rule list: every kind except the layout-specific category cap."""
    # No category cap by default: a sensible k depends on how many cards the layout shows.
    return (
        ExactId(),
        SameEntity(),
        SameLabel(),
        RecentlyShown(minutes=C.DEFAULT_RECENTLY_SHOWN_MINUTES),
    )


def dump_rules(rules: Iterable[Rule]) -> list[dict[str, Any]]:
    """Return rules as the JSON objects `load_rules` accepts."""
    return [msgspec.to_builtins(r) for r in rules]


def load_rules(data: Any, *, field: str = "rules") -> tuple[Rule, ...]:
    """Parse and validate a rule list from JSON text or decoded JSON."""
    if isinstance(data, str | bytes):
        try:
            data = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise RuleConfigError(f"not valid JSON ({exc})", field) from None
    if not isinstance(data, list):
        raise RuleConfigError("expected a list of rule objects", field)
    if len(data) > C.MAX_RULES:
        raise RuleConfigError(f"at most {C.MAX_RULES} rules", field)
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, entry in enumerate(data):
        rule = _load_one(entry, f"{field}[{i}]")
        if rule.name in seen:
            raise RuleConfigError(f"duplicate rule {rule.name!r}", f"{field}[{i}].rule")
        seen.add(rule.name)
        rules.append(rule)
    return tuple(rules)


def _load_one(entry: Any, field: str) -> Rule:
    if not isinstance(entry, dict):
        raise RuleConfigError("expected an object", field)
    name = entry.get("rule")
    if not isinstance(name, str):
        raise RuleConfigError("missing or non-string rule name", f"{field}.rule")
    if name not in _BY_NAME:
        known = ", ".join(sorted(_BY_NAME))
        raise RuleConfigError(f"unknown rule {name!r} (known: {known})", f"{field}.rule")
    allowed = _OPTIONS.get(name, ())
    for key in entry:
        if key != "rule" and key not in allowed:
            raise RuleConfigError(f"unknown option for {name!r}", f"{field}.{key}")
    for key in allowed:
        if key not in entry:
            raise RuleConfigError(f"{name!r} requires {key!r}", f"{field}.{key}")
    if name == "category_cap":
        k = entry["k"]
        # bool is an int in Python but `true` is never meant as a count.
        if not isinstance(k, int) or isinstance(k, bool):
            raise RuleConfigError("expected an integer", f"{field}.k")
        if not 1 <= k <= C.CATEGORY_CAP_MAX:
            raise RuleConfigError(f"expected 1 <= k <= {C.CATEGORY_CAP_MAX}", f"{field}.k")
        return CategoryCap(k=k)
    if name == "recently_shown":
        minutes = entry["minutes"]
        if not isinstance(minutes, int | float) or isinstance(minutes, bool):
            raise RuleConfigError("expected a number", f"{field}.minutes")
        top = C.RECENTLY_SHOWN_MAX_MINUTES
        if not math.isfinite(minutes) or not 0 < minutes <= top:
            raise RuleConfigError(f"expected 0 < minutes <= {top}", f"{field}.minutes")
        return RecentlyShown(minutes=float(minutes))
    return _SIMPLE[name]()


def group_keys(rule: GroupRule, item: Item) -> Iterable[str]:
    """Return the keys of the at-most-one groups `item` belongs to under `rule`."""
    if isinstance(rule, ExactId):
        return (item.item_id,)
    if isinstance(rule, SameEntity):
        return (item.entity_id,)
    return item.labels


def recent_index(recent: Iterable[Recent]) -> dict[str, int]:
    """Return each item id's latest impression time."""
    last: dict[str, int] = {}
    for r in recent:
        if r.ts > last.get(r.item_id, -1):
            last[r.item_id] = r.ts
    return last


def is_recent(rule: RecentlyShown, item: Item, last_ts: Mapping[str, int], now_ms: int) -> bool:
    """Return whether `item` was shown less than the rule's window before `now_ms`."""
    ts = last_ts.get(item.item_id)
    # Exactly `minutes` ago is no longer "in the last N minutes"; a future ts (device clock
    # ahead of ours) counts as just shown.
    return ts is not None and ts > now_ms - rule.window_ms


# Kinds of check in a Screen's plan (compared with `is`-cheap small ints in the hot loop).
_ID, _ENTITY, _LABEL, _CAP, _RECENT = range(5)


class Screen:
    """What is already kept on the homepage, so each rule can test a candidate against it.

    The rules are compiled once into a plan of (kind, name, argument) checks: `violation` and
    `add` run for every item several times per allocation, and dispatching on the rule's class
    with isinstance and `group_keys` per item and rule was most of dedupe's time. The plan
    holds each group rule's taken-key set (shared by rules of the same name, as before), the
    cap's k, or the recent rule's cut-off time, so a check is one comparison and a set probe.
    """

    def __init__(self, rules: Sequence[Rule], recent: Iterable[Recent], *, now_ms: int) -> None:
        self.rules = tuple(rules)
        self.now_ms = now_ms
        self._last_ts = recent_index(recent)
        self._taken: dict[str, set[str]] = {
            r.name: set() for r in self.rules if isinstance(r, ExactId | SameEntity | SameLabel)
        }
        self._per_category: dict[str, int] = {}
        plan: list[tuple[int, str, Any]] = []
        for rule in self.rules:
            if isinstance(rule, RecentlyShown):
                # is_recent: shown at ts with ts > now - window.
                plan.append((_RECENT, rule.name, now_ms - rule.window_ms))
            elif isinstance(rule, CategoryCap):
                plan.append((_CAP, rule.name, rule.k))
            else:
                kind = _ID if isinstance(rule, ExactId) else _ENTITY
                kind = _LABEL if isinstance(rule, SameLabel) else kind
                plan.append((kind, rule.name, self._taken[rule.name]))
        self._plan = tuple(plan)
        # What `add` fills: one set per distinct group rule name, by the key it takes.
        self._id_sets = tuple({id(s): s for k, _, s in plan if k == _ID}.values())
        self._entity_sets = tuple({id(s): s for k, _, s in plan if k == _ENTITY}.values())
        self._label_sets = tuple({id(s): s for k, _, s in plan if k == _LABEL}.values())

    def violation(self, item: Item) -> str | None:
        """Return the first rule, in rule order, that keeping `item` would break."""
        for kind, name, arg in self._plan:
            if kind == _ID:
                if item.item_id in arg:
                    return name
            elif kind == _ENTITY:
                if item.entity_id in arg:
                    return name
            elif kind == _LABEL:
                if not arg.isdisjoint(item.labels):
                    return name
            elif kind == _CAP:
                if self._per_category.get(item.category, 0) >= arg:
                    return name
            else:
                ts = self._last_ts.get(item.item_id)
                if ts is not None and ts > arg:
                    return name
        return None

    def add(self, item: Item) -> None:
        """Record `item` as kept (even if it breaks a rule: pinned items stay)."""
        for taken in self._id_sets:
            taken.add(item.item_id)
        for taken in self._entity_sets:
            taken.add(item.entity_id)
        for taken in self._label_sets:
            taken.update(item.labels)
        per = self._per_category
        per[item.category] = per.get(item.category, 0) + 1

    def walk(self, items: Iterable[Item]) -> tuple[set[int], dict[int, str]]:
        """Keep each item unless it breaks a rule against those kept before it (greedy).

        Returns the kept positions and, for the others, the rule that excluded each. Same
        answers as `violation` then `add` per item, with the loop's lookups hoisted.
        """
        keep: set[int] = set()
        reasons: dict[int, str] = {}
        violation, add = self.violation, self.add
        for i, item in enumerate(items):
            why = violation(item)
            if why is None:
                add(item)
                keep.add(i)
            else:
                reasons[i] = why
        return keep, reasons

    def cap_left(self, category: str) -> int | None:
        """Return how many more items of `category` fit, or None with no cap."""
        caps = [r.k for r in self.rules if isinstance(r, CategoryCap)]
        if not caps:
            return None
        return max(0, min(caps) - self._per_category.get(category, 0))
