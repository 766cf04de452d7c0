"""Shadow (challenger) models: score every model-decided decision with the challengers too,
off the decision's latency path, and report how they compare.

Which versions are shadowed is configuration (kind `shadow`, one item per version), polled
like every other kind, so starting or stopping a shadow reaches every worker within one
config poll. Each worker loads the challengers itself.

The decision never waits for a challenger: `offer` puts the decision's log row on a bounded
queue and returns; when the queue is full the row is dropped and counted
(`refreshd_shadow_dropped_total`), so a slow challenger costs shadow coverage, not latency.
A background task takes rows in batches, scores them in a thread (as the micro-batcher does
for the champion), and appends one row per decision and challenger to the challenger's
sharded log, which any worker's report reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from intent.dataset import EventLog
from intent.features import FEATURES_VERSION
from intent.model import IntentModel, read_features_version
from refreshd import constants as C
from refreshd.core.errors import Conflict, NotFound, StoreUnavailable
from refreshd.core.flow import DecisionLog
from refreshd.core.shadow import (
    ShadowReport,
    ShadowRow,
    is_matured,
    shadow_row,
    shadowable,
    summarize,
)
from refreshd.live.configbook import reload_if_changed
from refreshd.metrics import Metrics
from refreshd.store.protocol import LOG_EVENTS, SHARDS, Store, shadow_log

__all__ = ["KIND", "Shadow", "ShadowSpec", "shadow_report", "start_shadow", "stop_shadow"]

log = logging.getLogger(__name__)
KIND = "shadow"
_row_encoder = msgspec.json.Encoder()
_row_decoder = msgspec.json.Decoder(ShadowRow)
_json = msgspec.json.Decoder()


class ShadowSpec(msgspec.Struct, kw_only=True):
    """A shadowed challenger (the stored configuration item, and POST .../shadow's answer)."""

    version: str
    started_ts: int
    by: str


def _parse(item_id: str, blob: bytes) -> ShadowSpec:
    return msgspec.json.decode(blob, type=ShadowSpec)


class Shadow:
    """This worker's challengers and the background task that scores decisions with them."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        queue_max: int = C.SHADOW_QUEUE_MAX,
        log_maxlen: int = C.SHADOW_LOG_MAXLEN,
        batch_max: int = C.SHADOW_BATCH_MAX,
        batch_wait_s: float = C.SHADOW_BATCH_WAIT_S,
    ) -> None:
        self.metrics = metrics
        self.log_maxlen = log_maxlen
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.version = -1  # of the `shadow` configuration kind
        self.models: dict[str, IntentModel] = {}  # the loaded challengers
        self._queue: asyncio.Queue[DecisionLog] = asyncio.Queue(maxsize=queue_max)
        self._tally: dict[str, tuple[int, int]] = {}  # version → (agreeing, scored) here

    async def refresh(self, store: Store) -> bool:
        """Follow the shadowed versions in the store; load new challengers. Return whether
        the set changed."""
        loaded = await reload_if_changed(store, KIND, self.version, _parse, (msgspec.DecodeError,))
        if loaded is None:
            return False
        version, specs = loaded
        models: dict[str, IntentModel] = {}
        for v in specs:
            model = self.models.get(v) or await self._load(store, v)
            if model is not None:
                models[v] = model
        for gone in set(self._tally) - set(models):
            del self._tally[gone]
            self.metrics.shadow_agreement.remove(gone)
        self.version, self.models = version, models  # the swap
        log.info("shadowing %s", ", ".join(sorted(models)) or "no challenger")
        return True

    @staticmethod
    async def _load(store: Store, version: str) -> IntentModel | None:
        stored = await store.get_model(version)
        if stored is None:
            log.error("shadow model %s is not stored", version)
            return None
        try:
            return await asyncio.to_thread(IntentModel.from_text, stored[0], version=version)
        except Exception as exc:  # a model this code cannot score with: shadow the others
            log.error("cannot load shadow model %s: %s", version, exc)
            return None

    def offer(self, logs: Sequence[DecisionLog]) -> None:
        """Queue decisions for the challengers; never waits (a full queue drops and counts)."""
        if not self.models:
            return
        for row in logs:
            if not shadowable(row):
                continue
            try:
                self._queue.put_nowait(row)
            except asyncio.QueueFull:
                self.metrics.shadow_dropped.inc()

    async def run(self, store: Store) -> None:
        """Score queued decisions in batches until cancelled."""
        while True:
            batch = [await self._queue.get()]
            if self._queue.qsize() < self.batch_max:
                await asyncio.sleep(self.batch_wait_s)
            while len(batch) < self.batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.score(store, batch)
            except StoreUnavailable:
                self.metrics.store_errors.labels("shadow").inc()
            except Exception:  # one bad batch must not end shadow scoring
                log.exception("shadow scoring failed")

    async def score(self, store: Store, batch: Sequence[DecisionLog]) -> None:
        """Score a batch with every challenger and append the rows to their logs."""
        for version, model in list(self.models.items()):
            rows = [r for r in batch if r.model_version != version]  # not against itself
            if not rows:
                continue
            X = np.asarray([r.features for r in rows], dtype=np.float64)
            scores = await asyncio.to_thread(model.predict, X)
            if version not in self.models:  # stopped meanwhile: its gauge is gone, keep it so
                continue
            out = [shadow_row(r, float(s)) for r, s in zip(rows, scores, strict=True)]
            agree, seen = self._tally.get(version, (0, 0))
            agree += sum(o.champion_refresh == o.challenger_refresh for o in out)
            seen += len(out)
            self._tally[version] = (agree, seen)
            self.metrics.shadow_agreement.labels(version).set(agree / seen)
            self.metrics.shadow_scored.labels(version).inc(len(out))
            blobs = [(o.user_id, _row_encoder.encode(o)) for o in out]
            await store.append_log(shadow_log(version), blobs, self.log_maxlen, C.SHADOW_LOG_TTL_S)


async def start_shadow(store: Store, version: str, *, now_ms: int, by: str) -> ShadowSpec:
    """Start shadowing a stored model (idempotent); 404 if unknown, 409 if it cannot be one."""
    stored = await store.get_model(version)
    if stored is None:
        raise NotFound(f"no stored model {version}", field="version")
    existing = await store.get_config_item(KIND, version)
    if existing is not None:
        return _parse(version, existing[1])
    found = read_features_version(stored[0])
    if found != FEATURES_VERSION:
        raise Conflict(
            f"model {version} was trained on features {found!r}; this service computes "
            f"{FEATURES_VERSION!r}",
            field="version",
        )
    if version == await store.current_model_version():
        raise Conflict(f"model {version} is the champion; shadow another one", field="version")
    if len((await store.get_config(KIND))[1]) >= C.SHADOW_MODELS_MAX:
        raise Conflict(
            f"{C.SHADOW_MODELS_MAX} challengers are shadowed already; stop one first", field=None
        )
    spec = ShadowSpec(version=version, started_ts=now_ms, by=by)
    await store.put_config(KIND, version, msgspec.json.encode(spec))
    return spec


async def stop_shadow(store: Store, version: str) -> None:
    """Stop shadowing a model (its rows stay for the report); 404 if it was not shadowed."""
    if await store.delete_config(KIND, version) is None:
        if await store.get_model(version) is None:
            raise NotFound(f"no stored model {version}", field="version")
        raise NotFound(f"model {version} is not shadowed", field="version")


async def shadow_report(
    store: Store, version: str, *, now_ms: int, log_maxlen: int, event_rows: int
) -> ShadowReport:
    """Compare a challenger with the champion over its shadow log; AUCs on matured labels."""
    if await store.get_model(version) is None:
        raise NotFound(f"no stored model {version}", field="version")
    active = await store.get_config_item(KIND, version) is not None
    blobs = await store.read_log(shadow_log(version), log_maxlen * SHARDS)
    rows = [_row_decoder.decode(b) for b in blobs]
    ripe = [is_matured(r, now_ms) for r in rows]
    labels: list[int | None] = [None] * len(rows)
    if any(ripe):
        events = [_json.decode(b) for b in await store.read_log(LOG_EVENTS, event_rows)]
        labels = await asyncio.to_thread(_labels, rows, ripe, events)
    return await asyncio.to_thread(summarize, version, rows, labels, active=active)


def _labels(
    rows: Sequence[ShadowRow], ripe: Sequence[bool], events: list[dict[str, Any]]
) -> list[int | None]:
    """Return each matured row's click label (as training labels it), None for the others."""
    book = EventLog(events)
    return [book.label(r.user_id, r.ts) if ok else None for r, ok in zip(rows, ripe, strict=True)]
