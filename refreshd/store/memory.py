"""In-memory `Store` for the simulator's fast mode and pure unit tests only."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence

import msgspec

from refreshd import constants as C
from refreshd.core.messages import Directive
from refreshd.core.state import UserState
from refreshd.store.protocol import (
    LOG_DECISIONS,
    LOG_EVENTS,
    MODEL_HISTORY_MAX,
    SHARDS,
    Commit,
    CommitResult,
    ConfigWrite,
    decision_id,
    live_directives,
    shard_tag,
    with_decision_id,
)


class MemoryStore:
    """Same semantics as RedisStore (CAS, batch marks, directives), held in dicts."""

    def __init__(self, *, log_maxlen: int = C.LOG_MAXLEN) -> None:
        self.users: dict[str, tuple[int, UserState | None]] = {}
        self.directives: dict[str, dict[str, Directive]] = {}
        self.batches: set[tuple[str, str]] = set()
        self.models: dict[str, tuple[str, bytes]] = {}
        self.current_model: str | None = None
        self.model_changes: deque[bytes] = deque(maxlen=MODEL_HISTORY_MAX)  # newest first
        self.config: dict[str, dict[str, bytes]] = {}
        self.config_versions: dict[str, int] = {}
        self.config_log: dict[str, dict[str, int]] = {}
        self.config_history: dict[str, dict[int, bytes]] = {}
        self.due: dict[str, int] = {}
        self.stats: dict[str, dict[str, int]] = {}
        self.locks: dict[str, str] = {}
        self.logs: dict[str, deque[bytes]] = {
            LOG_DECISIONS: deque(maxlen=log_maxlen),
            LOG_EVENTS: deque(maxlen=log_maxlen),
        }
        # Decision rows by id, as long as the log keeps them; each user's newest ids.
        self.log_maxlen = log_maxlen
        self.decisions: OrderedDict[str, bytes] = OrderedDict()
        self.user_decision_ids: dict[str, deque[str]] = {}
        self._entry = (0, 0)  # the last stream entry id given out: (ms, seq)

    # Fast mode calls these two directly: the simulator runs on a virtual clock, in one thread.

    def load_now(self, uid: str) -> tuple[UserState, list[Directive]]:
        """Return the user's state (version 0 if new) and every stored directive, expired too."""
        version, state = self.users.get(uid, (0, None))
        if state is None:
            state = UserState(version=version)
        elif state.version != version:  # a directive was queued since (it bumps the version)
            state = msgspec.structs.replace(state, version=version)
        stored = self.directives.get(uid)
        if not stored:
            return state, []
        return state, sorted(stored.values(), key=lambda d: (d.created_ts, d.id))

    def commit_now(self, commit: Commit) -> CommitResult:
        """Apply a commit atomically (see `Commit`); the state object is kept, not encoded."""
        uid = commit.uid
        pending = self.directives.get(uid)
        if commit.batch_id and (uid, commit.batch_id) in self.batches:
            return CommitResult("duplicate", self._live(pending, commit.now_ms))
        version = self.users.get(uid, (0, None))[0]
        if version != commit.expected_version:
            return CommitResult("conflict", self._live(pending, commit.now_ms))
        self.users[uid] = (version + 1, commit.state)
        if commit.batch_id:
            self.batches.add((uid, commit.batch_id))
        if pending is not None:
            for ack in commit.ack_ids:
                pending.pop(ack, None)
        if commit.new_directives:
            if pending is None:
                pending = self.directives[uid] = {}
            for d in commit.new_directives:
                pending[d.id] = d
        ids = tuple(self._log_decision(uid, b, commit.now_ms) for b in commit.decision_logs)
        if commit.event_logs:
            self.logs[LOG_EVENTS].extend(commit.event_logs)
        for key, fields in commit.stat_incrs:
            row = self.stats.setdefault(key, {})
            for name, inc in fields.items():
                row[name] = row.get(name, 0) + inc
        return CommitResult("ok", self._live(pending, commit.now_ms), ids)

    def _log_decision(self, uid: str, blob: bytes, now_ms: int) -> str:
        """Append a decision row under a stream-like entry id, as Redis names it."""
        ms, seq = self._entry
        ms, seq = (ms, seq + 1) if now_ms <= ms else (now_ms, 0)
        self._entry = (ms, seq)
        did = decision_id(shard_tag(uid), f"{ms}-{seq}")
        row = with_decision_id(blob, did)
        self.logs[LOG_DECISIONS].append(row)
        self.decisions[did] = row
        while len(self.decisions) > self.log_maxlen:
            self.decisions.popitem(last=False)
        mine = self.user_decision_ids.setdefault(uid, deque(maxlen=C.USER_DECISIONS_KEPT))
        mine.appendleft(did)
        return did

    @staticmethod
    def _live(pending: dict[str, Directive] | None, now_ms: int) -> list[Directive]:
        return live_directives(list(pending.values()), now_ms) if pending else []

    async def load_user(self, uid: str, now_ms: int) -> tuple[UserState, list[Directive]]:
        return self.load_now(uid)

    async def commit(self, commit: Commit) -> CommitResult:
        return self.commit_now(commit)

    async def add_directive(self, uid: str, directive: Directive, ttl_s: int) -> None:
        self.directives.setdefault(uid, {})[directive.id] = directive
        version, state = self.users.get(uid, (0, None))
        self.users[uid] = (version + 1, state)

    async def has_batch(self, uid: str, batch_id: str) -> bool:
        return (uid, batch_id) in self.batches

    async def read_log(self, stream: str, count: int) -> list[bytes]:
        rows = list(self.logs.get(stream, ()))
        return rows[-count:] if count else []

    async def get_decision(self, did: str) -> bytes | None:
        return self.decisions.get(did)

    async def user_decisions(self, uid: str, limit: int) -> list[bytes]:
        ids = list(self.user_decision_ids.get(uid, ()))[: max(limit, 1)]
        return [row for did in ids if (row := self.decisions.get(did)) is not None]

    async def append_log(
        self, stream: str, rows: Sequence[tuple[str, bytes]], maxlen: int, ttl_s: int
    ) -> None:
        # One deque stands for all shards; its cap is what the shards hold together. Nothing
        # here lives long enough to expire.
        log = self.logs.get(stream)
        if log is None:
            log = self.logs[stream] = deque(maxlen=maxlen * SHARDS)
        log.extend(blob for _uid, blob in rows)

    async def put_model(self, version: str, text: str, meta: bytes) -> None:
        self.models[version] = (text, meta)

    async def current_model_version(self) -> str | None:
        return self.current_model

    async def switch_model(self, version: str, change: bytes, expected: str | None) -> bool:
        if self.current_model != expected:
            return False
        self.current_model = version
        self.model_changes.appendleft(change)
        return True

    async def model_history(self, count: int) -> list[bytes]:
        return list(self.model_changes)[:count]

    async def get_model(self, version: str) -> tuple[str, bytes] | None:
        return self.models.get(version)

    async def list_models(self) -> list[bytes]:
        return [meta for _text, meta in self.models.values()]

    def _item_version(self, kind: str, item_id: str) -> int:
        if item_id not in self.config.get(kind, {}):
            return 0
        return self.config_log.get(kind, {}).get(item_id, 0)

    def _bump(self, kind: str, item_id: str) -> int:
        self.config_versions[kind] = self.config_versions.get(kind, 0) + 1
        self.config_log.setdefault(kind, {})[item_id] = self.config_versions[kind]
        return self.config_versions[kind]

    async def put_config(
        self,
        kind: str,
        item_id: str,
        blob: bytes,
        expected: int | None = None,
        *,
        history: int = 0,
    ) -> ConfigWrite:
        current = self._item_version(kind, item_id)
        if expected is not None and expected != current:
            return ConfigWrite("conflict", current)
        self.config.setdefault(kind, {})[item_id] = blob
        version = self._bump(kind, item_id)
        if history > 0:
            kept = self.config_history.setdefault(kind, {})
            kept[version] = blob
            kept.pop(version - history, None)
        return ConfigWrite("ok", version)

    async def get_config_at(self, kind: str, version: int) -> bytes | None:
        return self.config_history.get(kind, {}).get(version)

    async def delete_config(
        self, kind: str, item_id: str, expected: int | None = None
    ) -> ConfigWrite | None:
        if item_id not in self.config.get(kind, {}):
            return None
        current = self._item_version(kind, item_id)
        if expected is not None and expected != current:
            return ConfigWrite("conflict", current)
        del self.config[kind][item_id]
        return ConfigWrite("ok", self._bump(kind, item_id))

    async def get_config_item(self, kind: str, item_id: str) -> tuple[int, bytes] | None:
        blob = self.config.get(kind, {}).get(item_id)
        return None if blob is None else (self._item_version(kind, item_id), blob)

    async def get_config_items(self, kind: str) -> tuple[int, dict[str, tuple[int, bytes]]]:
        items = self.config.get(kind, {})
        versions = {i: (self._item_version(kind, i), b) for i, b in items.items()}
        return self.config_versions.get(kind, 0), versions

    async def get_config(self, kind: str) -> tuple[int, dict[str, bytes]]:
        return self.config_versions.get(kind, 0), dict(self.config.get(kind, {}))

    async def get_config_changes(
        self, kind: str, since: int
    ) -> tuple[int, dict[str, bytes | None]]:
        items = self.config.get(kind, {})
        changed = {i: items.get(i) for i, v in self.config_log.get(kind, {}).items() if v > since}
        return self.config_versions.get(kind, 0), changed

    async def config_version(self, kind: str) -> int:
        return self.config_versions.get(kind, 0)

    async def read_stats(self, keys: Sequence[str]) -> list[dict[str, int]]:
        return [dict(self.stats.get(k, {})) for k in keys]

    async def add_stats(self, incrs: Sequence[tuple[str, Mapping[str, int]]]) -> None:
        for key, fields in incrs:
            row = self.stats.setdefault(key, {})
            for name, inc in fields.items():
                row[name] = row.get(name, 0) + inc

    async def try_lock(self, name: str, owner: str, ttl_s: int) -> bool:
        if name in self.locks:
            return False
        self.locks[name] = owner
        return True

    async def release_lock(self, name: str, owner: str) -> None:
        if self.locks.get(name) == owner:
            del self.locks[name]

    async def mark_due(self, uid: str, due_ms: int) -> None:
        self.due[uid] = min(due_ms, self.due.get(uid, due_ms))

    async def due_users(self, now_ms: int, limit: int) -> list[str]:
        ready = sorted((t, u) for u, t in self.due.items() if t <= now_ms)[:limit]
        for _, u in ready:
            del self.due[u]
        return [u for _, u in ready]

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
