"""The decision core: pure, no I/O, time comes in with the request.

`decide` is called by the HTTP handler and by the simulator's fast mode alike, so what
the simulator measures is what the service does. Order of rules (DESIGN.md):

1. pull-to-refresh always refreshes;
2. a pending `refresh` directive (from an event rule) refreshes its slots;
3. geo: the device left its coverage circle or changed zone (`geo_refresh`);
4. cooldown: never refresh twice within `min_interval_s`;
5. the intent policy: refresh when the model's score >= the variant's threshold;
6. otherwise (no model, scorer failed or timed out, or a `fixed` policy) the fallback rule.

The fallback rule (also the `fixed` policy of an experiment's control arm): on `open`,
`return` or `timer`, refresh when no refresh is on record or the last one is at least
`fallback_interval_s` old; never on `scroll`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import msgspec

from intent.events import Event, add_events
from intent.policy import decide_intent
from refreshd import constants as C
from refreshd.core.messages import DecideRequest, Directive, Reason
from refreshd.core.state import UserState

__all__ = ["Decision", "DecisionLog", "Outcome", "Policy", "apply_events", "decide", "needs_score"]

FALLBACK_TRIGGERS = frozenset({"open", "return", "timer"})


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """Knobs of a decision; the experiment variant may override some of them."""

    min_interval_s: int = C.MIN_INTERVAL_S
    fallback_interval_s: int = C.FALLBACK_INTERVAL_S
    threshold: float = C.DEFAULT_THRESHOLD
    kind: Literal["intent", "fixed"] = "intent"
    # Exploration traffic: the caller's `score` is a uniform draw, not a model's, so an intent
    # decision is a randomised refresh. Logged (`explore`) so training can tell the rows whose
    # refresh was independent of the user (intent.staleness measures what refreshing gains).
    explore: bool = False


DEFAULT_POLICY = Policy()


class Decision(msgspec.Struct, kw_only=True):
    refresh: bool
    reason: Reason
    next_check_s: int
    score: float | None = None
    threshold: float | None = None
    slots: list[str] | None = None
    degraded_reasons: list[str] = msgspec.field(default_factory=list)
    model_version: str | None = None


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
    received_ts: int | None = None  # server clock at decision time (point-in-time joins)
    last_refresh_ts: int | None = None  # before this decision (a feature's context)
    zone: int | None = None
    features: list[float] | None = None  # the vector the model saw (online/offline parity)
    explore: bool = False  # a randomised intent decision (Policy.explore)


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


def _in_cooldown(state: UserState, ts: int, policy: Policy) -> bool:
    last = state.last_refresh_ts
    return last is not None and last <= ts < last + policy.min_interval_s * 1000


def needs_score(
    state: UserState,
    req: DecideRequest,
    *,
    directives: Sequence[Directive] = (),
    policy: Policy = DEFAULT_POLICY,
    geo_refresh: bool = False,
) -> bool:
    """Return whether the intent score can change this decision (so it is worth computing)."""
    return (
        policy.kind == "intent"
        and req.trigger != "pull"
        and not geo_refresh
        and not any(d.type == "refresh" for d in directives)
        and not _in_cooldown(state, req.ts, policy)
    )


def decide(
    state: UserState,
    req: DecideRequest,
    *,
    decision_id: str,
    directives: Sequence[Directive] = (),
    policy: Policy = DEFAULT_POLICY,
    degraded_reasons: Sequence[str] = (),
    score: float | None = None,
    model_version: str | None = None,
    features: list[float] | None = None,
    geo_refresh: bool = False,
    zone: int | None = None,
    received_ts: int | None = None,
) -> Outcome:
    """Decide whether the homepage refreshes now; return the decision, new state and log row.

    `score` is the intent model's score for this opportunity (P(click) × the staleness gain when
    the model carries a curve; a uniform draw under `Policy.explore`; None: no model answered);
    `geo_refresh` says the device left its coverage circle or changed zone.
    """
    ts = req.ts
    reasons = list(degraded_reasons)
    refresh_dirs = [d for d in directives if d.type == "refresh"]
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
    elif geo_refresh:
        refresh, reason, next_check = True, "geo", policy.fallback_interval_s
    elif _in_cooldown(state, ts, policy):
        refresh, reason = False, "cooldown"
        assert state.last_refresh_ts is not None
        next_check = max(1, -(-(state.last_refresh_ts + policy.min_interval_s * 1000 - ts) // 1000))
    elif policy.kind == "intent" and score is not None:
        threshold = policy.threshold
        refresh, reason = decide_intent(score, threshold)
        next_check = policy.fallback_interval_s if refresh else C.NEXT_CHECK_S
    else:
        if policy.kind == "intent" and not reasons:
            reasons.append("no_model")  # the documented fallback rule decides instead
        refresh, next_check = _fallback(state, req.trigger, ts, policy)
        reason = "fallback"
    used_score = score if reason in ("intent", "no_intent") else None
    decision = Decision(
        refresh=refresh,
        reason=reason,  # type: ignore[arg-type]
        next_check_s=int(next_check),
        score=used_score,
        threshold=threshold,
        slots=slots if refresh else None,
        degraded_reasons=sorted(set(reasons)),
        model_version=model_version if used_score is not None else None,
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
        score=used_score,
        threshold=threshold,
        model_version=model_version if used_score is not None else None,
        lat=req.lat,
        lng=req.lng,
        tz_offset_min=req.tz_offset_min,
        received_ts=received_ts,
        last_refresh_ts=state.last_refresh_ts,
        zone=zone,
        features=features,
        explore=policy.explore and used_score is not None,
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
