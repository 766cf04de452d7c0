"""The plumbing every user-level request flow shares: load, commit, retry, directives.

A request for one user takes the user's lock, loads the state (from this worker's cache on a
first try), lets the engine decide, and commits state, directives, logs and statistics in one
atomic, version-checked call; a conflict drops the cached copy and retries.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Sequence

from refreshd import constants as C
from refreshd.core.errors import InvalidValue, RateLimited, StoreUnavailable
from refreshd.core.matcher import Firing, MatchResult, UserMatchState, next_deadline
from refreshd.core.messages import Directive
from refreshd.core.ratelimit import RateLimiter
from refreshd.core.state import UserState
from refreshd.live.locks import KeyedLock
from refreshd.live.rulebook import RuleBook
from refreshd.live.usercache import UserCache
from refreshd.metrics import Metrics
from refreshd.settings import Settings
from refreshd.store.protocol import Commit, CommitResult, Store, live_directives

log = logging.getLogger(__name__)


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


class UserFlows:
    """Shared state and helpers of the request flows (see `refreshd.service.Service`)."""

    def __init__(
        self, store: Store, settings: Settings, metrics: Metrics, clock: Callable[[], int]
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.locks = KeyedLock()
        self.cache = UserCache(settings.user_cache_size)
        self.limiter = RateLimiter(settings.user_rate_per_s, settings.user_burst)
        self.rulebook = RuleBook()

    def _delivered(self, directives: Sequence[Directive]) -> list[Directive]:
        if directives:
            self.metrics.directives.labels("delivered").inc(len(directives))
        return list(directives)

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
            self.cache.put_blob(
                commit.uid, commit.state_blob, commit.expected_version + 1, list(result.directives)
            )
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
