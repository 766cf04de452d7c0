"""The decision ladder: walk the policy's nodes until one decides.

Each node reads the opportunity (the user's state, the request, the live directives, whether
geo asked for a refresh) and either decides or passes. The intent node is the one that may
need the model: the walk then stops and says so (`None`), the caller scores the features and
walks again with the score. Nodes before it are pure functions of the opportunity, so the
second walk reaches the intent node exactly as the first did; the caller computes a score
only when it can change the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import msgspec

from intent.policy import decide_intent
from refreshd import constants as C
from refreshd.core.messages import DecideRequest, Directive, Reason
from refreshd.core.policy import (
    DEFAULT_FALLBACK_TRIGGERS,
    CooldownNode,
    EventNode,
    FallbackNode,
    FrequencyCapNode,
    GeoNode,
    IntentNode,
    Ladder,
    PullNode,
    QuietHoursNode,
)
from refreshd.core.state import UserState

__all__ = ["FALLBACK_TRIGGERS", "NODE_OF_REASON", "Decision", "Opportunity", "Scored", "walk"]

FALLBACK_TRIGGERS = frozenset(DEFAULT_FALLBACK_TRIGGERS)  # a FallbackNode's default triggers
# The node that decides with each reason: a node names itself as the reason, except the intent
# node, whose "no" is `no_intent` (the metrics count decisions by both).
NODE_OF_REASON: dict[str, str] = {r: r for r in Reason.__args__} | {"no_intent": "intent"}  # type: ignore[attr-defined]
_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS


class Decision(msgspec.Struct, kw_only=True):
    refresh: bool
    reason: Reason
    next_check_s: int
    score: float | None = None
    threshold: float | None = None
    slots: list[str] | None = None
    degraded_reasons: list[str] = msgspec.field(default_factory=list)
    model_version: str | None = None
    explore: bool = False  # a randomised intent decision (exploration traffic)


class Scored(msgspec.Struct, frozen=True):
    """What the model said (score None: it did not answer, and `reasons` say why)."""

    score: float | None = None
    model_version: str | None = None
    reasons: tuple[str, ...] = ()


class Opportunity(msgspec.Struct, frozen=True):
    """One refresh opportunity as the nodes see it."""

    state: UserState
    req: DecideRequest
    directives: Sequence[Directive]  # live and not acknowledged by this request
    geo_refresh: bool = False
    # Exploration traffic: (the draw that decides, reported as the score) for users the
    # intent node may explore on; None when this decision is not exploration.
    explore: float | None = None


def walk(
    ladder: Ladder,
    opp: Opportunity,
    scored: Scored | None,
    *,
    degraded: Sequence[str] = (),
) -> Decision | None:
    """Return the decision of the first node that decides, or None: the intent node needs a
    score (`scored` is None) to go on."""
    reasons = list(degraded)
    for node in ladder.nodes:
        got = _NODES[type(node)](node, ladder, opp, scored, reasons)
        if got is _NEED:
            return None
        if got is not None:
            assert isinstance(got, Decision)
            got.degraded_reasons = sorted(set(reasons))
            return got
    raise AssertionError("a ladder ends with the fallback node, which always decides")


_NEED = object()
_Out = Decision | None | object


def _done(ladder: Ladder, reason: Reason, **kw: object) -> Decision:
    return Decision(refresh=True, reason=reason, next_check_s=ladder.interval_s, **kw)  # type: ignore[arg-type]


def _pull(
    node: PullNode, ladder: Ladder, opp: Opportunity, scored: Scored | None, reasons: list[str]
) -> _Out:
    if opp.req.trigger == "pull":
        return _done(ladder, "pull", slots=opp.req.slots)
    return None


def _event(
    node: EventNode, ladder: Ladder, opp: Opportunity, scored: Scored | None, reasons: list[str]
) -> _Out:
    wanted: set[str] | None = set()
    found = False
    for d in opp.directives:
        if d.type != "refresh":
            continue
        found = True
        if d.slots is None:
            wanted = None  # one directive for every slot: refresh what the device asked for
        elif wanted is not None:
            wanted.update(d.slots)
    if not found:
        return None
    return _done(ladder, "event", slots=sorted(wanted) if wanted else opp.req.slots)


def _geo(
    node: GeoNode, ladder: Ladder, opp: Opportunity, scored: Scored | None, reasons: list[str]
) -> _Out:
    return _done(ladder, "geo", slots=opp.req.slots) if opp.geo_refresh else None


def _cooldown(
    node: CooldownNode, ladder: Ladder, opp: Opportunity, scored: Scored | None, reasons: list[str]
) -> _Out:
    last, ts = opp.state.last_refresh_ts, opp.req.ts
    end = None if last is None else last + node.min_interval_s * 1000
    if last is None or end is None or not last <= ts < end:
        return None
    return Decision(refresh=False, reason="cooldown", next_check_s=max(1, -(-(end - ts) // 1000)))


def _cap(
    node: FrequencyCapNode,
    ladder: Ladder,
    opp: Opportunity,
    scored: Scored | None,
    reasons: list[str],
) -> _Out:
    ts, times = opp.req.ts, opp.state.refresh_times
    wait_ms = 0
    for cap, window in ((node.per_hour, _HOUR_MS), (node.per_day, _DAY_MS)):
        if cap is None:
            continue
        inside = [t for t in times if ts - window < t <= ts]
        if len(inside) >= cap:  # wait until enough of them leave the window
            wait_ms = max(wait_ms, inside[len(inside) - cap] + window - ts)
    if not wait_ms:
        return None
    return Decision(
        refresh=False,
        reason="frequency_cap",
        next_check_s=min(_HOUR_MS // 1000, max(1, -(-wait_ms // 1000))),
    )


def _quiet(
    node: QuietHoursNode,
    ladder: Ladder,
    opp: Opportunity,
    scored: Scored | None,
    reasons: list[str],
) -> _Out:
    local_ms = opp.req.ts + (opp.req.tz_offset_min or 0) * 60_000
    hour = (local_ms // _HOUR_MS) % 24
    start, end = node.start_hour, node.end_hour
    quiet = start <= hour < end if start < end else (hour >= start or hour < end)
    if not quiet:
        return None
    until_ms = ((end - hour) % 24) * _HOUR_MS - local_ms % _HOUR_MS
    return Decision(
        refresh=False,
        reason="quiet_hours",
        next_check_s=min(_HOUR_MS // 1000, max(1, -(-until_ms // 1000))),
    )


def _intent(
    node: IntentNode, ladder: Ladder, opp: Opportunity, scored: Scored | None, reasons: list[str]
) -> _Out:
    if ladder.kill_switch:
        reasons.append("kill_switch")  # the operator switched the model off: fallback decides
        return None
    threshold = node.threshold
    version: str | None
    if opp.explore is not None:
        score, version, threshold = opp.explore, "explore", 1.0 - node.explore_refresh_share
    elif scored is None:
        return _NEED
    elif scored.score is None or math.isnan(scored.score):
        reasons.extend(scored.reasons or ("no_model",))
        return None
    else:
        score, version = scored.score, scored.model_version
    refresh, reason = decide_intent(score, threshold)
    return Decision(
        refresh=refresh,
        reason=reason,
        next_check_s=ladder.interval_s if refresh else C.NEXT_CHECK_S,
        score=score,
        threshold=threshold,
        slots=opp.req.slots if refresh else None,
        model_version=version,
        explore=opp.explore is not None,
    )


def _fallback(
    node: FallbackNode, ladder: Ladder, opp: Opportunity, scored: Scored | None, reasons: list[str]
) -> _Out:
    interval_ms = node.interval_s * 1000
    last, ts, trigger = opp.state.last_refresh_ts, opp.req.ts, opp.req.trigger
    elapsed_ms = None if last is None else max(0, ts - last)
    if trigger in node.triggers and (elapsed_ms is None or elapsed_ms >= interval_ms):
        return Decision(
            refresh=True, reason="fallback", next_check_s=node.interval_s, slots=opp.req.slots
        )
    wait_ms = 0 if elapsed_ms is None else max(0, interval_ms - elapsed_ms)
    next_check = max(ladder.min_interval_s, min(C.NEXT_CHECK_S * 5, -(-wait_ms // 1000)))
    return Decision(refresh=False, reason="fallback", next_check_s=int(next_check))


_NODES: dict[type, Callable[..., _Out]] = {
    PullNode: _pull,
    EventNode: _event,
    GeoNode: _geo,
    CooldownNode: _cooldown,
    FrequencyCapNode: _cap,
    QuietHoursNode: _quiet,
    IntentNode: _intent,
    FallbackNode: _fallback,
}
