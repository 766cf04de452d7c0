"""Fast mode's service: the service's own request flows on the memory store, in-process.

Each arm is one `Cloud`: a `MemoryStore` holding its users' states and directives, and the
`refreshd.core.flow.Config` it decides with (the rules, the arm's policy document, fences when
the scenario has them). A device's contact runs exactly what `refreshd.live.service` runs —
`flow.events`, `flow.prepare_decide` then `flow.finish_decide` — and commits the effects to the
store; only the clock (virtual), the ids (counters) and the scoring (batched across devices by
`client_sim.timeexp.drive`) differ. The differential test (tests/e2e/test_differential.py)
checks that the service over HTTP and this shell answer the same requests the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import msgspec

from geo import FenceIndex
from intent.events import Event
from refreshd.core import flow
from refreshd.core.ladder import Scored
from refreshd.core.messages import (
    DecideRequest,
    DecideResponse,
    Directive,
    EventsRequest,
    EventsResponse,
    LocationRequest,
    LocationResponse,
)
from refreshd.core.policy import IntentNode, PolicyDoc
from refreshd.core.rules import RuleSet
from refreshd.core.state import UserState
from refreshd.store.memory import MemoryStore
from refreshd.store.protocol import Commit

__all__ = ["Cloud", "CloudUser"]


@dataclasses.dataclass(slots=True)
class CloudUser:
    """A device's handle on its user: the id and the counters its ids are made from."""

    uid: str
    n_batches: int = 0
    n_decisions: int = 0
    created: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # (id, created_ts)


class Cloud:
    """One arm's service: a memory store, a policy document, a rule set, optional logs."""

    def __init__(
        self,
        policy: PolicyDoc,
        rules: RuleSet,
        *,
        log: bool = False,
        model_version: str | None = None,
        fences: FenceIndex | None = None,
        window: bool | None = None,
        config: flow.Config | None = None,
    ) -> None:
        # Logs only where asked (the training cohort), without feature vectors (the dataset
        # recomputes them from the events); the recent-events window where the policy reads it
        # (`window`: the warm-up keeps it for the arms that start from it); `config`: decide
        # with a service's whole snapshot (experiments too) instead.
        if window is None:
            window = log or any(isinstance(n, IntentNode) for n in policy.nodes)
        self.config = config or flow.Config(
            rules=rules, fences=fences, policy=policy, logs=log, log_features=False, window=window
        )
        self.store = MemoryStore()
        self.model_version = model_version
        self.decision_rows: list[dict[str, Any]] = []
        self.event_rows: list[dict[str, Any]] = []

    def seed(self, uid: str, state: UserState, directives: Sequence[Directive]) -> None:
        """Start a user where another arm left them (the warm-up day)."""
        self.store.users[uid] = (state.version, state)
        self.store.directives[uid] = {d.id: d for d in directives}

    def snapshot(self, uid: str) -> tuple[UserState, list[Directive]]:
        return self.store.load_now(uid)

    def _loaded(self, uid: str) -> flow.Loaded:
        return flow.Loaded(*self.store.load_now(uid))

    def _commit(self, cu: CloudUser, expected: int, e: flow.Effects, now_ms: int) -> str:
        result = self.store.commit_now(
            Commit(
                uid=cu.uid,
                expected_version=expected,
                state=e.state,
                now_ms=now_ms,
                ack_ids=e.delete_ids,
                new_directives=e.new_directives,
                batch_id=e.batch_id,
                stat_incrs=e.stat_incrs,
            )
        )
        assert result.status != "conflict", "one thread, one device per user: no races"
        if result.status == "ok":
            cu.created.extend((d.id, d.created_ts) for d in e.new_directives)
            if self.config.logs:
                self.decision_rows.extend(msgspec.to_builtins(r) for r in e.decision_logs)
                self.event_rows.extend(e.event_logs)
        return result.status

    def events(
        self,
        cu: CloudUser,
        events: list[Event],
        ack: Sequence[str],
        now_ms: int,
        *,
        batch_id: str | None = None,
    ) -> EventsResponse:
        """POST /v1/events (a batch id of the device's own numbering unless given)."""
        if batch_id is None:
            batch_id = f"{cu.uid}-b{cu.n_batches}"
            cu.n_batches += 1
        req = EventsRequest(user_id=cu.uid, batch_id=batch_id, events=events, ack=list(ack) or None)
        loaded = self._loaded(cu.uid)
        out = flow.events(loaded, req, self.config, now_ms=now_ms)
        status = self._commit(cu, loaded.state.version, out.effects, now_ms)
        answer = out.answer if status == "ok" else out.duplicate
        assert answer is not None
        return answer

    def prepare(self, cu: CloudUser, req: DecideRequest, now_ms: int) -> flow.DecidePlan:
        """POST /v1/decide up to the score: the plan says whether one is needed."""
        did = f"{cu.uid}-d{cu.n_decisions}"
        cu.n_decisions += 1
        return flow.prepare_decide(
            self._loaded(cu.uid), req, self.config, now_ms=now_ms, decision_id=did
        )

    def decide(self, cu: CloudUser, plan: flow.DecidePlan, score: float | None) -> DecideResponse:
        """Finish POST /v1/decide with the score (None: the model did not answer)."""
        scored = None
        if plan.needs_score:
            scored = Scored(
                score=score,
                model_version=self.model_version if score is not None else None,
                reasons=() if score is not None else ("no_model",),
            )
        out = flow.finish_decide(plan, scored)
        self._commit(cu, plan.expected_version, out.effects, plan.now_ms)
        return out.answer

    def location(self, cu: CloudUser, req: LocationRequest, now_ms: int) -> LocationResponse:
        """POST /v1/location."""
        loaded = self._loaded(cu.uid)
        out = flow.location(loaded, req, self.config, now_ms=now_ms)
        self._commit(cu, loaded.state.version, out.effects, now_ms)
        return out.answer
