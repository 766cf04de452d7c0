"""The I/O shell around the request flows: lock, load, score, commit, respond.

The thinking is in `refreshd.core.flow`; here each contact takes the user's lock, runs the
flow inside `transact` — the one load → commit (compare-and-set) → back off → retry loop —
asks the micro-batcher for a score when the decide flow needs one, and counts what happened.
A user's state comes from this worker's cache on a first try; a conflict drops the cached copy.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import msgspec

from refreshd import constants as C
from refreshd.core import flow
from refreshd.core.errors import Conflict, RateLimited, StoreUnavailable
from refreshd.core.ladder import Scored
from refreshd.core.messages import (
    DecideRequest,
    DecideResponse,
    Directive,
    DirectiveRequest,
    EventsRequest,
    EventsResponse,
    LocationRequest,
    LocationResponse,
)
from refreshd.core.policy import PolicyDoc, standard_policy
from refreshd.core.ratelimit import RateLimiter
from refreshd.live.batcher import MicroBatcher, ScoringUnavailable
from refreshd.live.expbook import ExperimentBook
from refreshd.live.fencebook import FenceBook
from refreshd.live.holdoutbook import HoldoutBook
from refreshd.live.locks import KeyedLock
from refreshd.live.monitor import Monitor
from refreshd.live.registry import ModelRegistry
from refreshd.live.rulebook import RuleBook
from refreshd.live.shadow import Shadow
from refreshd.live.usercache import UserCache
from refreshd.metrics import Metrics
from refreshd.settings import Settings
from refreshd.store.protocol import Commit, CommitResult, Store

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()
A = TypeVar("A")


class PolicySource(Protocol):
    """Where the current policy document comes from (`refreshd.live.policybook.PolicyBook`)."""

    @property
    def doc(self) -> PolicyDoc: ...

    @property
    def version(self) -> int: ...


def new_id(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex


def default_policy(settings: Settings) -> PolicyDoc:
    """Return the ladder the service decides with while no policy document is stored."""
    return standard_policy(
        threshold=settings.threshold,
        min_interval_s=settings.min_interval_s,
        fallback_interval_s=settings.fallback_interval_s,
        explore_share=settings.explore_share,
    )


class Service:
    """The request flows of every handler: decide, location, events, sweep, directives."""

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
        policies: PolicySource | None = None,
        shadow: Shadow | None = None,
        holdouts: HoldoutBook | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.locks = KeyedLock()
        self.cache = UserCache(settings.user_cache_size)
        self.limiter = RateLimiter(settings.user_rate_per_s, settings.user_burst)
        self.rulebook = rulebook or RuleBook()
        self.experiments = experiments or ExperimentBook()
        self.registry = registry or ModelRegistry()
        self.fences = fences or FenceBook()
        self.policies = policies
        self.shadow = shadow or Shadow(metrics)
        self.holdouts = holdouts or HoldoutBook()
        self.default_policy = default_policy(settings)
        self.batcher = MicroBatcher(
            lambda: self.registry.model,
            max_batch=settings.score_batch_max,
            max_wait_ms=settings.score_batch_wait_ms,
        )
        self.monitor = Monitor(metrics, self.registry, clock, window=settings.psi_window)
        # Scoring runs on this loop, in the batch's flush, which is due within the batch wait:
        # a score timeout longer than that could never fire first, so none is entered (one per
        # decision cost ~1 % of a worker's CPU).
        self._score_timeout_s: float | None = (
            settings.score_timeout_ms / 1000
            if settings.score_timeout_ms <= settings.score_batch_wait_ms
            else None
        )

    # --- the snapshot and the transaction ------------------------------------------------------

    @property
    def policy(self) -> PolicyDoc:
        """The policy document decisions use now: the stored one, else the settings' default."""
        return self.policies.doc if self.policies is not None else self.default_policy

    def config(self) -> flow.Config:
        """Snapshot what a contact is decided with (the books swap their contents atomically)."""
        return flow.Config(
            rules=self.rulebook.ruleset,
            experiments=self.experiments.experiments,
            holdouts=self.holdouts.running,
            fences=self.fences.index,
            policy=self.policy,
            versions=flow.ConfigVersions(
                rules=max(self.rulebook.version, 0),
                experiments=max(self.experiments.version, 0),
                fences=max(self.fences.version, 0),
                policy=max(self.policies.version, 0) if self.policies is not None else 0,
            ),
            model_version=self.registry.version,
        )

    async def transact(
        self,
        uid: str,
        now_ms: int,
        step: Callable[[flow.Loaded], Awaitable[flow.Outcome[A]]],
    ) -> tuple[flow.Outcome[A], CommitResult]:
        """Load the user, run `step`, commit its effects if nobody wrote the user meanwhile.

        Returns the outcome and the commit's result (status "ok" or "duplicate"); on a version
        conflict the user is reloaded and `step` runs again, a few times, then `Conflict`.
        `StoreUnavailable` propagates (decide degrades, writes answer 503).
        """
        for attempt in range(C.CAS_RETRIES):
            loaded = await self._load(uid, now_ms, attempt)
            outcome = await step(loaded)
            e = outcome.effects
            commit = Commit(
                uid=uid,
                expected_version=loaded.state.version,
                state=e.state,
                now_ms=now_ms,
                ack_ids=e.delete_ids,
                new_directives=e.new_directives,
                batch_id=e.batch_id,
                decision_logs=[_json.encode(row) for row in e.decision_logs],
                event_logs=[_json.encode(row) for row in e.event_logs],
                stat_incrs=e.stat_incrs,
            )
            try:
                result = await self.store.commit(commit)
            except StoreUnavailable:
                self.metrics.store_errors.labels("commit").inc()
                self.cache.drop(uid)
                raise
            if result.status == "conflict":
                self.cache.drop(uid)
                self.metrics.cas_conflicts.inc()
                # Another worker wrote this user meanwhile: retry after a short jittered pause.
                await asyncio.sleep(random.uniform(0, 0.001 * 2**attempt))
                continue
            if result.status == "ok":
                self.cache.put_blob(uid, commit.state_blob, e.state.version, list(e.pending))
                await self._after_commit(uid, e)
            return outcome, result
        raise Conflict("too many concurrent updates for this user; retry", field="user_id")

    async def _load(self, uid: str, now_ms: int, attempt: int) -> flow.Loaded:
        if attempt == 0:
            cached = self.cache.get(uid)
            if cached is not None:
                return flow.Loaded(*cached)
        try:
            state, stored = await self.store.load_user(uid, now_ms)
        except StoreUnavailable:
            self.metrics.store_errors.labels("load").inc()
            self.cache.drop(uid)
            raise
        return flow.Loaded(state, stored)

    async def _after_commit(self, uid: str, e: flow.Effects) -> None:
        """Count what the contact did; schedule a sweep for a waiting trailing negation."""
        m = self.metrics
        if e.new_directives:
            m.directives.labels("created").inc(len(e.new_directives))
        if e.acknowledged:
            m.directives.labels("acknowledged").inc(e.acknowledged)
        if e.expired:
            m.directives.labels("expired").inc(e.expired)
        if e.pending:
            m.directives.labels("delivered").inc(len(e.pending))
        matched = e.matched
        if matched is not None:
            for f in matched.fired:
                m.rule_firings.labels(f.rule_id).inc()
            if matched.late:
                m.late_events.inc(matched.late)
            if matched.suppressed:
                m.suppressed_matches.inc(matched.suppressed)
        if e.due_ms is not None:
            try:
                await self.store.mark_due(uid, e.due_ms)
            except StoreUnavailable:  # the next contact will fire it anyway
                m.store_errors.labels("mark_due").inc()

    def _limit(self, user_id: str) -> None:
        wait = self.limiter.allow(user_id, self.clock() / 1000)
        if wait > 0:
            self.metrics.rate_limited.inc()
            raise RateLimited(
                "too many requests for this user", retry_after_s=wait, field="user_id"
            )

    # --- contacts ------------------------------------------------------------------------------

    async def decide(self, req: DecideRequest) -> DecideResponse:
        """Decide for one opportunity; degrade to the fallback rule when the store is down."""
        flow.check_decide(req, self.clock())
        self._limit(req.user_id)
        async with self.locks.hold(req.user_id):
            now_ms, cfg = self.clock(), self.config()

            async def step(loaded: flow.Loaded) -> flow.Outcome[DecideResponse]:
                # The decision's id is its log row's place, known once the store wrote it.
                plan = flow.prepare_decide(loaded, req, cfg, now_ms=now_ms, decision_id="")
                scored = await self._score(plan.features) if plan.needs_score else None
                return flow.finish_decide(plan, scored)

            try:
                outcome, result = await self.transact(req.user_id, now_ms, step)
                answer = outcome.answer
                answer.decision_id = result.decision_ids[0]
                for row in outcome.effects.decision_logs:  # written without it: the id is its place
                    row.decision_id = answer.decision_id
                    if row.feature_ages is not None:
                        self.monitor.aged(row.feature_ages)
                self.shadow.offer(outcome.effects.decision_logs)  # queued, never awaited
            except StoreUnavailable:  # counted by transact as a load or commit error
                # Not logged, so not to be looked up: an id that says so.
                answer = flow.decide_degraded(req, cfg, decision_id=new_id("x"))
        self.monitor.decided(answer)
        return answer

    async def _score(self, features: list[float] | None) -> Scored:
        """Ask the micro-batcher for the model's score; say why when there is none."""
        assert features is not None
        try:
            if self._score_timeout_s is not None:
                async with asyncio.timeout(self._score_timeout_s):
                    score, version = await self.batcher.score(features)
            else:
                score, version = await self.batcher.score(features)
        except ScoringUnavailable:
            cause = "no_model" if self.registry.model is None else "scorer_failed"
            return Scored(reasons=(cause,))
        except TimeoutError:
            return Scored(reasons=("scorer_timeout",))
        self.monitor.scored(features, score, version)
        return Scored(score=score, model_version=version)

    async def _contact(
        self, uid: str, run: Callable[[flow.Loaded, flow.Config, int], flow.Outcome[A]]
    ) -> tuple[flow.Outcome[A], CommitResult]:
        """Run a flow that needs no score under the user's lock, in one transaction."""
        async with self.locks.hold(uid):
            now_ms, cfg = self.clock(), self.config()

            async def step(loaded: flow.Loaded) -> flow.Outcome[A]:
                return run(loaded, cfg, now_ms)

            return await self.transact(uid, now_ms, step)

    async def location(self, req: LocationRequest) -> LocationResponse:
        """Apply a location fix: transitions, zone, coverage circle, cadence, cards."""
        flow.check_ts(req.ts, self.clock(), "ts")
        self._limit(req.user_id)
        outcome, _ = await self._contact(
            req.user_id, lambda loaded, cfg, now: flow.location(loaded, req, cfg, now_ms=now)
        )
        answer = outcome.answer
        for t in answer.transitions:
            self.metrics.transitions.labels(t.type).inc()
        self.metrics.fixes.labels(str(answer.zone)).inc()
        return answer

    async def events(self, req: EventsRequest) -> EventsResponse:
        """Accept a batch of events exactly once per batch_id; 503 if the store is down."""
        flow.check_events(req, self.clock())
        self._limit(req.user_id)
        outcome, result = await self._contact(
            req.user_id, lambda loaded, cfg, now: flow.events(loaded, req, cfg, now_ms=now)
        )
        if result.status == "duplicate":
            self.metrics.duplicate_batches.inc()
            assert outcome.duplicate is not None
            return outcome.duplicate
        for e in req.events:
            self.metrics.events.labels(e.type).inc()
        return outcome.answer

    async def sweep(self) -> int:
        """Fire trailing-negation matches of users who have not been in touch; return how many."""
        fired = 0
        for uid in await self.store.due_users(self.clock(), C.SWEEP_BATCH):
            try:
                outcome, _ = await self._contact(
                    uid, lambda loaded, cfg, now: flow.sweep(loaded, cfg, now_ms=now)
                )
            except Conflict:
                continue  # a busy user: their next contact fires it
            fired += outcome.answer
        return fired

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
