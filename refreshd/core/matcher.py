"""Incremental, per-user matching of event rules: a small Flink-CEP-like NFA.

Pure: no I/O and no clock; the caller passes `now_ms`. The rule model, its validation and its
compiled form (`RuleSet`) live in `refreshd.rules`; the names callers need are re-exported here.

How a rule matches (the choices, one by one):

- A *run* (partial match) starts at every event matching the first step. Runs are
  deterministic: an event a run can take, it takes (Flink's "relaxed" skip-till-next-match;
  there is no branching "skip it too").
- `relaxed` contiguity ignores events a run cannot take; `strict` kills the run on any event it
  cannot take (every event of the user counts, whatever its type). `times: n` repeats the step
  n times under the rule's contiguity. Once every positive step is matched, only the trailing
  negation (if any) matters, under either contiguity.
- `one_or_more` extends the run with every further matching event; an event that also matches
  the next step advances instead, so the pattern can always complete. As the last step (no
  trailing negation) it completes at its first event, as Flink's oneOrMore does under
  skip-past-last-event.
- A negated step between steps A and B kills a run that has finished A (or, for `A+`, taken at
  least one A) and not yet taken B, when a matching event arrives. The negation is checked
  before the event is offered to the run. A trailing negated step keeps a complete run waiting:
  a matching event kills it; once `first_ts + within_s` is reached (by a later event's ts or by
  `advance(now_ms)`) it fires, with `fired_ts` = that deadline.
- Window: a run may only hold events with `max(ts) - min(ts) < within_s`; a run whose window
  has passed is dropped (or fired, see above) when an event or `advance` shows that it has.
- After a match, every partial match of the rule that started at or before the match's last
  event is dropped: Flink's SKIP_PAST_LAST_EVENT. That includes every partial match sharing an
  event with the match (what the rule contract promises: one burst fires once) and also the few
  that started inside the match's span without sharing an event; it keeps per-run state O(1)
  instead of a list of event ids.
- `cooldown_s` (per user, per rule, in event time): a match inside the cooldown still consumes
  its events but fires nothing and is counted in `suppressed`, as is a match whose action
  slots were only `$event.slot` and the event had no slot (refreshing *all* slots instead
  would be a surprise).
- Events in one call are processed sorted by ts (stable). The *watermark* is the largest ts
  processed. An event older than `watermark - ALLOWED_LATENESS_MS` is ignored and counted
  (`late`). A less late event is processed in arrival order, as if it had arrived now: it is
  not re-ordered before events already processed, so a run that already fired or expired
  does not see it (only its ts is used in the window arithmetic). Likewise a match fired by
  `advance` stays fired if a negating event with an earlier ts shows up afterwards.
- Events are identified by a per-user sequence number (`UserMatchState.seq`), since event
  bodies carry no id.
- State is bounded: `MAX_RUNS_PER_RULE` and `MAX_RUNS_PER_USER`; past either, the oldest run
  goes. A stored rule state whose rule was deleted or redefined (fingerprint changed) is
  dropped on the next call.

Build a `RuleSet` once per rule-set version (passing a plain mapping compiles it per call): it
indexes rules by the type of their first step, so an event only touches the rules that could
start on it plus this user's rules with live runs whose steps mention its type (all of them
for strict rules).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import msgspec

from intent.events import Event
from refreshd.core.messages import Directive, DirectiveType
from refreshd.core.rules import (
    EVENT_SLOT,
    Plan,
    Rule,
    RuleError,
    RuleSet,
    default_rules,
    parse_rule,
    rule_to_json,
)

__all__ = [
    "ALLOWED_LATENESS_MS",
    "MAX_RUNS_PER_RULE",
    "MAX_RUNS_PER_USER",
    "Firing",
    "MatchResult",
    "Rule",
    "RuleError",
    "RuleSet",
    "RuleState",
    "Run",
    "UserMatchState",
    "advance",
    "default_rules",
    "feed",
    "next_deadline",
    "parse_rule",
    "rule_to_json",
]

# Devices send events in batches that can overtake each other on retries; a minute covers
# a retried batch without letting a days-old offline buffer rewrite recent matches.
ALLOWED_LATENESS_MS = 60_000
# Relaxed runs waiting at the same step take the same future events, so beyond a handful they
# are redundant; 16 keeps a chatty user's burst matchable and one rule's state < 1 KiB.
MAX_RUNS_PER_RULE = 16
# Caps the matcher's share of the user's state blob (~40 B per run, ~10 KiB) whatever the
# number of rules, so one user's GET/SET stays small.
MAX_RUNS_PER_USER = 256


class Run(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A partial match: waiting at positive step `step` having taken `count` of its events."""

    step: int  # == number of positive steps: complete, waiting out a trailing negation
    count: int
    taken: int  # events taken so far, all steps
    first_ts: int  # earliest ts taken (the window starts here)
    last_ts: int  # latest ts taken
    first_seq: int
    last_seq: int
    slot: str | None = None  # slot of the last event taken, for "$event.slot"


class RuleState(msgspec.Struct, array_like=True):
    """One rule's state for one user."""

    fp: int  # the rule's fingerprint when this state was built
    runs: list[Run] = []
    last_fired_ts: int | None = None


class UserMatchState(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Everything the matcher keeps for one user; msgpack-serialisable."""

    seq: int = 0
    watermark: int | None = None
    rules: dict[str, RuleState] = {}


class Firing(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A rule that fired, with its action resolved into directive fields."""

    rule_id: str
    type: DirectiveType
    fired_ts: int
    first_ts: int
    last_ts: int
    count: int
    slots: list[str] | None = None
    payload: dict[str, Any] | None = None

    def directive(self, *, id: str, created_ts: int, expires_ts: int) -> Directive:
        """Return the directive to queue for the device."""
        return Directive(
            id=id,
            type=self.type,
            created_ts=created_ts,
            expires_ts=expires_ts,
            slots=self.slots,
            payload=self.payload,
            source=f"rule:{self.rule_id}",
        )


class MatchResult(NamedTuple):
    state: UserMatchState
    fired: list[Firing]
    late: int = 0  # events ignored as too late
    suppressed: int = 0  # matches that fired nothing (cooldown, unresolvable slot)


def _satisfied(plan: Plan, r: Run) -> bool:
    m = len(plan.preds)
    return r.step == m or (r.step == m - 1 and plan.loop[-1] and r.count >= 1)


class _Work:
    """One call's mutable copy of a user's state."""

    def __init__(self, rs: RuleSet, state: UserMatchState) -> None:
        self.rs = rs
        self.seq = state.seq
        self.wm = state.watermark
        self.runs: dict[str, list[Run]] = {}
        self.fired_at: dict[str, int] = {}
        for rid, st in state.rules.items():
            plan = rs.plans.get(rid)
            if plan is None or plan.fp != st.fp:
                continue  # rule deleted or redefined: its step indices mean nothing now
            if st.runs:
                self.runs[rid] = list(st.runs)
            if st.last_fired_ts is not None:
                self.fired_at[rid] = st.last_fired_ts
        self.fired: list[Firing] = []
        self.suppressed = 0
        self.deadline = self._next_deadline()

    def _next_deadline(self) -> float:
        plans = self.rs.plans
        return min(
            (r.first_ts + plans[rid].within_ms for rid, runs in self.runs.items() for r in runs),
            default=math.inf,
        )

    def event(self, e: Event) -> None:
        s = self.seq
        self.seq += 1
        self.wm = e.ts if self.wm is None else max(self.wm, e.ts)
        mark = len(self.fired)
        if e.ts >= self.deadline:
            self._expire_all(e.ts)
        # A relaxed rule's runs ignore events of types its steps never mention; a strict
        # rule's runs must see every event.
        etype, plans = e.type, self.rs.plans
        touched = [p for p in map(plans.__getitem__, self.runs) if p.strict or etype in p.types]
        touched += [p for p in self.rs.by_start.get(etype, ()) if p.rule.id not in self.runs]
        for plan in touched:
            self._event(plan, e, s)
        self._sort_from(mark)
        self._cap()

    def advance(self, now_ms: int) -> None:
        mark = len(self.fired)
        self._expire_all(now_ms)
        self._sort_from(mark)

    def _expire_all(self, now: int) -> None:
        for rid in list(self.runs):
            plan = self.rs.plans[rid]
            self._store(plan, self._expire(plan, self.runs[rid], now))
        self.deadline = self._next_deadline()

    def state(self) -> UserMatchState:
        rules: dict[str, RuleState] = {}
        plans = self.rs.plans
        for rid in sorted(self.runs.keys() | self.fired_at.keys(), key=lambda r: plans[r].order):
            last, cd = self.fired_at.get(rid), plans[rid].cooldown_ms
            # A firing older than any processable event's ts can no longer suppress anything.
            wm = self.wm
            if last is not None and wm is not None and wm - ALLOWED_LATENESS_MS - last >= cd:
                last = None
            runs = self.runs.get(rid, [])
            if runs or last is not None:
                rules[rid] = RuleState(plans[rid].fp, runs, last)
        return UserMatchState(seq=self.seq, watermark=self.wm, rules=rules)

    def _sort_from(self, mark: int) -> None:
        # Firings of one event/sweep in a fixed order whatever the dict order of the state.
        if len(self.fired) - mark > 1:
            order = self.rs.plans
            self.fired[mark:] = sorted(
                self.fired[mark:], key=lambda f: (f.fired_ts, order[f.rule_id].order)
            )

    def _store(self, plan: Plan, runs: list[Run]) -> None:
        if runs:
            self.runs[plan.rule.id] = runs
        else:
            self.runs.pop(plan.rule.id, None)

    def _cap(self) -> None:
        if len(self.runs) * MAX_RUNS_PER_RULE <= MAX_RUNS_PER_USER:
            return  # cannot be over the cap: skip counting
        plans = self.rs.plans
        total = sum(len(v) for v in self.runs.values())
        while total > MAX_RUNS_PER_USER:
            oldest = min(self.runs, key=lambda rid: (self.runs[rid][0].first_seq, plans[rid].order))
            self._store(self.rs.plans[oldest], self.runs[oldest][1:])
            total -= 1

    def _expire(self, plan: Plan, runs: list[Run], now: int) -> list[Run]:
        out: list[Run] = []
        cut = -1
        for r in runs:
            if r.first_seq <= cut:
                continue
            deadline = r.first_ts + plan.within_ms
            if deadline > now:
                out.append(r)
            elif plan.trailing is not None and _satisfied(plan, r):
                self._fire(plan, r, deadline)
                cut = r.last_seq
                out = []  # every earlier run started before the match's last event
        return out

    def _event(self, plan: Plan, e: Event, s: int) -> None:
        runs = self.runs.get(plan.rule.id, ())  # already expired to e.ts by `event`
        starts = plan.preds[0](e)
        if not runs and not starts:
            return
        out: list[Run] = []
        done: Run | None = None
        for r in runs:
            nr, complete = self._apply(plan, r, e, s)
            if complete and done is None:
                done = nr
            elif nr is not None and not complete:
                out.append(nr)
        if starts:
            fresh = Run(0, 0, 0, e.ts, e.ts, s, s)
            nr, complete = self._take(plan, fresh, e, s, 0)
            if complete and done is None:
                done = nr
            elif not complete:
                out.append(nr)
        if done is not None:
            self._fire(plan, done, done.last_ts)
            out = []  # skip past last event: every run started at or before this event
        out = out[-MAX_RUNS_PER_RULE:]
        self._store(plan, out)
        if out:  # a late event can pull a run's window start earlier
            earliest = min(r.first_ts for r in out) + plan.within_ms
            self.deadline = min(self.deadline, earliest)

    def _apply(self, plan: Plan, r: Run, e: Event, s: int) -> tuple[Run | None, bool]:
        m = len(plan.preds)
        i = r.step
        if i == m:  # complete, waiting out the trailing negation
            assert plan.trailing is not None
            return (None, False) if plan.trailing(e) else (r, False)
        guard = plan.guard[i]
        if r.count == 0 and guard is not None and guard(e):
            return None, False
        fits = max(r.last_ts, e.ts) - min(r.first_ts, e.ts) < plan.within_ms
        if plan.loop[i] and r.count >= 1:
            after = plan.guard[i + 1] if i + 1 < m else plan.trailing
            if after is not None and after(e):
                return None, False
            if fits and i + 1 < m and plan.preds[i + 1](e):
                return self._take(plan, r, e, s, i + 1)
            if fits and plan.preds[i](e):
                return self._take(plan, r, e, s, i)
            if i + 1 == m:  # an open final loop is already a match; strict only closes it
                return (msgspec.structs.replace(r, step=m, count=0) if plan.strict else r), False
            return (None if plan.strict else r), False
        if fits and plan.preds[i](e):
            return self._take(plan, r, e, s, i)
        return (None if plan.strict else r), False

    @staticmethod
    def _take(plan: Plan, r: Run, e: Event, s: int, j: int) -> tuple[Run, bool]:
        m = len(plan.preds)
        count = r.count + 1 if j == r.step else 1
        step = j
        complete = False
        if plan.loop[j]:
            complete = j == m - 1 and plan.trailing is None
        elif count == plan.need[j]:
            step, count = j + 1, 0
            complete = step == m and plan.trailing is None
        lo, hi = min(r.first_ts, e.ts), max(r.last_ts, e.ts)
        return Run(step, count, r.taken + 1, lo, hi, r.first_seq, s, e.slot), complete

    def _fire(self, plan: Plan, r: Run, fired_ts: int) -> None:
        rid = plan.rule.id
        last = self.fired_at.get(rid)
        if plan.cooldown_ms and last is not None and fired_ts - last < plan.cooldown_ms:
            self.suppressed += 1
            return
        action = plan.rule.action
        slots: list[str] | None = None
        if action.slots is not None:
            slots = []
            for name in action.slots:
                name_or_none = r.slot if name == EVENT_SLOT else name
                if name_or_none is not None and name_or_none not in slots:
                    slots.append(name_or_none)
            if not slots:
                self.suppressed += 1
                return
        if plan.cooldown_ms:
            self.fired_at[rid] = fired_ts
        payload = dict(action.payload) if action.payload is not None else None
        self.fired.append(
            Firing(
                rule_id=rid,
                type=action.type,
                fired_ts=fired_ts,
                first_ts=r.first_ts,
                last_ts=r.last_ts,
                count=r.taken,
                slots=slots,
                payload=payload,
            )
        )


def _ruleset(rules: RuleSet | Mapping[str, Rule]) -> RuleSet:
    return rules if isinstance(rules, RuleSet) else RuleSet(rules)


def feed(
    rules: RuleSet | Mapping[str, Rule],
    state: UserMatchState,
    events: Iterable[Event],
    now_ms: int,
) -> MatchResult:
    """Match a batch of one user's events, then `advance` to `now_ms`; the input is not mutated."""
    rs = _ruleset(rules)
    events = list(events)
    if not state.rules and not any(e.type in rs.by_start for e in events):
        return _skip(state, events)
    work = _Work(rs, state)
    late = 0
    for e in sorted(events, key=lambda ev: ev.ts):
        if work.wm is not None and e.ts < work.wm - ALLOWED_LATENESS_MS:
            late += 1
            continue
        work.event(e)
    work.advance(now_ms)
    return MatchResult(work.state(), work.fired, late, work.suppressed)


def _skip(state: UserMatchState, events: list[Event]) -> MatchResult:
    """`feed` for a user with no open match and a batch no rule starts with: the same result
    as the full walk (sequence numbers and watermark move, nothing else), without it."""
    wm = state.watermark
    limit = None if wm is None else wm - ALLOWED_LATENESS_MS
    taken = [e.ts for e in events if limit is None or e.ts >= limit]
    if taken:
        wm = max(taken) if wm is None else max(wm, *taken)
    state = UserMatchState(seq=state.seq + len(taken), watermark=wm)
    return MatchResult(state, [], len(events) - len(taken), 0)


def next_deadline(rules: RuleSet, state: UserMatchState) -> int | None:
    """Return when the earliest waiting trailing-negation match fires, if any (for sweeps)."""
    due: int | None = None
    for rid, rs in state.rules.items():
        plan = rules.plans.get(rid)
        if plan is None or plan.trailing is None or plan.fp != rs.fp:
            continue
        for r in rs.runs:
            if _satisfied(plan, r):
                t = r.first_ts + plan.within_ms
                due = t if due is None else min(due, t)
    return due


def advance(rules: RuleSet | Mapping[str, Rule], state: UserMatchState, now_ms: int) -> MatchResult:
    """Fire trailing-negation matches whose window closed by `now_ms`; drop expired runs."""
    if not state.rules:
        return MatchResult(state, [], 0, 0)  # nothing open, nothing fired: nothing to do
    work = _Work(_ruleset(rules), state)
    work.advance(now_ms)
    return MatchResult(work.state(), work.fired, 0, work.suppressed)
