"""The decision core: pure, no I/O, time comes in with the request.

`decide` is called by the HTTP handler and by the simulator's fast mode alike, so what
the simulator measures is what the service does. Order of rules (DESIGN.md):

1. pull-to-refresh always refreshes;
2. a pending `refresh` directive (from an event rule) refreshes its slots;
3. geo (zone change / left the coverage circle) — wired in by the space issue;
4. cooldown: never refresh twice within `min_interval_s`;
5. the intent policy (score >= threshold) — wired in by the time issue;
6. otherwise the fallback rule decides.

The fallback rule (also the `fixed` policy of an experiment's control arm): on `open`,
`return` or `timer`, refresh when no refresh is on record or the last one is at least
`fallback_interval_s` old; never on `scroll`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import msgspec

from refreshd import constants as C
from refreshd.schemas import DecideRequest, Directive, Event, Reason
from refreshd.state import UserState, add_events

__all__ = ["Decision", "DecisionLog", "Outcome", "Policy", "apply_events", "decide"]

FALLBACK_TRIGGERS = frozenset({"open", "return", "timer"})


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """Knobs of a decision; the experiment variant may override some of them."""

    min_interval_s: int = C.MIN_INTERVAL_S
    fallback_interval_s: int = C.FALLBACK_INTERVAL_S
    threshold: float = C.DEFAULT_THRESHOLD
    kind: Literal["intent", "fixed"] = "intent"


class Decision(msgspec.Struct, kw_only=True):
    refresh: bool
    reason: Reason
    next_check_s: int
    score: float | None = None
    threshold: float | None = None
    slots: list[str] | None = None
    degraded_reasons: list[str] = msgspec.field(default_factory=list)


class DecisionLog(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One row of `log:decisions`: what training and replay need to rebuild the opportunity."""

    decision_id: str
    user_id: str
    ts: int
    trigger: str
    refresh: bool
    reason: str
    degraded: bool
    score: float | None = None
    threshold: float | None = None
    model_version: str | None = None
    experiment: str | None = None
    variant: str | None = None
    lat: float | None = None
    lng: float | None = None
    tz_offset_min: int | None = None


class Outcome(msgspec.Struct):
    decision: Decision
    state: UserState
    log: DecisionLog


def _fallback(state: UserState, trigger: str, ts: int, policy: Policy) -> tuple[bool, int]:
    """Return (refresh?, seconds until the fallback rule would refresh)."""
    interval_ms = policy.fallback_interval_s * 1000
    last = state.last_refresh_ts
    elapsed_ms = None if last is None else max(0, ts - last)
    due = elapsed_ms is None or elapsed_ms >= interval_ms
    if trigger in FALLBACK_TRIGGERS and due:
        return True, policy.fallback_interval_s
    wait_ms = 0 if elapsed_ms is None else max(0, interval_ms - elapsed_ms)
    return False, max(policy.min_interval_s, min(C.NEXT_CHECK_S * 5, -(-wait_ms // 1000)))


def decide(
    state: UserState,
    req: DecideRequest,
    *,
    decision_id: str,
    directives: Sequence[Directive] = (),
    policy: Policy = Policy(),
    degraded_reasons: Sequence[str] = (),
) -> Outcome:
    """Decide whether the homepage refreshes now; return the decision, new state and log row."""
    ts = req.ts
    reasons = list(degraded_reasons)
    refresh_dirs = [d for d in directives if d.type == "refresh"]
    score: float | None = None
    threshold: float | None = None
    slots = req.slots
    if req.trigger == "pull":
        refresh, reason, next_check = True, "pull", policy.fallback_interval_s
    elif refresh_dirs:
        refresh, reason, next_check = True, "event", policy.fallback_interval_s
        wanted: set[str] = set()
        for d in refresh_dirs:
            if d.slots is None:
                wanted = set()
                break
            wanted.update(d.slots)
        slots = sorted(wanted) if wanted else req.slots
    elif (
        state.last_refresh_ts is not None
        and ts - state.last_refresh_ts < policy.min_interval_s * 1000
        and ts >= state.last_refresh_ts
    ):
        refresh, reason = False, "cooldown"
        next_check = max(1, -(-(state.last_refresh_ts + policy.min_interval_s * 1000 - ts) // 1000))
    else:
        if policy.kind == "intent":
            # No scorer is wired in yet: the documented fallback rule decides.
            reasons.append("no_model")
        refresh, next_check = _fallback(state, req.trigger, ts, policy)
        reason = "fallback"
    decision = Decision(
        refresh=refresh,
        reason=reason,  # type: ignore[arg-type]
        next_check_s=int(next_check),
        score=score,
        threshold=threshold,
        slots=slots if refresh else None,
        degraded_reasons=sorted(set(reasons)),
    )
    new_state = msgspec.structs.replace(
        state,
        version=state.version + 1,
        last_decision_ts=max(ts, state.last_decision_ts or 0),
        last_refresh_ts=max(ts, state.last_refresh_ts or 0) if refresh else state.last_refresh_ts,
        decisions=state.decisions + 1,
        refreshes=state.refreshes + (1 if refresh else 0),
    )
    log = DecisionLog(
        decision_id=decision_id,
        user_id=req.user_id,
        ts=ts,
        trigger=req.trigger,
        refresh=refresh,
        reason=reason,
        degraded=bool(decision.degraded_reasons),
        score=score,
        threshold=threshold,
        lat=req.lat,
        lng=req.lng,
        tz_offset_min=req.tz_offset_min,
    )
    return Outcome(decision, new_state, log)


def apply_events(state: UserState, events: Sequence[Event]) -> UserState:
    """Return the state with a batch of events merged into its recent window."""
    if not events:
        return state
    latest = max(e.ts for e in events)
    return msgspec.structs.replace(
        state,
        version=state.version + 1,
        recent=add_events(state.recent, list(events)),
        last_event_ts=max(latest, state.last_event_ts or 0),
        events=state.events + len(events),
    )
