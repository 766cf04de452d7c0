"""Event rules: the model, its JSON validation, and its compiled form for the matcher.

A rule is the body of `PUT /v1/triggers/{id}` (docs/api.md). `parse_rule` turns the JSON into a
frozen `Rule` or raises `RuleError` naming the offending field; `rule_to_json` gives the
canonical JSON back (defaults filled in, `eq` written as a bare literal) so that
`parse_rule(i, rule_to_json(r)) == r`. Matching lives in `refreshd.core.matcher`.

`where` semantics: every condition must hold. A field the event lacks (no `slot`, no such prop)
fails every operator, `ne` included, as SQL's NULL does; `lt`/`le`/`gt`/`ge` hold only between
numbers; `in` is membership in a list of literals.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from intent.events import EVENT_TYPES, Event
from refreshd import constants as C
from refreshd.core.errors import InvalidValue
from refreshd.core.messages import DIRECTIVE_TYPES, DirectiveType

__all__ = [
    "EVENT_SLOT",
    "Action",
    "Cond",
    "Plan",
    "Rule",
    "RuleError",
    "RuleSet",
    "Step",
    "compile_rule",
    "default_rules",
    "parse_rule",
    "rule_to_json",
    "step_predicate",
]

Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "in"]
Scalar = str | int | float
Predicate = Callable[[Event], bool]

# Placeholder in `action.slots`: the slot of the last matched event.
EVENT_SLOT = "$event.slot"
# A pattern longer than this is a program, not a burst; it also bounds per-event work.
MAX_STEPS = 20
# A burst needing more than 100 repetitions is a counter, better served by intent features.
MAX_TIMES = 100
# A day: longer "bursts" are sessions, and every open window pins per-user state.
MAX_WITHIN_S = 86_400
# A month of silence per user per rule is already more than any product asks for.
MAX_COOLDOWN_S = 30 * 86_400
# Bounds per-event predicate work and the stored rule size.
MAX_WHERE = 16
MAX_IN = 64
MAX_SLOTS = 32
# The payload rides on every directive delivery; keep it small.
MAX_PAYLOAD_BYTES = 4096
DEFAULT_WITHIN_S = 600

_OPS: tuple[Op, ...] = ("eq", "ne", "lt", "le", "gt", "ge", "in")
_ORDER_OPS = frozenset({"lt", "le", "gt", "ge"})
_STR_FIELDS = frozenset({"type", "item_id", "slot"})
_SLOT_RE = re.compile(C.ID_PATTERN)


class RuleError(InvalidValue, ValueError):
    """A rule body that cannot be accepted; `field` names where (e.g. "pattern[1].times")."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message, field=field)


@dataclass(frozen=True, slots=True)
class Cond:
    """One `where` condition: `field op value`."""

    field: str
    op: Op
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Step:
    """One pattern step; `negated` means "not followed by"."""

    type: str
    where: tuple[Cond, ...] = ()
    times: int = 1
    one_or_more: bool = False
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Action:
    """The directive a firing produces; `slots=None` means every slot."""

    type: DirectiveType
    slots: tuple[str, ...] | None = None
    payload: Mapping[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated event rule."""

    id: str
    pattern: tuple[Step, ...]
    action: Action
    contiguity: Literal["relaxed", "strict"] = "relaxed"
    within_s: int | float = DEFAULT_WITHIN_S
    cooldown_s: int | float = 0

    @property
    def fingerprint(self) -> int:
        """Return a checksum of the rule's definition (stored state is reset when it changes)."""
        body = msgspec.json.encode(rule_to_json(self), order="sorted")
        return zlib.crc32(body)


def _is_num(v: object) -> bool:
    # bool is an int in Python but never a number in a rule.
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_literal(v: object) -> bool:
    return isinstance(v, str) or _is_num(v)


def _keys(obj: object, allowed: frozenset[str], path: str, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise RuleError(f"{what} must be an object", path or None)
    for k in obj:
        if k not in allowed:
            raise RuleError(f"unknown field {k!r}", f"{path}.{k}" if path else str(k))
    return obj


def _number(v: object, path: str, *, lo: float, hi: float, lo_open: bool) -> int | float:
    if not _is_num(v):
        raise RuleError("must be a number", path)
    assert isinstance(v, int | float)
    if (v <= lo if lo_open else v < lo) or v > hi:
        bound = f"> {lo:g}" if lo_open else f">= {lo:g}"
        raise RuleError(f"must be {bound} and <= {hi:g}", path)
    return v


def _parse_conds(name: str, raw: object, path: str) -> list[Cond]:
    if not (name in _STR_FIELDS or name == "value" or (name.startswith("props.") and name[6:])):
        raise RuleError("where keys are type, item_id, slot, value or props.<name>", path)
    ops: dict[str, Any] = (
        _keys(raw, frozenset(_OPS), path, "operator") if isinstance(raw, dict) else {"eq": raw}
    )
    if not ops:
        raise RuleError("needs at least one operator", path)
    conds = []
    for op, value in ops.items():
        at = f"{path}.{op}" if isinstance(raw, dict) else path
        if op == "in":
            if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN:
                raise RuleError(f"in takes a list of 1..{MAX_IN} literals", at)
            items = tuple(value)
        else:
            items = (value,)
        for v in items:
            if not _is_literal(v):
                raise RuleError("values are strings or numbers", at)
            if name in _STR_FIELDS and not isinstance(v, str):
                raise RuleError(f"{name} compares with strings", at)
            if (name == "value" or op in _ORDER_OPS) and not _is_num(v):
                raise RuleError(f"{op} on {name} compares with numbers", at)
        if name in _STR_FIELDS and op in _ORDER_OPS:
            raise RuleError(f"{op} does not apply to {name}", at)
        conds.append(Cond(name, op, items if op == "in" else items[0]))  # type: ignore[arg-type]
    return conds


def _parse_step(obj: object, path: str) -> Step:
    d = _keys(obj, frozenset({"type", "where", "times", "one_or_more", "negated"}), path, "step")
    etype = d.get("type")
    if etype not in EVENT_TYPES:
        raise RuleError(f"type must be one of {', '.join(EVENT_TYPES)}", f"{path}.type")
    where = d.get("where", {})
    if not isinstance(where, dict):
        raise RuleError("where must be an object", f"{path}.where")
    if len(where) > MAX_WHERE:
        raise RuleError(f"at most {MAX_WHERE} conditions", f"{path}.where")
    conds = [c for k, v in where.items() for c in _parse_conds(k, v, f"{path}.where.{k}")]
    for flag in ("one_or_more", "negated"):
        if not isinstance(d.get(flag, False), bool):
            raise RuleError("must be a boolean", f"{path}.{flag}")
    times = d.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= MAX_TIMES:
        raise RuleError(f"must be an integer in 1..{MAX_TIMES}", f"{path}.times")
    if "times" in d and d.get("one_or_more"):
        raise RuleError("times and one_or_more exclude each other", f"{path}.one_or_more")
    if d.get("negated") and ("times" in d or d.get("one_or_more")):
        raise RuleError("a negated step takes no quantifier", f"{path}.negated")
    return Step(etype, tuple(conds), times, d.get("one_or_more", False), d.get("negated", False))


def _parse_action(obj: object) -> Action:
    d = _keys(obj, frozenset({"type", "slots", "payload"}), "action", "action")
    if d.get("type") not in DIRECTIVE_TYPES:
        raise RuleError(f"type must be one of {', '.join(DIRECTIVE_TYPES)}", "action.type")
    slots = d.get("slots")
    if slots is not None:
        if not isinstance(slots, list) or not 1 <= len(slots) <= MAX_SLOTS:
            raise RuleError(f"slots is a list of 1..{MAX_SLOTS} slot names", "action.slots")
        for i, s in enumerate(slots):
            ok = isinstance(s, str) and (s == EVENT_SLOT or (len(s) <= 64 and _SLOT_RE.match(s)))
            if not ok:
                raise RuleError(f"a slot name or {EVENT_SLOT!r}", f"action.slots[{i}]")
        slots = tuple(slots)
    payload = d.get("payload")
    if payload is not None:
        if not isinstance(payload, dict):
            raise RuleError("payload must be an object", "action.payload")
        try:
            size = len(msgspec.json.encode(payload))
        except (TypeError, ValueError) as e:
            raise RuleError(f"payload is not JSON: {e}", "action.payload") from None
        if size > MAX_PAYLOAD_BYTES:
            raise RuleError(f"payload over {MAX_PAYLOAD_BYTES} bytes", "action.payload")
    return Action(d["type"], slots, payload)


def parse_rule(rule_id: str, obj: object) -> Rule:
    """Validate a rule body and return the `Rule`, or raise `RuleError` naming the field."""
    allowed = frozenset({"pattern", "contiguity", "within_s", "cooldown_s", "action"})
    d = _keys(obj, allowed, "", "rule")
    raw = d.get("pattern")
    if not isinstance(raw, list) or not raw:
        raise RuleError("pattern must be a non-empty list of steps", "pattern")
    if len(raw) > MAX_STEPS:
        raise RuleError(f"at most {MAX_STEPS} steps", "pattern")
    steps = tuple(_parse_step(s, f"pattern[{i}]") for i, s in enumerate(raw))
    if steps[0].negated:
        raise RuleError("a pattern cannot start with a negated step", "pattern[0].negated")
    for i in range(1, len(steps)):
        if steps[i].negated and steps[i - 1].negated:
            raise RuleError("two negated steps in a row", f"pattern[{i}].negated")
    contiguity = d.get("contiguity", "relaxed")
    if contiguity not in ("relaxed", "strict"):
        raise RuleError("contiguity is relaxed or strict", "contiguity")
    within = _number(
        d.get("within_s", DEFAULT_WITHIN_S), "within_s", lo=0, hi=MAX_WITHIN_S, lo_open=True
    )
    if round(within * 1000) < 1:
        raise RuleError("must be at least 0.001", "within_s")
    cooldown = _number(d.get("cooldown_s", 0), "cooldown_s", lo=0, hi=MAX_COOLDOWN_S, lo_open=False)
    if "action" not in d:
        raise RuleError("action is required", "action")
    return Rule(rule_id, steps, _parse_action(d["action"]), contiguity, within, cooldown)


def _where_to_json(conds: tuple[Cond, ...]) -> dict[str, Any]:
    grouped: dict[str, dict[str, Any]] = {}
    for c in conds:
        value = list(c.value) if isinstance(c.value, tuple) else c.value
        grouped.setdefault(c.field, {})[c.op] = value
    return {k: ops["eq"] if list(ops) == ["eq"] else ops for k, ops in grouped.items()}


def rule_to_json(rule: Rule) -> dict[str, Any]:
    """Return the canonical JSON body of a rule (what GET /v1/triggers/{id} shows)."""
    pattern: list[dict[str, Any]] = []
    for s in rule.pattern:
        step: dict[str, Any] = {"type": s.type}
        if s.where:
            step["where"] = _where_to_json(s.where)
        if s.times != 1:
            step["times"] = s.times
        if s.one_or_more:
            step["one_or_more"] = True
        if s.negated:
            step["negated"] = True
        pattern.append(step)
    action: dict[str, Any] = {"type": rule.action.type}
    if rule.action.slots is not None:
        action["slots"] = list(rule.action.slots)
    if rule.action.payload is not None:
        action["payload"] = dict(rule.action.payload)
    return {
        "pattern": pattern,
        "contiguity": rule.contiguity,
        "within_s": rule.within_s,
        "cooldown_s": rule.cooldown_s,
        "action": action,
    }


def _getter(name: str) -> Callable[[Event], Any]:
    if name.startswith("props."):
        prop = name[6:]
        return lambda e: e.props.get(prop) if e.props else None
    return lambda e: getattr(e, name)


def _test(op: Op, ref: Any) -> Callable[[Any], bool]:
    if op == "eq":
        return lambda v: v is not None and v == ref
    if op == "ne":
        return lambda v: v is not None and v != ref
    if op == "in":
        refs = frozenset(ref)
        return lambda v: v is not None and v in refs
    cmp = {"lt": float.__lt__, "le": float.__le__, "gt": float.__gt__, "ge": float.__ge__}[op]
    fref = float(ref)
    return lambda v: isinstance(v, int | float) and cmp(float(v), fref)


def step_predicate(step: Step) -> Predicate:
    """Return a function telling whether an event matches a step (type and `where`)."""
    etype = step.type
    tests = [(_getter(c.field), _test(c.op, c.value)) for c in step.where]
    if not tests:
        return lambda e: e.type == etype
    return lambda e: e.type == etype and all(t(g(e)) for g, t in tests)


@dataclass(frozen=True, slots=True)
class Plan:
    """A rule compiled for matching: positive steps, the negations between them, windows."""

    order: int
    rule: Rule
    fp: int
    preds: tuple[Predicate, ...]  # positive steps only
    need: tuple[int, ...]
    loop: tuple[bool, ...]
    guard: tuple[Predicate | None, ...]  # the negation between step i-1 and step i
    trailing: Predicate | None
    strict: bool
    within_ms: int
    cooldown_ms: int
    types: frozenset[str]  # every event type a step mentions: other events cannot matter


def compile_rule(order: int, rule: Rule) -> Plan:
    """Return the matching plan of a rule; `order` fixes firing order among rules."""
    preds: list[Predicate] = []
    need: list[int] = []
    loop: list[bool] = []
    guard: list[Predicate | None] = []
    pending: Predicate | None = None
    for step in rule.pattern:
        if step.negated:
            pending = step_predicate(step)
            continue
        preds.append(step_predicate(step))
        need.append(1 if step.one_or_more else step.times)
        loop.append(step.one_or_more)
        guard.append(pending)
        pending = None
    return Plan(
        order,
        rule,
        rule.fingerprint,
        tuple(preds),
        tuple(need),
        tuple(loop),
        tuple(guard),
        pending,
        rule.contiguity == "strict",
        round(rule.within_s * 1000),
        round(rule.cooldown_s * 1000),
        frozenset(step.type for step in rule.pattern),
    )


class RuleSet:
    """Compiled rules indexed by the event type of their first step; build once per version."""

    def __init__(self, rules: Mapping[str, Rule]) -> None:
        self.rules = dict(rules)
        self.plans = {rid: compile_rule(i, r) for i, (rid, r) in enumerate(self.rules.items())}
        index: dict[str, list[Plan]] = {}
        for rid, plan in self.plans.items():
            index.setdefault(self.rules[rid].pattern[0].type, []).append(plan)
        self.by_start = {t: tuple(ps) for t, ps in index.items()}


def default_rules() -> dict[str, Rule]:
    """Return the built-in rules: pull-to-refresh, negative feedback, payment."""
    bodies: dict[str, dict[str, Any]] = {
        # A pull is an explicit request: refresh every slot (slots omitted = all).
        "default.pull_refresh": {
            "pattern": [{"type": "pull_refresh"}],
            "action": {"type": "refresh"},
        },
        # "Not interested" on an item: replace what that slot shows.
        "default.negative_feedback": {
            "pattern": [{"type": "feedback", "where": {"props.kind": "negative"}}],
            "action": {"type": "refresh", "slots": [EVENT_SLOT]},
        },
        # After paying, the services slot (bills, receipts, offers) is stale.
        "default.payment": {
            "pattern": [{"type": "payment"}],
            "action": {"type": "refresh", "slots": ["services"]},
        },
    }
    return {rid: parse_rule(rid, body) for rid, body in bodies.items()}
