"""The I/O shell around the engine: load state, call the engine, commit atomically."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable, Sequence

import msgspec

from geo import Fix, LocateResult, locate
from intent.features import Context, compute
from refreshd import constants as C
from refreshd.core import engine
from refreshd.core.errors import Conflict, InvalidValue, StoreUnavailable
from refreshd.core.exposure import Increment, choose, policy_for, record_decision, record_events
from refreshd.core.matcher import advance, feed
from refreshd.core.messages import (
    CoverageOut,
    DecideRequest,
    DecideResponse,
    Directive,
    DirectiveRequest,
    EventsRequest,
    EventsResponse,
    Exposure,
    LocationRequest,
    LocationResponse,
    TransitionOut,
)
from refreshd.core.state import UserState
from refreshd.live.batcher import MicroBatcher, ScoringUnavailable
from refreshd.live.expbook import ExperimentBook
from refreshd.live.fencebook import FenceBook
from refreshd.live.flows import UserFlows, check_ts, new_id
from refreshd.live.registry import ModelRegistry
from refreshd.live.rulebook import RuleBook
from refreshd.metrics import Metrics
from refreshd.settings import Settings
from refreshd.store.protocol import Commit, Store

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


def validate_decide(req: DecideRequest, now_ms: int) -> None:
    check_ts(req.ts, now_ms, "ts")
    if (req.lat is None) != (req.lng is None):
        raise InvalidValue(
            "lat and lng must be given together", field="lat" if req.lat is None else "lng"
        )


def validate_events(req: EventsRequest, now_ms: int) -> None:
    for i, event in enumerate(req.events):
        check_ts(event.ts, now_ms, f"events[{i}].ts")


# Exploration decisions refresh when a uniform draw clears this: a fair coin.
EXPLORE_THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class Scored:
    """What the intent model said about one opportunity (nothing, when it was not asked)."""

    score: float | None = None
    model_version: str | None = None
    features: list[float] | None = None
    reasons: list[str] = dataclasses.field(default_factory=list)


class Service(UserFlows):
    """Request flows shared by every handler: decide, events, directives."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        metrics: Metrics,
        clock: Callable[[], int],
        rulebook: RuleBook | None = None,
        experiments: ExperimentBook | None = None,
        registry: ModelRegistry | None = None,
        fences: FenceBook | None = None,
    ) -> None:
        super().__init__(store, settings, metrics, clock)
        self.rulebook = rulebook or RuleBook()
        self.experiments = experiments or ExperimentBook()
        self.registry = registry or ModelRegistry()
        self.fences = fences or FenceBook()
        self.batcher = MicroBatcher(
            lambda: self.registry.model,
            max_batch=settings.score_batch_max,
            max_wait_ms=settings.score_batch_wait_ms,
        )
        self.policy = engine.Policy(
            min_interval_s=settings.min_interval_s,
            fallback_interval_s=settings.fallback_interval_s,
            threshold=settings.threshold,
        )
        self._explore_rng = random.Random()

    async def decide(self, req: DecideRequest) -> DecideResponse:
        """Decide for one opportunity; degrade to the fallback rule when the store is down."""
        validate_decide(req, self.clock())
        self._limit(req.user_id)
        async with self.locks.hold(req.user_id):
            return await self._decide(req)

    async def _decide(self, req: DecideRequest) -> DecideResponse:
        now_ms = self.clock()
        decision_id = new_id()
        acks = list(dict.fromkeys(req.ack or ()))
        for _attempt in range(C.CAS_RETRIES):
            try:
                state, stored = await self._load(req.user_id, now_ms, _attempt)
            except StoreUnavailable:
                self.metrics.store_errors.labels("load").inc()
                return self._degraded_decision(req, decision_id)
            pending, expired = self._split(stored, now_ms)
            # Trailing "not followed by" rules whose window closed fire on this contact.
            matched = advance(self.rulebook.ruleset, state.match, now_ms)
            state = msgspec.structs.replace(state, match=matched.state)
            new_dirs = self._directives(matched.fired, now_ms)
            geo = self._decide_fix(state, req)
            if geo is not None:
                state = msgspec.structs.replace(state, geo=geo.new_geo_state)
            live = [d for d in pending if d.id not in acks] + new_dirs
            chosen = choose(self.experiments.experiments, req.user_id)
            policy = self.policy
            if chosen is not None:
                exp_id, cfg, assignment = chosen
                variant = assignment.variant or ""
                policy = policy_for(policy, cfg, variant)
            elif self._explores(policy):
                policy = dataclasses.replace(policy, explore=True, threshold=EXPLORE_THRESHOLD)
            scored = await self._score(state, req, live, policy, geo is not None and geo.refresh)
            outcome = engine.decide(
                state,
                req,
                decision_id=decision_id,
                directives=live,
                policy=policy,
                degraded_reasons=scored.reasons,
                score=scored.score,
                model_version=scored.model_version,
                features=scored.features,
                received_ts=now_ms,
                geo_refresh=geo is not None and geo.refresh,
                zone=int(state.geo.zone) if state.geo is not None else None,
            )
            incs: list[Increment] = []
            exposure: Exposure | None = None
            if chosen is not None:
                exp_state, incs = record_decision(
                    outcome.state.exp, exp_id, variant, req.ts, outcome.decision.refresh
                )
                outcome = engine.Outcome(
                    outcome.decision,
                    msgspec.structs.replace(outcome.state, exp=exp_state),
                    msgspec.structs.replace(outcome.log, experiment=exp_id, variant=variant),
                )
                exposure = Exposure(exp_id, variant)
            commit = Commit(
                uid=req.user_id,
                expected_version=state.version,
                state=outcome.state,
                now_ms=now_ms,
                ack_ids=acks + expired + self._evict(pending, acks, new_dirs),
                new_directives=new_dirs,
                decision_logs=[_json.encode(outcome.log)],
                stat_incrs=incs,
            )
            try:
                result = await self._commit(commit)
            except StoreUnavailable:
                self.metrics.store_errors.labels("commit").inc()
                return self._degraded_decision(req, decision_id)
            if result.status == "conflict":
                await self._backoff(_attempt)
                continue
            self._count_acks(pending, acks, expired)
            await self._after_commit(req.user_id, matched, new_dirs, outcome.state.match)
            return self._response(decision_id, outcome.decision, result.directives, exposure)
        raise Conflict("too many concurrent updates for this user; retry", field="user_id")

    def _explores(self, policy: engine.Policy) -> bool:
        """Draw whether this decision is exploration traffic (`Settings.explore_share`)."""
        share = self.settings.explore_share
        return policy.kind == "intent" and share > 0 and self._explore_rng.random() < share

    async def _score(
        self,
        state: UserState,
        req: DecideRequest,
        directives: Sequence[Directive],
        policy: engine.Policy,
        geo_refresh: bool = False,
    ) -> Scored:
        """Compute the opportunity's features; score them when the score can matter."""
        if req.trigger == "pull":
            return Scored()
        ctx = Context(
            trigger=req.trigger,
            tz_offset_min=req.tz_offset_min,
            zone=int(state.geo.zone) if state.geo is not None else None,
            last_refresh_ts=state.last_refresh_ts,
        )
        features = compute(state.recent, req.ts, ctx)
        if not engine.needs_score(
            state, req, directives=directives, policy=policy, geo_refresh=geo_refresh
        ):
            return Scored(features=features)
        if policy.explore:  # exploration traffic: a coin flip stands in for the model
            return Scored(
                score=self._explore_rng.random(), model_version="explore", features=features
            )
        try:
            async with asyncio.timeout(self.settings.score_timeout_ms / 1000):
                score, version = await self.batcher.score(features)
        except ScoringUnavailable:
            cause = "no_model" if self.registry.model is None else "scorer_failed"
            return Scored(features=features, reasons=[cause])
        except TimeoutError:
            return Scored(features=features, reasons=["scorer_timeout"])
        return Scored(score=score, model_version=version, features=features)

    def _decide_fix(self, state: UserState, req: DecideRequest) -> LocateResult | None:
        """Treat a decide request's position as a fix (its accuracy is not reported)."""
        if req.lat is None or req.lng is None:
            return None
        fix = Fix(lat=req.lat, lng=req.lng, accuracy_m=C.DECIDE_FIX_ACCURACY_M, ts_ms=req.ts)
        result = locate(state.geo, self.fences.index, fix)
        return None if result.ignored else result

    async def location(self, req: LocationRequest) -> LocationResponse:
        """Apply a location fix: transitions, zone, coverage circle, cadence, cards."""
        check_ts(req.ts, self.clock(), "ts")
        self._limit(req.user_id)
        async with self.locks.hold(req.user_id):
            return await self._location(req)

    async def _location(self, req: LocationRequest) -> LocationResponse:
        now_ms = self.clock()
        acks = list(dict.fromkeys(req.ack or ()))
        fix = Fix(
            lat=req.lat,
            lng=req.lng,
            accuracy_m=req.accuracy_m,
            ts_ms=req.ts,
            speed_mps=req.speed_mps,
        )
        for attempt in range(C.CAS_RETRIES):
            state, stored = await self._load(req.user_id, now_ms, attempt)
            pending, expired = self._split(stored, now_ms)
            res = locate(state.geo, self.fences.index, fix)
            matched = advance(self.rulebook.ruleset, state.match, now_ms)
            new_dirs = self._directives(matched.fired, now_ms)
            if res.reclaim_cards:
                new_dirs.append(
                    Directive(
                        id=new_id("d_")[:18],
                        type="reclaim_cards",
                        created_ts=now_ms,
                        expires_ts=now_ms + C.DIRECTIVE_TTL_S * 1000,
                        payload={"cards": list(res.reclaim_cards)},
                        source="geo",
                    )
                )
            refresh = res.refresh and not res.ignored
            new_state = msgspec.structs.replace(
                state,
                version=state.version + 1,
                geo=res.new_geo_state,
                match=matched.state,
                last_refresh_ts=max(req.ts, state.last_refresh_ts or 0)
                if refresh
                else state.last_refresh_ts,
                refreshes=state.refreshes + (1 if refresh else 0),
            )
            commit = Commit(
                uid=req.user_id,
                expected_version=state.version,
                state=new_state,
                now_ms=now_ms,
                ack_ids=acks + expired + self._evict(pending, acks, new_dirs),
                new_directives=new_dirs,
            )
            result = await self._commit(commit)
            if result.status == "conflict":
                await self._backoff(attempt)
                continue
            self._count_acks(pending, acks, expired)
            await self._after_commit(req.user_id, matched, new_dirs, matched.state)
            for t in res.transitions:
                self.metrics.transitions.labels(t.type).inc()
            self.metrics.fixes.labels(str(int(res.zone))).inc()
            return LocationResponse(
                transitions=[TransitionOut(t.fence_id, t.type, t.ts_ms) for t in res.transitions],
                zone=int(res.zone),
                coverage=CoverageOut(res.coverage.lat, res.coverage.lng, res.coverage.radius_m),
                next_fix_s=res.next_fix_s,
                refresh=refresh,
                service_cards=list(res.service_cards),
                directives=self._delivered(result.directives),
                ignored=res.ignored,
            )
        raise Conflict("too many concurrent updates for this user; retry", field="user_id")

    async def sweep(self) -> int:
        """Fire trailing-negation matches of users who have not been in touch; return how many."""
        now_ms = self.clock()
        fired = 0
        for uid in await self.store.due_users(now_ms, C.SWEEP_BATCH):
            async with self.locks.hold(uid):
                fired += await self._sweep_user(uid, now_ms)
        return fired

    async def _sweep_user(self, uid: str, now_ms: int) -> int:
        for attempt in range(C.CAS_RETRIES):
            state, stored = await self._load(uid, now_ms, attempt)
            matched = advance(self.rulebook.ruleset, state.match, now_ms)
            new_dirs = self._directives(matched.fired, now_ms)
            pending, expired = self._split(stored, now_ms)
            new_state = msgspec.structs.replace(
                state, version=state.version + 1, match=matched.state
            )
            commit = Commit(
                uid=uid,
                expected_version=state.version,
                state=new_state,
                now_ms=now_ms,
                new_directives=new_dirs,
                ack_ids=expired + self._evict(pending, (), new_dirs),
            )
            result = await self._commit(commit)
            if result.status == "conflict":
                await self._backoff(attempt)
                continue
            await self._after_commit(uid, matched, new_dirs, matched.state)
            return len(new_dirs)
        return 0

    def _degraded_decision(self, req: DecideRequest, decision_id: str) -> DecideResponse:
        # Without the store we know nothing about the user: decide as for a new user.
        outcome = engine.decide(
            UserState(),
            req,
            decision_id=decision_id,
            policy=self.policy,
            degraded_reasons=["store_unavailable"],
        )
        return self._response(decision_id, outcome.decision, [])

    def _response(
        self,
        decision_id: str,
        decision: engine.Decision,
        directives: Sequence[Directive],
        exposure: Exposure | None = None,
    ) -> DecideResponse:
        self.metrics.decisions.labels(decision.reason, str(decision.refresh).lower()).inc()
        for cause in decision.degraded_reasons:
            self.metrics.degraded.labels(cause).inc()
        return DecideResponse(
            decision_id=decision_id,
            refresh=decision.refresh,
            reason=decision.reason,
            score=decision.score,
            threshold=decision.threshold,
            experiment=exposure,
            model_version=decision.model_version,
            next_check_s=decision.next_check_s,
            directives=self._delivered(directives),
            degraded=bool(decision.degraded_reasons),
            degraded_reasons=decision.degraded_reasons,
            slots=decision.slots,
        )

    async def events(self, req: EventsRequest) -> EventsResponse:
        """Accept a batch of events exactly once per batch_id; 503 if the store is down."""
        validate_events(req, self.clock())
        self._limit(req.user_id)
        async with self.locks.hold(req.user_id):
            return await self._events(req)

    async def _events(self, req: EventsRequest) -> EventsResponse:
        now_ms = self.clock()
        acks = list(dict.fromkeys(req.ack or ()))
        logs = [
            _json.encode(
                {"user_id": req.user_id, "batch_id": req.batch_id, "received_ts": now_ms}
                | msgspec.to_builtins(e)
            )
            for e in req.events
        ]
        for _attempt in range(C.CAS_RETRIES):
            state, stored = await self._load(req.user_id, now_ms, _attempt)
            pending, expired = self._split(stored, now_ms)
            new_state = engine.apply_events(state, req.events)
            matched = feed(self.rulebook.ruleset, state.match, req.events, now_ms)
            exp_state, incs = record_events(state.exp, req.events, self.experiments.experiments)
            new_state = msgspec.structs.replace(new_state, match=matched.state, exp=exp_state)
            new_dirs = self._directives(matched.fired, now_ms)
            commit = Commit(
                uid=req.user_id,
                expected_version=state.version,
                state=new_state,
                now_ms=now_ms,
                new_directives=new_dirs,
                ack_ids=acks + expired + self._evict(pending, acks, new_dirs),
                batch_id=req.batch_id,
                event_logs=logs,
                stat_incrs=incs,
            )
            result = await self._commit(commit)
            if result.status == "conflict":
                await self._backoff(_attempt)
                continue
            if result.status == "duplicate":
                self.metrics.duplicate_batches.inc()
                return EventsResponse(0, True, self._delivered(result.directives))
            self._count_acks(pending, acks, expired)
            await self._after_commit(req.user_id, matched, new_dirs, new_state.match)
            for e in req.events:
                self.metrics.events.labels(e.type).inc()
            return EventsResponse(len(req.events), False, self._delivered(result.directives))
        raise Conflict("too many concurrent updates for this user; retry", field="user_id")

    async def add_directive(self, req: DirectiveRequest) -> Directive:
        """Queue a directive for a user's next contact (the reliable stand-in for a push)."""
        now_ms = self.clock()
        ttl_s = req.ttl_s or C.DIRECTIVE_TTL_S
        directive = Directive(
            id=new_id("d_")[:18],
            type=req.type,
            created_ts=now_ms,
            expires_ts=now_ms + ttl_s * 1000,
            slots=req.slots,
            payload=dict(req.payload) if req.payload else None,
            source="api",
        )
        self.cache.drop(req.user_id)
        await self.store.add_directive(req.user_id, directive, ttl_s)
        self.metrics.directives.labels("created").inc()
        return directive
