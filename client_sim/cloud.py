"""The service's request flows, in-process and synchronous, for fast mode.

`refreshd.service.Service` wraps these same pure calls in store round trips, locks and
metrics; here one user's state lives in a plain object and the clock is the simulated one.
Each flow mirrors its Service counterpart step for step:

- `events`: drop acknowledged directives, `engine.apply_events`, `triggers.feed` on the
  arm's rule set, queue what fired; answer with every live directive (piggybacked).
- `prepare` + `decide`: `triggers.advance`, the live directives, the features of
  `intent.features.compute` with the service's `Context`, `engine.needs_score`, then
  `engine.decide` with the score (which the caller computes in a batch: `prepare` says whether
  one is needed and with which features).

Two shortcuts are exact for the rule sets the simulator installs, and keep fast mode fast:
`feed` runs only when a batch holds an event type some rule mentions or the user has a partial
match open, and `advance` only when a partial match is open (otherwise both return the state
unchanged but for the matcher's sequence number and watermark, which only matter for events
that arrive out of order, and the device sends events in order).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import msgspec

from intent.events import Event
from intent.features import Context, compute
from refreshd import constants as RC
from refreshd.core import engine
from refreshd.core.matcher import Firing, advance, feed
from refreshd.core.messages import DecideRequest, Directive
from refreshd.core.rules import RuleSet
from refreshd.core.state import UserState

__all__ = ["Cloud", "CloudUser", "Prepared"]

_TTL_MS = RC.DIRECTIVE_TTL_S * 1000


@dataclasses.dataclass(slots=True)
class CloudUser:
    """What the service keeps for one user: state, pending directives, logs."""

    uid: str
    state: UserState = dataclasses.field(default_factory=UserState)
    pending: list[Directive] = dataclasses.field(default_factory=list)
    n_directives: int = 0
    n_batches: int = 0
    n_decisions: int = 0
    created: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # (id, created_ts)


@dataclasses.dataclass(slots=True)
class Prepared:
    """A decide request with everything computed before scoring."""

    req: DecideRequest
    live: list[Directive]
    features: list[float] | None
    needs_score: bool


class Cloud:
    """One arm's service: a policy, a rule set and optional training logs."""

    def __init__(
        self,
        policy: engine.Policy,
        rules: RuleSet,
        *,
        log: bool = False,
        model_version: str | None = None,
        keep_events: bool = True,
    ) -> None:
        self.policy = policy
        self.rules = rules
        self.rule_types = frozenset().union(*(p.types for p in rules.plans.values()))
        self.log = log
        self.model_version = model_version
        # A fixed-policy arm's decisions never read the recent-events window (only the intent
        # features do), so such an arm may skip merging events into it: same decisions, less work.
        self.keep_events = keep_events or policy.kind == "intent" or log
        self.decision_rows: list[dict[str, Any]] = []
        self.event_rows: list[dict[str, Any]] = []

    # --- helpers -------------------------------------------------------------------------------

    def _live(self, cu: CloudUser, ack: Sequence[str], now_ms: int) -> None:
        if cu.pending:
            acked = set(ack)
            cu.pending = [d for d in cu.pending if d.id not in acked and d.expires_ts > now_ms]

    def _queue(self, cu: CloudUser, fired: Sequence[Firing], now_ms: int) -> None:
        for f in fired:
            did = f"d{cu.n_directives}"
            cu.n_directives += 1
            cu.pending.append(f.directive(id=did, created_ts=now_ms, expires_ts=now_ms + _TTL_MS))
            cu.created.append((did, now_ms))
        excess = len(cu.pending) - RC.MAX_PENDING_DIRECTIVES
        if excess > 0:
            cu.pending = cu.pending[excess:]

    def _has_runs(self, cu: CloudUser) -> bool:
        rules = cu.state.match.rules
        return bool(rules) and any(rs.runs for rs in rules.values())

    # --- flows ---------------------------------------------------------------------------------

    def events(
        self, cu: CloudUser, events: list[Event], ack: Sequence[str], now_ms: int
    ) -> list[Directive]:
        """POST /v1/events: merge the batch, run the rules, return the live directives."""
        self._live(cu, ack, now_ms)
        state = engine.apply_events(cu.state, events) if self.keep_events else cu.state
        types = self.rule_types
        if any(e.type in types for e in events) or self._has_runs(cu):
            matched = feed(self.rules, cu.state.match, events, now_ms)
            state = msgspec.structs.replace(state, match=matched.state)
            self._queue(cu, matched.fired, now_ms)
        cu.state = state
        if self.log:
            batch = f"{cu.uid}-b{cu.n_batches}"
            for e in events:
                row = msgspec.to_builtins(e)
                row.update(user_id=cu.uid, batch_id=batch, received_ts=now_ms)
                self.event_rows.append(row)
        cu.n_batches += 1
        return list(cu.pending)

    def prepare(
        self, cu: CloudUser, req: DecideRequest, now_ms: int, *, features: bool
    ) -> Prepared:
        """Run the decide flow up to scoring; say whether a score can change the answer."""
        self._live(cu, req.ack or (), now_ms)
        if self._has_runs(cu):
            matched = advance(self.rules, cu.state.match, now_ms)
            cu.state = msgspec.structs.replace(cu.state, match=matched.state)
            self._queue(cu, matched.fired, now_ms)
        live = list(cu.pending)
        needs = engine.needs_score(cu.state, req, directives=live, policy=self.policy)
        feats = None
        if features and needs:
            ctx = Context(
                trigger=req.trigger,
                tz_offset_min=req.tz_offset_min,
                zone=None,
                last_refresh_ts=cu.state.last_refresh_ts,
            )
            feats = compute(cu.state.recent, req.ts, ctx)
        return Prepared(req, live, feats, needs)

    def decide(
        self, cu: CloudUser, prep: Prepared, now_ms: int, score: float | None
    ) -> tuple[engine.Decision, list[Directive]]:
        """Finish the decide flow with the score; return the decision and live directives."""
        did = f"{cu.uid}-d{cu.n_decisions}"
        cu.n_decisions += 1
        outcome = engine.decide(
            cu.state,
            prep.req,
            decision_id=did,
            directives=prep.live,
            policy=self.policy,
            score=score if prep.needs_score else None,
            model_version=self.model_version,
            received_ts=now_ms,
        )
        cu.state = outcome.state
        if self.log:
            self.decision_rows.append(msgspec.to_builtins(outcome.log))
        return outcome.decision, list(cu.pending)
