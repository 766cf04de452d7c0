"""The state store seam: one Protocol, key names, and the values that cross it."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

import msgspec

from refreshd.core.directives import live_directives
from refreshd.core.messages import Directive
from refreshd.core.state import UserState

__all__ = [
    "Commit",
    "CommitResult",
    "ConfigWrite",
    "Store",
    "batch_key",
    "decode_state",
    "directives_key",
    "encode_state",
    "live_directives",
    "user_key",
]

# A year of daily retrains and every promotion and rollback in between.
MODEL_HISTORY_MAX = 1000
# Fixed: changing it re-homes users and orphans their keys. 16 tags spread over a few masters.
SHARDS = 16
LOG_DECISIONS = "log:decisions"
LOG_EVENTS = "log:events"
MODEL_CURRENT = "model:current"
# The champion changes (publish, promote, rollback), newest first. The hash tag is the pointer's
# own key, so both hash to one Redis Cluster slot and one script switches and records together.
MODEL_HISTORY = "{model:current}:history"
MODELS = "models"
DUE = "trig:due"


def config_key(kind: str) -> str:
    return f"cfg:{{{kind}}}"


def config_version_key(kind: str) -> str:
    return f"cfg:{{{kind}}}:ver"


def config_log_key(kind: str) -> str:
    """Sorted set: each item id scored by the version that last changed (or deleted) it."""
    return f"cfg:{{{kind}}}:log"


def config_history_key(kind: str) -> str:
    """Hash: version → the item blob written under it (kinds written with `history`)."""
    return f"cfg:{{{kind}}}:hist"


def model_key(version: str) -> str:
    return f"model:{version}"


def shadow_log(version: str) -> str:
    """Return the (per-shard) log stream of a challenger's shadow scores."""
    return f"log:shadow:{version}"


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(UserState)
_dir_encoder = msgspec.msgpack.Encoder()
_dir_decoder = msgspec.msgpack.Decoder(Directive)


def shard_tag(uid: str) -> str:
    """Return the hash tag of a user's shard: `{sNN}`.

    Every key one request writes — the user's state, directives, batch marks, and the shard's
    log streams and experiment statistics — carries the same tag, so one Lua script updates them
    atomically on one Redis Cluster slot. Users spread over `SHARDS` tags.
    """
    return _TAGS[zlib.crc32(uid.encode()) % SHARDS]


def _tag(i: int) -> str:
    return "{s" + f"{i:02d}" + "}"


_TAGS = tuple(_tag(i) for i in range(SHARDS))  # formatted once: a commit names ~5 keys


def all_tags() -> list[str]:
    return list(_TAGS)


def user_key(uid: str) -> str:
    return f"u:{shard_tag(uid)}:{uid}"


def directives_key(uid: str) -> str:
    return f"dir:{shard_tag(uid)}:{uid}"


def batch_key(uid: str, batch_id: str) -> str:
    return f"b:{shard_tag(uid)}:{uid}:{batch_id}"


def user_decisions_key(uid: str) -> str:
    """List of the user's newest decision ids (`GET /v1/users/{id}/decisions`)."""
    return f"ud:{shard_tag(uid)}:{uid}"


def decision_id(tag: str, entry_id: str) -> str:
    """Name a decision by where its log row is: the shard and the stream entry (`07-<ms>-<seq>`).

    The decision log is its own index: looking a decision up is one XRANGE of one entry, and a
    decision is found exactly as long as the log keeps its row.
    """
    return f"{tag[2:4]}-{entry_id}"


def parse_decision_id(did: str) -> tuple[str, str] | None:
    """Return (shard tag, stream entry id) of a decision id, None if it cannot be one."""
    shard, _, entry = did.partition("-")
    ms, _, seq = entry.partition("-")
    if len(shard) != 2 or not (shard.isdigit() and ms.isdigit() and seq.isdigit()):
        return None
    if int(shard) >= SHARDS or len(ms) > 16 or len(seq) > 16:
        return None
    return _tag(int(shard)), entry


def with_decision_id(blob: bytes, did: str) -> bytes:
    """Put a decision's id into its log row (stored without it: the id is where the row is)."""
    return b'{"decision_id":"' + did.encode() + b'",' + blob[1:]


def shard_key(base: str, tag: str) -> str:
    """Return a per-shard key of a global structure (a log stream, a statistics hash)."""
    return f"{base}:{tag}"


def encode_state(state: UserState) -> bytes:
    return _state_encoder.encode(state)


def decode_state(blob: bytes | None) -> UserState:
    return UserState() if blob is None else _state_decoder.decode(blob)


def encode_directive(d: Directive) -> bytes:
    return _dir_encoder.encode(d)


def decode_directive(blob: bytes) -> Directive:
    return _dir_decoder.decode(blob)


class Commit(msgspec.Struct, kw_only=True):
    """Everything one request writes for one user, applied atomically or not at all.

    The write happens only if the stored version still equals `expected_version` (else
    `conflict`) and, when `batch_id` is set, only if that batch was not seen (else
    `duplicate`).
    """

    uid: str
    expected_version: int
    state: UserState
    now_ms: int
    ack_ids: Sequence[str] = ()
    new_directives: Sequence[Directive] = ()
    batch_id: str | None = None
    decision_logs: Sequence[bytes] = ()
    event_logs: Sequence[bytes] = ()
    # (hash key, {field: increment}): experiment statistics, added with HINCRBY.
    stat_incrs: Sequence[tuple[str, Mapping[str, int]]] = ()
    _blob: bytes | None = None  # the encoded state, once asked for

    @property
    def state_blob(self) -> bytes:
        """`state` encoded once, for the store and the worker's user cache alike (the memory
        store keeps the object and never asks)."""
        if self._blob is None:
            self._blob = encode_state(self.state)
        assert self._blob is not None
        return self._blob


@dataclasses.dataclass(frozen=True, slots=True)
class CommitResult:
    status: Literal["ok", "conflict", "duplicate"]
    directives: list[Directive]  # pending after the commit, unexpired, oldest first
    decision_ids: tuple[str, ...] = ()  # of the decision log rows written ("ok" only)


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigWrite:
    """The outcome of a configuration write.

    An item's version is the kind version that last wrote it (its score in the kind's change
    log), 0 while it does not exist. `ok`: written, `version` is the item's new version (for a
    delete, the kind version that recorded it); `conflict`: the item was not at the expected
    version and nothing was written, `version` is the one it is at.
    """

    status: Literal["ok", "conflict"]
    version: int


class Store(Protocol):
    """Where user state, directives, logs and configuration live."""

    async def load_user(self, uid: str, now_ms: int) -> tuple[UserState, list[Directive]]:
        """Return the user's state (version 0 if new) and every stored directive, expired too."""
        ...

    async def commit(self, commit: Commit) -> CommitResult:
        """Apply a commit atomically (see `Commit`)."""
        ...

    async def add_directive(self, uid: str, directive: Directive, ttl_s: int) -> None:
        """Queue a directive for the user's next contact (and bump the user's version)."""
        ...

    async def has_batch(self, uid: str, batch_id: str) -> bool:
        """Return whether a batch id was already accepted for the user."""
        ...

    async def read_log(self, stream: str, count: int) -> list[bytes]:
        """Return the newest `count` entries of a log stream (JSON blobs), oldest first;
        decision rows carry their `decision_id`."""
        ...

    async def get_decision(self, did: str) -> bytes | None:
        """Return a decision's log row (JSON, with its id), None if the log no longer has it."""
        ...

    async def user_decisions(self, uid: str, limit: int) -> list[bytes]:
        """Return the user's newest decision log rows (at most `limit`), newest first."""
        ...

    async def append_log(
        self, stream: str, rows: Sequence[tuple[str, bytes]], maxlen: int, ttl_s: int
    ) -> None:
        """Append (user id, JSON blob) rows to the user's shard of a log stream, each shard
        capped near `maxlen` entries and expiring `ttl_s` after its last append (a log no user
        request writes, such as shadow scores)."""
        ...

    async def put_model(self, version: str, text: str, meta: bytes) -> None:
        """Store a model artifact (LightGBM text) and its JSON metadata under its version."""
        ...

    async def current_model_version(self) -> str | None: ...

    async def switch_model(self, version: str, change: bytes, expected: str | None) -> bool:
        """Point `model:current` at `version` and record `change` in the history, atomically.

        Only if the pointer still names `expected` (None: no model yet); False, and nothing
        written, if it names another. The history keeps the newest `MODEL_HISTORY_MAX` changes.
        """
        ...

    async def model_history(self, count: int) -> list[bytes]:
        """Return the newest `count` recorded champion changes (JSON blobs), newest first."""
        ...

    async def get_model(self, version: str) -> tuple[str, bytes] | None:
        """Return (text, JSON metadata) of a stored model, or None."""
        ...

    async def list_models(self) -> list[bytes]:
        """Return the JSON metadata of every stored model, oldest first."""
        ...

    async def put_config(
        self,
        kind: str,
        item_id: str,
        blob: bytes,
        expected: int | None = None,
        *,
        history: int = 0,
    ) -> ConfigWrite:
        """Store one configuration item (a rule, a fence, an experiment, the policy).

        With `expected`, only if the item is still at that version (0: it does not exist),
        checked and written atomically; without it, unconditionally. With `history` > 0 the
        same step also keeps the blob under its new version and forgets the one written
        `history` versions earlier (`get_config_at`).
        """
        ...

    async def get_config_at(self, kind: str, version: int) -> bytes | None:
        """Return the blob a write with `history` stored under `version`, None if not kept."""
        ...

    async def delete_config(
        self, kind: str, item_id: str, expected: int | None = None
    ) -> ConfigWrite | None:
        """Delete a configuration item (if at `expected`, as `put_config`); None if absent."""
        ...

    async def get_config_item(self, kind: str, item_id: str) -> tuple[int, bytes] | None:
        """Return (the item's version, its blob), or None if it does not exist."""
        ...

    async def get_config_items(self, kind: str) -> tuple[int, dict[str, tuple[int, bytes]]]:
        """Return (kind version, id → (item version, blob)) of one kind of configuration."""
        ...

    async def get_config(self, kind: str) -> tuple[int, dict[str, bytes]]:
        """Return (version, every item) of one kind of configuration."""
        ...

    async def get_config_changes(
        self, kind: str, since: int
    ) -> tuple[int, dict[str, bytes | None]]:
        """Return (version, items changed after version `since`); a deleted item maps to None.

        Only changes made by this code are logged: read everything with `get_config` first,
        then follow with this from the version that returned.
        """
        ...

    async def config_version(self, kind: str) -> int:
        """Return the version of one kind of configuration (0: never written)."""
        ...

    async def read_stats(self, keys: Sequence[str]) -> list[dict[str, int]]:
        """Return the integer fields of each statistics hash ({} when absent)."""
        ...

    async def add_stats(self, incrs: Sequence[tuple[str, Mapping[str, int]]]) -> None:
        """Add integer increments to statistics hashes, outside any user's commit (counters
        the shell measures, such as request latency per experiment arm)."""
        ...

    async def try_lock(self, name: str, owner: str, ttl_s: int) -> bool:
        """Take a named lease if free (so one worker of many trains); it expires after ttl_s."""
        ...

    async def release_lock(self, name: str, owner: str) -> None: ...

    async def mark_due(self, uid: str, due_ms: int) -> None:
        """Remember that a user's rule state needs a sweep at `due_ms`."""
        ...

    async def due_users(self, now_ms: int, limit: int) -> list[str]:
        """Return users whose sweep is due, and forget them (the sweep re-marks if needed)."""
        ...

    async def ping(self) -> bool:
        """Return whether the store answers."""
        ...

    async def close(self) -> None: ...
