"""The I/O shell around the engine: load state, call the engine, commit atomically."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import uuid
from collections.abc import Callable, Sequence

import msgspec

from geo import Fix, LocateResult, locate
from intent.features import Context, compute
from intent.scoring import MicroBatcher, ScoringUnavailable
from refreshd import constants as C
from refreshd import engine
from refreshd.errors import Conflict, InvalidValue, RateLimited, StoreUnavailable
from refreshd.expbook import ExperimentBook
from refreshd.exposure import Increment, choose, policy_for, record_decision, record_events
from refreshd.fencebook import FenceBook
from refreshd.locks import KeyedLock
from refreshd.metrics import Metrics
from refreshd.ratelimit import RateLimiter
from refreshd.registry import ModelRegistry
from refreshd.rulebook import RuleBook
from refreshd.schemas import (
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
from refreshd.settings import Settings
from refreshd.state import UserState
from refreshd.store import Commit, CommitResult, Store, live_directives
from refreshd.triggers import Firing, MatchResult, UserMatchState, advance, feed, next_deadline
from refreshd.usercache import UserCache

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


def new_id(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex


def check_ts(ts: int, now_ms: int, field: str) -> None:
    """Reject timestamps from a broken device clock (far future) or from long ago."""
    if ts > now_ms + C.MAX_FUTURE_SKEW_MS:
        raise InvalidValue(
            f"timestamp {ts} is more than {C.MAX_FUTURE_SKEW_MS // 60_000} min in the future",
            field=field,
        )
    if ts < now_ms - C.MAX_PAST_AGE_MS:
        raise InvalidValue(
            f"timestamp {ts} is more than {C.MAX_PAST_AGE_MS // 86_400_000} days old", field=field
        )


def validate_decide(req: DecideRequest, now_ms: int) -> None:
    check_ts(req.ts, now_ms, "ts")
    if (req.lat is None) != (req.lng is None):
        raise InvalidValue(
            "lat and lng must be given together", field="lat" if req.lat is None else "lng"
        )


def validate_events(req: EventsRequest, now_ms: int) -> None:
    for i, event in enumerate(req.events):
        check_ts(event.ts, now_ms, f"events[{i}].ts")


@dataclasses.dataclass(frozen=True, slots=True)
class Scored:
    """What the intent model said about one opportunity (nothing, when it was not asked)."""

    score: float | None = None
    model_version: str | None = None
    features: list[float] | None = None
    reasons: list[str] = dataclasses.field(default_factory=list)


class Service:
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
        self.store = store
        self.rulebook = rulebook or RuleBook()
        self.experiments = experiments or ExperimentBook()
        self.registry = registry or ModelRegistry()
        self.fences = fences or FenceBook()
        self.batcher = MicroBatcher(
            lambda: self.registry.model,
            max_batch=settings.score_batch_max,
            max_wait_ms=settings.score_batch_wait_ms,
        )
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.locks = KeyedLock()
        self.cache = UserCache(settings.user_cache_size)
        self.limiter = RateLimiter(settings.user_rate_per_s, settings.user_burst)
        self.policy = engine.Policy(
            min_interval_s=settings.min_interval_s,
            fallback_interval_s=settings.fallback_interval_s,
            threshold=settings.threshold,
        )

    def _delivered(self, directives: Sequence[Directive]) -> list[Directive]:
        if directives:
            self.metrics.directives.labels("delivered").inc(len(directives))
        return list(directives)

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

    def _limit(self, user_id: str) -> None:
        wait = self.limiter.allow(user_id, self.clock() / 1000)
        if wait > 0:
            self.metrics.rate_limited.inc()
            raise RateLimited(
                "too many requests for this user", retry_after_s=wait, field="user_id"
            )

    async def _load(self, uid: str, now_ms: int, attempt: int) -> tuple[UserState, list[Directive]]:
        """Return the user's state and directives: cached on a first try, else from the store."""
        if attempt == 0:
            cached = self.cache.get(uid)
            if cached is not None:
                return cached
        try:
            state, stored = await self.store.load_user(uid, now_ms)
        except StoreUnavailable:
            self.cache.drop(uid)
            raise
        return state, stored

    async def _commit(self, commit: Commit) -> CommitResult:
        """Commit, and keep the cache in step: the new state on success, nothing on conflict."""
        try:
            result = await self.store.commit(commit)
        except StoreUnavailable:
            self.cache.drop(commit.uid)
            raise
        if result.status == "ok":
            state = msgspec.structs.replace(commit.state, version=commit.expected_version + 1)
            self.cache.put(commit.uid, state, list(result.directives))
        elif result.status == "conflict":
            self.cache.drop(commit.uid)
        return result

    async def _backoff(self, attempt: int) -> None:
        # Another worker wrote this user meanwhile: retry after a short jittered pause.
        self.metrics.cas_conflicts.inc()
        await asyncio.sleep(random.uniform(0, 0.001 * 2**attempt))

    def _directives(self, fired: Sequence[Firing], now_ms: int) -> list[Directive]:
        ttl_ms = C.DIRECTIVE_TTL_S * 1000
        return [
            f.directive(id=new_id("d_")[:18], created_ts=now_ms, expires_ts=now_ms + ttl_ms)
            for f in fired
        ]

    @staticmethod
    def _evict(
        pending: Sequence[Directive], acks: Sequence[str], new: Sequence[Directive]
    ) -> list[str]:
        """Return ids of the oldest pending directives past the per-user cap."""
        kept = [d for d in pending if d.id not in acks]
        excess = len(kept) + len(new) - C.MAX_PENDING_DIRECTIVES
        return [d.id for d in kept[: max(0, excess)]]

    async def _after_commit(
        self, uid: str, matched: MatchResult, new_dirs: Sequence[Directive], match: UserMatchState
    ) -> None:
        """Count what the rules did and schedule a sweep for a waiting trailing negation."""
        if new_dirs:
            self.metrics.directives.labels("created").inc(len(new_dirs))
        for f in matched.fired:
            self.metrics.rule_firings.labels(f.rule_id).inc()
        if matched.late:
            self.metrics.late_events.inc(matched.late)
        if matched.suppressed:
            self.metrics.suppressed_matches.inc(matched.suppressed)
        due = next_deadline(self.rulebook.ruleset, match)
        if due is not None:
            try:
                await self.store.mark_due(uid, due)
            except StoreUnavailable:  # the next contact will fire it anyway
                self.metrics.store_errors.labels("mark_due").inc()

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

    @staticmethod
    def _split(stored: Sequence[Directive], now_ms: int) -> tuple[list[Directive], list[str]]:
        """Return (unexpired directives, ids of expired ones to delete)."""
        live = live_directives(stored, now_ms)
        alive = {d.id for d in live}
        return live, [d.id for d in stored if d.id not in alive]

    def _count_acks(
        self, pending: Sequence[Directive], acks: Sequence[str], expired: Sequence[str]
    ) -> None:
        known = {d.id for d in pending}
        n = sum(1 for a in acks if a in known)
        if n:
            self.metrics.directives.labels("acknowledged").inc(n)
        if expired:
            self.metrics.directives.labels("expired").inc(len(expired))

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
